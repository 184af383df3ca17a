"""The duplicate guard of a feature file: repeated input images and repeated feature rows.

Pure bookkeeping over arrays (no file access): rows already written are read back
through a callable the writer passes in, so a crc32 match is always confirmed by
comparing the rows themselves.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import numpy as np

from pipeline.core.errors import IntegrityError

__all__ = ["DuplicateGuard"]

#: ``read_back(split, index, layer) -> row``: a row written earlier, flattened
ReadBack = Callable[[str, int, str], np.ndarray]


class DuplicateGuard:
    """Remembers every input image hash and every feature row seen so far.

    Parameters
    ----------
    layers : the layer names whose rows are guarded.
    allow_duplicates : mark repeats instead of raising.
    multi : whether the file holds several layers (messages then name the layer).
    """

    def __init__(self, layers: Sequence[str], allow_duplicates: bool, multi: bool) -> None:
        self.allow_duplicates = allow_duplicates
        self.multi = multi
        self._inputs: dict[str, tuple[str, int]] = {}
        # per layer: crc32 of a row's bytes -> the (split, index) of distinct rows with that crc
        self._rows: dict[str, dict[int, list[tuple[str, int]]]] = {n: {} for n in layers}

    def check_inputs(self, split: str, done: int, batch_hashes: Sequence[str]) -> np.ndarray:
        """Flag (or refuse) input images already seen; returns the (B,) bool repeat mask."""
        dup = np.zeros(len(batch_hashes), dtype=bool)
        for i, img_hash in enumerate(batch_hashes):
            prev_in = self._inputs.get(img_hash)
            if prev_in is None:
                self._inputs[img_hash] = (split, done + i)
                continue
            if not self.allow_duplicates:
                raise IntegrityError(
                    f"split {split!r} image {done + i} is the same input "
                    f"image as split {prev_in[0]!r} image {prev_in[1]} "
                    f"(equal content hashes): images were fed twice."
                )
            dup[i] = True
        return dup

    def check_rows(self, name: str, split: str, done: int, rows: np.ndarray, dup: np.ndarray,
                   read_back: ReadBack) -> None:
        """Flag (in ``dup``, in place) or refuse feature rows equal to an earlier row.

        ``rows`` is the (B, D) float32 batch of layer ``name`` for images ``done ...``
        of ``split``; a row repeating one of a repeated input image is not an error.
        """
        for i, row in enumerate(rows):
            bits = np.ascontiguousarray(row).view(np.uint32)
            fingerprint = zlib.crc32(memoryview(bits).cast("B"))
            prev_row = self._find(name, split, done, rows, bits, fingerprint, read_back)
            if prev_row is None:
                self._rows[name].setdefault(fingerprint, []).append((split, done + i))
                continue
            if not dup[i] and not self.allow_duplicates:
                where = f" ({name})" if self.multi else ""
                raise IntegrityError(
                    f"split {split!r} image {done + i} gave the same feature row{where} "
                    f"as split {prev_row[0]!r} image {prev_row[1]} although "
                    f"the input images differ."
                )
            dup[i] = True

    def _find(self, name: str, split: str, done: int, rows: np.ndarray, bits: np.ndarray,
              fingerprint: int, read_back: ReadBack) -> tuple[str, int] | None:
        for cand_split, cand_index in self._rows[name].get(fingerprint, ()):
            if cand_split == split and cand_index >= done:
                other = rows[cand_index - done]
            else:  # already written: read it back to compare exactly
                other = read_back(cand_split, cand_index, name)
            if np.array_equal(np.ascontiguousarray(other).view(np.uint32), bits):
                return (cand_split, cand_index)
        return None
