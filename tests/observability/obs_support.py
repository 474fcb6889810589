"""Helpers for the observability tests: scraping and parsing /metrics, capturing logs."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

from prometheus_client.parser import text_string_to_metric_families


def write_spec(root: Any, name: str, code: str) -> None:
    """A local kernelspec running ``python -c code`` (a kernel that crashes, hangs, ...)."""
    d = root / name
    d.mkdir(parents=True)
    (d / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", code, "{connection_file}"], "display_name": name, "language": "python",
    }))


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, keyed by (name, sorted labels)."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> Optional[float]:
    return samples.get((name, tuple(sorted(labels.items()))))


async def scrape(gw: Any, user: Optional[str] = "alice") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from helpers.gwclient import GatewayClient

    client = gw.client(user) if user else GatewayClient(gw.url)
    r = await client.request("GET", "metrics")
    assert r.code == 200, (r.code, r.body)
    assert r.headers["Content-Type"].startswith("text/plain")
    return parse(r.body)


@contextmanager
def capture_logs(app: Any, formatter: Optional[logging.Formatter] = None) -> Iterator[io.StringIO]:
    """Everything logged (DEBUG and up) by the app's logger, yarn_gateway.* and any other
    logger that reaches the root, formatted with ``formatter``."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(formatter or logging.Formatter("%(levelname)s %(name)s %(message)s"))
    loggers = [app.log, logging.getLogger("yarn_gateway"), logging.getLogger()]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield buf
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(handler)
            lg.setLevel(level)
