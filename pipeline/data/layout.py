"""The vim-1 release's names: file names, subjects, splits, ROI codes, volume shape,
and the synthetic ground-truth file name.
"""

from __future__ import annotations

import re

import numpy as np

from pipeline.core.errors import ConfigError

__all__ = [
    "GROUND_TRUTH_FILE",
    "LOWRES_FILE",
    "RESPONSES_FILE",
    "ROI_CODES",
    "STIMULUS_DEG",
    "SPLITS",
    "SUBJECTS",
    "TRAIN_FULLRES_RE",
    "VAL_FULLRES_FILE",
    "VOLUME_SHAPE",
    "canonical_roi",
    "canonical_subject",
    "train_fullres_name",
]

ROI_CODES: dict[int, str] = {0: "other", 1: "V1", 2: "V2", 3: "V3", 4: "V3A", 5: "V3B",
                             6: "V4", 7: "LO"}
_ROI_BY_NAME = {name.lower(): code for code, name in ROI_CODES.items()}
_ROI_BY_NAME["latocc"] = 7  # the name used in the vim-1 readme
SUBJECTS = ("S1", "S2")
SPLITS = ("train", "val")
VOLUME_SHAPE = (64, 64, 18)
#: side of vim-1's square stimuli in degrees of visual angle (Kay et al. 2008: 20 x 20)
STIMULUS_DEG = 20.0
N_VOLUME = int(np.prod(VOLUME_SHAPE))  # 73728
RESPONSES_FILE = "EstimatedResponses.mat"
LOWRES_FILE = "Stimuli.mat"
VAL_FULLRES_FILE = "Stimuli_Val_FullRes.mat"
TRAIN_FULLRES_RE = re.compile(r"^Stimuli_Trn_FullRes_(\d+)\.mat$")
_LOWRES_VARS = ("stimTrn", "stimVal", "seqTrn", "seqVal")


def train_fullres_name(k: int) -> str:
    """Name of the k-th (1-based) full-resolution training file."""
    return f"Stimuli_Trn_FullRes_{k:02d}.mat"


def _check_subject(subject: str | int) -> str:
    s = f"S{subject}" if isinstance(subject, (int, np.integer)) else str(subject).upper()
    if s not in SUBJECTS:
        raise ConfigError(f"subject must be one of {', '.join(SUBJECTS)}, not {subject!r}.")
    return s


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"split must be 'train' or 'val', not {split!r}.")
    return split
REPEATS_FILES = ("RepeatResponses.h5", "synthetic_ground_truth.h5")


def canonical_roi(roi: str | int) -> str:
    """The canonical ROI name ("v4" -> "V4", "LatOcc" -> "LO", 6 -> "V4", "ALL" -> "all").

    Raises ConfigError for an unknown ROI, listing the valid names.
    """
    if isinstance(roi, (int, np.integer)) and not isinstance(roi, bool):
        if int(roi) not in ROI_CODES:
            raise ConfigError(f"roi code {int(roi)} is unknown; valid codes are 0-7.")
        return ROI_CODES[int(roi)]
    key = str(roi).strip().lower()
    if key == "all":
        return "all"
    if key not in _ROI_BY_NAME:
        valid = ", ".join(["all", *ROI_CODES.values()])
        raise ConfigError(f"roi {roi!r} is unknown; valid names are {valid}.")
    return ROI_CODES[_ROI_BY_NAME[key]]


def canonical_subject(subject: str | int) -> str:
    """"s1" / 1 / "S1" -> "S1"; ConfigError for anything else."""
    return _check_subject(subject)
GROUND_TRUTH_FILE = "synthetic_ground_truth.h5"
