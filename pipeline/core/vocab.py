"""One vocabulary of names: score metrics, evaluation splits, and the layer order.

Every module that lists, validates or orders these names imports them from here, so the
CLI's choices, the documents, the filters and the figures cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Any

#: per-voxel score metrics, in display order: Pearson r, squared r, coefficient of
#: determination (see ``pipeline.evaluation.scores.SCORES``)
METRICS: tuple[str, ...] = ("r", "r2_corr", "r2")

#: held-out evaluation splits a fit is scored on: ``test`` (held out inside the 1750
#: training images) and ``validation`` (the 120 vim-1 validation images)
SPLITS: tuple[str, ...] = ("test", "validation")

#: short names accepted in filters for the evaluation splits
SPLIT_ALIASES: dict[str, str] = {"val": "validation", "test": "test"}

#: the order of AlexNet's layers from input to output (figures, sweeps, listings)
LAYER_ORDER: tuple[str, ...] = ("conv1", "norm1", "pool1", "conv2", "norm2", "pool2", "conv3",
                                "conv4", "conv5", "pool5", "fc6", "fc7", "fc8")


#: what ``layer="all"`` means for AlexNet: the five convolutions (after their ReLU) and
#: the three fully connected layers, input to output (the layer sweep of the figures)
ALL_LAYERS: tuple[str, ...] = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


def layer_sort_key(name: Any) -> tuple:
    """Sort key: AlexNet order (conv1 ... fc8) first, then other names naturally
    (``block2`` before ``block10``)."""
    text = str(name)
    if text in LAYER_ORDER:
        return (0, LAYER_ORDER.index(text), [])
    return (1, 0, [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text)])
