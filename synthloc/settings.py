"""Typed settings from environment variables with a prefix, overridden by explicit values.

Each service declares one frozen dataclass; `load_settings(Cls, "SYNTHLOC_SYNTH_", overrides)`
fills it from SYNTHLOC_SYNTH_<FIELD> variables, then from overrides (CLI flags that were given),
then defaults. Nothing is read at import time.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from synthloc.errors import InvalidInput

T = TypeVar("T")


def _convert(raw: str, kind: Any, name: str) -> Any:
    if kind in ("bool", bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise InvalidInput(f"{name}: expected true or false, got {raw!r}")
    for text, cast in (("int", int), ("float", float), ("Path", Path), ("str", str)):
        if kind in (text, cast) or (isinstance(kind, str) and kind.startswith(text)):
            try:
                return cast(raw)
            except ValueError:
                raise InvalidInput(f"{name}: expected {text}, got {raw!r}") from None
    raise TypeError(f"unsupported settings type {kind!r} for {name}")


def load_settings(
    cls: type[T],
    prefix: str,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> T:
    """Build cls from defaults < environment (prefix + FIELD) < overrides that are not None."""
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        env_name = prefix + f.name.upper()
        if env_name in environ:
            kind = hints[f.name]
            base = typing.get_args(kind)[0] if typing.get_origin(kind) is not None else kind
            values[f.name] = _convert(environ[env_name], base, env_name)
        if overrides and overrides.get(f.name) is not None:
            values[f.name] = overrides[f.name]
    return cls(**values)


def env_names(cls: type, prefix: str) -> list[str]:
    """The environment variables a settings class reads (for docs and deployment checks)."""
    return [prefix + f.name.upper() for f in dataclasses.fields(cls)]
