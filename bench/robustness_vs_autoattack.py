"""Print one table: ``gdsec.attacks.evaluate`` beside the AutoAttack standard ensemble built from
torchattacks 3.5.1 parts with the original budgets, on three digits models, at L-inf eps = 0.1.

The reference runs APGD-CE (100 steps), APGD-T (100 steps, 9 targets), FAB-T (100 steps, 9
targets) and Square (5,000 queries, p_init 0.8), one restart each, in sequence, each on the rows
still robust (torchattacks' own ``AutoAttack`` class leaves APGD and FAB at 10 steps, so it is
built from the parts here). Models: the digits CNN (8 channels, Adam, 10 epochs), the same CNN
PGD-trained (7 steps at eps 0.1), and a copy of the first whose logits are multiplied by 1e4. All
450 test digits. Columns: robust accuracy and seconds of each, and our flags.

``--cnn32`` instead measures the 3x32x32 CNN of ``bench/audit_scale.py`` (582k parameters, the
digits upsampled) at eps = 8/255 on ``--rows`` rows, beside both torchattacks' own ``AutoAttack``
class (version "standard": APGD, APGD-T and FAB at its 10 default steps, Square at 5,000
queries) and the parts above at the original budgets. ``--threads 1`` pins torch to one thread:
on a shared 2-core machine two threads spin on small batches and inflate every CPU time.

    pip install --no-deps torchattacks==3.5.1   # once; it pins an old requests, hence --no-deps
    python bench/robustness_vs_autoattack.py [--rows N] [--cnn32] [--threads T]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import audit_scale
import torch
from torch import nn

from gdsec import data, masking, models, train
from gdsec.attacks import pgd
from gdsec.attacks.evaluation import Evaluation, evaluate
from gdsec.models import count_parameters

EPS = 0.1

try:
    import torchattacks
except ImportError:
    print("torchattacks is not installed: pip install --no-deps torchattacks==3.5.1")
    sys.exit(2)


def reference(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
) -> tuple[float, dict[str, float], dict[str, float]]:
    """The torchattacks-built standard ensemble: (robust accuracy, accuracy after each part, seconds of each)."""
    parts = {
        "apgd-ce": torchattacks.APGD(
            model, norm="Linf", eps=eps, steps=100, n_restarts=1, loss="ce", seed=0
        ),
        "apgd-t": torchattacks.APGDT(
            model, norm="Linf", eps=eps, steps=100, n_restarts=1, n_classes=10, seed=0
        ),
        "fab-t": torchattacks.FAB(
            model,
            norm="Linf",
            eps=eps,
            steps=100,
            n_restarts=1,
            multi_targeted=True,
            n_classes=10,
            seed=0,
        ),
        "square_attack": torchattacks.Square(
            model, norm="Linf", eps=eps, n_queries=5000, n_restarts=1, p_init=0.8, seed=0
        ),
    }
    with torch.no_grad():
        robust = model(x).argmax(1) == y
    after, seconds = {}, {}
    for name, attack in parts.items():
        start = time.perf_counter()
        rows = robust.nonzero().squeeze(1)
        if rows.numel():
            x_adv = attack(x[rows], y[rows])
            with torch.no_grad():
                robust[rows] &= model(x_adv).argmax(1) == y[rows]
        after[name] = robust.float().mean().item()
        seconds[name] = time.perf_counter() - start
    return robust.float().mean().item(), after, seconds


def bench_models(split: data.Split) -> dict[str, nn.Module]:
    """The three models of the table, trained with fixed seeds."""
    cnn = models.digits_cnn(channels=8, seed=0)
    train.train(
        cnn,
        split.x_train,
        split.y_train,
        optimizer="adam",
        lr=3e-3,
        epochs=10,
        batch_size=64,
        seed=0,
        progress=False,
    )
    robust = models.digits_cnn(channels=8, seed=0)
    train.train(
        robust,
        split.x_train,
        split.y_train,
        optimizer="adam",
        lr=3e-3,
        epochs=10,
        batch_size=64,
        seed=0,
        progress=False,
        adversary=lambda m, xb, yb, seed: pgd(m, xb, yb, EPS, steps=7, seed=seed),
    )
    return {
        "digits CNN": cnn,
        "PGD-trained CNN": robust,
        "logits x 1e4": masking.defend(cnn, "temperature", temperature=1e4),
    }


def timed(run: Callable[[], float]) -> tuple[float, float, float]:
    """(robust accuracy ``run`` returns, wall seconds, CPU seconds of this process)."""
    start, cpu = time.perf_counter(), time.process_time()
    with torch.random.fork_rng(devices=[]):  # torchattacks seeds the global generator
        accuracy = run()
    return accuracy, time.perf_counter() - start, time.process_time() - cpu


def cnn32_table(rows: int) -> None:
    """The 3x32x32 CNN at eps 8/255: evaluate, torchattacks' AutoAttack class and the parts, one line each."""
    split = audit_scale.digits32()
    model = audit_scale.trained("cnn32", split)
    x, y, eps = split.x_test[:rows], split.y_test[:rows], 8 / 255
    ours: list[Evaluation] = []
    autoattack = torchattacks.AutoAttack(model, norm="Linf", eps=eps, n_classes=10, seed=0)

    def aa_class() -> float:
        with torch.no_grad():
            return (model(autoattack(x, y)).argmax(1) == y).float().mean().item()

    def gdsec_run() -> float:
        ours.append(evaluate(model, x, y, eps))
        return ours[-1].robust_accuracy

    runs = {
        "gdsec evaluate (standard budget)": gdsec_run,
        "torchattacks AutoAttack (class, standard)": aa_class,
        "torchattacks parts, original budgets": lambda: reference(model, x, y, eps)[0],
    }
    print(f"3x32x32 CNN, {count_parameters(model):,} parameters, L-inf eps = 8/255, {rows} rows")
    print("| run | robust accuracy | wall s | CPU s | CPU s per row |")
    print("|---|---:|---:|---:|---:|")
    for name, run in runs.items():
        accuracy, wall, cpu = timed(run)
        print(
            f"| {name} | {accuracy:.1%} | {wall:.1f} | {cpu:.1f} | {cpu / rows:.2f} |", flush=True
        )
    seconds = ", ".join(f"{k} {v:.1f}" for k, v in ours[0].seconds.items())
    print(f"\nevaluate's members, wall seconds: {seconds}; flags: {ours[0].flags or 'none'}")


