"""The built wheel works from any folder: configs ship inside it, caches go to the user cache.

The wheel is built from a copy of the sources (so the repository gains no build folders) and
installed without dependencies into a fresh virtual environment whose ``.pth`` file points at
this environment's site-packages for the dependencies. Only the installed copy of mantis is
importable there: the repository's editable install hook is not processed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def _run(argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "mantis", source / "mantis", ignore=shutil.ignore_patterns("__pycache__")
    )
    dist = tmp_path / "dist"
    script = f"from setuptools import build_meta; build_meta.build_wheel({str(dist)!r})"
    built = _run([sys.executable, "-c", script], cwd=source)
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = dist.glob("mantis-*.whl")
    return wheel


def _venv_with_wheel(tmp_path: Path, wheel: Path) -> Path:
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    site = Path(purelib.stdout.strip())
    # dependencies come from this environment; its own .pth files are not processed there
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         "--no-index", str(wheel)]
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    return venv


def test_wheel_installs_and_runs_from_any_folder(tmp_path):
    wheel = _build_wheel(tmp_path)
    venv = _venv_with_wheel(tmp_path, wheel)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MANTIS_", "PYTHON"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "user-cache")  # where platformdirs puts caches

    where = _run([str(venv / "bin" / "python"), "-c", "import mantis; print(mantis.__file__)"],
                 cwd=work, env=env)  # fmt: skip
    package = Path(where.stdout.strip()).parent
    assert package.is_relative_to(venv), where.stdout + where.stderr
    shipped = sorted(p.relative_to(package) for p in package.rglob("*.yaml"))
    assert Path("configs/sky/smoke.yaml") in shipped and Path("configs/fetch.yaml") in shipped
    package_files = {p for p in package.rglob("*") if "__pycache__" not in p.parts}

    mantis = str(venv / "bin" / "mantis")
    catalog = _run([mantis, "sky", "catalog", "--config", "smoke", "--out", "cat.parquet"],
                   cwd=work, env=env)  # fmt: skip
    assert catalog.returncode == 0, catalog.stderr[-2000:]
    assert len(pd.read_parquet(work / "cat.parquet")) > 50
    assert sorted(p.name for p in work.iterdir()) == ["cat.parquet", "cat.truth.parquet"]
    # the population was cached in the user cache folder, nothing inside the package
    assert len(list((tmp_path / "user-cache" / "mantis" / "sky").glob("*.parquet"))) == 1
    assert {p for p in package.rglob("*") if "__pycache__" not in p.parts} == package_files

    helped = _run([mantis, "fetch", "--help"], cwd=work, env=env)
    assert helped.returncode == 0 and "--concurrency" in helped.stdout
