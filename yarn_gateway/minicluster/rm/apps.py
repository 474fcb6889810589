"""Application and attempt records of the minicluster RM and their REST JSON (Hadoop 3.3 AppInfo).

Presence rules follow reference/yarn_fidelity.md §1.5: null fields are omitted, usage fields are
-1 once the attempt has left the scheduler (finished apps), ``trackingUrl`` only outside
NEW..ACCEPTED, ``amHostHttpAddress``/``amContainerLogs`` once the AM container is allocated,
``amRPCAddress`` once the AM registered.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from yarn_gateway.minicluster.rm.errors import RemoteError, bad_request_from_illegal_argument, not_found

YARN_APP_STATES = ["NEW", "NEW_SAVING", "SUBMITTED", "ACCEPTED", "RUNNING", "FINISHED", "FAILED", "KILLED"]
FINAL_STATES = frozenset({"FINISHED", "FAILED", "KILLED"})
FINAL_STATUSES = ["UNDEFINED", "SUCCEEDED", "FAILED", "KILLED", "ENDED"]
DESELECT_TYPES = {
    # DeSelectFields.DeSelectType: enum name -> query literal
    "RESOURCE_REQUESTS": "resourceRequests",
    "TIMEOUTS": "timeouts",
    "APP_NODE_LABEL_EXPRESSION": "appNodeLabelExpression",
    "AM_NODE_LABEL_EXPRESSION": "amNodeLabelExpression",
    "RESOURCE_INFO": "resourceInfo",
}
_NUM = re.compile(r"^[+-]?\d+$")


def now_ms() -> int:
    return int(time.time() * 1000)


def format_app_id(cluster_ts: int, seq: int) -> str:
    return f"application_{cluster_ts}_{seq:04d}"


def parse_app_id(text: str) -> tuple[int, int]:
    """``ApplicationId.fromString``; raises the 400 RemoteError YARN gives for bad ids."""
    if not text.startswith("application_"):
        raise bad_request_from_illegal_argument(
            f"Invalid ApplicationId prefix: {text}. The valid ApplicationId should start with prefix application"
        )
    parts = text[len("application_"):].split("_", 1)
    if len(parts) != 2 or not _NUM.match(parts[0]) or not _NUM.match(parts[1]):
        raise bad_request_from_illegal_argument(f"Invalid ApplicationId: {text}")
    return int(parts[0]), int(parts[1])


def container_id(cluster_ts: int, seq: int, attempt: int, num: int) -> str:
    return f"container_{cluster_ts}_{seq:04d}_{attempt:02d}_{num:06d}"


def attempt_id(cluster_ts: int, seq: int, attempt: int) -> str:
    return f"appattempt_{cluster_ts}_{seq:04d}_{attempt:06d}"


@dataclass
class NodeInfo:
    """The one node of the minicluster as the RM reports it."""

    host: str
    http_port: int
    rpc_port: int

    @property
    def http_address(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def node_id(self) -> str:
        return f"{self.host}:{self.rpc_port}"


@dataclass
class AMSpec:
    """The ``am-container-spec`` of a submission, already parsed."""

    local_resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    command: str = ""


@dataclass
class Attempt:
    """One application attempt (RMAppAttempt) and its AM container."""

    number: int
    attempt_id: str
    start_time: int
    token: str
    finish_time: int = 0
    container_id: str = ""
    node: Optional[NodeInfo] = None  # set once the AM container is allocated
    launched: bool = False
    registered: bool = False
    unregistered: bool = False
    host: str = "N/A"
    rpc_port: int = -1
    progress: float = 0.0
    final_status: Optional[str] = None  # what the AM reported at unregister
    in_scheduler: bool = True
    container_start: int = 0
    container_end: int = 0
    exit_code: Optional[int] = None
    diagnostics: str = ""


@dataclass
class RMApp:
    """One application (RMAppImpl). ``state`` is the raw RMAppState."""

    cluster_ts: int
    seq: int
    user: str
    name: str
    queue: str
    app_type: str
    tags: list[str]
    priority: int
    max_attempts: int
    am_memory: int  # normalized (scheduler rounding already applied)
    am_vcores: int
    am_spec: AMSpec
    submit_time: int
    state: str = "NEW"
    state_before_final_saving: str = "NEW"
    state_before_killing: str = "NEW"
    launch_time: int = 0
    finish_time: int = 0
    stored_finish_time: int = 0
    diagnostics: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    node_label_expression: Optional[str] = None

    @property
    def app_id(self) -> str:
        return format_app_id(self.cluster_ts, self.seq)

    @property
    def current_attempt(self) -> Optional[Attempt]:
        return self.attempts[-1] if self.attempts else None

    def yarn_state(self) -> str:
        """``RMAppImpl.createApplicationState``: hide FINAL_SAVING, KILLING and FINISHING."""
        state = self.state
        if state == "FINAL_SAVING":
            state = self.state_before_final_saving
        if state == "KILLING":
            state = self.state_before_killing
        return "FINISHED" if state == "FINISHING" else state

    def final_status(self) -> str:
        attempt = self.current_attempt
        if attempt is not None and attempt.final_status is not None:
            return attempt.final_status
        if self.state in ("FINISHING", "FINISHED", "FAILED"):
            return "FAILED"
        return "KILLED" if self.state == "KILLED" else "UNDEFINED"

    def is_completed(self) -> bool:
        return self.state in FINAL_STATES


def lookup_app(apps: dict[tuple[int, int], RMApp], app_id: str) -> RMApp:
    """``RMWebServices.getRMAppForAppId``: 400 for malformed ids, 404 for unknown ones."""
    if not app_id:
        raise not_found(f"appId, {app_id}, is empty or null")
    key = parse_app_id(app_id)
    app = apps.get(key)
    if app is None:
        raise not_found(f"app with id: {app_id} not found")
    return app


def _res(memory: int, vcores: int) -> dict[str, int]:
    return {"memory": memory, "vCores": vcores}


def _seconds_map(mem_s: int, vc_s: int) -> dict[str, Any]:
    # Map<String,Long> in JAXB natural JSON: {"entry":[{"key","value"}]}, values are strings.
    if mem_s == 0 and vc_s == 0:
        return {}
    return {"entry": [{"key": "memory-mb", "value": str(mem_s)}, {"key": "vcores", "value": str(vc_s)}]}


def usage_seconds(app: RMApp, at: int) -> tuple[int, int]:
    """(memorySeconds, vcoreSeconds) over all AM containers so far."""
    mem = vc = 0
    for att in app.attempts:
        if att.container_start:
            end = att.container_end or at
            secs = max(0, end - att.container_start) // 1000
            mem += secs * app.am_memory
            vc += secs * app.am_vcores
    return mem, vc


@dataclass
class RenderContext:
    """What rendering needs from the cluster (the serving RM, the queue and cluster sizes)."""

    rm_cluster_ts: int
    rm_webapp_address: str  # host:port of the serving RM, for the proxy tracking URL
    cluster_memory: int
    queue_memory: dict[str, int]  # queue name -> absolute capacity in MB
    am_limits: dict[str, tuple[int, int]]  # queue name -> (memory, vcores) AM limit


def render_app(app: RMApp, ctx: RenderContext, deselects: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The ``app`` object of ``/ws/v1/cluster/apps[/{id}]`` (AppInfo, 3.3 field order)."""
    now = now_ms()
    state = app.yarn_state()
    attempt = app.current_attempt
    tracking_ready = attempt is not None and state not in ("NEW", "NEW_SAVING", "SUBMITTED", "ACCEPTED")
    out: dict[str, Any] = {
        "id": app.app_id,
        "user": app.user,
        "name": app.name,
        "queue": app.queue,
        "state": state,
        "finalStatus": app.final_status(),
        "progress": float(attempt.progress * 100.0) if attempt else 0.0,
        "trackingUI": (
            "UNASSIGNED" if not tracking_ready else ("ApplicationMaster" if app.finish_time == 0 else "History")
        ),
    }
    if tracking_ready:
        out["trackingUrl"] = f"http://{ctx.rm_webapp_address}/proxy/{app.app_id}/"
    elapsed = 0
    if app.submit_time > 0:
        elapsed = (app.finish_time or now) - app.submit_time
    out.update({
        # RMAppImpl.getDiagnostics: the attempt's (AMState) diagnostics while the app has none
        "diagnostics": app.diagnostics or (attempt.diagnostics if attempt is not None else ""),
        "clusterId": ctx.rm_cluster_ts,
        "applicationType": app.app_type,
        "applicationTags": ",".join(app.tags),
        "priority": app.priority,
        "startedTime": app.submit_time,
        "launchTime": app.launch_time,
        "finishedTime": app.finish_time,
        "elapsedTime": elapsed,
    })
    if attempt is not None and attempt.node is not None:
        out["amContainerLogs"] = (
            f"http://{attempt.node.http_address}/node/containerlogs/{attempt.container_id}/{app.user}"
        )
        out["amHostHttpAddress"] = attempt.node.http_address
    if attempt is not None and attempt.host != "N/A" and attempt.rpc_port != -1:
        out["amRPCAddress"] = f"{attempt.host}:{attempt.rpc_port}"
    out["masterNodeId"] = attempt.node.node_id if attempt is not None and attempt.node else ""
    alloc_mb = alloc_vc = running = 0
    queue_pct = cluster_pct = 0.0
    if attempt is not None:
        if not attempt.in_scheduler:
            # RMServerUtils.DUMMY_APPLICATION_RESOURCE_USAGE_REPORT once the attempt left the scheduler
            alloc_mb = alloc_vc = running = -1
        elif attempt.node is not None and attempt.container_end == 0:
            alloc_mb, alloc_vc, running = app.am_memory, app.am_vcores, 1
            qmem = ctx.queue_memory.get(app.queue) or 1
            queue_pct = alloc_mb * 100.0 / qmem
            cluster_pct = alloc_mb * 100.0 / (ctx.cluster_memory or 1)
    mem_s, vc_s = usage_seconds(app, now)
    out.update({
        "allocatedMB": alloc_mb,
        "allocatedVCores": alloc_vc,
        "reservedMB": -1 if alloc_mb == -1 else 0,
        "reservedVCores": -1 if alloc_mb == -1 else 0,
        "runningContainers": running,
        "memorySeconds": mem_s,
        "vcoreSeconds": vc_s,
        "queueUsagePercentage": queue_pct,
        "clusterUsagePercentage": cluster_pct,
        "resourceSecondsMap": _seconds_map(mem_s, vc_s),
        "preemptedResourceMB": 0,
        "preemptedResourceVCores": 0,
        "numNonAMContainerPreempted": 0,
        "numAMContainerPreempted": 0,
        "preemptedMemorySeconds": 0,
        "preemptedVcoreSeconds": 0,
        "preemptedResourceSecondsMap": {},
    })
    pending_am = attempt is not None and attempt.in_scheduler and attempt.node is None
    if pending_am and "resourceRequests" not in deselects:
        # Shape of the 3.3 documentation's example (capability.virtualCores, priority.priority).
        out["resourceRequests"] = [{
            "capability": {"memory": app.am_memory, "virtualCores": app.am_vcores},
            "nodeLabelExpression": "",
            "numContainers": 1,
            "priority": {"priority": 0},
            "relaxLocality": True,
            "resourceName": "*",
        }]
    out["logAggregationStatus"] = "DISABLED"  # yarn.log-aggregation-enable defaults to false
    out["unmanagedApplication"] = False
    if app.node_label_expression is not None and "appNodeLabelExpression" not in deselects:
        out["appNodeLabelExpression"] = app.node_label_expression
    if "amNodeLabelExpression" not in deselects:
        out["amNodeLabelExpression"] = ""
    if attempt is not None and attempt.in_scheduler and "resourceInfo" not in deselects:
        used = _res(alloc_mb, alloc_vc) if attempt.node is not None else _res(0, 0)
        pending = _res(0, 0) if attempt.node is not None else _res(app.am_memory, app.am_vcores)
        limit_mb, limit_vc = ctx.am_limits.get(app.queue, (0, 0))
        out["resourceInfo"] = {"resourceUsagesByPartition": [{
            "partitionName": "",
            "used": used,
            "reserved": _res(0, 0),
            "pending": pending,
            "amUsed": used,
            "amLimit": _res(limit_mb, limit_vc),
            "userAmLimit": _res(limit_mb, limit_vc),
        }]}
    if "timeouts" not in deselects:
        out["timeouts"] = {"timeout": [{"type": "LIFETIME", "expiryTime": "UNLIMITED", "remainingTimeInSeconds": -1}]}
    return out