def main() -> None:
    """Run both evaluations on each model and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=450, help="test rows to evaluate (default: all 450)"
    )
    parser.add_argument("--cnn32", action="store_true", help="the 3x32x32 CNN instead")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cnn32:
        cnn32_table(args.rows)
        return
    split = data.load_digits()
    x, y = split.x_test[: args.rows], split.y_test[: args.rows]
    rows = []
    for name, model in bench_models(split).items():
        start, cpu = time.perf_counter(), time.process_time()
        ours = evaluate(model, x, y, EPS)
        ours_seconds, ours_cpu = time.perf_counter() - start, time.process_time() - cpu
        cpu = time.process_time()
        with torch.random.fork_rng(devices=[]):  # torchattacks seeds the global generator
            ref_acc, ref_after, ref_parts = reference(model, x, y, EPS)
        ref_cpu = time.process_time() - cpu
        rows.append(
            (
                name,
                ours,
                ours_seconds,
                ref_acc,
                ref_after,
                sum(ref_parts.values()),
                ref_parts,
                ours_cpu,
                ref_cpu,
            )
        )
    print(
        f"L-inf eps = {EPS}, {len(x)} test digits; robust accuracy (per-example worst case) and wall seconds"
    )
    print(
        "(wall seconds on a shared machine are noisy; CPU seconds count the work done by this process)"
    )
    print(
        f"{'model':<18} {'clean':>6} {'ours':>6} {'torchattacks':>12} {'diff':>6} {'ours s':>7} "
        f"{'ref s':>7} {'ours cpu':>8} {'ref cpu':>8}  flags"
    )
    for name, ours, ours_s, ref_acc, _, ref_s, _, ours_cpu, ref_cpu in rows:
        flags = ", ".join(f.split(":")[0] for f in ours.flags) or "none"
        diff = 100 * (ours.robust_accuracy - ref_acc)
        print(
            f"{name:<18} {ours.clean_accuracy:>6.1%} {ours.robust_accuracy:>6.1%} {ref_acc:>12.1%} {diff:>+5.1f}p"
            f" {ours_s:>7.1f} {ref_s:>7.1f} {ours_cpu:>8.1f} {ref_cpu:>8.1f}  {flags}"
        )
    print(
        "\naccuracy after each attack in sequence, ours / torchattacks (seconds, ours / torchattacks)"
    )
    for name, ours, _, _, ref_after, _, ref_parts, _, _ in rows:
        parts = "  ".join(
            f"{a} {ours.accuracy_after[a]:.1%}/{ref_after[a]:.1%} ({ours.seconds[a]:.1f}/{ref_parts[a]:.1f})"
            for a in ours.accuracy_after
        )
        print(f"{name:<18} {parts}")
    total_ours, total_ref = sum(r[2] for r in rows), sum(r[5] for r in rows)
    cpu_ours, cpu_ref = sum(r[7] for r in rows), sum(r[8] for r in rows)
    worst = max(100 * (r[1].robust_accuracy - r[3]) for r in rows)
    print(
        f"\ntotal wall seconds: ours {total_ours:.1f}, torchattacks {total_ref:.1f}; CPU seconds: ours {cpu_ours:.1f},"
        f" torchattacks {cpu_ref:.1f}; largest excess over the reference {worst:+.1f} points"
    )


if __name__ == "__main__":
    main()
