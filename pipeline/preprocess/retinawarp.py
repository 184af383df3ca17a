"""Retina warp: resample an image densely at the centre and sparsely in the periphery.

Our own implementation of the transform of Bashivan, Kar & DiCarlo (2019), written from
the math in ``specs/retinawarp.md`` (the original package needs TensorFlow 1.x).

The math (``S_in`` input size, default ``min(H, W)``; ``S_out`` output size;
``N = S_out // 2``, ``R_max = S_in // 2``, ``M = max_ratio``):

1. sample spacing at eccentricity R: ``s(R) = exp(k R / 2) / sqrt(pi rho)``,
   ``k = ln(M) / R_max`` (areal sample density falls by the factor M centre -> edge);
2. ring radii ``R_0 = 0``, ``R_{n+1} = R_n + s(R_n)``;
3. ``rho`` is root-found (Brent, bracket [0.01, 5]) so that ``R_{N-1} = S_in / 2``;
4. ``g(r) = A r^2 + B r`` (A, B >= 0) is fitted by least squares to (n, R_n), n < N;
5. inverse warp: the output pixel at offset (u, v) from the output centre, ``r = |(u, v)|``,
   reads the input at ``input_centre + (g(r) / r) (u, v) = input_centre + (A r + B) (u, v)``.

Two modes (:class:`RetinaWarpConfig`):

``"default"`` (correct)
    bilinear interpolation with zero padding (a neighbour outside the image counts as 0,
    so a sample is exactly 0 only when all four neighbours are outside), true centres
    ``((H - 1) / 2, (W - 1) / 2)`` in and ``(S_out - 1) / 2`` out, any channels, batches.
``"compat"``
    the original TensorFlow path of a published V4 study: nearest neighbour (round half
    to even), input centre ``(H / 2 - 2, W / 2 - 2)``, output centre ``(S_out - 1) / 2``,
    reads outside the image give 0.

Config strings (as stored in ``FeatureConfig.retina_warp``): ``"default"``, ``"compat"``,
or a mode followed by parameters, e.g. ``"default:max_ratio=5"``,
``"compat:in_size=440,max_ratio=10"``. :meth:`RetinaWarpConfig.parse` accepts them and
:meth:`RetinaWarpConfig.spec` gives the canonical string (parameters at their defaults
are left out, the rest sorted), so equal settings always give the same string.

Pure numpy + scipy; no TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pipeline.core.errors import ConfigError, DataFormatError

__all__ = [
    "MODES",
    "RHO_BRACKET",
    "RetinaWarpConfig",
    "WarpCoefficients",
    "WarpPlan",
    "raw_radii",
    "retina_warp",
    "valid_input_range",
    "warp_coefficients",
    "warp_plan",
]

#: The two behaviours (see the module docstring).
MODES: tuple[str, ...] = ("default", "compat")
#: Bracket for the Brent root-find of rho.
RHO_BRACKET: tuple[float, float] = (0.01, 5.0)
_MIN_OUT = 4  # N - 1 >= 1: at least two rings to fit
_EXP_LIMIT = 700.0  # exp overflows float64 just above 709


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class RetinaWarpConfig:
    """How to warp.

    Attributes
    ----------
    mode : "default" | "compat"
    max_ratio : float >= 1
        Centre-to-edge ratio M of the areal sample density (10 in the original).
    in_size : int or None
        S_in, the input diameter (pixels) that maps onto the output; None: min(H, W).
    """

    mode: str = "default"
    max_ratio: float = 10.0
    in_size: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"retina warp mode {self.mode!r} is unknown; valid modes: {', '.join(MODES)}.")
        try:
            ratio = float(self.max_ratio)
        except (TypeError, ValueError):
            ratio = float("nan")
        if isinstance(self.max_ratio, bool) or not (math.isfinite(ratio) and ratio >= 1.0):
            raise ConfigError(f"retina warp max_ratio must be a finite number >= 1, got {self.max_ratio!r}.")
        object.__setattr__(self, "max_ratio", ratio)
        if self.in_size is not None:
            if (
                isinstance(self.in_size, bool)
                or not isinstance(self.in_size, (int, np.integer))
                or self.in_size < 2
            ):
                raise ConfigError(
                    f"retina warp in_size must be an integer >= 2 or None, got {self.in_size!r}."
                )
            object.__setattr__(self, "in_size", int(self.in_size))

    @classmethod
    def parse(cls, spec: str | RetinaWarpConfig) -> RetinaWarpConfig:
        """``"default"``, ``"compat"``, ``"default:max_ratio=5,in_size=440"`` -> config."""
        if isinstance(spec, RetinaWarpConfig):
            return spec
        if not isinstance(spec, str):
            raise ConfigError(
                f"retina_warp must be a string like 'default' or 'compat:max_ratio=10', got {spec!r}."
            )
        mode, _, params = spec.strip().partition(":")
        kwargs: dict = {}
        for item in filter(None, (p.strip() for p in params.split(","))):
            name, eq, value = item.partition("=")
            name = name.strip()
            if not eq or name not in ("max_ratio", "in_size"):
                raise ConfigError(
                    f"retina_warp {spec!r}: parameter {item!r} is not valid; "
                    f"use max_ratio=FLOAT and/or in_size=INT, e.g. 'default:max_ratio=10'."
                )
            try:
                kwargs[name] = int(value) if name == "in_size" else float(value)
            except ValueError:
                raise ConfigError(f"retina_warp {spec!r}: {name} value {value!r} is not a number.") from None
        return cls(mode=mode.strip(), **kwargs)

    def spec(self) -> str:
        """Canonical string: the mode, then non-default parameters sorted by name."""
        params = []
        if self.in_size is not None:
            params.append(f"in_size={self.in_size}")
        if self.max_ratio != 10.0:
            params.append(f"max_ratio={self.max_ratio:g}")
        return self.mode + (":" + ",".join(params) if params else "")

    def to_dict(self) -> dict:
        """Plain-JSON description (recorded with the preprocessing chain)."""
        return {
            "mode": self.mode,
            "max_ratio": self.max_ratio,
            "in_size": self.in_size,
            "interpolation": "bilinear" if self.mode == "default" else "nearest (half to even)",
            "input_centre": "(H-1)/2, (W-1)/2" if self.mode == "default" else "H/2-2, W/2-2",
            "output_centre": "(S_out-1)/2",
            "outside": 0,
            "rho_bracket": list(RHO_BRACKET),
        }


# --------------------------------------------------------------------------- coefficients


def raw_radii(rho: float, in_size: int, n: int, max_ratio: float = 10.0) -> np.ndarray:
    """Ring radii ``R_0 .. R_{n-1}`` of the recursion (float64; ``inf`` once it blows up)."""
    k = math.log(max_ratio) / (in_size // 2)
    step = 1.0 / math.sqrt(math.pi * rho)
    out = np.zeros(n, dtype=np.float64)
    r = 0.0
    for i in range(1, n):
        x = k * r / 2.0
        if x > _EXP_LIMIT:
            out[i:] = np.inf
            break
        r += math.exp(x) * step
        out[i] = r
    return out


def _mismatch(rho: float, in_size: int, n: int, max_ratio: float) -> float:
    return float(raw_radii(rho, in_size, n, max_ratio)[-1]) - in_size / 2.0


def _in_range(in_size: int, out_size: int, max_ratio: float) -> bool:
    n = out_size // 2
    lo, hi = RHO_BRACKET
    return _mismatch(lo, in_size, n, max_ratio) >= 0.0 >= _mismatch(hi, in_size, n, max_ratio)


@lru_cache(maxsize=256)
def valid_input_range(out_size: int, max_ratio: float = 10.0) -> tuple[int, int]:
    """Smallest and largest S_in for which rho lies in :data:`RHO_BRACKET` (for S_out).

    For S_out = 224, M = 10: (94, 2097). Found by bisection (R_{N-1} - S_in/2 moves
    monotonically with S_in at each end of the bracket).
    """
    n = out_size // 2
    lo_rho, hi_rho = RHO_BRACKET

    def first_true(pred, a: int, b: int) -> int:  # pred(a) False, pred(b) True
        while b - a > 1:
            mid = (a + b) // 2
            if pred(mid):
                b = mid
            else:
                a = mid
        return b

    top = 4
    while _mismatch(lo_rho, top, n, max_ratio) >= 0.0 and top < 10**9:
        top *= 2
    smallest = first_true(lambda s: _mismatch(hi_rho, s, n, max_ratio) <= 0.0, 2, top)
    largest = first_true(lambda s: _mismatch(lo_rho, s, n, max_ratio) < 0.0, 2, top) - 1
    return smallest, largest


@dataclass(frozen=True)
class WarpCoefficients:
    """rho, the fitted ``g(r) = A r^2 + B r``, and the raw ring radii for one size pair."""

    in_size: int
    out_size: int
    max_ratio: float
    rho: float
    a: float
    b: float
    radii: np.ndarray  # R_0 .. R_{N-1}

    def g(self, r):
        """Fitted radius map (input pixels) at output radius ``r``."""
        r = np.asarray(r, dtype=np.float64)
        return self.a * r * r + self.b * r


@lru_cache(maxsize=64)
def warp_coefficients(in_size: int, out_size: int, max_ratio: float = 10.0) -> WarpCoefficients:
    """Root-find rho and fit g for ``in_size -> out_size`` (cached).

    Raises
    ------
    ConfigError : sizes outside the range the rho bracket allows (the message states it).
    """
    from scipy.optimize import brentq, nnls

    for name, value, least in (("input", in_size, 2), ("output", out_size, _MIN_OUT)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ConfigError(f"retina warp {name} size must be an integer >= {least}, got {value!r}.")
    in_size, out_size, max_ratio = int(in_size), int(out_size), float(max_ratio)
    if not _in_range(in_size, out_size, max_ratio):
        lo, hi = valid_input_range(out_size, max_ratio)
        raise ConfigError(
            f"retina warp from {in_size} to {out_size} pixels is out of range: with "
            f"max_ratio={max_ratio:g}, a {out_size}-pixel output needs an input size "
            f"from {lo} to {hi} pixels (rho must lie in [{RHO_BRACKET[0]}, {RHO_BRACKET[1]}])."
        )
    n = out_size // 2
    rho = brentq(_mismatch, *RHO_BRACKET, args=(in_size, n, max_ratio), xtol=1e-14, rtol=1e-15, maxiter=500)
    radii = raw_radii(rho, in_size, n, max_ratio)
    idx = np.arange(n, dtype=np.float64)
    (a, b), _ = nnls(np.stack([idx * idx, idx], axis=1), radii)
    radii.flags.writeable = False
    return WarpCoefficients(in_size, out_size, max_ratio, float(rho), float(a), float(b), radii)


# --------------------------------------------------------------------------- sampling plan


@dataclass(frozen=True)
class WarpPlan:
    """Precomputed gather indices and weights for one (H, W) -> S_out warp.

    ``apply`` computes ``out[p] = sum_k weights[k, p] * image.flat[index[k, p]]`` for every
    output pixel p (k over 4 bilinear neighbours, or 1 for nearest; as a sparse matrix
    product, one image at a time); neighbours outside the image have weight 0.
    ``coverage`` (S_out, S_out) is ``sum_k weights[k]``: 1 inside, 0 where the output is
    fill, in between at the bilinear rim. Use it to warp an affine
    image exactly: ``warp(x * s + o) == warp(x) * s + o * coverage``.
    """

    in_shape: tuple[int, int]
    out_size: int
    config: RetinaWarpConfig
    coefficients: WarpCoefficients
    rows: np.ndarray  # (S_out, S_out) float64 continuous source row of each output pixel
    cols: np.ndarray
    index: np.ndarray  # (K, S_out * S_out) intp into the flattened H * W image
    weights: np.ndarray  # (K, S_out * S_out) float32
    coverage: np.ndarray  # (S_out, S_out) float32
    matrix: object  # scipy.sparse CSR (S_out * S_out, H * W) float64: the same map
    matrix32: object  # its float32 copy

    @property
    def zero_share(self) -> float:
        """Share of output pixels that are exactly fill (0)."""
        return float(np.mean(self.coverage == 0))

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Warp (H, W), (B, H, W) or (B, H, W, C) -> (S, S), (B, S, S) or (B, S, S, C)."""
        x = np.asarray(images)
        if x.dtype != np.float64:
            x = x.astype(np.float32, copy=False)
        single = x.ndim == 2
        if single:
            x = x[None]
        if x.ndim not in (3, 4) or tuple(x.shape[1:3]) != self.in_shape:
            raise ConfigError(
                f"retina warp plan is for images of {self.in_shape[0]}x{self.in_shape[1]} "
                f"pixels ((H, W), (B, H, W) or (B, H, W, C)), got shape {np.shape(images)}."
            )
        b, h, w = x.shape[:3]
        s = self.out_size
        matrix = self.matrix if x.dtype == np.float64 else self.matrix32
        flat = x.reshape(b, h * w, -1)
        out = np.empty((b, s * s, flat.shape[2]), dtype=x.dtype)
        for i in range(b):
            out[i] = matrix @ flat[i]
        out = out.reshape(b, s, s, *x.shape[3:])
        return out[0] if single else out


