"""Where a run came from: code version, packages, machine, command line.

Collected once per process (cheap) and stored on every run document. Secrets never
enter: the command line is redacted and no environment variables are recorded.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tracker.db.security import redact_argv

PACKAGES = (
    "numpy", "scipy", "h5py", "scikit-learn", "tensorflow", "tensorflow-cpu", "keras",
    "jax", "jaxlib", "torch", "pymongo", "secantusdb", "matplotlib", "vimtrack",
)
REPO_ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode("utf-8", "replace")


@functools.lru_cache(maxsize=1)
def git_info() -> dict[str, Any]:
    """Commit, dirty flag and a hash of the uncommitted diff (None outside a git checkout)."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "diff_sha256": None}
    diff = _git("diff", "HEAD") or ""
    status = _git("status", "--porcelain", "--untracked-files=no") or ""
    return {
        "commit": commit.strip(),
        "dirty": bool(status.strip()),
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
    }


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect(seeds: dict[str, Any] | None = None) -> dict[str, Any]:
    """Provenance for a run document.

    Parameters
    ----------
    seeds
        Seeds the run used (they are also in its config; recorded here for audits).
    """
    return {
        "git": git_info(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu": _cpu_name(),
        "n_cpus": os.cpu_count(),
        "pid": os.getpid(),
        "argv": redact_argv(sys.argv),
        "cwd": os.getcwd(),
        "seeds": seeds or {},
    }
