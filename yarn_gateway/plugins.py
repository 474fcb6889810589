"""Pluggable classes named in the configuration (the authenticator, the session store): a short
name from a fixed table or an import path, resolved and type-checked when the setting is read,
so that a typo stops the daemon at start with the setting named instead of at first use."""

from __future__ import annotations

from typing import Any

from traitlets import TraitError
from traitlets.utils.importstring import import_item


def resolve_class(value: str, aliases: dict[str, str], base: type, setting: str) -> type[Any]:
    """The class ``value`` names (a key of ``aliases`` or an import path), a subclass of
    ``base``; TraitError naming ``setting`` and the choices otherwise."""
    choices = ", ".join(repr(name) for name in aliases)
    path = aliases.get(value, value)
    if "." not in path:
        raise TraitError(f"{setting} = {value!r}: not one of {choices}, nor an import path (package.module.Class)")
    try:
        cls = import_item(path)
    except Exception as exc:  # ImportError, AttributeError, or an error raised by the module itself
        raise TraitError(f"{setting} = {value!r}: cannot import {path}: {type(exc).__name__}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TraitError(f"{setting} = {value!r}: {path} is not a subclass of {base.__module__}.{base.__name__}")
    return cls