def _grid(out_size: int, coeffs: WarpCoefficients, centre: tuple[float, float]):
    c = (out_size - 1) / 2.0
    off = np.arange(out_size, dtype=np.float64) - c
    u, v = np.meshgrid(off, off, indexing="ij")
    r = np.hypot(u, v)
    scale = coeffs.a * r + coeffs.b  # g(r) / r, finite at r = 0
    return centre[0] + scale * u, centre[1] + scale * v


@lru_cache(maxsize=32)
def _plan(in_shape: tuple[int, int], out_size: int, config: RetinaWarpConfig) -> WarpPlan:
    from scipy.sparse import csr_matrix

    h, w = in_shape
    in_size = config.in_size if config.in_size is not None else min(h, w)
    coeffs = warp_coefficients(in_size, out_size, config.max_ratio)
    if config.mode == "default":
        rows, cols = _grid(out_size, coeffs, ((h - 1) / 2.0, (w - 1) / 2.0))
        y0, x0 = np.floor(rows), np.floor(cols)
        fy, fx = rows - y0, cols - x0
        index, weights = [], []
        for dy, wy in ((0, 1.0 - fy), (1, fy)):
            for dx, wx in ((0, 1.0 - fx), (1, fx)):
                yy, xx = y0 + dy, x0 + dx
                ok = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
                index.append(np.where(ok, yy * w + xx, 0).astype(np.intp).ravel())
                weights.append(np.where(ok, wy * wx, 0.0).ravel())
    else:
        rows, cols = _grid(out_size, coeffs, (h / 2.0 - 2.0, w / 2.0 - 2.0))
        yy, xx = np.rint(rows), np.rint(cols)  # round half to even
        ok = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
        index = [np.where(ok, yy * w + xx, 0).astype(np.intp).ravel()]
        weights = [ok.astype(np.float64).ravel()]
    index_arr = np.stack(index)
    weight_arr = np.stack(weights)
    coverage = weight_arr.sum(axis=0).reshape(out_size, out_size).astype(np.float32)
    n_out = out_size * out_size
    pixel = np.broadcast_to(np.arange(n_out), index_arr.shape)
    matrix = csr_matrix((weight_arr.ravel(), (pixel.ravel(), index_arr.ravel())), shape=(n_out, h * w))
    matrix.eliminate_zeros()
    matrix32 = matrix.astype(np.float32)
    weight_arr = weight_arr.astype(np.float32)
    for arr in (rows, cols, index_arr, weight_arr, coverage):
        arr.flags.writeable = False
    return WarpPlan(
        (h, w),
        out_size,
        config,
        coeffs,
        rows,
        cols,
        index_arr,
        weight_arr,
        coverage,
        matrix,
        matrix32,
    )


