"""Image preprocessing chains for vim-1 stimuli (pure numpy, no TensorFlow).

vim-1 full-resolution stimuli are grey images with float values of about -0.55 ... 0.45.
A *chain* turns a batch of them into the input a network expects::

    raw (B, H, W) float32  ->  chain(raw)  ->  (B, S, S, 3) float32

Two chains ship, registered by name in :data:`CHAINS` (the single source of valid names):

``"caffe"``
    For the Caffe BVLC AlexNet (227 input): ``+0.5`` (to about [0, 1]), ``*255``,
    grey -> 3 channels (colour RGB input is reordered to BGR), bilinear resize to 227
    with half-pixel centres (the modern definition, no antialiasing), subtract the
    ImageNet BGR mean (104.008, 116.669, 122.675).
``"tf2019"``
    Exactly the 2019 seed protocol (224 input): ``+0.5``, grey tiled to 3 channels,
    bilinear resize to 224 with TensorFlow-1 semantics (``align_corners=False``,
    ``half_pixel_centers=False``, no antialiasing: ``src = dst * in / out``), no mean
    subtraction.

Values are not clipped. Every step (value mapping, BGR order, bilinear resize or retina
warp, grey -> 3 channels, mean) is affine, so a chain runs as one sparse matrix product
plus a bias per image (:meth:`Chain.plan`, cached per input shape): one pass over the
output, about 0.5 ms per 500x500 image on one core. The result equals the step-by-step
float32 computation (and TensorFlow's resize) to about 1e-7 relative; the exact
TensorFlow-order arithmetic stays available as :func:`resize_bilinear`.

Retina warp (optional, :meth:`Chain.with_warp`): the full-resolution image is warped
straight to the network input size *in place of* the resize (the 2019 recipe: 500x500 ->
warp to 224, no resize after; the Caffe chain warps to 227). Samples outside the image
are 0 *after* the value mapping (black in the [0, 1] or 0-255 image, not the raw 0 =
mid-grey): ``warp(raw) * scale + offset * scale * coverage`` (see
:class:`pipeline.preprocess.retinawarp.WarpPlan`). The mean is subtracted afterwards as usual.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from pipeline.core.errors import ConfigError, DataFormatError
from pipeline.preprocess.retinawarp import RetinaWarpConfig, warp_plan

__all__ = [
    "CHAINS",
    "IMAGENET_MEAN_BGR",
    "Chain",
    "image_sha256",
    "resize_bilinear",
]

#: Per-channel mean of ImageNet in Caffe's BGR order, 0-255 scale.
IMAGENET_MEAN_BGR: tuple[float, float, float] = (104.008, 116.669, 122.675)


def _as_pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        pair = (int(size), int(size))
    else:
        try:
            pair = tuple(int(s) for s in size)  # type: ignore[union-attr]
        except TypeError:
            raise ConfigError(f"size must be an int or a (height, width) pair, got {size!r}.") from None
        if len(pair) != 2:
            raise ConfigError(f"size must be an int or a (height, width) pair, got {size!r}.")
    if min(pair) < 1:
        raise ConfigError(f"size must be positive, got {size!r}.")
    return pair  # type: ignore[return-value]


def _axis_plan(in_size: int, out_size: int, half_pixel_centers: bool):
    """Source indices and weights along one axis, computed in float32 as TensorFlow does.

    Returns
    -------
    lower, upper : (out_size,) intp
        Neighbouring source indices (clamped to the image).
    lerp : (out_size,) float32
        Weight of ``upper``; the output is ``lower + (upper - lower) * lerp``.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    dst = np.arange(out_size, dtype=np.float32)
    if half_pixel_centers:
        src = (dst + np.float32(0.5)) * scale - np.float32(0.5)
    else:
        src = dst * scale
    floor = np.floor(src)
    lower = np.maximum(floor, 0).astype(np.intp)
    upper = np.minimum(np.ceil(src), in_size - 1).astype(np.intp)
    lerp = (src - floor).astype(np.float32)
    return lower, upper, lerp


