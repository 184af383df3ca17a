"""Where things live: database URI, data directories, feature files.

Everything is configurable by environment variable (and by CLI flags that override
them); nothing here is machine-specific. Defaults are relative to the working
directory, so a fresh clone works with zero set-up.

| variable              | meaning                                              | default            |
|-----------------------|------------------------------------------------------|--------------------|
| ``TRACKER_MONGO_URI`` | a real MongoDB / Atlas URI; unset = embedded server  | (embedded)         |
| ``TRACKER_DB_NAME``   | database name                                        | ``vimtrack``       |
| ``TRACKER_HOME``      | tracker state: embedded DB, feature files, plots     | ``./.tracker``     |
| ``TRACKER_DATA_DIR``  | a vim-1 download (or synthetic copy)                 | ``./demo_data``    |
| ``TRACKER_FEATURES_DIR`` | where feature HDF5 files are written              | ``$TRACKER_HOME/features`` |
| ``TRACKER_PATH_MAP``  | ``OLD=NEW[;OLD=NEW]``: find feature files recorded on another host | (none) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DB_NAME = "vimtrack"


@dataclass(frozen=True)
class Settings:
    """Resolved configuration for one process."""

    mongo_uri: str | None = None
    db_name: str = DEFAULT_DB_NAME
    home: Path = field(default_factory=lambda: Path(".tracker"))
    data_dir: Path = field(default_factory=lambda: Path("demo_data"))
    features_dir: Path | None = None
    path_map: tuple[tuple[str, str], ...] = ()

    @property
    def embedded_db_dir(self) -> Path:
        """Storage directory of the embedded server."""
        return self.home / "db"

    @property
    def feature_root(self) -> Path:
        """Directory for feature files."""
        return self.features_dir if self.features_dir is not None else self.home / "features"

    @property
    def plots_dir(self) -> Path:
        """Default output directory for figures."""
        return self.home / "plots"

    @property
    def spool_dir(self) -> Path:
        """Local spool for documents written while the database was unreachable."""
        return self.home / "spool"


def _parse_path_map(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in filter(None, (p.strip() for p in text.split(";"))):
        if "=" not in item:
            from pipeline.core.errors import ConfigError

            raise ConfigError(f"TRACKER_PATH_MAP entry {item!r} is not of the form OLD=NEW")
        old, new = item.split("=", 1)
        pairs.append((old, new))
    return tuple(pairs)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit non-None ``overrides`` on top."""
    env = os.environ
    values: dict[str, object] = {
        "mongo_uri": env.get("TRACKER_MONGO_URI") or None,
        "db_name": env.get("TRACKER_DB_NAME") or DEFAULT_DB_NAME,
        "home": Path(env.get("TRACKER_HOME") or ".tracker"),
        "data_dir": Path(env.get("TRACKER_DATA_DIR") or "demo_data"),
        "features_dir": Path(env["TRACKER_FEATURES_DIR"]) if env.get("TRACKER_FEATURES_DIR") else None,
        "path_map": _parse_path_map(env.get("TRACKER_PATH_MAP", "")),
    }
    for key, value in overrides.items():
        if value is not None:
            values[key] = Path(value) if key in {"home", "data_dir", "features_dir"} else value
    return Settings(**values)  # type: ignore[arg-type]
