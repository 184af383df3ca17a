"""The feature-weighted receptive field (fwRF) model, batched over voxels and candidate fields.

St-Yves & Naselaris (2018, NeuroImage 180:188): a voxel's response is a weighted sum of
feature-map channels, each pooled over space by one Gaussian receptive field that the
voxel's channels share. Per voxel the field (centre x, y and size sigma) is picked from a
grid of candidates and the channel weights are fitted by ridge regression.

Here, for every candidate field ``g`` and every voxel:

1. pooled features ``P_g = sum_hw w_g(h, w) * maps[:, h, w, :]`` (one value per channel per
   image; ``w_g`` a sum-normalised Gaussian on each layer's own grid, several layers'
   channels concatenated), centred and (``standardize``) scaled on the model's training
   images;
2. ridge with an unpenalised intercept on ``P_g``; the penalty per voxel is chosen by
   generalised cross-validation inside the training images (GCV, Golub, Heath & Wahba
   1979: the rotation-invariant form of leave-one-out, ``GCV(a) = (RSS(a) / n) /
   (1 - (df(a) + 1) / n)^2``), which needs only ``U^T y`` and not one residual per image
   and penalty;
3. the field with the smallest GCV error is the voxel's field; its ridge fit is the model.

What makes it fast (no Python loop over voxels):

* per candidate and model, ONE eigendecomposition of the ``C x C`` Gram matrix of the
  pooled training features serves every voxel and every penalty;
* the target side never touches ``P_g``: ``P_g^T y = W_g^T (X^T y)`` with ``X^T Y`` (the
  feature maps times a block of voxels, once per voxel block) pooled for a block of
  candidates by one matrix product; then ``V_g^T (P_g^T y)`` gives every penalty's RSS
  in closed form;
* nested models (the protocol's "test" model fits a prefix of the rows of the "all"
  model) extend ``X^T Y`` by the extra rows only.

Memory: the candidates' eigenvectors (``n_models x G x C x C``, in the maps' precision),
one voxel block of ``X^T Y`` and one candidate block of pooled arrays.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from pipeline.core.errors import ConfigError
from pipeline.models.loo import n_workers, run_chunks

__all__ = [
    "FieldGrid",
    "FwRFModel",
    "field_weights",
    "fit_fwrf",
    "pool",
]

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class FieldGrid:
    """The candidate Gaussian fields, in degrees of visual angle.

    Centres lie at the centres of ``n_centres x n_centres`` equal cells tiling the
    ``extent_deg x extent_deg`` stimulus; sizes (the Gaussian's sigma) are ``n_sizes``
    values log-spaced over ``size_range`` (degrees). Coordinates: from the stimulus
    centre, x to the right, y up.
    """

    n_centres: int = 10
    n_sizes: int = 8
    size_range: tuple[float, float] = (0.5, 8.0)
    extent_deg: float = 20.0

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.size_range)
        if not (isinstance(self.n_centres, int) and self.n_centres >= 1):
            raise ConfigError(f"rf_centres must be a positive integer, got {self.n_centres!r}.")
        if not (isinstance(self.n_sizes, int) and self.n_sizes >= 1):
            raise ConfigError(f"rf_sizes must be a positive integer, got {self.n_sizes!r}.")
        if not (0.0 < lo <= hi) or (self.n_sizes > 1 and lo == hi):
            raise ConfigError(f"rf_size_range must be two sizes 0 < low < high (degrees), "
                              f"got {self.size_range!r}.")
        if not float(self.extent_deg) > 0:
            raise ConfigError(f"stimulus_deg must be positive, got {self.extent_deg!r}.")

    def fields(self) -> np.ndarray:
        """Candidates as rows ``(x_deg, y_deg, sigma_deg)``, shape (G, 3); sizes outermost,
        then y (top to bottom), then x (left to right)."""
        half, n = float(self.extent_deg) / 2.0, self.n_centres
        centres = -half + (np.arange(n) + 0.5) * (2.0 * half / n)
        sizes = np.geomspace(*self.size_range, self.n_sizes) if self.n_sizes > 1 \
            else np.array([float(self.size_range[0])])
        s, y, x = np.meshgrid(sizes, centres[::-1], centres, indexing="ij")
        return np.stack([x.ravel(), y.ravel(), s.ravel()], axis=1)


def field_weights(fields: np.ndarray, h: int, w: int, extent_deg: float) -> np.ndarray:
    """Sum-normalised Gaussian pooling weights of ``fields`` on an ``h x w`` feature grid.

    Parameters
    ----------
    fields : ndarray, shape (G, 3)
        ``(x_deg, y_deg, sigma_deg)`` per field.
    h, w : int
        Rows and columns of the feature map (row 0 at the top of the image, column 0 at
        its left); cell ``(i, j)`` is centred at
        ``x = (j + 0.5) * extent / w - extent / 2``, ``y = extent / 2 - (i + 0.5) * extent / h``.
    extent_deg : float
        Side of the (square) stimulus the map covers, degrees.

    Returns
    -------
    ndarray, shape (G, h * w), float64
        Row ``g`` sums to 1 (C order over ``(i, j)``, as the maps' ``h, w`` axes).
    """
    fields = np.asarray(fields, dtype=np.float64)
    xs = (np.arange(w) + 0.5) * extent_deg / w - extent_deg / 2.0
    ys = extent_deg / 2.0 - (np.arange(h) + 0.5) * extent_deg / h
    gx = np.exp(-((xs[None, :] - fields[:, :1]) ** 2) / (2.0 * fields[:, 2:] ** 2))  # (G, w)
    gy = np.exp(-((ys[None, :] - fields[:, 1:2]) ** 2) / (2.0 * fields[:, 2:] ** 2))  # (G, h)
    wts = (gy[:, :, None] * gx[:, None, :]).reshape(len(fields), h * w)
    total = wts.sum(axis=1, keepdims=True)
    return wts / np.where(total > 0, total, 1.0)


def pool(maps: Sequence[np.ndarray], weights: Sequence[np.ndarray], rows=slice(None)) -> np.ndarray:
    """Pooled features of a block of fields: shape (G_b, n_rows, C), C all layers' channels.

    ``maps[l]`` is (N, h_l, w_l, c_l); ``weights[l]`` (G_b, h_l * w_l) in the maps' dtype.
    """
    parts = []
    for m, wt in zip(maps, weights):
        m = m[rows]
        flat = m.reshape(m.shape[0], -1, m.shape[-1])  # (n, hw, c)
        parts.append(np.matmul(wt, flat).transpose(1, 0, 2))  # (n, G_b, c) -> (G_b, n, c)
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)


@dataclass
class _Basis:
    """One model's candidate statistics (candidates in internal, separable order).

    With ``D = diag(1 / sd)`` and ``G_std = V diag(s) V^T`` the eigendecomposition of the
    standardised Gram matrix, ``A = V^T D`` maps centred pooled features into its basis.
    """

    mean: np.ndarray  # (G, C) float64: training means of the pooled features
    s: np.ndarray  # (G, C) float64 eigenvalues (0 below the rank tolerance)
    A: np.ndarray  # (G, C, C) work dtype
    u: np.ndarray  # (G, C) work dtype: A @ (n * mean)
    phi: np.ndarray  # (G, n_alphas, C) work dtype: (1 - (a / (s + a))^2) / s, 0 where s = 0
    df: np.ndarray  # (G, n_alphas): sum_k s / (s + a), the ridge's degrees of freedom


@dataclass
class FwRFModel:
    """Per-voxel outcome of one model of :func:`fit_fwrf`.

    Attributes
    ----------
    n_fit : int
        Training images (the first ``n_fit`` rows).
    field : ndarray of int64, shape (v,)
        Index of each voxel's chosen field (a row of the ``fields`` given).
    alpha : ndarray, shape (v,)
        Chosen penalty per voxel.
    gcv : ndarray, shape (v,)
        Its GCV error (mean squared, the training images' units).
    y_mean : ndarray, shape (v,)
    predictions : list of ndarray, shape (n_eval, v)
        Predictions on each requested set of rows.
    coef : ndarray, shape (C, v), or None
        Channel weights on the centred pooled features (``keep_coef``): a prediction is
        ``(pooled - feature_mean) @ coef + y_mean``.
    feature_mean : ndarray, shape (C, v), or None
        Training means of each voxel's pooled features (``keep_coef``).
    """

    n_fit: int
    field: np.ndarray
    alpha: np.ndarray
    gcv: np.ndarray
    y_mean: np.ndarray
    predictions: list[np.ndarray] = field(default_factory=list)
    coef: np.ndarray | None = None
    feature_mean: np.ndarray | None = None


def _check_maps(maps) -> list[np.ndarray]:
    maps = [maps] if isinstance(maps, np.ndarray) else list(maps)
    if not maps:
        raise ConfigError("fwrf needs at least one feature map (N, h, w, c).")
    out = []
    for i, m in enumerate(maps):
        m = np.asarray(m)
        if m.ndim != 4:
            raise ConfigError(f"fwrf feature map {i} must be 4-D (n_images, h, w, channels), "
                              f"got shape {m.shape}.")
        if m.dtype not in (np.float32, np.float64):
            m = m.astype(np.float64)
        out.append(np.ascontiguousarray(m))
    n = {m.shape[0] for m in out}
    if len(n) != 1:
        raise ConfigError(f"fwrf feature maps differ in image count: {sorted(n)}.")
    if len({m.dtype for m in out}) != 1:
        out = [m.astype(np.float64) for m in out]
    return out


def _blocks(fields: np.ndarray, field_block: int) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Blocks ``(g0, g1, runs)`` of fields sorted by (sigma, x, y): ``runs`` are the block's
    stretches sharing (sigma, x), i.e. one horizontal profile (relative offsets)."""
    key = fields[:, [2, 0]]
    cuts = [0, *(np.flatnonzero(np.any(key[1:] != key[:-1], axis=1)) + 1).tolist(), len(fields)]
    out, cur, g0 = [], [], 0
    for a, b in zip(cuts, cuts[1:]):
        if cur and b - g0 > field_block:
            out.append((g0, a, cur))
            cur, g0 = [], a
        cur.append((a - g0, b - g0))
    out.append((g0, len(fields), cur))
    return out


def _profiles(fields: np.ndarray, h: int, w: int, extent: float, work) -> tuple[np.ndarray, np.ndarray]:
    """Sum-normalised vertical (G, h) and horizontal (G, w) Gaussian profiles of the fields
    (their outer product is :func:`field_weights`)."""
    xs = (np.arange(w) + 0.5) * extent / w - extent / 2.0
    ys = extent / 2.0 - (np.arange(h) + 0.5) * extent / h
    gx = np.exp(-((xs[None, :] - fields[:, :1]) ** 2) / (2.0 * fields[:, 2:] ** 2))
    gy = np.exp(-((ys[None, :] - fields[:, 1:2]) ** 2) / (2.0 * fields[:, 2:] ** 2))
    gx /= np.maximum(gx.sum(axis=1, keepdims=True), 1e-300)
    gy /= np.maximum(gy.sum(axis=1, keepdims=True), 1e-300)
    return gy.astype(work), gx.astype(work)


def _prepare_bases(maps, wts, n_fits, alphas, standardize, blocks, n_threads, progress) -> list[_Basis]:
    """Per model (training rows ``[0, n_fit)``): every candidate's statistics and eigenbasis.

    Nested models share the pooled features and extend the Gram matrix by their extra rows
    (all centred on the first model's means, so the float32 products do not cancel).
    """
    work = maps[0].dtype
    G, C = wts[0].shape[0], sum(m.shape[-1] for m in maps)
    A_ = alphas.size
    bases = [_Basis(np.empty((G, C)), np.empty((G, C)), np.empty((G, C, C), work), np.empty((G, C), work),
                    np.empty((G, A_, C), work), np.empty((G, A_))) for _ in n_fits]
    done = [0]

    def run(block) -> None:
        g0, g1 = block[0], block[1]
        P = pool(maps, [w[g0:g1] for w in wts], slice(0, max(n_fits)))  # (G_b, n, C)
        shift = P[:, :n_fits[0]].mean(axis=1, dtype=np.float64)
        P -= shift[:, None, :].astype(work)
        gram = np.zeros((g1 - g0, C, C), work)
        total = np.zeros((g1 - g0, C))
        start = 0
        for basis, n in zip(bases, n_fits):
            rows = P[:, start:n]
            gram += np.matmul(rows.transpose(0, 2, 1), rows)
            total += rows.sum(axis=1, dtype=np.float64)
            start = n
            d = total / n  # mean - shift
            gc = gram.astype(np.float64) - n * d[:, :, None] * d[:, None, :]
            sd = np.sqrt(np.maximum(np.einsum("gcc->gc", gc), 0.0) / n)
            inv = np.ones_like(sd)
            if standardize:
                ok = sd > 1e-12 * max(float(sd.max(initial=0.0)), 1e-300)
                inv = np.where(ok, 1.0 / np.where(ok, sd, 1.0), 0.0)
            gc *= inv[:, :, None] * inv[:, None, :]
            mean = shift + d
            for j in range(g1 - g0):  # one eigendecomposition per candidate, maps' precision
                s, V = scipy.linalg.eigh(gc[j].astype(work), driver="evd", check_finite=False)
                s = s.astype(np.float64)
                s[s <= 1e-10 * max(float(s[-1]), 0.0)] = 0.0  # below the rank tolerance
                A = V.T * inv[j][None, :].astype(work)
                basis.s[g0 + j], basis.A[g0 + j] = s, A
                basis.u[g0 + j] = A @ (n * mean[j]).astype(work)
            basis.mean[g0:g1] = mean
            s = basis.s[g0:g1][:, None, :]  # (G_b, 1, C)
            shrink = alphas[None, :, None] / (s + alphas[None, :, None])  # (G_b, A, C)
            basis.phi[g0:g1] = np.where(s > 0, (1.0 - shrink**2) / np.where(s > 0, s, 1.0), 0.0)
            basis.df[g0:g1] = np.where(s > 0, 1.0 - shrink, 0.0).sum(axis=2)
        done[0] += 1
        if progress is not None:
            progress("fwrf:fields", done[0], len(blocks))

    run_chunks(run, blocks, n_threads)
    return bases


def _pool_xty(xty, shapes, profiles, block, v_b: int) -> np.ndarray:
    """``P^T y`` of a block of fields, (G_b, C, v_b), from ``X^T y`` per layer: separable
    pooling (rows of one horizontal profile at once, then each vertical profile)."""
    g0, g1, runs = block
    parts = []
    for a, (h, w, c), (wy, wx) in zip(xty, shapes, profiles):
        X3 = a.reshape(h, w, c * v_b)
        T = np.matmul(wx[[g0 + m0 for m0, _ in runs]], X3)  # (h, n_runs, c * v_b)
        out = np.empty((g1 - g0, c * v_b), a.dtype)
        for j, (m0, m1) in enumerate(runs):
            np.matmul(wy[g0 + m0:g0 + m1], T[:, j, :], out=out[m0:m1])
        parts.append(out.reshape(g1 - g0, c, v_b))
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def _gcv_block(B, basis: _Basis, sl: slice, dy, yy, n: int) -> np.ndarray:
    """GCV errors (G_b, n_alphas, v_b) of a block of fields from ``B = P^T (y - shift)``.

    ``dy`` is ``y_mean - shift`` (v_b,); ``yy`` the centred sums of squares (v_b,).
    """
    Q = np.matmul(basis.A[sl], B)  # (G_b, C, v_b): V^T D P_c^T y_c = sqrt(s) U^T y
    if np.any(dy):
        Q -= basis.u[sl][:, :, None] * dy.astype(Q.dtype)[None, None, :]
    np.square(Q, out=Q)
    explained = np.matmul(basis.phi[sl], Q).astype(np.float64)  # sum_k phi_k z_k^2, (G_b, A, v_b)
    denom = 1.0 - (basis.df[sl] + 1.0) / n
    rss = np.maximum(yy[None, None, :] - explained, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (rss / n) / (denom**2)[:, :, None]
    out[np.broadcast_to((denom <= 0)[:, :, None], out.shape)] = np.inf
    return out


def _select(maps, profiles, Y, bases, n_fits, alphas, voxel_block, blocks, n_threads, progress):
    """Per model and voxel: the best (field, penalty) by GCV: [(gcv, field, alpha)] per model."""
    work = maps[0].dtype
    flat = [m.reshape(m.shape[0], -1) for m in maps]  # (N, hw*c) views
    shapes = [m.shape[1:] for m in maps]
    v = Y.shape[1]
    best = [(np.full(v, np.inf), np.zeros(v, np.int64), np.zeros(v)) for _ in n_fits]
    vblocks = list(range(0, v, voxel_block))
    done = [0]

    def run(v0: int) -> None:
        cols = slice(v0, min(v0 + voxel_block, v))
        Yb = np.ascontiguousarray(Y[:, cols])
        shift = Yb[:n_fits[0]].mean(axis=0)  # X^T (y - shift): no cancellation for offset responses
        Yw = (Yb - shift).astype(work)
        xty = [np.zeros((f.shape[1], Yb.shape[1]), work) for f in flat]
        start = 0
        for k, n in enumerate(n_fits):
            for acc, f in zip(xty, flat):  # nested models: add the extra rows only
                acc += f[start:n].T @ Yw[start:n]
            start = n
            y_mean = Yb[:n].mean(axis=0)
            yy = ((Yb[:n] - y_mean) ** 2).sum(axis=0)
            gcv_best, g_best, a_best = (a[cols] for a in best[k])  # views: updated in place
            for block in blocks:
                B = _pool_xty(xty, shapes, profiles, block, Yb.shape[1])
                err = _gcv_block(B, bases[k], slice(block[0], block[1]), y_mean - shift, yy, n)
                ai = np.argmin(err, axis=1)  # (G_b, v_b): first minimum, the smaller penalty
                e = np.take_along_axis(err, ai[:, None, :], axis=1)[:, 0, :]
                gi = np.argmin(e, axis=0)  # first minimum: the earlier field
                at = np.arange(e.shape[1])
                e_min = e[gi, at]
                better = e_min < gcv_best
                gcv_best[better] = e_min[better]
                g_best[better] = block[0] + gi[better]
                a_best[better] = alphas[ai[gi, at][better]]
        done[0] += 1
        if progress is not None:
            progress("fwrf:voxels", done[0], len(vblocks))

    run_chunks(run, vblocks, n_threads)
    return best


def _final(maps, wts, Y, bases, n_fits, eval_rows, choice, keep_coef, field_block, n_threads):
    """Ridge fits at each voxel's chosen field and penalty (float64); predictions on ``eval_rows``."""
    v, C = Y.shape[1], bases[0].mean.shape[1]
    models = []
    for k, n in enumerate(n_fits):
        gcv, g_of, a_of = choice[k]
        models.append(FwRFModel(n_fit=int(n), field=g_of, alpha=a_of, gcv=gcv, y_mean=Y[:n].mean(axis=0),
                                predictions=[np.empty((len(r), v)) for r in eval_rows[k]],
                                coef=np.empty((C, v)) if keep_coef else None,
                                feature_mean=np.empty((C, v)) if keep_coef else None))
    used = np.unique(np.concatenate([c[1] for c in choice]))
    chunks = [used[b0:b0 + field_block] for b0 in range(0, used.size, field_block)]

    def run(gs: np.ndarray) -> None:
        P = pool(maps, [w[gs] for w in wts])  # (G_b, N, C): shared by the models
        for j, g in enumerate(gs):
            for k, (n, m) in enumerate(zip(n_fits, models)):
                vox = np.flatnonzero(m.field == g)
                if not vox.size:
                    continue
                Pc = P[j].astype(np.float64) - bases[k].mean[g]  # (N, C)
                A = bases[k].A[g].astype(np.float64)
                t = A @ (Pc[:n].T @ (Y[:n, vox] - m.y_mean[vox]))  # (C, |vox|)
                beta = A.T @ (t / (bases[k].s[g][:, None] + m.alpha[vox][None, :]))
                for out, rows in zip(m.predictions, eval_rows[k]):
                    out[:, vox] = Pc[rows] @ beta + m.y_mean[vox]
                if keep_coef:
                    m.coef[:, vox], m.feature_mean[:, vox] = beta, bases[k].mean[g][:, None]

    run_chunks(run, chunks, n_threads)
    return models


def fit_fwrf(
    maps: np.ndarray | Sequence[np.ndarray],
    Y: np.ndarray,
    fields: np.ndarray,
    extent_deg: float,
    alphas: Sequence[float],
    n_fits: Sequence[int] | None = None,
    eval_rows: Sequence[Sequence[np.ndarray]] | None = None,
    standardize: bool = True,
    keep_coef: bool = False,
    voxel_block: int = 512,
    field_block: int = 40,
    n_threads: int | None = None,
    progress: Progress | None = None,
    timings: dict | None = None,
) -> list[FwRFModel]:
    """Fit fwRF models, all voxels and candidate fields batched.

    Parameters
    ----------
    maps : ndarray (N, h, w, c) or a list of them (one per layer, same N)
        Feature maps of every image involved (training rows first, see ``n_fits``);
        float32 maps run the large products in float32, final fits in float64.
    Y : ndarray, shape (n, v)
        Responses of the first ``n >= max(n_fits)`` images (finite).
    fields : ndarray, shape (G, 3)
        Candidate ``(x_deg, y_deg, sigma_deg)`` (:meth:`FieldGrid.fields`).
    extent_deg : float
        Side of the stimulus the maps cover (degrees).
    alphas : sequence of float
        Ridge penalties searched per voxel (GCV).
    n_fits : sequence of int, optional
        One model per entry, fitted on rows ``[0, n_fit)`` (increasing; default ``[n]``).
    eval_rows : list (per model) of lists of int arrays, optional
        Rows of ``maps`` to predict with each model.
    standardize : bool
        Scale pooled features to unit variance on the training rows (constant ones -> 0).
    keep_coef : bool
        Keep each voxel's channel weights and pooled-feature means (to predict new maps).
    voxel_block, field_block : int
        Voxels per ``X^T Y`` block; candidates pooled together (memory bounds).
    n_threads : int or None
        Worker threads, each with single-threaded BLAS, over field and voxel blocks
        (None: the BLAS thread count); the voxel block shrinks so that every worker gets
        one, so other thread counts can differ at float32 rounding level.
    progress : callable, optional
        ``progress(stage, done, total)``.
    timings : dict, optional
        Receives seconds of "fields" (pooling, Gram, eigh), "select" and "final".

    Returns
    -------
    list of FwRFModel
        One per entry of ``n_fits``.
    """
    maps = _check_maps(maps)
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2 or not np.all(np.isfinite(Y)):
        raise ConfigError(f"Y must be a finite 2-D array (n_images, n_voxels), got shape {Y.shape}.")
    N = maps[0].shape[0]
    n_fits = [Y.shape[0]] if n_fits is None else [int(n) for n in n_fits]
    if any(b <= a for a, b in zip(n_fits, n_fits[1:])) or n_fits[0] < 3 or n_fits[-1] > min(N, Y.shape[0]):
        raise ConfigError(f"n_fits must increase from >= 3 up to the {min(N, Y.shape[0])} images "
                          f"with responses, got {n_fits}.")
    eval_rows = [[] for _ in n_fits] if eval_rows is None else [list(r) for r in eval_rows]
    if len(eval_rows) != len(n_fits):
        raise ConfigError("eval_rows must hold one list of row arrays per model.")
    alphas = np.asarray(alphas, dtype=np.float64).ravel()
    if alphas.size == 0 or not np.all(np.isfinite(alphas) & (alphas > 0)):
        raise ConfigError("alphas must be a non-empty list of positive finite numbers.")
    fields = np.asarray(fields, dtype=np.float64)
    if fields.ndim != 2 or fields.shape[1] != 3 or not np.all(fields[:, 2] > 0):
        raise ConfigError(f"fields must be (G, 3) rows (x_deg, y_deg, sigma_deg > 0), got {fields.shape}.")
    work = maps[0].dtype
    perm = np.lexsort((fields[:, 1], fields[:, 0], fields[:, 2]))  # by (sigma, x, y): separable runs
    sorted_fields = fields[perm]
    blocks = _blocks(sorted_fields, int(field_block))
    wts = [field_weights(sorted_fields, m.shape[1], m.shape[2], float(extent_deg)).astype(work) for m in maps]
    profiles = [_profiles(sorted_fields, m.shape[1], m.shape[2], float(extent_deg), work) for m in maps]
    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    bases = _prepare_bases(maps, wts, n_fits, alphas, bool(standardize), blocks, n_threads, progress)
    t1 = time.perf_counter()
    # at least one voxel block per worker thread (BLAS stays single-threaded in each)
    voxel_block = max(1, min(int(voxel_block), -(-Y.shape[1] // n_workers(n_threads))))
    choice = _select(maps, profiles, Y, bases, n_fits, alphas, voxel_block, blocks, n_threads, progress)
    t2 = time.perf_counter()
    if progress is not None:
        progress("fwrf:final", 0, 1)
    models = _final(maps, wts, Y, bases, n_fits, eval_rows, choice, keep_coef, int(field_block), n_threads)
    for m in models:  # back to the caller's field order
        m.field = perm[m.field]
    timings.update({"fields": t1 - t0, "select": t2 - t1, "final": time.perf_counter() - t2})
    return models

