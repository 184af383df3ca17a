"""The installed package does the whole job without the source tree.

Builds the wheel, installs it (no editable install, no repository on ``sys.path``) into a
fresh virtual environment, and from an unrelated temporary directory runs the ``tracker``
console script: ``db init``, ``runs list``, ``data synth --preset tiny``, a feature
extraction, a fit, ``db stop``. The fresh environment takes its third-party
dependencies from the test environment's site-packages through a ``.pth`` path line (a
path line does not run the ``.pth`` files of that directory, so the test environment's
editable install of this project stays out); installing TensorFlow again per test run
would take minutes and prove nothing about this package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    shown = " ".join(map(str, cmd))
    assert proc.returncode == 0, f"{shown} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TRACKER_", "VIRTUAL_ENV"))}
    # build from a clean copy: a stale build/ folder in the checkout must not leak into the wheel
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".tracker", "demo_data", ".*_cache"))
    dist = base / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--disable-pip-version-check", "-q", "-w", str(dist), str(source)], base, env)
    wheels = sorted(dist.glob("vimtrack-*.whl"))
    assert len(wheels) == 1, wheels
    target = base / "venv"
    venv.create(target, with_pip=False, symlinks=True)
    python = target / "bin" / "python"
    site = Path(subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    (site / "_deps_from_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", "-q", str(wheels[0])], base, env)
    work = base / "elsewhere"
    work.mkdir()
    env = {**env, "TRACKER_HOME": str(work / "home")}
    return {"wheel": wheels[0], "bin": target / "bin", "site": site, "work": work, "env": env}


def test_the_wheel_ships_the_schema_and_no_tests(installed):
    import zipfile

    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert any(n.endswith("tracker/db/schema.json") for n in names)
    assert not any(n.startswith(("tests/", "scripts/")) for n in names)


def test_the_installed_code_is_the_wheel_not_the_checkout(installed):
    out = _run([str(installed["bin"] / "python"), "-c",
                "import pipeline, tracker; print(pipeline.__file__); print(tracker.__file__)"],
               installed["work"], installed["env"]).stdout.split()
    assert all(Path(p).is_relative_to(installed["site"]) for p in out), out


def test_the_installed_tracker_does_the_whole_job(installed):
    tracker = str(installed["bin"] / "tracker")
    work, env = installed["work"], installed["env"]
    try:
        init = _run([tracker, "db", "init", "--json"], work, env)
        assert "fit_runs" in init.stdout
        listing = json.loads(_run([tracker, "runs", "list", "--json"], work, env).stdout)
        assert listing == []
        data = work / "vim1"
        _run([tracker, "data", "synth", str(data), "--preset", "tiny"], work, env)
        assert (data / "EstimatedResponses.mat").is_file()
        feats = json.loads(_run([tracker, "features", "--data-dir", str(data), "--weights", "random:0",
                                 "--quiet", "--json"], work, env).stdout)
        assert feats["status"] == "COMPLETED"
        assert Path(feats["output"]["path"]).is_relative_to(work / "home")
        fit = json.loads(_run([tracker, "fit", "--features", feats["_id"], "--subject", "S1", "--roi", "V4",
                               "--method", "ridge", "--quiet", "--json"], work, env).stdout)
        runs = fit if isinstance(fit, list) else [fit]
        got = sorted((r["subject"], r["roi"], r["config"]["method"], r["target"], r["status"]) for r in runs)
        assert got == [("S1", "V4", "ridge", target, "COMPLETED") for target in ("roi_mean", "voxels")]
        voxels = next(r for r in runs if r["target"] == "voxels")
        # the tiny preset plants signal in V4: the validation median r is well above zero
        assert voxels["summary"]["validation"]["r"]["median"] > 0.1
        fits = json.loads(_run([tracker, "runs", "list", "--json"], work, env).stdout)
        assert {r["id"] for r in fits} == {r["_id"] for r in runs}
        listed = _run([tracker, "runs", "list", "--kind", "features", "--json"], work, env).stdout
        features = json.loads(listed)
        assert [r["id"] for r in features] == [feats["_id"]]
    finally:
        subprocess.run([tracker, "db", "stop"], cwd=work, env=env, capture_output=True, timeout=120)
