"""Shared fixtures.

``tiny_vim1_dir``: the "tiny" synthetic vim-1 preset, generated once per test session
(about a second) into a temporary directory. Tests must treat it as read-only: copy
the files they want to damage into their own ``tmp_path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # let `pytest` find the packages without an install
    sys.path.insert(0, str(_ROOT))


@pytest.fixture(scope="session")
def tiny_vim1_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a directory holding the tiny synthetic vim-1 files and their ground truth."""
    from pipeline.data.synth.config import PRESETS
    from pipeline.data.synth.writer import generate

    out = tmp_path_factory.mktemp("vim1_tiny")
    return generate(out, PRESETS["tiny"])
