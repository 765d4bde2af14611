"""How configs are checked and documented: each config class runs `_check` when built (`_Checked`), the helpers
below name the offending value, `_check_types` holds every field to its declared type, and `documented` shows each
field's source comment in the class docstring (help() and the API page).
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import re
import warnings
from dataclasses import fields

from .errors import ConfigError


def _parse_value(key: str, text: str, kind: type):
    if kind is bool:
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ConfigError(f"{key}={text!r}: expected a bool (true/false)")
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"{key}={text!r}: expected {kind.__name__}") from None


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def field_types(cls) -> dict[str, type]:
    return {f.name: _TYPES[f.type] if isinstance(f.type, str) else f.type for f in fields(cls)}


def _check_choice(name: str, value, valid) -> None:
    if value not in valid:
        raise ConfigError(f"{name} {value!r} is not one of {', '.join(map(repr, valid))}")


def _check_at_least(config, minimum: int, *names: str) -> None:
    for name in names:
        if getattr(config, name) < minimum:
            raise ConfigError(f"{name} {getattr(config, name)} must be >= {minimum}")


def documented(cls):
    """Append "Fields:" (name, default and the source comment of each field) to the docstring of a config class,
    so `help(GPTConfig)` and the API page show what each field means. The comments stay the one place they live."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source (a frozen or zipped install): the fields without their comments
        source = ""
    comments = {name: " ".join(re.findall(r"#\s*(.*)", text)) for name, text in
                re.findall(r"^\s+(\w+): [^#\n]*(#.*(?:\n\s+#.*)*)", source, re.M)}  # continuation lines too
    lines = [f"  {f.name} = {f.default!r}: {comments.get(f.name, '')}".rstrip(": ") for f in dataclasses.fields(cls)]
    cls.__doc__ = f"{cls.__doc__.strip()}\n\nFields:\n" + "\n".join(lines)
    return cls


def _check_range(config, name: str, low: float, high: float = math.inf, *, open_low=False, open_high=False):
    value = getattr(config, name)
    if (value < low or (open_low and value == low)) or (value > high or (open_high and value == high)):
        span = f"{'>' if open_low else '>='} {low}" if high == math.inf else \
            f"in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise ConfigError(f"{name} {value} must be {span}")


def _check_types(config) -> None:
    """Each field holds its declared type (an int is accepted, and stored, as a float); floats are finite."""
    for name, kind in field_types(type(config)).items():
        value = getattr(config, name)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(config, name, value := float(value))
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{name}={value!r}: expected {kind.__name__}")
        if kind is float and not math.isfinite(value):
            raise ConfigError(f"{name}={value!r}: expected a finite number")


class _Checked:
    """Runs `_check` when a config is built, so a config that exists is a valid one."""

    def __post_init__(self):
        _check_types(self)
        self._check()

    def validate(self):
        """Deprecated: configs are checked when built; returns self."""
        warnings.warn("config.validate() is no longer needed: configs are checked when built", DeprecationWarning,
                      stacklevel=2)
        return self
