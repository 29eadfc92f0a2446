"""Loading the YAML files under ``configs/``.

Each stage keeps its settings in a YAML file; ``load_config(name)`` finds it in the directory
given by ``$MANTIS_CONFIG_DIR``, else the repository's ``configs/``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from mantis.exceptions import ConfigError

__all__ = ["config_dirs", "config_hash", "load_config", "load_yaml"]

_REPO_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def config_dirs() -> list[Path]:
    """Directories searched for configuration files, first match wins."""
    dirs = []
    if env := os.environ.get("MANTIS_CONFIG_DIR"):
        dirs.append(Path(env))
    dirs.append(_REPO_CONFIGS)
    return [d for d in dirs if d.is_dir()]


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read one YAML mapping.

    Raises
    ------
    ConfigError
        If the file is missing, unparsable or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"configuration file {str(path)!r} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {str(path)!r} must hold a mapping at top level")
    return data


def load_config(name: str) -> dict[str, Any]:
    """Load ``<name>.yaml`` (or a path) from the configuration directories.

    Parameters
    ----------
    name : str
        A bare name such as ``'endpoints'`` or a path to a YAML file.
    """
    candidate = Path(name)
    if candidate.suffix in {".yaml", ".yml"} and candidate.is_file():
        return load_yaml(candidate)
    for directory in config_dirs():
        path = directory / f"{name}.yaml"
        if path.is_file():
            return load_yaml(path)
    searched = ", ".join(str(d) for d in config_dirs()) or "(none)"
    raise ConfigError(f"no configuration named {name!r}; searched {searched}")


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a configuration mapping."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