def resize_bilinear(images: np.ndarray, size: int | Sequence[int], half_pixel_centers: bool) -> np.ndarray:
    """Bilinear resize of a batch, matching TensorFlow's ``ResizeBilinear`` kernel.

    No antialiasing (a downscale samples, like TensorFlow with ``antialias=False``).
    ``half_pixel_centers=False`` is TensorFlow 1's default
    (``tf.compat.v1.image.resize_bilinear(align_corners=False)``: ``src = dst * in/out``);
    ``half_pixel_centers=True`` is ``tf.image.resize(..., "bilinear", antialias=False)``
    (``src = (dst + 0.5) * in/out - 0.5``). The arithmetic is float32 in the same order
    as TensorFlow's kernel (columns within each of the two source rows, then rows).

    Parameters
    ----------
    images : (B, H, W) or (B, H, W, C) array
        Converted to float32.
    size : int or (out_h, out_w)
    half_pixel_centers : bool

    Returns
    -------
    (B, out_h, out_w) or (B, out_h, out_w, C) float32 array
    """
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim not in (3, 4):
        raise ConfigError(f"images must have shape (B, H, W) or (B, H, W, C), got shape {arr.shape}.")
    if min(arr.shape[1:3]) < 1:
        raise ConfigError(f"images must have non-empty height and width, got {arr.shape}.")
    out_h, out_w = _as_pair(size)
    in_h, in_w = arr.shape[1], arr.shape[2]
    y_lo, y_hi, y_l = _axis_plan(in_h, out_h, half_pixel_centers)
    x_lo, x_hi, x_l = _axis_plan(in_w, out_w, half_pixel_centers)
    if arr.ndim == 4:
        y_l = y_l[:, None, None]
        x_l = x_l[:, None]
    else:
        y_l = y_l[:, None]
    rows_lo = arr[:, y_lo]  # (B, out_h, W[, C])
    rows_hi = arr[:, y_hi]
    top = rows_lo[:, :, x_lo]
    top += (rows_lo[:, :, x_hi] - top) * x_l
    bottom = rows_hi[:, :, x_lo]
    bottom += (rows_hi[:, :, x_hi] - bottom) * x_l
    bottom -= top
    bottom *= y_l
    top += bottom
    return top


