"""Synthetic stimuli with natural-image statistics, their feature maps, and image sequences.
"""

from __future__ import annotations

import numpy as np

from pipeline.data.synth.config import BACKGROUND, PIXEL_RANGE, SynthConfig


# --------------------------------------------------------------------------- images
def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) box-filter resampling matrix (rows sum to 1)."""
    e_in = np.arange(n_in + 1) / n_in
    e_out = np.arange(n_out + 1) / n_out
    lo = np.maximum(e_out[:-1, None], e_in[None, :-1])
    hi = np.minimum(e_out[1:, None], e_in[None, 1:])
    m = np.clip(hi - lo, 0.0, None)
    return m / m.sum(axis=1, keepdims=True)


def _resize(images: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Resize (B, S, S) images with an (s, S) area matrix -> (B, s, s)."""
    return np.matmul(np.matmul(m, images), m.T)


class _ImageMaker:
    """Natural-statistics images of one size, reproducible per (seed, split, index)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        c = (np.arange(size) + 0.5) / size * 2.0 - 1.0  # pixel centres in [-1, 1]
        self.yy, self.xx = np.meshgrid(c, c, indexing="ij")
        fy = np.fft.fftfreq(size) * size
        fx = np.fft.rfftfreq(size) * size
        self.fr = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
        self.fr[0, 0] = 1.0
        r = np.sqrt(self.xx ** 2 + self.yy ** 2) * size / 2.0  # radius in pixels
        self.aperture = np.clip(size / 2.0 - r, 0.0, 1.0)  # 1 px soft edge
        self.inside = self.aperture > 0.5

    def _pink(self, rng: np.random.Generator, alpha: float) -> np.ndarray:
        s = self.size
        spec = (rng.standard_normal(self.fr.shape) + 1j * rng.standard_normal(self.fr.shape))
        spec /= self.fr ** alpha
        spec[0, 0] = 0.0
        img = np.fft.irfft2(spec, s=(s, s))
        return img / img.std()

    def _box(self, cx: float, cy: float, r: float) -> tuple[slice, slice]:
        """Pixel slices (rows, cols) covering the square of half-side r around (cx, cy)."""
        def span(c: float) -> slice:
            lo = int(np.floor((c - r + 1.0) / 2.0 * self.size))
            hi = int(np.ceil((c + r + 1.0) / 2.0 * self.size)) + 1
            return slice(max(lo, 0), min(hi, self.size))

        return span(cy), span(cx)

    def make(self, split_code: int, index: int) -> np.ndarray:
        """One image (size, size) float32 within about -0.55..0.45."""
        rng = np.random.default_rng([self.seed, 101, split_code, index])
        xx, yy = self.xx, self.yy
        tex = self._pink(rng, rng.uniform(0.9, 1.4))
        img = tex * rng.uniform(0.3, 0.7)
        for _ in range(rng.integers(1, 4)):  # luminance edges (half-plane steps)
            th = rng.uniform(0.0, 2.0 * np.pi)
            d = xx * np.cos(th) + yy * np.sin(th) - rng.normal(0.0, 0.4)
            img += rng.normal(0.0, 0.8) * (d > 0)
        for _ in range(rng.integers(2, 7)):  # occluding shapes, textured and shaded
            cx, cy = rng.uniform(-0.8, 0.8, 2)
            a, b = rng.uniform(0.06, 0.5, 2)
            th = rng.uniform(0.0, np.pi)
            box = self._box(cx, cy, max(a, b) * np.sqrt(2.0))
            bx, by = xx[box], yy[box]
            u = (bx - cx) * np.cos(th) + (by - cy) * np.sin(th)
            v = -(bx - cx) * np.sin(th) + (by - cy) * np.cos(th)
            if rng.random() < 0.5:
                mask = (u / a) ** 2 + (v / b) ** 2 <= 1.0
            else:
                mask = (np.abs(u) <= a) & (np.abs(v) <= b)
            sy, sx = (int(k) for k in rng.integers(0, self.size, 2))
            rows = (np.arange(box[0].start, box[0].stop) - sy) % self.size
            cols = (np.arange(box[1].start, box[1].stop) - sx) % self.size
            fill = (rng.normal(0.0, 1.2) + rng.normal(0.0, 0.8) * u
                    + rng.uniform(0.1, 0.5) * tex[np.ix_(rows, cols)])
            img[box] = np.where(mask, fill, img[box])
        for _ in range(rng.integers(0, 3)):  # soft blobs
            cx, cy = rng.uniform(-0.8, 0.8, 2)
            s = rng.uniform(0.05, 0.25)
            box = self._box(cx, cy, 4.0 * s)
            img[box] += rng.normal(0.0, 1.0) * np.exp(
                -((xx[box] - cx) ** 2 + (yy[box] - cy) ** 2) / (2.0 * s * s))
        vals = img[self.inside]
        z = (img - vals.mean()) / max(vals.std(), 1e-9)
        out = BACKGROUND + rng.uniform(0.12, 0.2) * z
        np.clip(out, *PIXEL_RANGE, out=out)
        out = BACKGROUND + self.aperture * (out - BACKGROUND)
        return out.astype(np.float32)


class _FeatureMaker:
    """Planted feature map: oriented contrast energy pooled on a coarse grid."""

    def __init__(self, cfg: SynthConfig) -> None:
        r, g, o = cfg.feature_res, cfg.feature_grid, cfg.n_orientations
        self.down = _area_matrix(cfg.image_size, r)
        self.res, self.grid, self.n_or = r, g, o
        fy = np.fft.fftfreq(r) * r
        fx = np.fft.fftfreq(r) * r
        fyy, fxx = np.meshgrid(fy, fx, indexing="ij")
        rad = np.sqrt(fxx ** 2 + fyy ** 2)
        rad[0, 0] = 1.0
        f0 = r / 6.0  # centre frequency: 6 px period at feature_res
        radial = np.exp(-(np.log(rad / f0) ** 2) / (2.0 * np.log(1.6) ** 2))
        radial[0, 0] = 0.0
        ang = np.arctan2(fyy, fxx)
        filters = []
        for k in range(o):
            d = np.angle(np.exp(1j * (ang - np.pi * k / o)))  # wrapped to [-pi, pi]: one-sided
            filters.append(radial * np.exp(-(d ** 2) / (2.0 * (np.pi / (2 * o)) ** 2)))
        self.filters = np.stack(filters)  # (o, r, r)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(B, S, S) images -> (B, grid, grid, n_orientations) float64 contrast energy."""
        small = _resize(images.astype(np.float64) - BACKGROUND, self.down)
        spec = np.fft.fft2(small)[:, None]  # (B, 1, r, r)
        energy = np.abs(np.fft.ifft2(spec * self.filters[None])) ** 2  # (B, o, r, r)
        b, k = images.shape[0], self.res // self.grid
        pooled = energy.reshape(b, self.n_or, self.grid, k, self.grid, k).mean(axis=(3, 5))
        return np.sqrt(pooled).transpose(0, 2, 3, 1)


# --------------------------------------------------------------------------- sequences
def _sequence(n_images: int, per_run: int, n_reps: int, null_ratio: float,
              rng: np.random.Generator) -> np.ndarray:
    """Presentation sequence (n_seconds, n_runs): 1-based image index at each second.

    Each trial is 4 s (image, then 3 s blank = 0); null trials are all blank.
    Full sizes give (672, 25) for 1750 x 2 and (696, 10) for 120 x 13, as in vim-1.
    """
    order = rng.permutation(n_images) + 1
    runs = []
    for start in range(0, n_images, per_run):
        imgs = order[start:start + per_run]
        trials = np.concatenate([np.repeat(imgs, n_reps),
                                 np.zeros(int(round(null_ratio * imgs.size * n_reps)), int)])
        rng.shuffle(trials)
        secs = np.zeros((trials.size, 4), dtype=np.float64)
        secs[:, 0] = trials
        runs.append(secs.ravel())
    length = max(r.size for r in runs)
    out = np.zeros((length, len(runs)), dtype=np.float64)
    for j, r in enumerate(runs):
        out[: r.size, j] = r
    return out
