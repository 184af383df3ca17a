"""Worker for the backend tests: conv3 features of fixed images on one Keras backend.

``python backend_worker.py BACKEND OUT_DIR [PRECISION]`` writes ``OUT_DIR/features.npy``
(the caffe AlexNet's conv3 of 6 seeded raw images, random:0 weights) and
``OUT_DIR/runtime.json`` (the extractor's runtime identity). Keras picks its backend at
import, so each backend runs in its own process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str]) -> int:
    backend, out = argv[0], Path(argv[1])
    precision = argv[2] if len(argv) > 2 else "strict"
    from pipeline.features.config import FeatureConfig
    from pipeline.features.extractor import build_extractor

    extractor = build_extractor(FeatureConfig(batch_size=4, backend=backend, precision=precision))
    raw = np.random.default_rng(7).uniform(-0.55, 0.45, (6, 120, 120)).astype(np.float32)
    np.save(out / "features.npy", extractor(raw))
    (out / "runtime.json").write_text(json.dumps(extractor.runtime))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
