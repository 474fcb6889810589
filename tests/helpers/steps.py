"""Named behaviours inside one end-to-end test.

A YARN kernel takes tens of seconds to start, so an end-to-end test checks several behaviours
of one kernel in turn rather than starting one per behaviour. Each behaviour is a ``with
behaviour("..."):`` block: a failure inside it (an assertion or any other error) is reported
as that behaviour's, in pytest's one-line summary too, e.g. ``AssertionError: [interrupt
returns within 5 s] assert 7.2 < 5``. The original error stays chained below it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def behaviour(name: str) -> Iterator[None]:
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"[{name}] {exc}") from exc
    except Exception as exc:
        raise AssertionError(f"[{name}] {type(exc).__name__}: {exc}") from exc
