"""Training-time attacks on the data and the tools to find them.

* :mod:`~gdsec.poisoning.labels`: label flips;
* :mod:`~gdsec.poisoning.backdoor`: the pixel trigger, planting it, its success rate, rebuilding a
  trigger from flagged rows and stamping it;
* :mod:`~gdsec.poisoning.triggers`: triggers that are not a patch: a blended pattern, a smooth warp;
* :mod:`~gdsec.poisoning.crafting`: gradient-crafted poison (Biggio-style), ascent through unrolled training;
* :mod:`~gdsec.poisoning.matching`: gradient matching (Witches' Brew), correctly labelled poison;
* :mod:`~gdsec.poisoning.detection`: spectral signatures and loss filtering;
* :mod:`~gdsec.poisoning.disputes`: training labels clean references dispute, and their pattern;
* :mod:`~gdsec.poisoning.shortcuts`: class codes hidden in the image border (chapter 7);
* :mod:`~gdsec.poisoning.experiments`: chapter 3's experiment (import it by name).

Every function returns new tensors: inputs, labels and models are never modified.
"""

from gdsec.poisoning.backdoor import (
    TRIGGER_SIZE,
    add_backdoor,
    apply_trigger,
    attack_success_rate,
    corner_trigger,
    rebuild_trigger,
    stamp,
)
from gdsec.poisoning.crafting import Ascent, PoisonResult, craft_poison, unrolled_validation_loss
from gdsec.poisoning.detection import (
    DETECT_METHODS,
    Detection,
    detect_poison,
    detection_quality,
    penultimate_features,
    quality_by_label,
)
from gdsec.poisoning.disputes import LABEL_PATTERNS, LabelDisputes, label_disputes
from gdsec.poisoning.labels import flip_labels
from gdsec.poisoning.matching import GradientMatch, match_gradient
from gdsec.poisoning.shortcuts import plant_shortcut, shuffle_border
from gdsec.poisoning.triggers import blend, warp

__all__ = [
    "DETECT_METHODS",
    "Ascent",
    "Detection",
    "GradientMatch",
    "LABEL_PATTERNS",
    "LabelDisputes",
    "PoisonResult",
    "TRIGGER_SIZE",
    "add_backdoor",
    "apply_trigger",
    "attack_success_rate",
    "blend",
    "corner_trigger",
    "craft_poison",
    "detect_poison",
    "detection_quality",
    "flip_labels",
    "label_disputes",
    "match_gradient",
    "penultimate_features",
    "plant_shortcut",
    "quality_by_label",
    "rebuild_trigger",
    "shuffle_border",
    "stamp",
    "unrolled_validation_loss",
    "warp",
]
