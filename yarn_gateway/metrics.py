"""Prometheus metrics of one gateway (served at ``GET /metrics``).

Every gateway has its own :class:`GatewayMetrics` with its own ``CollectorRegistry``
(never prometheus_client's global default registry: several gateways may live in one
process, as in the tests). The kernel registry owns it (``KernelRegistry.metrics``);
provisioners, the RM client and the websocket handlers reach it from there.

Metric names (all prefixed ``yarn_gateway_``):

- ``kernels{state,user}``: gauge computed at scrape time from the kernel registry.
- ``kernel_launches_total{outcome,kernelspec}``: outcome is success, failed, timeout,
  refused (a 4xx answer) or cancelled.
- ``kernel_launch_seconds{phase}``: histogram; phases spark_submit, accepted_wait and
  launcher_callback (YARN kernels) and total (every successful launch).
- ``kernel_events_total{event}``: lifecycle events (the same ones that are logged).
- ``rm_request_seconds{method}`` / ``rm_request_errors_total{method,kind}``: every
  ResourceManager REST call.
- ``relay_messages_total{direction}`` / ``relay_bytes_total{direction}``: websocket
  messages and payload bytes, direction client_to_kernel or kernel_to_client.
- ``kerberos_ticket_expiry_seconds``: seconds until the gateway's ticket expires
  (only when a keytab login is configured).

The relay hot path only adds to plain integers in :class:`RelayTraffic` (no locks, no
label lookups); they are turned into counters when scraped.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Iterable, Iterator
from typing import Any, Callable, Optional, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "yarn_gateway"
LAUNCH_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0)
RM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OUTCOMES = ("success", "failed", "timeout", "refused", "cancelled")
#: Distinct kernelspec label values kept before others are counted as "other" (request data
#: names the kernelspec, so the label set must stay bounded).
MAX_SPEC_LABELS = 64

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class RelayTraffic:
    """Plain counters bumped by the websocket handlers on every message."""

    __slots__ = ("in_bytes", "in_messages", "out_bytes", "out_messages")

    def __init__(self) -> None:
        self.in_messages = 0  # client -> kernel
        self.in_bytes = 0
        self.out_messages = 0  # kernel -> client
        self.out_bytes = 0


class _ScrapeTimeCollector(Collector):
    """Metrics computed from live state when scraped."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        kernels = GaugeMetricFamily(f"{PREFIX}_kernels", "Kernels held by this gateway, by execution state and user.",
                                    labels=["state", "user"])
        counts: dict[tuple[str, str], int] = {}
        for state, user in m.kernel_states():
            counts[(state, user)] = counts.get((state, user), 0) + 1
        for (state, user), n in sorted(counts.items()):
            kernels.add_metric([state, user], n)
        yield kernels
        t = m.relay
        messages = CounterMetricFamily(f"{PREFIX}_relay_messages", "Websocket messages relayed, by direction.",
                                       labels=["direction"])
        messages.add_metric(["client_to_kernel"], t.in_messages)
        messages.add_metric(["kernel_to_client"], t.out_messages)
        yield messages
        nbytes = CounterMetricFamily(f"{PREFIX}_relay_bytes", "Websocket payload bytes relayed (text frames counted "
                                     "in characters), by direction.", labels=["direction"])
        nbytes.add_metric(["client_to_kernel"], t.in_bytes)
        nbytes.add_metric(["kernel_to_client"], t.out_bytes)
        yield nbytes
        if m.ticket_remaining is not None:
            remaining = m.ticket_remaining()
            yield GaugeMetricFamily(f"{PREFIX}_kerberos_ticket_expiry_seconds",
                                    "Seconds until the gateway's Kerberos ticket expires (0: no valid ticket).",
                                    value=max(0.0, remaining if remaining is not None else 0.0))


class GatewayMetrics:
    """See the module docstring."""

    def __init__(self, kernel_states: Optional[Callable[[], Iterable[tuple[str, str]]]] = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        #: (execution_state, user) of every held kernel; set by the kernel registry.
        self.kernel_states: Callable[[], Iterable[tuple[str, str]]] = kernel_states or (lambda: ())
        #: Seconds left on the gateway's ticket (None: no ticket); set by the app with a keytab login.
        self.ticket_remaining: Optional[Callable[[], Optional[float]]] = None
        self.relay = RelayTraffic()
        self._specs: set[str] = set()
        r = self.registry
        self.launches = Counter(f"{PREFIX}_kernel_launches", "Kernel launches, by outcome and kernelspec.",
                                ["outcome", "kernelspec"], registry=r)
        self.launch_seconds = Histogram(f"{PREFIX}_kernel_launch_seconds", "Kernel launch time, by phase.",
                                        ["phase"], buckets=LAUNCH_BUCKETS, registry=r)
        self.events = Counter(f"{PREFIX}_kernel_events", "Kernel lifecycle events.", ["event"], registry=r)
        self.rm_seconds = Histogram(f"{PREFIX}_rm_request_seconds", "ResourceManager REST call latency, by method.",
                                    ["method"], buckets=RM_BUCKETS, registry=r)
        self.rm_errors = Counter(f"{PREFIX}_rm_request_errors", "Failed ResourceManager REST calls, by method and "
                                 "kind (connection, timeout, http, api).", ["method", "kind"], registry=r)
        r.register(_ScrapeTimeCollector(self))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    # -- recording ----------------------------------------------------------------------
    def _spec_label(self, spec: str) -> str:
        if spec in self._specs:
            return spec
        if len(self._specs) >= MAX_SPEC_LABELS:
            return "other"
        self._specs.add(spec)
        return spec

    def launch_finished(self, spec: str, outcome: str, seconds: float) -> None:
        self.launches.labels(outcome, self._spec_label(spec)).inc()
        if outcome == "success":
            self.launch_seconds.labels("total").observe(seconds)

    def launch_phase(self, phase: str, seconds: float) -> None:
        self.launch_seconds.labels(phase).observe(max(0.0, seconds))

    def event(self, event: str) -> None:
        self.events.labels(event).inc()

    def observe_rm(self, method: str, seconds: float, error_kind: Optional[str]) -> None:
        """The RM client's per-call hook (``error_kind`` None for a successful call)."""
        self.rm_seconds.labels(method).observe(seconds)
        if error_kind is not None:
            self.rm_errors.labels(method, error_kind).inc()


def launch_outcome(exc: Optional[BaseException]) -> str:
    """Classify how a start request ended."""
    import asyncio

    from .errors import GatewayError

    if exc is None:
        return "success"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, GatewayError):
        if exc.status == 504:
            return "timeout"
        if 400 <= exc.status < 500:
            return "refused"
    return "failed"


def observed_start(fn: F) -> F:
    """Decorate ``KernelRegistry.start(self, caller, spec_name, ...)``: count every start
    request by outcome and kernelspec, and time the successful ones."""

    @functools.wraps(fn)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        spec = kwargs.get("spec_name", args[1] if len(args) > 1 else "")
        started = time.monotonic()
        error: Optional[BaseException] = None
        try:
            return await fn(self, *args, **kwargs)
        except BaseException as exc:
            error = exc
            raise
        finally:
            metrics: Optional[GatewayMetrics] = getattr(self, "metrics", None)
            if metrics is not None:
                metrics.launch_finished(str(spec), launch_outcome(error), time.monotonic() - started)

    return wrapper  # type: ignore[return-value]
