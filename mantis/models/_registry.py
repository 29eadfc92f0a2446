"""The model registry: every network is built by name through `create_model`."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from mantis.exceptions import ConfigError

__all__ = ["create_model", "list_models", "register_model"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
Factory = TypeVar("Factory", bound=Callable[..., nn.Module])


def register_model(factory: Factory) -> Factory:
    """Register a model factory under its function name (decorator).

    Names start with ``early_`` or ``late_`` to say which inputs the network takes.

    Raises
    ------
    ValueError
        If the name is already registered or does not start with ``early_`` / ``late_``.
    """
    name = factory.__name__
    if name in _REGISTRY:
        raise ValueError(f"a model is already registered under the name {name!r}")
    if not name.startswith(("early_", "late_")):
        raise ValueError(f"model names start with 'early_' or 'late_', got {name!r}")
    _REGISTRY[name] = factory
    return factory


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching the shell-style ``pattern``."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with keyword arguments ``kwargs``.

    Early models take ``in_chans`` (int: bands plus mask channels), late models ``in_chans``
    (dict: survey to channels); all take ``n_z`` (output bins).

    Raises
    ------
    ConfigError
        If ``name`` is not registered (the message lists the registered names).
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; registered: {', '.join(list_models())}"
        ) from None
    return factory(**kwargs)
