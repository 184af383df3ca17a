"""Datasets and what is measured of them: a data directory registered once (its files
hashed), and noise ceilings estimated from repeat-level responses."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.core.errors import DataFormatError
from pipeline.core.keys import content_key
from pipeline.data.dataset import describe_dataset
from pipeline.data.layout import REPEATS_FILES, RESPONSES_FILE, canonical_subject
from pipeline.data.responses import find_repeats_file, load_repeats
from tracker.db.documents import SCHEMA_VERSION, nan_to_none, new_run_id, utc_now
from tracker.db.store import Store

VIM1_FILE_PREFIXES = ("EstimatedResponses", "Stimuli")


def dataset_fingerprint(data_dir: Path) -> str:
    """Cheap identity of a data directory: absolute path, file names, sizes, mtimes."""
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        raise DataFormatError(f"data directory {data_dir} does not exist")
    entries = []
    for p in sorted(data_dir.iterdir()):
        if p.is_file() and p.name.startswith(VIM1_FILE_PREFIXES):
            st = p.stat()
            entries.append((p.name, st.st_size, st.st_mtime_ns))
    if not entries:
        raise DataFormatError(
            f"{data_dir} holds no vim-1 files (expected EstimatedResponses.mat and Stimuli*.mat)"
        )
    return content_key(socket.gethostname(), str(data_dir), entries)


def register_dataset(store: Store, data_dir: Path) -> dict[str, Any]:
    """The dataset document for ``data_dir``, describing (and hashing) it the first time."""
    fingerprint = dataset_fingerprint(data_dir)
    found = store.find_dataset(fingerprint)
    if found is not None:
        return found
    desc = describe_dataset(Path(data_dir))
    files = desc.get("files", [])
    content = content_key(sorted((f["name"], f["sha256"]) for f in files))
    doc = {
        "_id": "ds-" + fingerprint[:16],
        "schema_version": SCHEMA_VERSION,
        "fingerprint": fingerprint,
        "content_sha256": content,
        "host": socket.gethostname(),
        "data_dir": str(Path(data_dir).resolve()),
        **desc,
    }
    doc["files"] = files
    doc.setdefault("subjects", {})
    store.save_dataset(doc)
    return store.find_dataset(fingerprint) or doc


def compute_ceilings(
    store: Store,
    data_dir: Path,
    subjects: Iterable[str] = ("S1", "S2"),
    repeats_file: Path | None = None,
    n_average: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Estimate NSD noise ceilings from repeat-level responses and store them.

    One record per subject and split kind (``validation``: the average of all the
    validation repeats; ``test``: held-out training images averaged over
    ``n_average["test"]`` repeats, vim-1: 2). Queries apply them at read time, so a new
    estimate never needs a refit. vim-1 itself ships no repeats: DataFormatError then.
    """
    from pipeline.evaluation.ceiling import ceiling_from_ncsnr, ncsnr

    dataset = register_dataset(store, data_dir)
    path = Path(repeats_file) if repeats_file else find_repeats_file(data_dir)
    if path is None:
        raise DataFormatError(
            f"no repeat-level responses beside {data_dir} (looked for "
            f"{', '.join(REPEATS_FILES)}): vim-1 releases only repeat-averaged responses, "
            "so no noise ceiling can be estimated from it; give --repeats FILE if you have them"
        )
    n_average = {"test": 2, **(n_average or {})}
    records = []
    for subject in subjects:
        repeats, ids = load_repeats(path, subject)
        snr = ncsnr(repeats)
        for split, n_avg in (("validation", repeats.shape[0]), ("test", n_average["test"])):
            _, r_ceiling = ceiling_from_ncsnr(snr, n_avg)
            doc = {
                "_id": new_run_id("nc"), "schema_version": SCHEMA_VERSION,
                "dataset_id": dataset["_id"], "subject": canonical_subject(subject),
                "split": split, "method": "nsd", "n_reps": int(repeats.shape[0]),
                "n_average": int(n_avg), "source": str(path.resolve()),
                "voxel_ids": ids.tolist(), "r_ceiling": nan_to_none(r_ceiling),
                "created": utc_now(),
            }
            store.save_noise_ceiling(doc)
            records.append(doc)
    return records


def responses_sha256(dataset: Mapping[str, Any]) -> str:
    """sha256 of the dataset's ``EstimatedResponses.mat``, as recorded when it was registered."""
    for entry in dataset.get("files", []):
        if entry.get("name") == RESPONSES_FILE and entry.get("sha256"):
            return str(entry["sha256"])
    raise DataFormatError(f"dataset {dataset.get('_id')} at {dataset.get('data_dir')} records no "
                          f"sha256 of {RESPONSES_FILE}; re-register it (tracker data describe)")