def render_attempt(app: RMApp, attempt: Attempt) -> dict[str, Any]:
    """One ``appAttempt`` of ``/apps/{id}/appattempts`` (AppAttemptInfo, 3.3)."""
    node = attempt.node
    logs = (
        f"http://{node.http_address}/node/containerlogs/{attempt.container_id}/{app.user}" if node else ""
    )
    return {
        "id": attempt.number,
        "startTime": attempt.start_time,
        "finishedTime": attempt.finish_time,
        "containerId": attempt.container_id if node else "",
        "nodeHttpAddress": node.http_address if node else "",
        "nodeId": node.node_id if node else "",
        "logsLink": logs,
        "blacklistedNodes": "",
        "nodesBlacklistedBySystem": "",
        "appAttemptId": attempt.attempt_id,
        "exportPorts": "null",  # [src AppAttemptInfo 3.3] a literal "null" string when none
    }


def check_deselects(values: list[str]) -> frozenset[str]:
    """``DeSelectFields.initFields``: case-insensitive literals, 400 for unknown ones."""
    found: set[str] = set()
    literals = {v.lower(): v for v in DESELECT_TYPES.values()}
    for raw in values:
        for lit in raw.split(","):
            lit = lit.strip()
            if not lit:
                continue
            if lit.lower() not in literals:
                names = ", ".join(DESELECT_TYPES)
                raise RemoteError(
                    400, "BadRequestException", "org.apache.hadoop.yarn.webapp.BadRequestException",
                    f"java.lang.Exception: Invalid deSelects string {lit} specified. It should be one of [{names}]",
                )
            found.add(literals[lit.lower()])
    return frozenset(found)
