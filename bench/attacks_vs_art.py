"""Print one side-by-side table: gdsec.attacks vs IBM ART on the digits CNN (whole test split).

For each attack: robust accuracy (rows still classified correctly, clean and attacked), mean
perturbation (L-inf for the L-inf attacks, L2 otherwise; over the fooled rows for the
minimal-perturbation attacks C&W and DeepFool), wall seconds, ours and ART's, and the time ratio.
Both sides get the same budget, steps and step size. C&W runs with our defaults on both sides
(initial constant 1, 5 binary-search rounds of 100 Adam steps, learning rate 0.01), not ART's
10-iteration defaults. APGD-CE runs with 100 steps and one restart on both sides.

    python bench/attacks_vs_art.py
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from gdsec import attacks, data, models, train

warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

from art.attacks.evasion import (  # noqa: E402
    AutoProjectedGradientDescent,
    CarliniL2Method,
    DeepFool,
    FastGradientMethod,
    ProjectedGradientDescent,
)
from art.estimators.classification import PyTorchClassifier  # noqa: E402


def timed(fn: Callable[[], object]) -> tuple[torch.Tensor, float]:
    """Run ``fn``; return its result as a tensor and the wall seconds it took."""
    start = time.perf_counter()
    out = fn()
    return torch.as_tensor(np.asarray(out)), time.perf_counter() - start


def summarise(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_adv: torch.Tensor,
    norm: str,
    minimal: bool,
) -> tuple[float, float]:
    """(robust accuracy, mean perturbation) of ``x_adv``."""
    with torch.no_grad():
        correct = model(x).argmax(1) == y
        fooled = model(x_adv).argmax(1) != y
    size = attacks.perturbation_norm(x, x_adv, norm=norm)
    rows = fooled & correct if minimal else torch.ones_like(fooled)
    return (correct & ~fooled).float().mean().item(), size[rows].mean().item()


def main() -> None:
    """Train the digits CNN, run every attack with both libraries, print the table."""
    split = data.load_digits()
    model = models.digits_cnn(seed=0)
    train.train(
        model,
        split.x_train,
        split.y_train,
        optimizer="adam",
        lr=3e-3,
        epochs=15,
        batch_size=64,
        progress=False,
    )
    x, y = split.x_test, split.y_test
    xn, yn = x.numpy(), y.numpy()
    n = len(x)
    art = PyTorchClassifier(
        model=model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    steps = 40
    runs = [
        (
            "FGSM Linf eps=0.1",
            "inf",
            False,
            lambda: attacks.fgsm(model, x, y, 0.1),
            lambda: FastGradientMethod(art, eps=0.1, batch_size=n).generate(xn, yn),
        ),
        (
            "PGD Linf eps=0.1, 40 steps",
            "inf",
            False,
            lambda: attacks.pgd(model, x, y, 0.1, steps=steps, seed=0),
            lambda: ProjectedGradientDescent(
                art,
                norm=np.inf,
                eps=0.1,
                eps_step=0.01,
                max_iter=steps,
                num_random_init=1,
                batch_size=n,
                verbose=False,
            ).generate(xn, yn),
        ),
        (
            "PGD L2 eps=1.0, 40 steps",
            "2",
            False,
            lambda: attacks.pgd(model, x, y, 1.0, steps=steps, norm="2", seed=0),
            lambda: ProjectedGradientDescent(
                art,
                norm=2,
                eps=1.0,
                eps_step=0.1,
                max_iter=steps,
                num_random_init=1,
                batch_size=n,
                verbose=False,
            ).generate(xn, yn),
        ),
        (
            "APGD-CE Linf eps=0.1, 100 steps",
            "inf",
            False,
            lambda: attacks.apgd(model, x, y, 0.1, steps=100),
            lambda: AutoProjectedGradientDescent(
                art,
                norm=np.inf,
                eps=0.1,
                eps_step=0.2,
                max_iter=100,
                nb_random_init=1,
                batch_size=n,
                loss_type="cross_entropy",
                verbose=False,
            ).generate(xn, yn),
        ),
        (
            "C&W L2 (c=1, 5 x 100 steps, both)",
            "2",
            True,
            lambda: attacks.cw_l2(model, x, y),
            lambda: CarliniL2Method(
                art,
                confidence=0.0,
                learning_rate=0.01,
                binary_search_steps=5,
                max_iter=100,
                initial_const=1.0,
                batch_size=n,
                verbose=False,
            ).generate(xn, yn),
        ),
        (
            "DeepFool (overshoot 0.02, 50 it.)",
            "2",
            True,
            lambda: attacks.deepfool(model, x),
            lambda: DeepFool(art, epsilon=0.02, max_iter=50, batch_size=n, verbose=False).generate(
                xn
            ),
        ),
    ]
    clean = train.accuracy(model, x, y)
    print(
        f"digits CNN ({models.count_parameters(model):,} parameters), whole test split: {n} digits, "
        f"clean accuracy {clean:.1%}"
    )
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    header = (
        f"{'attack':<36} {'robust acc ours':>15} {'ART':>7} {'mean pert. ours':>15} {'ART':>7} "
        f"{'s ours':>7} {'s ART':>7} {'time ours/ART':>13}"
    )
    print(header)
    print("-" * len(header))
    for name, norm, minimal, ours_fn, art_fn in runs:
        torch.manual_seed(0)
        np.random.seed(0)
        ours, t_ours = timed(ours_fn)
        theirs, t_art = timed(art_fn)
        acc_o, pert_o = summarise(model, x, y, ours, norm, minimal)
        acc_a, pert_a = summarise(model, x, y, theirs.to(x.dtype), norm, minimal)
        unit = "Linf" if norm == "inf" else "L2"
        print(
            f"{name:<36} {acc_o:>15.1%} {acc_a:>7.1%} {pert_o:>10.3f} {unit:>4} {pert_a:>7.3f} "
            f"{t_ours:>7.2f} {t_art:>7.2f} {t_ours / t_art:>13.2f}"
        )
    print(
        "\nrobust acc: lower = stronger attack; mean pert.: over all rows (bounded attacks) or over "
        "fooled rows (C&W, DeepFool), lower = stronger."
    )


if __name__ == "__main__":
    main()
