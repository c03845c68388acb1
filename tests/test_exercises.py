"""The self-checking exercises: every checker passes the reference solution and rejects typical mistakes.

SOLUTIONS holds a student-style reference solution per exercise (the ones the book hides in its
dropdowns); WRONG holds, per exercise, deliberately wrong solutions and a keyword the feedback must
contain for each, so a checker that says only "wrong" fails these tests.
"""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from gdsec.exercises import CHAPTERS, EXERCISES, Result

#: A checker's output is printed in the book: any warning would reach the page as stderr.
pytestmark = pytest.mark.filterwarnings("error")

# --------------------------------------------------------------------------- reference solutions


def gradient_step(w, grad, lr):
    return w - lr * grad


def adam_step(param, grad, state, *, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    t = state.get("t", 0) + 1
    m = beta1 * state.get("m", torch.zeros_like(grad)) + (1 - beta1) * grad
    v = beta2 * state.get("v", torch.zeros_like(grad)) + (1 - beta2) * grad**2
    m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
    return param - lr * m_hat / (v_hat.sqrt() + eps), {"m": m, "v": v, "t": t}


def flip_labels(y, fraction, n_classes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    k = round(fraction * len(y))
    rows = torch.randperm(len(y), generator=generator)[:k]
    flipped = y.clone()
    flipped[rows] = (y[rows] + torch.randint(1, n_classes, (k,), generator=generator)) % n_classes
    return flipped


def coordinate_median(grads):
    n = grads.shape[0]
    ordered = grads.sort(dim=0).values
    return ordered[(n - 1) // 2 : n // 2 + 1].mean(dim=0)


def fgsm(model, x, y, eps):
    x_var = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x_var), y), x_var)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def pgd_project(x_adv, x, eps):
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)


def clip_gradient(grads, max_norm):
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    scale = min(1.0, max_norm / (float(norm) + 1e-12))
    return [g * scale for g in grads]


def straight_through(x, levels):
    quantized = torch.round(x * (levels - 1)) / (levels - 1)
    return x + (quantized - x).detach()


def infer_label(grads):
    return int(grads[-1].argmin())


def rebuild_trigger(x, y, flagged, target, max_features):
    rows = flagged[y[flagged] == target]
    mean = x[rows].mean(0).flatten()
    difference = (mean - x[y != target].mean(0).flatten()).abs()
    top = torch.topk(difference, max_features)
    keep = top.indices[top.values >= 0.5 * top.values[0]]
    return keep, mean[keep]


SOLUTIONS = {
    "gradient_step": gradient_step,
    "adam_step": adam_step,
    "flip_labels": flip_labels,
    "coordinate_median": coordinate_median,
    "fgsm": fgsm,
    "pgd_project": pgd_project,
    "clip_gradient": clip_gradient,
    "straight_through": straight_through,
    "infer_label": infer_label,
    "rebuild_trigger": rebuild_trigger,
}

# --------------------------------------------------------------------------- typical mistakes


