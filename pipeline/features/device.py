"""Devices: the CPU name, GPU name, driver and memory via ``nvidia-smi``, and ``batch_size="auto"``.

The backend's own view of its devices is in :mod:`pipeline.features.backend`.
"""

from __future__ import annotations

import os
import platform

from pipeline.core.errors import ConfigError

__all__ = [
    "auto_batch_size",
]



#: ``batch_size="auto"``: the largest power of two whose activations fit in this share of
#: the free memory, capped per device (see :func:`auto_batch_size`).
AUTO_MEMORY_FRACTION = 0.25
AUTO_CAP = {"CPU": 64, "GPU": 256}


def auto_batch_size(
    per_image_bytes: int,
    available_bytes: int | None,
    device: str = "CPU",
    *,
    fraction: float = AUTO_MEMORY_FRACTION,
    cap: int | None = None,
) -> int:
    """The ``batch_size="auto"`` rule.

    ``batch = largest power of two <= fraction * available_bytes / per_image_bytes``,
    clamped to ``[1, cap]`` with ``cap`` 64 on CPU (bigger batches are no faster there)
    and 256 on GPU. Unknown free memory (None) gives 16.

    Parameters
    ----------
    per_image_bytes : estimated working memory of one image (see
        :meth:`Extractor.per_image_bytes`: 2 x the float32 outputs of every layer run)
    available_bytes : free memory of the device
    device : "CPU" or "GPU"
    """
    cap = AUTO_CAP.get(device, 64) if cap is None else int(cap)
    if available_bytes is None:
        return min(16, cap)
    if per_image_bytes <= 0:
        raise ConfigError(f"per_image_bytes must be positive, got {per_image_bytes!r}.")
    fit = int(fraction * available_bytes // per_image_bytes)
    if fit < 1:
        return 1
    return max(1, min(cap, 1 << (fit.bit_length() - 1)))


# --------------------------------------------------------------------------- extractor


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_smi() -> dict:
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if not exe:
        return {}
    try:
        out = (
            subprocess.run(
                [
                    exe,
                    "--query-gpu=name,memory.total,driver_version,memory.free",
                    "--format=csv,noheader,nounits",
                ],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            .stdout.strip()
            .splitlines()
        )
        name, mem, driver, free = (s.strip() for s in out[0].split(","))
        mib = 1024 * 1024
        return {
            "name": name,
            "memory": int(float(mem)) * mib,
            "driver": driver,
            "free": int(float(free)) * mib,
        }
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {}


def _available_memory(device: str) -> int | None:
    """Free memory of the device in bytes (GPU: nvidia-smi memory.free; CPU: MemAvailable)."""
    if device == "GPU":
        free = _nvidia_smi().get("free")
        return int(free) if free is not None else None
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
