"""Configuration: the shipped YAML defaults, their schemas and one loader for all of them.

``load_settings(kind, source)`` reads a name, a YAML path or a mapping, lays it over the
shipped default of that kind (a user's file changes only the keys it names), validates it and
returns a plain mapping; every problem is one `mantis.exceptions.ConfigError` line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mantis.config._files import (
    cache_root,
    config_dirs,
    config_file,
    config_hash,
    load_config,
    load_yaml,
    shipped_config,
)
from mantis.config._schemas import (
    BuildSettings,
    ClientSchema,
    EndpointsSettings,
    FetchSettings,
    PipelineSettings,
    SkySettings,
)
from mantis.config._validate import StrictModel, deep_merge, validate_settings
from mantis.exceptions import ConfigError

__all__ = [
    "KINDS",
    "ClientSchema",
    "StrictModel",
    "cache_root",
    "config_dirs",
    "config_file",
    "config_hash",
    "deep_merge",
    "load_config",
    "load_settings",
    "load_yaml",
    "shipped_config",
    "validate_settings",
]

# kind -> (schema, shipped default laid under the user's file, or None when the schema holds
# the defaults, folder of the kind's named files)
KINDS: dict[str, tuple[type[StrictModel], str | None, str]] = {
    "fetch": (FetchSettings, "fetch", ""),
    "endpoints": (EndpointsSettings, "endpoints", ""),
    "build": (BuildSettings, "build", ""),
    "sky": (SkySettings, None, "sky/"),
    "pipeline": (PipelineSettings, None, ""),
}
_DEFAULT_NAMES = {"fetch": "fetch", "endpoints": "endpoints", "build": "build", "sky": "default"}


def load_settings(
    kind: str,
    source: Mapping[str, Any] | str | os.PathLike | None = None,
    *,
    origin: str | None = None,
) -> dict[str, Any]:
    """Load, merge over the shipped default, and validate one kind of settings.

    Parameters
    ----------
    kind : {'fetch', 'endpoints', 'build', 'sky', 'pipeline'}
        Which schema applies.
    source : mapping, str, path or None
        A mapping, a YAML path, or a name (``'fetch'``; for the sky ``'smoke'`` means
        ``sky/smoke``); None is the shipped default of the kind.
    origin : str, optional
        Where a mapping was read from, named in error messages.

    Returns
    -------
    dict
        The validated settings, unset optional keys left out.

    Raises
    ------
    ConfigError
        One line: the file, the key, the value and what is allowed (the closest valid key for
        a typo).
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown kind of settings {kind!r}; allowed: {', '.join(KINDS)}")
    model, base, folder = KINDS[kind]
    where = origin
    if source is None:
        if kind not in _DEFAULT_NAMES:
            raise ConfigError(f"{kind} settings need a file or a mapping")
        source = _DEFAULT_NAMES[kind]
    if isinstance(source, Mapping):
        data = dict(source)
    elif not isinstance(source, str | os.PathLike):
        data = source  # the validator names what it got instead of a mapping
    else:
        text = os.fspath(source)
        is_path = Path(text).suffix in (".yaml", ".yml") or "/" in text.removeprefix(folder)
        path = config_file(text if is_path or text.startswith(folder) else folder + text)
        data, where = load_yaml(path), str(path)
    if base is not None and isinstance(data, Mapping):
        data = deep_merge(shipped_config(base), data)
    settings = validate_settings(model, data, kind=kind, source=where)
    return settings.model_dump(exclude_none=True)
