"""The course's one training loop (full-batch, SGD, mini-batch, adversarial, guarded) and evaluation.

* :mod:`~gdsec.train.loop`: :func:`train`, its :class:`Guards`, the :class:`History` it returns and
  the :class:`StepRecord` its callback sees;
* :mod:`~gdsec.train.measure`: :func:`predict`, :func:`accuracy`, :func:`loss_gradient` and
  :func:`gradient_noise`.
"""

from gdsec.train.loop import NONFINITE, Adversary, Guards, History, StepRecord, train
from gdsec.train.measure import accuracy, gradient_noise, loss_gradient, predict

__all__ = [
    "NONFINITE",
    "Adversary",
    "Guards",
    "History",
    "StepRecord",
    "accuracy",
    "gradient_noise",
    "loss_gradient",
    "predict",
    "train",
]
