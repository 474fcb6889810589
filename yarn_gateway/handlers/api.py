"""GET /api: the gateway's version."""

from __future__ import annotations

from .. import __version__
from .base import APIHandler


class VersionHandler(APIHandler):
    def get(self) -> None:
        self.finish_json({"version": __version__, "gateway_version": __version__, "gateway": "yarn-gateway"})