@dataclass(frozen=True)
class Chain:
    """One preprocessing chain: raw vim-1 values -> network input.

    Attributes
    ----------
    name : str
    input_size : int
        Output side length S (images come out S x S x 3).
    offset : float
        Added to the raw values first (vim-1: 0.5 maps them to about [0, 1]).
    scale : float
        Multiplies the result (255 for the 0-255 Caffe range).
    bgr : bool
        Colour (B, H, W, 3) RGB input is reordered to BGR; grey input is unaffected.
    half_pixel_centers : bool
        Bilinear resize convention (see :func:`resize_bilinear`).
    mean : tuple of 3 floats or None
        Per-channel mean subtracted last, in the output channel order.
    warp : RetinaWarpConfig or None
        Retina warp to ``input_size`` in place of the resize (None: plain resize).
    """

    name: str
    input_size: int
    offset: float
    scale: float
    bgr: bool
    half_pixel_centers: bool
    mean: tuple[float, float, float] | None
    description: str = ""
    warp: RetinaWarpConfig | None = None

    def with_warp(self, warp: RetinaWarpConfig | str | None) -> Chain:
        """This chain with a retina warp (``"default"``, ``"compat:max_ratio=5"``...) or
        without one (None)."""
        return replace(self, warp=None if warp is None else RetinaWarpConfig.parse(warp))

    def with_input_size(self, size: int) -> Chain:
        """This chain producing ``size`` x ``size`` images (for a model of that input)."""
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ConfigError(f"input size must be a positive integer, got {size!r}.")
        return replace(self, input_size=int(size))

    def to_dict(self) -> dict:
        """Plain-JSON description of every parameter (recorded with the features).

        ``retina_warp`` (the warp's parameters) and ``retina_warp_spec`` appear only for a
        warped chain.
        """
        extra = {}
        if self.warp is not None:
            extra = {"retina_warp": self.warp.to_dict(), "retina_warp_spec": self.warp.spec()}
        return {
            "name": self.name,
            "input_size": self.input_size,
            "offset": self.offset,
            "scale": self.scale,
            "bgr": self.bgr,
            "resize": "bilinear",
            "half_pixel_centers": self.half_pixel_centers,
            "antialias": False,
            "mean": list(self.mean) if self.mean is not None else None,
            "clip": False,
            **extra,
        }

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Preprocess a batch.

        Parameters
        ----------
        raw : (B, H, W) grey or (B, H, W, 3) RGB array of vim-1 values

        Returns
        -------
        (B, S, S, 3) float32 C-contiguous array, S = ``input_size``

        Raises
        ------
        ConfigError : bad shape; a retina warp whose size range excludes the images.
        DataFormatError : a NaN or infinite pixel reaches the output (pixels that no
            output depends on are not looked at).
        """
        x = np.asarray(raw, dtype=np.float32)
        if not (x.ndim == 3 or (x.ndim == 4 and x.shape[3] == 3)):
            raise ConfigError(f"images must have shape (B, H, W) or (B, H, W, 3), got shape {x.shape}.")
        if x.shape[0] == 0 or min(x.shape[1:3]) < 1:
            raise ConfigError(f"images must be a non-empty batch, got shape {x.shape}.")
        x = np.ascontiguousarray(x)
        b = x.shape[0]
        flat = x.reshape(b, -1)
        matrix, bias = self.plan(x.shape[1:])
        out = np.empty((b, bias.size), dtype=np.float32)
        out[...] = bias
        for i in range(b):  # out[i] += matrix @ flat[i], without temporaries
            _matvec_add(matrix, flat[i], out[i])
        # NaN/inf in any pixel the network input depends on propagate here (checking the
        # smaller output is cheaper than checking the full-resolution input)
        if not np.isfinite(out).all():
            raise DataFormatError("images contain NaN or infinite values.")
        s = self.input_size
        return out.reshape(b, s, s, 3)

    @lru_cache(maxsize=8)  # noqa: B019 (chains are few, frozen and long-lived)
    def plan(self, in_shape: tuple[int, ...]):
        """The whole chain for one input shape as ``out = matrix @ image.ravel() + bias``.

        Every step (value mapping, BGR order, bilinear resize or retina warp, grey -> 3
        channels, mean) is affine, so they fold into one sparse (S*S*3, H*W*C) float32 CSR
        matrix (4 entries a row for bilinear, 1 for nearest) and a bias vector; applying it
        costs one pass over the output. The weights are the float64 products of the
        :func:`resize_bilinear` / :class:`~pipeline.preprocess.retinawarp.WarpPlan` interpolation
        weights and ``scale``, rounded once to float32 (results agree with the step-by-step
        float32 computation to about 1e-7 relative).

        Returns
        -------
        matrix : scipy.sparse.csr_matrix (S*S*3, H*W*C) float32
        bias : (S*S*3,) float32 ``= offset * scale * coverage - mean``
        """
        from scipy.sparse import csr_matrix

        h, w = int(in_shape[0]), int(in_shape[1])
        channels = int(in_shape[2]) if len(in_shape) == 3 else 1
        s = self.input_size
        if self.warp is not None:
            wplan = warp_plan((h, w), s, self.warp)
            index = wplan.index.astype(np.int64)
            weights = [np.asarray(wt, dtype=np.float64) for wt in _warp_weights64(wplan)]
            coverage = np.sum(weights, axis=0)
        else:
            index, weights, coverage = _bilinear_taps(h, w, s, self.half_pixel_centers)
        n_out = s * s
        mean = np.zeros(3) if self.mean is None else np.asarray(self.mean, dtype=np.float64)
        rows_, cols_, data = [], [], []
        pixel = np.arange(n_out, dtype=np.int64)
        for c in range(3):
            source = 0 if channels == 1 else (2 - c if self.bgr else c)
            for k in range(len(index)):
                rows_.append(pixel * 3 + c)
                cols_.append(index[k] * channels + source)
                data.append(np.asarray(weights[k], dtype=np.float64) * self.scale)
        matrix = csr_matrix(
            (np.concatenate(data), (np.concatenate(rows_), np.concatenate(cols_))),
            shape=(n_out * 3, h * w * channels),
        )
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
        matrix = matrix.astype(np.float32)
        bias = (self.offset * self.scale * coverage[:, None] - mean[None, :]).astype(np.float32).ravel()
        bias.flags.writeable = False
        return matrix, bias


def _bilinear_taps(h: int, w: int, s: int, half_pixel_centers: bool
                   ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """The 4 bilinear taps of an (h, w) -> (s, s) resize: source pixel indices (4, s*s)
    int64, float64 weights (4 of (s*s,)) and the (s*s,) coverage (all ones)."""
    y_lo, y_hi, y_l = _axis_plan(h, s, half_pixel_centers)
    x_lo, x_hi, x_l = _axis_plan(w, s, half_pixel_centers)
    y_l, x_l = y_l.astype(np.float64)[:, None], x_l.astype(np.float64)[None, :]
    rows = {0: y_lo[:, None], 1: y_hi[:, None]}
    cols = {0: x_lo[None, :], 1: x_hi[None, :]}
    wy = {0: 1.0 - y_l, 1: y_l}
    wx = {0: 1.0 - x_l, 1: x_l}
    index, weights = [], []
    for dy in (0, 1):
        for dx in (0, 1):
            index.append((rows[dy] * w + cols[dx]).ravel())
            weights.append(np.broadcast_to(wy[dy] * wx[dx], (s, s)).ravel())
    return np.stack(index).astype(np.int64), weights, np.ones(s * s)


def _warp_weights64(plan) -> list[np.ndarray]:
    """The warp plan's interpolation weights in float64 (recomputed from its coordinates)."""
    h, w = plan.in_shape
    if plan.config.mode != "default":
        return [np.asarray(plan.weights[0], dtype=np.float64)]
    rows, cols = plan.rows.ravel(), plan.cols.ravel()
    y0, x0 = np.floor(rows), np.floor(cols)
    fy, fx = rows - y0, cols - x0
    out = []
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            ok = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
            out.append(np.where(ok, wy * wx, 0.0))
    return out


