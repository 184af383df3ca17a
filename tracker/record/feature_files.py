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


def fwrf_maps(ff: Any, run: dict[str, Any], settings: Settings, layers: Any = None) -> tuple[list, list]:
    """Feature maps ``(train, val)`` for an fwRF fit, one (N, h, w, c) array per layer.

    ``ff`` is the run's loaded (flattened) feature file; ``layers`` the fit's layers (None:
    the file's primary layer). Other layers are read from the file (sha256 checked again).
    """
    from pipeline.core.errors import ConfigError
    from pipeline.features.reader import read_feature_file

    output = run["output"]
    train, val = [], []
    for layer in list(layers) if layers else [ff.layer]:
        f = ff
        if layer != ff.layer:
            f = read_feature_file(resolve_feature_path(output, settings), expected_sha256=output["sha256"],
                                  layer=layer)
        shape = (output.get("layer_shapes") or {}).get(layer) or output["shapes"]["train"][1:]
        if len(shape) != 3:
            raise ConfigError(f"method 'fwrf' needs spatial feature maps (h, w, channels); layer "
                              f"{layer or '(primary)'} of feature run {run['_id']} has shape {list(shape)}")
        train.append(f.train.reshape(f.train.shape[0], *shape))
        val.append(f.val.reshape(f.val.shape[0], *shape))
    return train, val
