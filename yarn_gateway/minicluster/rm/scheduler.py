"""A small CapacityScheduler: flat leaf queues under ``root``, AM limits, AM diagnostics.

What it models (reference/yarn_fidelity.md §1.3, §7):

- each leaf queue has a capacity (% of the cluster), a maximum capacity and
  ``maximum-am-resource-percent`` (YARN default 0.1);
- AM limit = queue capacity * AM percent, normalized *up* to the minimum allocation
  (``multiplyAndNormalizeUp`` with the DefaultResourceCalculator: memory decides);
- an attempt is *activated* when its AM fits the queue's AM limit; as in
  ``LeafQueue.activateApplications`` the first application of a queue is always activated
  ("skipping enforcement to allow at least one application to start");
- an activated attempt gets its AM container when the node has room and the queue stays
  within its maximum capacity (one node, so one "heartbeat" allocates all that fit, in order);
- the attempt diagnostics are YARN's AMState texts with YARN's ``[EEE MMM dd HH:mm:ss Z yyyy] ``
  prefix.
Not modelled (documented guesses): user limits beyond the queue AM limit, node labels,
reservations, preemption, parent queues, queue ACLs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class QueueConfig:
    """One leaf queue under root. Capacities are percentages, ``max_am_resource_percent`` a fraction."""

    name: str
    capacity: float = 100.0
    maximum_capacity: float = 100.0
    max_am_resource_percent: float = 0.1

    @classmethod
    def from_any(cls, value: Any) -> QueueConfig:
        """Accept a QueueConfig, a name, or a dict with these keys (or Hadoop's hyphenated ones)."""
        if isinstance(value, QueueConfig):
            return value
        if isinstance(value, str):
            return cls(name=value)
        d = {k.replace("-", "_"): v for k, v in dict(value).items()}
        if "maximum_am_resource_percent" in d:
            d["max_am_resource_percent"] = d.pop("maximum_am_resource_percent")
        return cls(
            name=str(d["name"]),
            capacity=float(d.get("capacity", 100.0)),
            maximum_capacity=float(d.get("maximum_capacity", 100.0)),
            max_am_resource_percent=float(d.get("max_am_resource_percent", 0.1)),
        )


def yarn_date(at: Optional[float] = None) -> str:
    """Java's ``EEE MMM dd HH:mm:ss Z yyyy`` in local time, e.g. ``Mon Sep 02 22:56:41 +0800 2019``."""
    return time.strftime("%a %b %d %H:%M:%S %z %Y", time.localtime(at if at is not None else time.time()))


def res_str(memory: int, vcores: int) -> str:
    return f"<memory:{memory}, vCores:{vcores}>"


@dataclass
class SchedAttempt:
    """An attempt as the scheduler sees it."""

    key: str
    user: str
    queue: str
    memory: int
    vcores: int
    activated: bool = False
    allocated: bool = False
    diagnostics: str = ""


@dataclass
class LeafQueue:
    conf: QueueConfig
    attempts: list[SchedAttempt] = field(default_factory=list)  # in submission order

    @property
    def name(self) -> str:
        return self.conf.name


class CapacityScheduler:
    """Queues, one node's resources and the AM bookkeeping. Not thread-safe: loop only."""

    def __init__(
        self,
        queues: list[QueueConfig],
        node_memory_mb: int,
        node_vcores: int,
        min_allocation_mb: int = 1024,
        min_allocation_vcores: int = 1,
    ) -> None:
        if not queues:
            raise ValueError("at least one queue is needed")
        self.queues: dict[str, LeafQueue] = {q.name: LeafQueue(q) for q in queues}
        self.node_memory = node_memory_mb
        self.node_vcores = node_vcores
        self.min_mb = min_allocation_mb
        self.min_vcores = min_allocation_vcores

    # -- resources -------------------------------------------------------------------------
    def normalize(self, memory: int, vcores: int) -> tuple[int, int]:
        """Round a request up to multiples of the minimum allocation (1408 MB -> 2048 MB)."""
        mem = max(self.min_mb, math.ceil(max(memory, 1) / self.min_mb) * self.min_mb)
        vc = max(self.min_vcores, math.ceil(max(vcores, 1) / self.min_vcores) * self.min_vcores)
        return mem, vc

    def queue_capacity(self, q: LeafQueue) -> tuple[int, int]:
        return int(self.node_memory * q.conf.capacity / 100.0), int(self.node_vcores * q.conf.capacity / 100.0)

    def queue_max(self, q: LeafQueue) -> tuple[int, int]:
        mc = q.conf.maximum_capacity / 100.0
        return int(self.node_memory * mc), int(self.node_vcores * mc)

    def am_limit(self, q: LeafQueue) -> tuple[int, int]:
        pct = q.conf.max_am_resource_percent
        mem = math.ceil(self.node_memory * q.conf.capacity / 100.0 * pct / self.min_mb) * self.min_mb
        vc = math.ceil(self.node_vcores * q.conf.capacity / 100.0 * pct / self.min_vcores) * self.min_vcores
        return mem, vc

    def used(self, q: Optional[LeafQueue] = None) -> tuple[int, int]:
        qs = [q] if q is not None else list(self.queues.values())
        mem = sum(a.memory for x in qs for a in x.attempts if a.allocated)
        vc = sum(a.vcores for x in qs for a in x.attempts if a.allocated)
        return mem, vc

    def am_used(self, q: LeafQueue) -> tuple[int, int]:
        # AM usage counts activated attempts (LeafQueue adds the AM to amUsed on activation).
        return sum(a.memory for a in q.attempts if a.activated), sum(a.vcores for a in q.attempts if a.activated)

    def pending(self) -> tuple[int, int, int]:
        """(memory, vcores, containers) of AM requests not yet allocated."""
        waiting = [a for q in self.queues.values() for a in q.attempts if not a.allocated]
        return sum(a.memory for a in waiting), sum(a.vcores for a in waiting), len(waiting)

    # -- attempts --------------------------------------------------------------------------
    def add_attempt(self, attempt: SchedAttempt) -> None:
        """Add a new attempt to its (existing) queue and try to activate it at once, like YARN."""
        self.queues[attempt.queue].attempts.append(attempt)
        self._activate(self.queues[attempt.queue])

    def remove_attempt(self, key: str) -> None:
        for q in self.queues.values():
            for a in q.attempts:
                if a.key == key:
                    q.attempts.remove(a)
                    self._activate(q)
                    return

    def get(self, key: str) -> Optional[SchedAttempt]:
        for q in self.queues.values():
            for a in q.attempts:
                if a.key == key:
                    return a
        return None

    def _activate(self, q: LeafQueue) -> None:
        limit_mb, limit_vc = self.am_limit(q)
        for a in q.attempts:
            if a.activated:
                continue
            used_mb, used_vc = self.am_used(q)
            active = sum(1 for x in q.attempts if x.activated)
            if used_mb + a.memory > limit_mb and active > 0:
                a.diagnostics = (
                    f"[{yarn_date()}] Application is added to the scheduler and is not yet activated. "
                    "Queue's AM resource limit exceeded.  Details : AM Partition = <DEFAULT_PARTITION>; "
                    f"AM Resource Request = {res_str(a.memory, a.vcores)}; "
                    f"Queue Resource Limit for AM = {res_str(limit_mb, limit_vc)}; "
                    f"User AM Resource Limit of the queue = {res_str(limit_mb, limit_vc)}; "
                    f"Queue AM Resource Usage = {res_str(used_mb, used_vc)}; "
                )
                continue
            a.activated = True
            a.diagnostics = self._activated_text(q)

    def _activated_text(self, q: LeafQueue) -> str:
        cap_mb, cap_vc = self.queue_capacity(q)
        max_mb, max_vc = self.queue_max(q)
        used_mb, used_vc = self.used(q)
        abs_used = used_mb * 100.0 / (self.node_memory or 1)
        return (
            f"[{yarn_date()}] Application is Activated, waiting for resources to be assigned for AM.  "
            "Details : AM Partition = <DEFAULT_PARTITION> ; "
            f"Partition Resource = {res_str(self.node_memory, self.node_vcores)} ; "
            f"Queue's Absolute capacity = {q.conf.capacity:.1f} % ; "
            f"Queue's Absolute used capacity = {abs_used:.1f} % ; "
            f"Queue's Absolute max capacity = {q.conf.maximum_capacity:.1f} % ; "
            f"Queue's capacity (absolute resource) = {res_str(cap_mb, cap_vc)} ; "
            f"Queue's used capacity (absolute resource) = {res_str(used_mb, used_vc)} ; "
            f"Queue's max capacity (absolute resource) = {res_str(max_mb, max_vc)} ; "
        )

    def allocate(self) -> list[SchedAttempt]:
        """One node heartbeat: give AM containers to activated attempts that fit, in order."""
        granted: list[SchedAttempt] = []
        for q in self.queues.values():
            self._activate(q)
            for a in q.attempts:
                if not a.activated or a.allocated:
                    continue
                used_mb, used_vc = self.used()
                q_mb, _ = self.used(q)
                max_mb, _ = self.queue_max(q)
                fits_node = used_mb + a.memory <= self.node_memory and used_vc + a.vcores <= self.node_vcores
                if fits_node and q_mb + a.memory <= max_mb:
                    a.allocated = True
                    a.diagnostics = (
                        f"[{yarn_date()}] Scheduler has assigned a container for AM, "
                        "waiting for AM container to be launched"
                    )
                    granted.append(a)
                else:
                    a.diagnostics = self._activated_text(q)
        return granted

    # -- REST ------------------------------------------------------------------------------
    def _partition_caps(self, q: LeafQueue) -> dict[str, Any]:
        used_mb, _ = self.used(q)
        cap_mb, _ = self.queue_capacity(q)
        return {
            "partitionName": "",
            "capacity": q.conf.capacity,
            "usedCapacity": used_mb * 100.0 / cap_mb if cap_mb else 0.0,
            "maxCapacity": q.conf.maximum_capacity,
            "absoluteCapacity": q.conf.capacity,
            "absoluteUsedCapacity": used_mb * 100.0 / (self.node_memory or 1),
            "absoluteMaxCapacity": q.conf.maximum_capacity,
            "maxAMLimitPercentage": q.conf.max_am_resource_percent * 100.0,
        }

    def render_queue(self, q: LeafQueue) -> dict[str, Any]:
        used_mb, used_vc = self.used(q)
        am_mb, am_vc = self.am_limit(q)
        amu_mb, amu_vc = self.am_used(q)
        caps = self._partition_caps(q)
        pend = [a for a in q.attempts if not a.allocated]
        active = [a for a in q.attempts if a.activated]
        users: dict[str, dict[str, Any]] = {}
        for a in q.attempts:
            u = users.setdefault(a.user, {
                "username": a.user, "resourcesUsed": {"memory": 0, "vCores": 0},
                "numActiveApplications": 0, "numPendingApplications": 0,
                "AMResourceUsed": {"memory": 0, "vCores": 0},
                "userResourceLimit": {"memory": self.queue_max(q)[0], "vCores": self.queue_max(q)[1]},
            })
            if a.activated:
                u["numActiveApplications"] += 1
                u["AMResourceUsed"]["memory"] += a.memory
                u["AMResourceUsed"]["vCores"] += a.vcores
            else:
                u["numPendingApplications"] += 1
            if a.allocated:
                u["resourcesUsed"]["memory"] += a.memory
                u["resourcesUsed"]["vCores"] += a.vcores
        zero = {"memory": 0, "vCores": 0}
        return {
            "type": "capacitySchedulerLeafQueueInfo",
            "queuePath": f"root.{q.name}",
            "capacity": q.conf.capacity,
            "usedCapacity": caps["usedCapacity"],
            "maxCapacity": q.conf.maximum_capacity,
            "absoluteCapacity": q.conf.capacity,
            "absoluteMaxCapacity": q.conf.maximum_capacity,
            "absoluteUsedCapacity": caps["absoluteUsedCapacity"],
            "numApplications": len(q.attempts),
            "usedResources": res_str(used_mb, used_vc),
            "queueName": q.name,
            "state": "RUNNING",
            "resourcesUsed": {"memory": used_mb, "vCores": used_vc},
            "hideReservationQueues": False,
            "nodeLabels": ["*"],
            "allocatedContainers": sum(1 for a in q.attempts if a.allocated),
            "reservedContainers": 0,
            "pendingContainers": len(pend),
            "capacities": {"queueCapacitiesByPartition": [caps]},
            "resources": {"resourceUsagesByPartition": [{
                "partitionName": "", "used": {"memory": used_mb, "vCores": used_vc}, "reserved": zero,
                "pending": {"memory": sum(a.memory for a in pend), "vCores": sum(a.vcores for a in pend)},
                "amUsed": {"memory": amu_mb, "vCores": amu_vc}, "amLimit": {"memory": am_mb, "vCores": am_vc},
            }]},
            "numActiveApplications": len(active),
            "numPendingApplications": len(q.attempts) - len(active),
            "numContainers": sum(1 for a in q.attempts if a.allocated),
            "maxApplications": int(10000 * q.conf.capacity / 100.0),
            "maxApplicationsPerUser": int(10000 * q.conf.capacity / 100.0),
            "userLimit": 100,
            "users": {"user": list(users.values())} if users else None,
            "userLimitFactor": 1.0,
            "AMResourceLimit": {"memory": am_mb, "vCores": am_vc},
            "usedAMResource": {"memory": amu_mb, "vCores": amu_vc},
            "userAMResourceLimit": {"memory": am_mb, "vCores": am_vc},
            "preemptionDisabled": True,
            "defaultPriority": 0,
        }

    def render(self) -> dict[str, Any]:
        """``{"scheduler":{"schedulerInfo":...}}`` for ``/ws/v1/cluster/scheduler``."""
        used_mb, _ = self.used()
        used_pct = used_mb * 100.0 / (self.node_memory or 1)
        return {"scheduler": {"schedulerInfo": {
            "type": "capacityScheduler",
            "capacity": 100.0,
            "usedCapacity": used_pct,
            "maxCapacity": 100.0,
            "queueName": "root",
            "queues": {"queue": [self.render_queue(q) for q in self.queues.values()]},
            "capacities": {"queueCapacitiesByPartition": [{
                "partitionName": "", "capacity": 100.0, "usedCapacity": used_pct, "maxCapacity": 100.0,
                "absoluteCapacity": 100.0, "absoluteUsedCapacity": used_pct, "absoluteMaxCapacity": 100.0,
                "maxAMLimitPercentage": 0.0,
            }]},
            "health": {"lastrun": int(time.time() * 1000), "operationsInfo": [], "lastRunDetails": []},
        }}}
