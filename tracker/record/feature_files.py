"""Where a recorded feature file is on this machine (its path, a mapped path, or the
features directory): shared by the workflows and by retention (``tracker gc``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.core.errors import IntegrityError
from tracker.db.settings import Settings


def resolve_feature_path(output: dict[str, Any], settings: Settings) -> Path:
    """Find a recorded feature file here: its path, a mapped path, or the features dir."""
    recorded = str(output["path"])
    candidates = [Path(recorded)]
    for old, new in settings.path_map:
        if recorded.startswith(old):
            candidates.append(Path(new + recorded[len(old):]))
    candidates.append(settings.feature_root / Path(recorded).name)
    for cand in candidates:
        if cand.is_file():
            return cand
    tried = ", ".join(str(c) for c in candidates)
    raise IntegrityError(
        f"feature file recorded at {output.get('host')}:{recorded} is missing here (tried {tried}); "
        "copy it into the features directory or set TRACKER_PATH_MAP=OLD_PREFIX=NEW_PREFIX"
    )
