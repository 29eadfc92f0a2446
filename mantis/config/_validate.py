"""The one validator every configuration goes through.

Schemas are pydantic models derived from `StrictModel`: unknown keys are refused, types are
checked without silent conversion (``'16'`` is not an integer, ``true`` is not a number) and
ranges are declared on the fields. `validate_settings` turns pydantic's report into one line
that names the key, the value and what is allowed, and suggests the closest valid key for a
typo.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import annotated_types
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from mantis.exceptions import ConfigError

__all__ = ["StrictModel", "deep_merge", "validate_settings"]

ModelT = TypeVar("ModelT", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every configuration schema: no unknown keys, no silent type conversion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` laid over it, mappings merged key by key.

    Lists and scalars in ``override`` replace those of ``base``; a key only in ``base`` keeps
    its value, so a user's file changes only the keys it names.
    """
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def validate_settings(
    model: type[ModelT], data: Any, *, kind: str, source: str | None = None
) -> ModelT:
    """Validate ``data`` against ``model`` or raise a one-line `ConfigError`.

    Parameters
    ----------
    model : type of StrictModel
        The schema.
    data : mapping
        The (merged) settings.
    kind : str
        What the settings are, for the message (``'fetch'``, ``'sky'``, ``'pipeline'``).
    source : str, optional
        The file they came from, named in the message.

    Raises
    ------
    ConfigError
        For the first problem found: an unknown key (with the closest valid key), a missing
        key, a wrong type or a value out of range; the count of further problems is appended.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{kind} settings must be a mapping, got {type(data).__name__}" + _where(source)
        )
    try:
        return model.model_validate(dict(data))
    except ValidationError as err:
        # an unknown key first: it is usually a typo, and the 'missing' errors follow from it
        problems = sorted(
            err.errors(include_url=False), key=lambda p: p["type"] != "extra_forbidden"
        )
        message = _describe(model, problems[0], kind)
        if len(problems) > 1:
            message += f" (and {len(problems) - 1} more problem(s))"
        raise ConfigError(message + _where(source)) from None


def _where(source: str | None) -> str:
    return f" [in {source}]" if source else ""


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """Return the model class inside an annotation (``Grid``, ``list[Field]``, ``X | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _field_info(model: type[BaseModel], loc: tuple[Any, ...]) -> FieldInfo | None:
    """Return the declaration of the key at ``loc``, or None where ``loc`` ends in a list."""
    current: type[BaseModel] | None = model
    info = None
    for part in loc:
        if isinstance(part, int):
            info = None
            continue
        if current is None or part not in current.model_fields:
            continue  # a key of a mapping such as dict[str, str]
        info = current.model_fields[part]
        current = _submodel(info.annotation)
    return info


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Names of the keys allowed at ``loc`` (a path of keys and list indices)."""
    if not loc:
        return list(model.model_fields)
    info = _field_info(model, loc)
    found = _submodel(info.annotation) if info is not None else None
    return list(found.model_fields) if found is not None else []


def _range(info: FieldInfo | None) -> str | None:
    """Describe a field's bounds: ``'a number in [15.0, 27.0]'``, ``'a positive integer'``."""
    if info is None:
        return None
    is_int = info.annotation is int or typing.get_args(info.annotation)[:1] == (int,)
    lo = hi = None
    lo_open = hi_open = False
    for rule in info.metadata:
        if isinstance(rule, annotated_types.Gt):
            lo, lo_open = rule.gt, True
        elif isinstance(rule, annotated_types.Ge):
            lo, lo_open = rule.ge, False
        elif isinstance(rule, annotated_types.Lt):
            hi, hi_open = rule.lt, True
        elif isinstance(rule, annotated_types.Le):
            hi, hi_open = rule.le, False
    noun = "an integer" if is_int else "a number"
    show = (lambda v: str(int(v))) if is_int else (lambda v: str(float(v)))
    if lo is not None and hi is not None:
        return f"{noun} in {'(' if lo_open else '['}{show(lo)}, {show(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        if lo == 0 and lo_open:
            return f"a positive {noun.split()[-1]}"
        return f"{noun} {'>' if lo_open else '>='} {show(lo)}"
    if hi is not None:
        return f"{noun} {'<' if hi_open else '<='} {show(hi)}"
    return None


_REQUIREMENTS = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "finite_number": "a finite number",
}


def _requirement(model: type[BaseModel], loc: tuple[Any, ...], problem: Mapping[str, Any]) -> str:
    kind, ctx = problem["type"], problem.get("ctx") or {}
    info = _field_info(model, loc)
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return _range(info) or str(problem["msg"]).lower()
    if kind in ("int_type", "int_from_float", "float_type"):
        return _range(info) or _REQUIREMENTS[kind]
    if kind in _REQUIREMENTS:
        return _REQUIREMENTS[kind]
    if kind == "literal_error":
        return f"one of {ctx.get('expected', '')}".replace(" or ", ", ")
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "a non-empty list" if isinstance(problem.get("input"), list) else "not empty"
    if kind == "string_pattern_mismatch":
        return f"a string matching {ctx.get('pattern')}"
    detail = str(problem["msg"]).removeprefix("Value error, ")
    return detail[:1].lower() + detail[1:]


def _describe(model: type[BaseModel], problem: Mapping[str, Any], kind: str) -> str:
    loc = tuple(problem["loc"])
    path = _dotted(loc)
    if problem["type"] == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1])
        parent = _dotted(loc[:-1])
        prefix = f"{parent}." if parent else ""
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        if close:
            hint = f"did you mean '{prefix}{close[0]}'?"
        else:
            hint = f"allowed here: {', '.join(allowed) or '(none)'}"
        article = "an" if kind[:1] in "aeiou" else "a"
        return f"'{path}' is not {article} {kind} setting; {hint}"
    if problem["type"] == "missing":
        return f"{kind} setting '{path}' is missing"
    requirement = _requirement(model, loc, problem)
    if problem["type"] == "value_error":
        return f"{kind} setting {path or '(top level)'}: {requirement}"
    return f"{kind} setting {path}={problem.get('input')!r} must be {requirement}"
