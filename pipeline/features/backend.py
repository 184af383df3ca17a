"""The Keras backend of a feature run: choosing it, setting it up, and what it changes.

Keras 3 runs the AlexNet on TensorFlow, JAX or PyTorch. The backend is chosen once per
process, before Keras is imported (:func:`activate`): ``backend`` names it, else the
``KERAS_BACKEND`` environment variable, else TensorFlow. :func:`activate` also sets,
before the backend starts:

* GPU memory growth (TensorFlow ``TF_FORCE_GPU_ALLOW_GROWTH`` and ``set_memory_growth``,
  JAX ``XLA_PYTHON_CLIENT_PREALLOCATE=false``; PyTorch's allocator grows on demand), so
  several processes can share one GPU;
* the device: ``"cpu"`` hides the GPUs, ``"gpu"`` refuses with one error when the
  backend sees none (never a silent CPU run), ``"auto"`` takes a GPU when one is visible;
* float32 matmul precision: ``"strict"`` (full float32: TF32 off on every backend) or
  ``"fast"`` (TF32 allowed on Ampere and newer GPUs).

It returns the *runtime identity* (:func:`runtime_identity`): backend and version, the
device (CPU model, or GPU name, driver and CUDA), the precision switches as read back,
and how the model call is compiled. Feature runs record it and key on it, since each
of these changes the numbers.

:func:`check_tensorflow_install` refuses an environment holding both ``tensorflow`` and
``tensorflow-cpu`` (they unpack into one folder, so which one runs is unknown).
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Iterable

from pipeline.core.errors import ConfigError
from pipeline.features.device import _cpu_name, _nvidia_smi

__all__ = [
    "BACKENDS",
    "DEVICES",
    "PRECISIONS",
    "activate",
    "check_tensorflow_install",
    "resolve_backend",
    "runtime_identity",
]

BACKENDS = ("tensorflow", "jax", "torch")
PRECISIONS = ("strict", "fast")
DEVICES = ("auto", "cpu", "gpu")
#: distributions that each install the ``tensorflow`` package folder
_TF_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu")
_SET_UP: dict[str, dict] = {}


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def check_tensorflow_install(installed: Iterable[str] | None = None) -> None:
    """Refuse (ConfigError) when more than one TensorFlow distribution is installed.

    Parameters
    ----------
    installed : distribution names (default: every distribution of this environment,
        from ``importlib.metadata``)
    """
    if installed is None:
        installed = (d.metadata["Name"] or "" for d in importlib.metadata.distributions())
    found = sorted({_norm(n) for n in installed} & set(_TF_DISTRIBUTIONS))
    if len(found) > 1:
        raise ConfigError(
            f"{' and '.join(found)} are both installed: they unpack into the same tensorflow/ folder, "
            f"so which TensorFlow runs is unknown. Fix: pip uninstall -y {' '.join(found)} && "
            f"pip install tensorflow (on a CUDA machine: pip install '.[cuda]')."
        )


def resolve_backend(backend: str | None = None) -> str:
    """``backend``, else ``$KERAS_BACKEND``, else ``"tensorflow"`` (checked against BACKENDS)."""
    name = backend or os.environ.get("KERAS_BACKEND") or "tensorflow"
    name = {"pytorch": "torch", "tf": "tensorflow"}.get(name.lower(), name.lower())
    if name not in BACKENDS:
        raise ConfigError(f"backend {name!r} is unknown; valid backends: {', '.join(BACKENDS)}.")
    return name


def check_choice(value: str, valid: tuple[str, ...], what: str) -> str:
    """``value`` lower-cased if it is one of ``valid``, else a ConfigError naming ``what``."""
    if not isinstance(value, str) or value.lower() not in valid:
        raise ConfigError(f"{what} {value!r} is unknown; valid: {', '.join(valid)}.")
    return value.lower()


def _keras_backend_in_use() -> str | None:
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    return keras.backend.backend()


def activate(backend: str | None = None, precision: str = "strict", device: str = "auto") -> dict:
    """Select and set up the Keras backend of this process; return its runtime identity.

    Idempotent for the same arguments. A second backend in one process, or a device or
    precision the backend cannot take any more, is a ConfigError saying what to do.
    """
    name = resolve_backend(backend)
    precision = check_choice(precision, PRECISIONS, "precision")
    device = check_choice(device, DEVICES, "device")
    check_tensorflow_install()
    current = _keras_backend_in_use()
    if current is not None and current != name:
        raise ConfigError(
            f"Keras already runs the {current} backend in this process; backend {name!r} needs a "
            f"new process (set --backend {name} or KERAS_BACKEND={name} before Keras is imported)."
        )
    done = _SET_UP.get(name)
    if done is not None and done["requested"] == (precision, device):
        return done["identity"]
    if current is None:
        os.environ["KERAS_BACKEND"] = name
        _before_import(name, device)
    setup = {"tensorflow": _setup_tensorflow, "jax": _setup_jax, "torch": _setup_torch}[name]
    identity = setup(precision, device)
    import keras

    identity = {"backend": name, **identity, "keras": keras.__version__, "precision": precision}
    _SET_UP[name] = {"requested": (precision, device), "identity": identity}
    return identity


def runtime_identity(backend: str | None = None, precision: str = "strict", device: str = "auto") -> dict:
    """The runtime identity of :func:`activate` (activating the backend if needed)."""
    return activate(backend, precision, device)


def _before_import(name: str, device: str) -> None:
    """Environment the backend reads when it starts (set only while it has not started)."""
    if name == "tensorflow" and "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    if name == "jax" and "jax" not in sys.modules:
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        if device == "cpu":
            os.environ["JAX_PLATFORMS"] = "cpu"
    if name == "torch" and device == "cpu":
        os.environ["KERAS_TORCH_DEVICE"] = "cpu"


def _no_gpu(backend: str, detail: str) -> ConfigError:
    return ConfigError(
        f"--device gpu: the {backend} backend sees no GPU ({detail}). Install its CUDA build "
        f"(README, 'GPU installs'), check CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}, "
        f"or run with --device cpu."
    )


def _gpu_fields(name: str | None, cuda: str | None) -> dict:
    smi = _nvidia_smi()
    return {"kind": "GPU", "name": name or smi.get("name"), "driver": smi.get("driver"), "cuda": cuda,
            "memory": smi.get("memory")}


def _cpu_fields() -> dict:
    return {"kind": "CPU", "name": _cpu_name(), "driver": None, "cuda": None, "memory": None}


# ------------------------------------------------------------------ TensorFlow
def _setup_tensorflow(precision: str, device: str) -> dict:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        cuda = dict(tf.sysconfig.get_build_info()).get("cuda_version")
        raise _no_gpu("tensorflow", f"TensorFlow {tf.__version__}, built with CUDA {cuda or 'none'}")
    try:
        if device == "cpu" and gpus:
            tf.config.set_visible_devices([], "GPU")
            gpus = []
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError as exc:  # TensorFlow already initialised its devices
        if device == "cpu" or not all(tf.config.experimental.get_memory_growth(g) for g in gpus):
            raise ConfigError(
                f"TensorFlow started its GPUs before the feature extractor could set device {device!r} "
                f"and memory growth ({exc}); build the extractor before any TensorFlow work, or set "
                f"TF_FORCE_GPU_ALLOW_GROWTH=true."
            ) from None
    tf.config.experimental.enable_tensor_float_32_execution(precision == "fast")
    build = dict(tf.sysconfig.get_build_info())
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        dev = _gpu_fields(details.get("device_name"), build.get("cuda_version"))
        dev["compute_capability"] = ".".join(str(v) for v in details.get("compute_capability", ())) or None
        dev["n_gpus"] = len(gpus)
    else:
        dev = _cpu_fields()
    return {"backend_version": tf.__version__, "device": dev,
            "tf32": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
            "matmul_precision": "tf32" if precision == "fast" else "float32",
            "compiled": "tf.function", "xla": False}


# ------------------------------------------------------------------------ JAX
def _setup_jax(precision: str, device: str) -> dict:
    try:
        import jax
    except ImportError:
        raise ConfigError("backend 'jax' needs JAX: pip install '.[jax]' (CPU) or 'jax[cuda12]'.") from None
    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    if device == "gpu" and not gpus:
        raise _no_gpu("jax", f"JAX {jax.__version__}, devices {[d.platform for d in jax.devices()]}")
    if device == "cpu" and gpus:  # JAX started before JAX_PLATFORMS could hide them
        jax.config.update("jax_default_device", jax.devices("cpu")[0])
        gpus = []
    setting = "tensorfloat32" if precision == "fast" else "highest"
    jax.config.update("jax_default_matmul_precision", setting)
    if gpus:
        cuda = getattr(jax.devices()[0].client, "platform_version", None)
        dev = {**_gpu_fields(gpus[0].device_kind, cuda), "n_gpus": len(gpus)}
    else:
        dev = _cpu_fields()
    return {"backend_version": jax.__version__, "device": dev, "tf32": bool(gpus) and precision == "fast",
            "matmul_precision": setting, "compiled": "jax.jit", "xla": True}


# ----------------------------------------------------------------------- torch
def _setup_torch(precision: str, device: str) -> dict:
    try:
        import torch
    except ImportError:
        raise ConfigError("backend 'torch' needs PyTorch: pip install '.[torch]' (README: CPU or "
                          "CUDA wheels).") from None
    gpu = torch.cuda.is_available() and device != "cpu"
    if device == "gpu" and not gpu:
        raise _no_gpu("torch", f"PyTorch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}")
    fast = precision == "fast"
    torch.set_float32_matmul_precision("high" if fast else "highest")
    torch.backends.cuda.matmul.allow_tf32 = fast
    torch.backends.cudnn.allow_tf32 = fast
    if gpu:
        dev = {**_gpu_fields(torch.cuda.get_device_name(0), torch.version.cuda),
               "n_gpus": torch.cuda.device_count()}
    else:
        dev = _cpu_fields()
    return {"backend_version": torch.__version__, "device": dev, "tf32": gpu and fast,
            "matmul_precision": torch.get_float32_matmul_precision(), "compiled": "eager (no_grad)",
            "xla": False}


def gpu_visible(identity: dict) -> bool:
    """Whether the runtime identity's device is a GPU."""
    return identity.get("device", {}).get("kind") == "GPU"


def free_gpu_memory(identity: dict) -> int | None:
    """Free memory of the first GPU in bytes (the backend's own count when it has one,
    else ``nvidia-smi``), None when unknown."""
    if identity.get("backend") == "torch" and "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.mem_get_info(0)[0])
    free = _nvidia_smi().get("free")
    return int(free) if free is not None else None