def warp_plan(
    in_shape: tuple[int, int], out_size: int, config: RetinaWarpConfig | str = "default"
) -> WarpPlan:
    """The (cached) :class:`WarpPlan` for images of ``in_shape = (H, W)`` -> ``out_size``."""
    config = RetinaWarpConfig.parse(config)
    try:
        h, w = (int(s) for s in in_shape)
    except (TypeError, ValueError):
        raise ConfigError(f"in_shape must be (height, width), got {in_shape!r}.") from None
    if min(h, w) < 2:
        raise ConfigError(f"retina warp input must be at least 2x2 pixels, got {h}x{w}.")
    if isinstance(out_size, bool) or not isinstance(out_size, (int, np.integer)):
        raise ConfigError(f"retina warp output size must be an integer, got {out_size!r}.")
    return _plan((h, w), int(out_size), config)


def retina_warp(
    images: np.ndarray,
    out_size: int,
    mode: str = "default",
    max_ratio: float = 10.0,
    in_size: int | None = None,
) -> np.ndarray:
    """Retina-warp an image or a batch.

    Parameters
    ----------
    images : (H, W) one grey image, (B, H, W) grey batch, or (B, H, W, C) batch
    out_size : S_out (output is S_out x S_out)
    mode : "default" (bilinear, true centres) or "compat" (the original TF path)
    max_ratio : centre-to-edge sample density ratio M
    in_size : S_in (default min(H, W))

    Returns
    -------
    float32 array (float64 for float64 input) of shape (S, S), (B, S, S) or (B, S, S, C);
    samples outside the input are 0.
    """
    x = np.asarray(images)
    if x.ndim not in (2, 3, 4):
        raise ConfigError(f"images must have shape (H, W), (B, H, W) or (B, H, W, C), got shape {x.shape}.")
    if x.size and not np.isfinite(x).all():
        raise DataFormatError("images contain NaN or infinite values.")
    hw = x.shape[:2] if x.ndim == 2 else x.shape[1:3]
    plan = warp_plan(hw, out_size, RetinaWarpConfig(mode, max_ratio, in_size))
    return plan.apply(x)