def _adam(*, correct=True, shift=0, grow=True, sign=-1.0, root=True, swap=False):
    """An Adam step with one chosen mistake."""

    def step(param, grad, state, *, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        b1, b2 = (beta2, beta1) if swap else (beta1, beta2)
        t = state.get("t", 0) + (1 if grow else 0)
        m = b1 * state.get("m", torch.zeros_like(grad)) + (1 - b1) * grad
        v = b2 * state.get("v", torch.zeros_like(grad)) + (1 - b2) * grad**2
        tt = max(t, 1) + shift if grow else 1
        m_hat, v_hat = (m / (1 - b1**tt), v / (1 - b2**tt)) if correct else (m, v)
        denominator = v_hat.sqrt() if root else v_hat
        return param + sign * lr * m_hat / (denominator + eps), {"m": m, "v": v, "t": t}

    return step


def _adam_t_from_zero(param, grad, state, *, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    t = state.get(
        "t", 0
    )  # bias correction before counting the step: 1 - beta**0 = 0 on the first call
    m = beta1 * state.get("m", torch.zeros_like(grad)) + (1 - beta1) * grad
    v = beta2 * state.get("v", torch.zeros_like(grad)) + (1 - beta2) * grad**2
    return param - lr * (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + eps), {
        "m": m,
        "v": v,
        "t": t + 1,
    }


def _flip(*, modulo=True, rounding=round, low=1, first=False, private=True, dtype=None):
    """Label flipping with one chosen mistake."""

    def flip(y, fraction, n_classes, seed=0):
        generator = torch.Generator().manual_seed(seed) if private else None
        k = rounding(fraction * len(y))
        rows = torch.arange(k) if first else torch.randperm(len(y), generator=generator)[:k]
        new = y[rows] + torch.randint(low, n_classes, (k,), generator=generator)
        flipped = y.clone()
        flipped[rows] = new % n_classes if modulo else new
        return flipped if dtype is None else flipped.to(dtype)

    return flip


def _pair_flip(y, fraction, n_classes, seed=0):
    """Pair-flip noise: every flipped row of class c becomes c + 1 (not symmetric noise)."""
    k = round(fraction * len(y))
    rows = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:k]
    flipped = y.clone()
    flipped[rows] = (y[rows] + 1) % n_classes
    return flipped


def _flip_skewed(y, fraction, n_classes, seed=0):
    """New labels drawn among only two of the other classes (c + 1 or c + 2)."""
    generator = torch.Generator().manual_seed(seed)
    k = round(fraction * len(y))
    rows = torch.randperm(len(y), generator=generator)[:k]
    flipped = y.clone()
    shift = 1 + torch.randint(0, min(2, n_classes - 1), (k,), generator=generator)
    flipped[rows] = (y[rows] + shift) % n_classes
    return flipped


def _fgsm_backward(model, x, y, eps):
    x_var = x.clone().requires_grad_(True)
    F.cross_entropy(model(x_var), y).backward()
    return (x + eps * x_var.grad.sign()).clamp(0, 1)


def _fgsm_variant(*, sign=1.0, clip=True, raw=False, predicted=False, detach=True):
    def attack(model, x, y, eps):
        x_var = x.clone().requires_grad_(True)
        target = model(x).argmax(1) if predicted else y
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_var), target), x_var)
        x_adv = x_var + sign * eps * (grad if raw else grad.sign())
        x_adv = x_adv.clamp(0, 1) if clip else x_adv
        return x_adv.detach() if detach else x_adv

    return attack


def _project_in_place(x_adv, x, eps):
    return x_adv.clamp_(0, 1).copy_(torch.min(torch.max(x_adv, x - eps), x + eps))


def _skip_ball_at_zero(x_adv, x, eps):
    """Correct for eps > 0, but 'no budget, nothing to project' at eps = 0."""
    return x_adv.clamp(0, 1) if eps == 0 else pgd_project(x_adv, x, eps)


def _rescale(x_adv, x, eps):
    delta = x_adv - x
    size = delta.abs().flatten(1).amax(1).clamp_min(1e-12).reshape(-1, 1)
    return (x + delta * (eps / size).clamp(max=1)).clamp(0, 1)


def _clip_each(grads, max_norm):
    return [g * min(1.0, max_norm / (float(g.norm()) + 1e-12)) for g in grads]


def _clip_always(grads, max_norm):
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    return [g * max_norm / (norm + 1e-12) for g in grads]


def _clip_unguarded(grads, max_norm):
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    return [g / norm * torch.clamp(norm, max=max_norm) for g in grads]


def _trigger(score, *, rows_of=lambda y, flagged, target: flagged[y[flagged] == target], half=0.5):
    """A trigger rebuilt with one chosen mistake in the score, the rows or the threshold."""

    def rebuild(x, y, flagged, target, max_features):
        rows = rows_of(y, flagged, target)
        mean = x[rows].mean(0)
        top = torch.topk(score(mean, x[y != target].mean(0)), max_features)
        keep = top.indices[top.values >= half * top.values[0]]
        return keep, mean[keep]

    return rebuild


def _stamp_values(values):
    """The reference's features with other values to stamp."""

    def rebuild(x, y, flagged, target, max_features):
        keep, mean = rebuild_trigger(x, y, flagged, target, max_features)
        rows = flagged[y[flagged] == target]
        return keep, values(mean, (x[rows].mean(0) - x[y != target].mean(0))[keep])

    return rebuild


