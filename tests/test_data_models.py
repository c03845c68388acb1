"""Bundled data and the course's models."""

import pytest
import torch

from gdsec import data, models


def test_load_digits_contract():
    split = data.load_digits()
    assert split.x_train.shape[1:] == (1, 8, 8) and split.x_train.dtype == torch.float32
    assert split.y_train.dtype == torch.int64
    assert len(split.x_train) + len(split.x_test) == 1797
    assert abs(len(split.x_test) / 1797 - 0.25) < 0.01
    for x in (split.x_train, split.x_test):
        assert 0.0 <= x.min() and x.max() <= 1.0
    assert set(split.y_test.tolist()) == set(range(10))


def test_load_digits_is_deterministic_and_seeded():
    a, b, c = data.load_digits(), data.load_digits(), data.load_digits(seed=1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)


@pytest.mark.parametrize(
    "kwargs", [{"test_size": 0.0}, {"test_size": 1.0}, {"seed": -1}, {"test_size": "a"}]
)
def test_load_digits_rejects(kwargs):
    with pytest.raises(ValueError):
        data.load_digits(**kwargs)


def test_two_digits():
    split = data.two_digits(3, 8)
    assert set(split.y_train.tolist()) == {0, 1}
    assert 300 < len(split.x_train) + len(split.x_test) < 400
    with pytest.raises(ValueError, match="different"):
        data.two_digits(3, 3)
    with pytest.raises(ValueError, match="b"):
        data.two_digits(3, 10)


@pytest.mark.parametrize("factory", [models.logistic_regression, models.mlp, models.digits_cnn])
def test_models_map_digits_to_logits_and_are_seeded(factory):
    x = data.load_digits().x_test[:5]
    a, b, c = factory(seed=0), factory(seed=0), factory(seed=1)
    assert a(x).shape == (5, 10)
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), c(x))
    assert models.count_parameters(a) > 0


def test_seeded_models_leave_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    models.digits_cnn(seed=5)
    assert torch.equal(torch.rand(1), expected)


def test_model_arguments_are_validated():
    with pytest.raises(ValueError, match="activation"):
        models.mlp(activation="swish")
    with pytest.raises(ValueError, match="hidden"):
        models.mlp(hidden=0)
    with pytest.raises(ValueError, match="n_classes"):
        models.logistic_regression(n_classes=1)
    with pytest.raises(ValueError, match="seed"):
        models.digits_cnn(seed=-1)
    with pytest.raises(ValueError, match="seed"):
        models.mlp(seed=None)  # no unseeded escape hatch


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: [], "non-empty"),
        (lambda: models.mlp(seed=0), "non-empty list"),
        (lambda: [models.mlp(seed=0), "model"], r"models\[1\] must be a torch.nn.Module"),
        (lambda: [models.mlp(seed=0), models.mlp(hidden=8, seed=0)], "one architecture; model 1"),
        (lambda: [models.mlp(seed=0), models.logistic_regression(seed=0)], "one architecture"),
        (
            lambda: [
                torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(), torch.nn.Linear(64, 10))
            ],
            "dropout",
        ),
        (
            lambda: [
                torch.nn.Sequential(
                    torch.nn.Flatten(), torch.nn.Linear(64, 10).requires_grad_(False)
                )
            ],
            "trainable",
        ),
    ],
)
def test_check_same_architecture_names_the_argument(build, message):
    with pytest.raises(ValueError, match=message):
        models.check_same_architecture("models", build())
    same = [models.mlp(seed=0), models.mlp(seed=1)]
    assert models.check_same_architecture("models", tuple(same)) == same


def test_eval_mode_restores_the_mode_even_on_error():
    model = models.mlp(seed=0)
    model.train()
    with models.eval_mode(model):
        assert not model.training
    assert model.training
    with pytest.raises(RuntimeError), models.eval_mode(model):
        raise RuntimeError("boom")
    assert model.training
    model.eval()
    with models.eval_mode(model):
        pass
    assert not model.training


def test_eval_mode_gives_every_submodule_its_own_mode_back():
    inner = models.mlp(4, 3, hidden=5, seed=0).eval()
    wrapper = torch.nn.Sequential(
        inner
    )  # a fresh wrapper is in training mode, the model it wraps is not
    with models.eval_mode(wrapper):
        assert not wrapper.training and not inner.training
    assert wrapper.training and not inner.training, (
        "leaving the block must not switch the wrapped model to training"
    )


def test_load_breast_cancer_contract():
    split = data.load_breast_cancer()
    assert split.x_train.shape[1:] == (30,) and split.x_train.dtype == torch.float32
    assert split.y_train.dtype == torch.int64 and set(split.y_test.tolist()) == {0, 1}
    assert len(split.x_train) + len(split.x_test) == 569
    assert torch.equal(split.x_train.amin(0), torch.zeros(30))  # scaled by the training rows
    assert torch.equal(split.x_train.amax(0), torch.ones(30))
    assert 0.0 <= split.x_test.min() and split.x_test.max() <= 1.0
    again, other = data.load_breast_cancer(), data.load_breast_cancer(seed=1)
    assert torch.equal(again.x_test, split.x_test) and not torch.equal(other.x_test, split.x_test)
    with pytest.raises(ValueError, match="test_size"):
        data.load_breast_cancer(test_size=1.0)
