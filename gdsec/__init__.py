"""Gradient Descent Security: the tested package behind the executable course.

Import what you need, e.g. ``from gdsec import data, train``. The modules, in the order the chapters
teach them:

* ``data`` — the bundled 8x8 digits and generated tabular sets, scaled to [0, 1] (all chapters).
* ``models`` — small seeded PyTorch models that map inputs to logits (all chapters).
* ``train`` — the one training loop (optimizers, guards, adversaries, callbacks) and evaluation (1-10).
* ``optim`` — hand-written update rules that match ``torch.optim`` step for step (1, 2).
* ``landscape`` — test surfaces, critical learning rates and trajectories (1, 2, 7).
* ``hessian`` — Hessian-vector products, Lanczos extremes and sharpness (1, 7).
* ``seeds`` — several seeds trained as one batched model, and mean/spread summaries (1-5).
* ``poisoning`` — label flips, crafted poison, backdoors, detection, planted shortcuts (3, 7, 10).
* ``aggregation`` — robust aggregation rules, Byzantine workers, the simulation, the ledger (4).
* ``distributed`` — a robust aggregation hook for PyTorch DDP (4).
* ``attacks`` — evasion attacks (FGSM, PGD, APGD, C&W, DeepFool, FAB, Square, SPSA) and `evaluate()` (5, 6, 8).
* ``verify`` — interval bound propagation: certified lower bounds on robust accuracy (6).
* ``numerics`` — numerical exploitation and the guards against it (7).
* ``masking`` — gradient-masking defences, BPDA, EOT, transfer and the sanity checks (8).
* ``leakage`` — gradient leakage (DLG, iDLG) and its defences, DP-SGD with Opacus (9).
* ``audit`` — the five audit questions, their report, and the ``gdsec-audit`` command (10).
* ``exercises`` — self-checking exercises, one per chapter (1-10).
* ``plotting`` and ``widgets`` — the shared figure style and the chapters' explorers (1-10).
* ``book`` — notebook bookkeeping: glue measured numbers for the prose (needs myst_nb, so not imported here).
* ``env``, ``validation`` and ``streams`` — threads, progress bars, the argument checks every function uses,
  and one independent random stream per (seed, purpose).

Importing the package sets PyTorch to one thread (the models are tiny; see ``gdsec.env``).
"""

__version__ = "0.2.0"

from gdsec.env import configure_threads as _configure_threads

_configure_threads()
