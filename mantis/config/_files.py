"""Finding and reading configuration files, and where caches live.

Every default ships inside the package (``mantis/configs/``, read with `importlib.resources`),
so a wheel works from any directory. A name such as ``'fetch'`` or ``'sky/smoke'`` is looked up
first in ``$MANTIS_CONFIG_DIR`` (when set), then among the shipped files; a path to an existing
YAML file always wins. Caches go to a user cache folder, never inside the installed package.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mantis.exceptions import ConfigError

__all__ = [
    "cache_root",
    "config_dirs",
    "config_file",
    "config_hash",
    "load_config",
    "load_yaml",
    "shipped_config",
]

_YAML_SUFFIXES = (".yaml", ".yml")
# paths that named the repository's top-level configs/ before the files moved into the package
_LEGACY_PREFIX = "configs/"


def _shipped_dir() -> Path:
    """Return the package's own configuration folder (a real folder once installed)."""
    return Path(str(resources.files("mantis").joinpath("configs")))


def config_dirs() -> list[Path]:
    """Folders searched for a configuration name, first match wins."""
    dirs = []
    if env := os.environ.get("MANTIS_CONFIG_DIR"):
        dirs.append(Path(env))
    dirs.append(_shipped_dir())
    return [d for d in dirs if d.is_dir()]


def cache_root() -> Path:
    """Root of mantis's caches: ``$MANTIS_CACHE_DIR``, else the user cache folder.

    The user cache folder comes from `platformdirs` (``~/.cache/mantis`` on Linux). The
    simulated population goes under ``<root>/sky`` and cutouts under ``<root>/cutouts``.
    """
    if env := os.environ.get("MANTIS_CACHE_DIR"):
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("mantis", appauthor=False))


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
        problem = " ".join(str(err).split())
        raise ConfigError(
            f"configuration file {str(path)!r} is not valid YAML: {problem}"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read configuration file {str(path)!r}: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {str(path)!r} must hold a mapping at top level")
    return data


def config_file(name: str | os.PathLike) -> Path:
    """Return the file that a configuration name or path stands for.

    Parameters
    ----------
    name : str or path-like
        An existing file (it wins), a name such as ``'fetch'``, ``'sky/smoke'`` or
        ``'train/early'`` (``.yaml`` optional), or an old ``configs/...`` path.

    Raises
    ------
    ConfigError
        If nothing matches; the message lists the folders searched.
    """
    text = os.fspath(name)
    if Path(text).suffix in _YAML_SUFFIXES and Path(text).is_file():
        return Path(text)
    stem = text[len(_LEGACY_PREFIX) :] if text.startswith(_LEGACY_PREFIX) else text
    stem = stem[: -len(Path(stem).suffix)] if Path(stem).suffix in _YAML_SUFFIXES else stem
    for directory in config_dirs():
        for suffix in _YAML_SUFFIXES:
            path = directory / f"{stem}{suffix}"
            if path.is_file():
                return path
    searched = ", ".join(str(d) for d in config_dirs()) or "(none)"
    raise ConfigError(f"no configuration named {text!r}; searched {searched}")


def load_config(name: str | os.PathLike) -> dict[str, Any]:
    """Read the raw mapping of a configuration name or path (see `config_file`)."""
    return load_yaml(config_file(name))


def shipped_config(name: str) -> dict[str, Any]:
    """Read the default that ships with the package, ignoring ``$MANTIS_CONFIG_DIR``."""
    return load_yaml(_shipped_dir() / f"{name}.yaml")


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a configuration mapping."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
