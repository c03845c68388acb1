"""The shared argument checks: every bad input is a ValueError that names the argument."""

import math

import pytest
import torch

from gdsec import validation as v


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, "1", None, True])
def test_check_number_rejects(bad):
    with pytest.raises(ValueError, match="eps"):
        v.check_number("eps", bad, low=0.0)


def test_check_number_bounds_and_open_ends():
    assert v.check_number("x", 1, low=0, high=1) == 1.0
    with pytest.raises(ValueError, match=r"x must be in \(0, 1\]"):
        v.check_number("x", 0.0, low=0.0, high=1.0, low_open=True)
    with pytest.raises(ValueError, match="x"):
        v.check_number("x", 1.0, low=0.0, high=1.0, high_open=True)


def test_check_int():
    assert v.check_int("steps", 3, low=1) == 3
    for bad in (0, 2.0, True, "3"):
        with pytest.raises(ValueError, match="steps"):
            v.check_int("steps", bad, low=1)


def test_check_fraction_and_choice():
    assert v.check_fraction("fraction", 0.5) == 0.5
    with pytest.raises(ValueError, match="fraction"):
        v.check_fraction("fraction", 1.5)
    assert v.check_choice("norm", "inf", ("inf", "2")) == "inf"
    with pytest.raises(ValueError, match=r"norm must be one of \['inf', '2'\]"):
        v.check_choice("norm", "1", ("inf", "2"))


def test_check_norm_maps_numbers_and_names_the_argument():
    assert v.check_norm("norm", math.inf) == v.check_norm("norm", "inf") == "inf"
    assert v.check_norm("norm", 2) == v.check_norm("norm", 2.0) == v.check_norm("norm", "2") == "2"
    for bad in (1, "l2", True, None):
        with pytest.raises(ValueError, match="ord"):
            v.check_norm("ord", bad)


def test_check_unit_tensor():
    good = torch.rand(3, 4)
    assert v.check_unit_tensor("x", good) is good
    cases = [
        (torch.rand(3, 4) + 1, r"\[0, 1\]"),
        (torch.tensor([[0.5, math.nan]]), "NaN"),
        (torch.zeros(3, 4, dtype=torch.int64), "floating"),
        (torch.zeros(0, 4), "empty"),
        ([[0.5]], "torch.Tensor"),
        (torch.tensor(0.5), "dimension"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            v.check_unit_tensor("x", bad)


def test_check_labels():
    y = torch.tensor([0, 1, 9])
    assert v.check_labels("y", y, n=3, n_classes=10) is y
    cases = [
        (torch.tensor([0, 10]), {"n_classes": 10}, r"\[0, 10\)"),
        (torch.tensor([-1, 0]), {}, "y must be in"),
        (torch.tensor([0.0, 1.0]), {}, "integer"),
        (torch.tensor([[0, 1]]), {}, "1-D"),
        (torch.tensor([0, 1]), {"n": 3}, "3 labels"),
    ]
    for bad, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            v.check_labels("y", bad, **kwargs)


def test_check_model():
    with pytest.raises(ValueError, match="model"):
        v.check_model("model", lambda x: x)


def test_check_seed_returns_the_seed_or_names_it():
    assert v.check_seed(5) == 5 and v.check_seed(0) == 0
    for bad in (-1, 1.5, True, None, "0"):
        with pytest.raises(ValueError, match="seed"):
            v.check_seed(bad)


def test_check_batch():
    x = torch.rand(3, 2)
    assert v.check_batch("x", x) is x and v.check_batch("x", x, unit=True) is x
    for bad, message in (
        (torch.rand(3), "batch axis"),
        (torch.zeros(3, 2, dtype=torch.long), "floating-point"),
        ([[0.0]], "batch axis"),
        (torch.full((2, 2), float("nan")), "NaN"),
        (torch.zeros(0, 2), "at least 1"),
    ):
        with pytest.raises(ValueError, match=message):
            v.check_batch("x", bad)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        v.check_batch("x", x + 1, unit=True)
    with pytest.raises(ValueError, match="at least 4"):
        v.check_batch("x", x, min_rows=4)


def test_check_keywords_names_every_unknown_key():
    v.check_keywords("f", {"a": 1}, ("a", "b"))
    with pytest.raises(ValueError, match="f got unknown setting.*momentum, zeta.*allowed: a, b"):
        v.check_keywords("f", {"zeta": 1, "a": 2, "momentum": 3}, ("b", "a"))
    with pytest.raises(ValueError, match="allowed: none"):
        v.check_keywords("f", {"a": 1}, ())
