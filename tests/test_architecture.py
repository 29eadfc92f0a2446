"""The import rules of docs/architecture.md, checked on every module of the package.

Imports inside functions count as much as those at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mantis"

# shared modules every room may use; they import only each other
FOUNDATIONS = {"exceptions", "surveys", "zgrid", "config", "catalog", "densities", "calibration",
               "apertures", "__version__"}  # fmt: skip
# room -> the other rooms it may import (besides the foundations)
MAY_IMPORT = {
    "sky": set(),
    "fetch": set(),
    "stack": {"fetch"},
    "data": {"stack"},
    "models": {"data", "stack", "explain"},
    "evaluate": {"models", "stack", "explain"},
    "predict": {"models", "stack", "fetch", "explain"},
    "explain": {"models", "stack", "evaluate"},
    "priors": {"predict"},
    "pipeline": {
        "fetch",
        "stack",
        "models",
        "evaluate",
        "predict",
        "pipeline_report",
        "pipeline_catalog",
        "sky",
    },
    "pipeline_report": set(),
    "pipeline_catalog": {"stack"},
    "serve": {"predict", "models", "stack", "fetch"},
    "client": set(),
    "rail": {"serve"},
}
STAGES = {"fetch", "stack", "data", "models", "evaluate", "predict", "priors"}
# the one place outside the sky and the CLI that may use it: the pipeline puts the imitation
# services up with mantis.sky.running_server
SKY_USERS = {"pipeline", "cli", "sky"}
# HDF5 files that are not the dataset: qp prediction output and the Prospector priors
OTHER_HDF5 = {
    "predict/_readers.py",
    "predict/_writers.py",
    "priors/_export.py",
    "priors/_prospector.py",
}


def room_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def imports(path: Path) -> list[tuple[str, int]]:
    """Every ``mantis.…`` module a file imports (``from mantis import x`` gives ``mantis.x``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mantis":
                found += [(f"mantis.{a.name}", node.lineno) for a in node.names]
            elif node.module.startswith("mantis."):
                found += [(node.module, node.lineno)]
                found += [(f"{node.module}.{a.name}", node.lineno) for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]  # fmt: skip
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("mantis.")]
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_rules_see_every_room():
    rooms = {room_of(p) for p in MODULES}
    assert rooms <= set(MAY_IMPORT) | FOUNDATIONS | {"cli", "__init__", "__main__"}
    assert rooms >= STAGES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_rules(path):
    room = room_of(path)
    problems = []
    for module, line in imports(path):
        parts = module.split(".")
        target = parts[1]
        where = f"{path.relative_to(PACKAGE)}:{line} imports {module}"
        if target == room:
            continue
        # nothing imports another subpackage's private modules
        if len(parts) > 2 and parts[2].startswith("_") and not parts[2].startswith("__"):
            problems.append(f"{where}: a private module of another package")
        # test-support modules (``testing.py``) may put a simulated sky up for the tests
        if target == "sky" and room not in SKY_USERS and path.name != "testing.py":
            problems.append(f"{where}: no stage imports the simulated sky")
        if room in FOUNDATIONS and target not in FOUNDATIONS:
            problems.append(f"{where}: a shared module imports a room")
        elif target == "sky" and path.name == "testing.py":
            continue  # a test-support module may put the simulated sky up
        elif room in MAY_IMPORT and target not in FOUNDATIONS | MAY_IMPORT[room]:
            problems.append(f"{where}: {room} may import only {sorted(MAY_IMPORT[room])}")
    assert not problems, "\n".join(problems)


def test_predict_does_not_import_evaluate():
    offenders = [str(p) for p in (PACKAGE / "predict").rglob("*.py")
                 if any(m.startswith("mantis.evaluate") for m, _ in imports(p))]  # fmt: skip
    assert offenders == []


def test_only_the_store_opens_the_dataset_file():
    opened = sorted(str(p.relative_to(PACKAGE)) for p in MODULES if "h5py.File" in p.read_text())
    assert set(opened) - OTHER_HDF5 == {"stack/_dataset.py"}


def test_one_implementation_of_density_quantiles():
    # the crossing of a level inside a bin is interpolated in mantis.densities only
    pattern = "(q - left) / p_bin"
    holders = sorted(str(p.relative_to(PACKAGE)) for p in MODULES if pattern in p.read_text())
    assert holders == ["densities.py"]


def test_production_code_imports_no_test_support():
    offenders = [
        f"{p.relative_to(PACKAGE)} imports {m}"
        for p in MODULES
        if p.name != "testing.py"
        for m, _ in imports(p)
        if m.endswith(".testing")
    ]
    assert offenders == []
