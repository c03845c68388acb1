"""Gradient masking: "defences" that hide the gradient instead of removing adversarial examples,
the adaptive attacks that see through them, and the sanity checks that flag them.

Athalye et al. (2018) name three ways a defence obfuscates the gradient; :mod:`.defences` builds one
of each and :mod:`.adaptive` the attack that undoes it:

* shattered gradients (:class:`Quantize`, a non-differentiable preprocessing) -> :func:`bpda`
  (keep the forward pass, use the identity's gradient);
* stochastic gradients (:class:`RandomQuantize`) -> :func:`eot` (average over the randomness);
* exploding and vanishing gradients (:class:`Temperature`, a saturated softmax; :class:`Purifier`,
  an unrolled projection onto a :class:`Generator`'s range) -> a loss that does not saturate
  (``gdsec.attacks.apgd(..., loss="dlr")``) and :func:`reparameterise` (differentiate through the
  generator, on whose range the purifier is the identity);

:class:`OffGridSaturation` and :class:`FarSaturation` are traps built to trip the two checks those
defences leave quiet; :class:`DecoyGradient` (:mod:`.decoy`) keeps an honest model's decisions
behind flat scores and a decoy's gradient, a known-truth test for the consistency flags. Plus
:func:`transfer` from a surrogate and the gradient-free attacks of :mod:`gdsec.attacks`.
:func:`sanity_checks` (:mod:`.checks`) runs the checks of Carlini et al. (2019) and AutoAttack that
read their evidence (:data:`SANITY_CHECKS`), with one :class:`gdsec.attacks.Budget`, and says which
fired and why. The building blocks (straight-through, mean of draws, the randomness and
zero-gradient tests) live in :mod:`gdsec.attacks.checks`, shared with the evaluation and the audit.
"""

from gdsec.masking.adaptive import bpda, eot, reparameterise, transfer
from gdsec.masking.checks import SANITY_CHECKS, MaskingReport, random_noise, sanity_checks
from gdsec.masking.decoy import DecoyGradient
from gdsec.masking.defences import (
    DEFENCES,
    FarSaturation,
    Generator,
    OffGridSaturation,
    Purifier,
    Quantize,
    RandomQuantize,
    Temperature,
    defend,
    fit_generator,
)

__all__ = [
    "DEFENCES",
    "DecoyGradient",
    "FarSaturation",
    "Generator",
    "MaskingReport",
    "OffGridSaturation",
    "Purifier",
    "Quantize",
    "RandomQuantize",
    "SANITY_CHECKS",
    "Temperature",
    "bpda",
    "defend",
    "eot",
    "fit_generator",
    "random_noise",
    "reparameterise",
    "sanity_checks",
    "transfer",
]
