"""Reading the daemon's config file strictly: a missing file or one that does not load stops
the daemon (and fails ``yarn-gateway check``) with the file and the line, instead of leaving
it to run on defaults after a logged warning.

A config file ``<base>.py`` or ``<base>.json`` is read as traitlets reads one (both files of
that base, the JSON one last), but every error is raised as :class:`ConfigFileError`.
"""

from __future__ import annotations

import os
import traceback
from typing import Optional

from traitlets.config import Config
from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader

SUFFIXES = (".py", ".json")


class ConfigFileError(Exception):
    """The config file is missing or does not load; the message names the file (and the line)."""


def _error_line(exc: BaseException, path: str) -> Optional[int]:
    """The line of ``path`` where loading it failed, if the error says."""
    if isinstance(exc, SyntaxError) and exc.lineno and os.path.abspath(exc.filename or "") == path:
        return exc.lineno
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if os.path.abspath(frame.filename) == path:
            return frame.lineno
    return None


def read_config_file(path: str) -> Config:
    """The configuration in ``path`` (``.py`` or ``.json``), or :class:`ConfigFileError`."""
    if not os.path.isfile(path):
        raise ConfigFileError(f"config file {path} does not exist (or is not a file): check --config")
    base, ext = os.path.splitext(path)
    if ext not in SUFFIXES:
        raise ConfigFileError(f"config file {path}: only .py and .json config files are read")
    cfg = Config()
    for loader, suffix in ((PyFileConfigLoader, ".py"), (JSONFileConfigLoader, ".json")):
        full = os.path.abspath(base + suffix)
        if not os.path.isfile(full):
            continue
        try:
            cfg.merge(loader(os.path.basename(full), path=os.path.dirname(full)).load_config())
        except Exception as exc:  # a config file is a Python program: anything can go wrong in it
            line = _error_line(exc, full)
            where = f"{full}, line {line}" if line else full
            what = exc.msg if isinstance(exc, SyntaxError) else str(exc)
            raise ConfigFileError(f"config file {where} does not load: {type(exc).__name__}: {what}") from None
    return cfg