try:  # scipy's compiled y += A @ x for CSR (private but stable since scipy 0.x)
    from scipy.sparse._sparsetools import csr_matvec as _csr_matvec
except ImportError:  # pragma: no cover
    _csr_matvec = None


def _matvec_add(matrix, x: np.ndarray, y: np.ndarray) -> None:
    """``y += matrix @ x`` in place (float32 CSR matrix, float32 contiguous vectors)."""
    if _csr_matvec is not None:
        n_row, n_col = matrix.shape
        _csr_matvec(n_row, n_col, matrix.indptr, matrix.indices, matrix.data, x, y)
    else:  # pragma: no cover
        y += matrix @ x


#: Registry of preprocessing chains by name (the CLI takes its choices from here).
CHAINS: dict[str, Chain] = {
    "caffe": Chain(
        name="caffe",
        input_size=227,
        offset=0.5,
        scale=255.0,
        bgr=True,
        half_pixel_centers=True,
        mean=IMAGENET_MEAN_BGR,
        description="Caffe BVLC AlexNet: 0-255 BGR, bilinear to 227, ImageNet mean removed",
    ),
    "tf2019": Chain(
        name="tf2019",
        input_size=224,
        offset=0.5,
        scale=1.0,
        bgr=False,
        half_pixel_centers=False,
        mean=None,
        description="2019 seed protocol: +0.5, grey to RGB, TF1 bilinear to 224, no mean",
    ),
}


def image_sha256(batch: np.ndarray) -> list[str]:
    """Content hash of each image of a batch (hex sha256, one per image, in order).

    Each hash covers the image's shape and its float32 C-contiguous bytes:
    ``sha256(f"float32{shape}".encode() + image.tobytes())`` with ``shape`` the
    Python tuple of the single image, e.g. ``(227, 227, 3)``.

    Parameters
    ----------
    batch : (B, ...) array
        Converted to float32.

    Returns
    -------
    list of B str (64 hex characters each)
    """
    arr = np.ascontiguousarray(batch, dtype=np.float32)
    if arr.ndim < 2:
        raise ConfigError(f"batch must have shape (B, ...) with images, got shape {arr.shape}.")
    prefix = f"float32{tuple(arr.shape[1:])}".encode()
    out = []
    for img in arr:
        h = hashlib.sha256(prefix)
        h.update(memoryview(img).cast("B"))
        out.append(h.hexdigest())
    return out