WRONG = {
    "gradient_step": [
        (lambda w, g, lr: w + lr * g, "uphill"),
        (lambda w, g, lr: w - g, "ignores the learning rate"),
        (lambda w, g, lr: w - 0.3 * g, "with lr=0.5 and lr=0.1 you returned the same point"),
        (lambda w, g, lr: -lr * g, "not the new point"),
        (lambda w, g, lr: w.sub_(lr * g), "in place"),
        (lambda w, g, lr: (w - lr * g).tolist(), "torch.Tensor"),
        (lambda w, g, lr: (w - lr * g)[None], "shape"),
    ],
    "adam_step": [
        (_adam(correct=False), "bias correction"),
        (_adam(shift=1), "off-by-one"),
        (_adam_t_from_zero, "off-by-one"),
        (_adam(grow=False), "never grows"),
        (_adam(sign=1.0), "sign error"),
        (_adam(root=False), "square root"),
        (_adam(swap=True), "swapped"),
        (lambda p, g, s, **kw: adam_step(p, g, s, **kw)[0], "pair"),
        (lambda p, g, s, **kw: (adam_step(p, g, s, **kw)[0], s), "did not carry over"),
    ],
    "flip_labels": [
        (_flip(modulo=False), "% n_classes"),
        (_flip(rounding=int), "truncated"),
        (_flip(low=0), "kept the original label"),
        (_flip(first=True), "the first rows"),
        (_flip(private=False), "private"),
        (_flip(dtype=torch.float32), "integer labels"),
        (_pair_flip, "pair-flip"),
        (_flip_skewed, "favour some classes"),
    ],
    "coordinate_median": [
        (lambda g: g.mean(dim=0), "averaged"),
        (lambda g: g.median(dim=0).values, "lower middle"),
        (lambda g: g.median(dim=0), ".values"),
        (lambda g: g.median(dim=1).values, "dim=0"),
        (
            lambda g: g.copy_(g.sort(dim=0).values)[(len(g) - 1) // 2 : len(g) // 2 + 1].mean(0),
            "in place",
        ),
    ],
    "fgsm": [
        (_fgsm_variant(sign=-1.0), "down the loss"),
        (_fgsm_variant(clip=False), "clip to [0, 1]"),
        (_fgsm_variant(raw=True), "SIGN"),
        (_fgsm_variant(predicted=True), "prediction"),
        (_fgsm_variant(detach=False), "detached"),
        (_fgsm_backward, ".grad"),
    ],
    "pgd_project": [
        (lambda a, x, eps: torch.min(torch.max(a, x - eps), x + eps), "box [0, 1]"),
        (lambda a, x, eps: a.clamp(0, 1), "more than eps"),
        (_rescale, "rescaled the whole perturbation"),
        (lambda a, x, eps: pgd_project(x, a, eps), "arguments"),
        (_project_in_place, "in place"),
        (_skip_ball_at_zero, "special-case the ball when eps is 0"),
    ],
    "clip_gradient": [
        (_clip_each, "separately"),
        (_clip_always, "scaled up"),
        (lambda gs, m: [g.clamp(-m, m) for g in gs], "value clipping"),
        (_clip_unguarded, "zero norm"),
        (lambda gs, m: torch.cat([g.flatten() for g in clip_gradient(gs, m)]), "list"),
    ],
    "straight_through": [
        (lambda x, k: torch.round(x * (k - 1)) / (k - 1), "zero"),
        (lambda x, k: straight_through(x, k).detach(), "cut off"),
        (lambda x, k: x * 1.0, "not quantized"),
        (lambda x, k: x + (torch.round(x * k) / k - x).detach(), "`levels` steps"),
        (lambda x, k: x + (torch.floor(x * (k - 1)) / (k - 1) - x).detach(), "floor"),
        (lambda x, k: 2 * x + (straight_through(x, k) - 2 * x).detach(), "times"),
    ],
    "infer_label": [
        (lambda g: int(g[-1].argmax()), "POSITIVE"),
        (lambda g: int(g[1].argmin()) if len(g) > 2 else int(g[-1].argmin()), "hidden layer"),
        (lambda g: g[-1], "ONE label"),
        (lambda g: float(g[-1].argmin()), "int"),
        (lambda g: int(g[-1].abs().argmax()), "only the sign tells them apart"),
    ],
    "rebuild_trigger": [
        (_trigger(lambda flagged, others: flagged - others), "REMOVED"),
        (_trigger(lambda flagged, others: flagged), "mean alone"),
        (
            _trigger(lambda flagged, others: (flagged - others).abs(), rows_of=lambda y, f, t: f),
            "labelled `target`",
        ),
        (
            _trigger(
                lambda flagged, others: (flagged - others).abs(),
                rows_of=lambda y, f, t: torch.nonzero(y == t).flatten(),
            ),
            "ignored the flags",
        ),
        (
            _trigger(lambda flagged, others: (flagged - others).abs(), half=0.0),
            "half of the largest",
        ),
        (_stamp_values(lambda mean, difference: torch.ones_like(mean)), "stamped 1"),
        (_stamp_values(lambda mean, difference: difference), "returned the differences"),
        (lambda x, y, f, t, k: rebuild_trigger(x, y, f, t, k)[0], "pair"),
        (
            lambda x, y, f, t, k: (
                rebuild_trigger(x, y, f, t, k)[1],
                rebuild_trigger(x, y, f, t, k)[1],
            ),
            "INDICES",
        ),
        (
            lambda x, y, f, t, k: (
                torch.cat([rebuild_trigger(x, y, f, t, k)[0]] * 2),
                torch.zeros(2),
            ),
            "distinct",
        ),
    ],
}

CASES = [(name, fn, keyword) for name, wrongs in WRONG.items() for fn, keyword in wrongs]


def _crash(*args, **kwargs):
    raise ZeroDivisionError("student bug")


# --------------------------------------------------------------------------- tests


def test_every_exercise_has_a_reference_and_a_wrong_solution_and_a_chapter():
    assert set(EXERCISES) == set(SOLUTIONS) == set(WRONG)
    assert all(WRONG[name] for name in EXERCISES)
    assert sorted(CHAPTERS.values()) == list(range(1, 11)), "one self-checking exercise per chapter"


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_reference_solution_passes_on_several_seeds(name):
    for seed in (0, 1, 7):
        started = time.perf_counter()
        result = EXERCISES[name](SOLUTIONS[name], seed=seed)
        assert isinstance(result, Result) and result.passed is True, result.feedback
        assert result.feedback.startswith("Passed") and str(result) == result.feedback
        assert time.perf_counter() - started < 2.0, (
            "a checker must answer within a couple of seconds"
        )


@pytest.mark.parametrize(("name", "fn", "keyword"), CASES, ids=[f"{n}-{k}" for n, _, k in CASES])
def test_typical_mistake_fails_with_specific_feedback(name, fn, keyword):
    result = EXERCISES[name](fn)
    assert result.passed is False
    assert keyword.lower() in result.feedback.lower(), result.feedback
    assert result.feedback.startswith("Not yet") and "seed=0" in result.feedback


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_crashing_function_is_feedback_naming_the_exception(name):
    result = EXERCISES[name](_crash)
    assert result.passed is False
    assert "crashed" in result.feedback and "ZeroDivisionError: student bug" in result.feedback


@pytest.mark.parametrize("name", sorted(EXERCISES))
@pytest.mark.parametrize(
    ("answer", "keyword"),
    [("hello", "str"), (None, "did you forget the `return` line"), (object(), "object")],
    ids=["str", "None", "object"],
)
def test_wrong_return_type_is_feedback(name, answer, keyword):
    result = EXERCISES[name](lambda *args, **kwargs: answer)
    assert result.passed is False
    assert keyword in result.feedback or (answer == "hello" and "'hello'" in result.feedback), (
        result.feedback
    )


@pytest.mark.parametrize("name", sorted(EXERCISES))
@pytest.mark.parametrize("fn", [42, "fgsm", None], ids=["int", "str", "None"])
def test_not_callable_raises_value_error(name, fn):
    with pytest.raises(ValueError, match="fn must be a function"):
        EXERCISES[name](fn)


def test_bad_seed_raises_value_error():
    with pytest.raises(ValueError, match="seed"):
        EXERCISES["gradient_step"](gradient_step, seed=-1)


def test_cases_are_reproducible_per_seed_and_fresh_across_seeds():
    wrong = WRONG["coordinate_median"][0][0]
    first, again = (
        EXERCISES["coordinate_median"](wrong, seed=3),
        EXERCISES["coordinate_median"](wrong, seed=3),
    )
    other = EXERCISES["coordinate_median"](wrong, seed=4)
    assert first == again and first.feedback != other.feedback


def test_fgsm_checker_leaves_no_trace_in_the_global_random_state():
    state = torch.random.get_rng_state()
    EXERCISES["fgsm"](fgsm)
    EXERCISES["flip_labels"](flip_labels)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_each_grader_is_named_for_its_exercise_and_says_its_chapter(name):
    grade = EXERCISES[name]
    assert grade.__name__ == f"grade_{name}"
    assert grade.__doc__.startswith("Grade ``fn(")
    assert grade.__doc__.rstrip().endswith(f"Taught in chapter {CHAPTERS[name]}."), grade.__doc__
