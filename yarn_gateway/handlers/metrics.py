"""GET /metrics: the gateway's Prometheus metrics (text exposition format).

Authenticated like every endpoint, unless ``YarnGatewayApp.metrics_public`` (tornado
setting ``metrics_public``) is set for scrapers that cannot authenticate. The metrics
name users (kernels by user) but never carry secrets.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST

from .base import APIHandler


class MetricsHandler(APIHandler):
    async def prepare(self) -> None:
        if self.settings.get("metrics_public"):
            return
        await super().prepare()

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(self.registry.metrics.render())
