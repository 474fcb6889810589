"""The RM's application state machine (RMAppImpl/RMAppAttemptImpl), shared by both HA endpoints.

Sharing one ``RMCore`` between two RM endpoints stands for a recovered state store: after a
failover every application is still there with its id.

Transitions (reference/yarn_fidelity.md §2), each asynchronous step on its own loop callback
(like YARN's AsyncDispatcher), AM allocation on the scheduler "heartbeat":

NEW -> NEW_SAVING -> SUBMITTED -> ACCEPTED (attempt added to the scheduler; unknown queue:
FINAL_SAVING -> FAILED) -> AM container allocated and launched by the NodeManager (still
ACCEPTED) -> RUNNING when the AM registers -> unregister: FINAL_SAVING -> FINISHING ->
FINISHED once the AM container exited (killed after ``finishing_timeout`` if it does not).
AM container exit without unregister: a new attempt (back to ACCEPTED) while attempts remain,
else FINAL_SAVING -> FAILED. Kill: NEW -> KILLED; NEW_SAVING/SUBMITTED -> FINAL_SAVING -> KILLED;
ACCEPTED/RUNNING -> KILLING -> (container gone) FINAL_SAVING -> KILLED; FINISHING -> FINISHED.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

from yarn_gateway.minicluster.rm.apps import (
    AMSpec,
    Attempt,
    NodeInfo,
    RMApp,
    attempt_id,
    container_id,
    format_app_id,
    now_ms,
    parse_app_id,
)
from yarn_gateway.minicluster.rm.errors import RemoteError, bad_request
from yarn_gateway.minicluster.rm.scheduler import CapacityScheduler, SchedAttempt, yarn_date

log = logging.getLogger(__name__)


@dataclass
class ContainerLaunch:
    """What the NodeManager needs to start an AM container."""

    container_id: str
    app_id: str
    attempt_id: str
    user: str
    spec: AMSpec
    am_token: str
    memory: int
    vcores: int
    submit_time: int
    max_attempts: int


class NodeManagerLike(Protocol):
    def launch(self, launch: ContainerLaunch) -> None: ...

    def kill(self, container_id: str) -> None: ...


def _registration_error(message: str) -> RemoteError:
    return RemoteError(
        409, "InvalidApplicationMasterRequestException",
        "org.apache.hadoop.yarn.exceptions.InvalidApplicationMasterRequestException", message,
    )


class RMCore:
    """All applications and their transitions. Loop-only; every method is called on the loop."""

    def __init__(
        self,
        scheduler: CapacityScheduler,
        node: NodeInfo,
        *,
        max_attempts: int = 2,
        finishing_timeout: float = 10.0,
        rm_url: Callable[[], str] = lambda: "",
    ) -> None:
        self.scheduler = scheduler
        self.node = node
        self.max_attempts = max_attempts
        self.finishing_timeout = finishing_timeout
        self.rm_url = rm_url
        self.apps: dict[tuple[int, int], RMApp] = {}
        self.nm: Optional[NodeManagerLike] = None
        self._counters: dict[int, int] = {}
        self._containers: dict[str, tuple[RMApp, Attempt]] = {}
        self.apps_submitted = 0

    # -- ids and submission ---------------------------------------------------------------
    def new_application_id(self, cluster_ts: int) -> str:
        """``ClientRMService.getNewApplicationId``: per-RM counter with that RM's timestamp."""
        seq = self._counters.get(cluster_ts, 0) + 1
        self._counters[cluster_ts] = seq
        return format_app_id(cluster_ts, seq)

    def submit(
        self,
        app_id: str,
        *,
        user: str,
        name: str,
        queue: str,
        app_type: str,
        tags: list[str],
        priority: int,
        max_attempts: int,
        memory: int,
        vcores: int,
        spec: AMSpec,
        dispatch: bool = True,
    ) -> RMApp:
        """Create the application (state NEW) and start it unless ``dispatch`` is False (tests)."""
        try:
            key = parse_app_id(app_id)
        except RemoteError:
            raise bad_request(f"Could not parse application id {app_id}") from None
        if key in self.apps:
            raise bad_request(f"Application with id {app_id} is already present! Cannot add a duplicate!")
        if memory < 0 or memory > self.scheduler.node_memory or vcores < 0 or vcores > self.scheduler.node_vcores:
            # [inf] wording of SchedulerUtils.throwInvalidResourceException, shortened
            raise bad_request(
                "Invalid resource request, requested resource type=[memory-mb] < 0 or greater than maximum "
                f"allowed allocation. Requested resource=<memory:{memory}, vCores:{vcores}>, maximum allowed "
                f"allocation=<memory:{self.scheduler.node_memory}, vCores:{self.scheduler.node_vcores}>"
            )
        if max_attempts <= 0 or max_attempts > self.max_attempts:
            max_attempts = self.max_attempts  # RMAppImpl: out-of-range -> global limit
        mem, vc = self.scheduler.normalize(memory, vcores)
        app = RMApp(
            cluster_ts=key[0], seq=key[1], user=user, name=name, queue=queue or "default",
            app_type=app_type, tags=tags, priority=priority, max_attempts=max_attempts,
            am_memory=mem, am_vcores=vc, am_spec=spec, submit_time=now_ms(),
        )
        self.apps[key] = app
        self.apps_submitted += 1
        if dispatch:
            self.start(app)
        return app

    def start(self, app: RMApp) -> None:
        if app.state != "NEW":
            return
        app.state = "NEW_SAVING"
        self._soon(self._saved, app)

    def _soon(self, fn: Callable[..., None], *args: object) -> None:
        asyncio.get_running_loop().call_soon(fn, *args)

    def _saved(self, app: RMApp) -> None:
        if app.state != "NEW_SAVING":
            return
        app.state = "SUBMITTED"
        self._soon(self._accept, app)

    def _accept(self, app: RMApp) -> None:
        if app.state != "SUBMITTED":
            return
        if app.queue not in self.scheduler.queues:
            msg = f"Application {app.app_id} submitted by user {app.user} to unknown queue: {app.queue}"
            app.diagnostics = msg
            self._final_saving(app, "FAILED")
            return
        app.state = "ACCEPTED"
        self._new_attempt(app)

    def _new_attempt(self, app: RMApp) -> None:
        n = len(app.attempts) + 1
        att = Attempt(
            number=n, attempt_id=attempt_id(app.cluster_ts, app.seq, n), start_time=now_ms(),
            token=secrets.token_urlsafe(32),
        )
        app.attempts.append(att)
        sa = SchedAttempt(key=att.attempt_id, user=app.user, queue=app.queue, memory=app.am_memory,
                          vcores=app.am_vcores)
        self.scheduler.add_attempt(sa)
        att.diagnostics = sa.diagnostics

    # -- heartbeat ------------------------------------------------------------------------
    def heartbeat(self) -> None:
        """One NodeManager heartbeat: allocate AM containers and refresh AMState diagnostics."""
        granted = {a.key for a in self.scheduler.allocate()}
        for app in self.apps.values():
            att = app.current_attempt
            if att is None or not att.in_scheduler or app.state not in ("ACCEPTED", "KILLING"):
                continue
            sa = self.scheduler.get(att.attempt_id)
            if att.attempt_id in granted and app.state == "ACCEPTED" and sa is not None:
                att.node = self.node
                att.container_id = container_id(app.cluster_ts, app.seq, att.number, 1)
                self._containers[att.container_id] = (app, att)
                att.diagnostics = sa.diagnostics
                if self.nm is not None:
                    self.nm.launch(ContainerLaunch(
                        container_id=att.container_id, app_id=app.app_id, attempt_id=att.attempt_id,
                        user=app.user, spec=app.am_spec, am_token=att.token, memory=app.am_memory,
                        vcores=app.am_vcores, submit_time=app.submit_time, max_attempts=app.max_attempts,
                    ))
            elif sa is not None and att.node is None:
                att.diagnostics = sa.diagnostics

    async def run(self, interval: float) -> None:
        """The scheduling loop; cancelled by the cluster at stop."""
        while True:
            try:
                self.heartbeat()
            except Exception:
                log.exception("minicluster scheduler heartbeat failed")
            await asyncio.sleep(interval)

    # -- NodeManager callbacks ------------------------------------------------------------
    def container_launched(self, cid: str) -> None:
        found = self._containers.get(cid)
        if found is None:
            return
        app, att = found
        att.launched = True
        att.container_start = now_ms()
        app.launch_time = att.container_start
        if not att.registered:
            att.diagnostics = (
                f"[{yarn_date()}] AM container is launched, waiting for AM container to Register with RM"
            )

    def container_exited(self, cid: str, exit_code: int, detail: str = "") -> None:
        """The AM container is gone (exit, kill or launch failure); ``detail`` = stderr tail etc."""
        found = self._containers.get(cid)
        if found is None:
            return
        app, att = found
        if att.container_end:
            return
        att.container_end = now_ms()
        att.exit_code = exit_code
        self._leave_scheduler(att)
        if app.current_attempt is not att:
            return
        if app.state == "KILLING":
            self._final_saving(app, "KILLED")
        elif app.state == "FINISHING":
            self._finish(app, "FINISHED")
        elif att.unregistered:
            pass  # still FINAL_SAVING: _finishing() completes it
        elif app.state in ("ACCEPTED", "RUNNING"):
            self._attempt_failed(app, att, exit_code, detail)

    def _leave_scheduler(self, att: Attempt) -> None:
        if att.in_scheduler:
            att.in_scheduler = False
            att.finish_time = now_ms()
            self.scheduler.remove_attempt(att.attempt_id)

    def _attempt_failed(self, app: RMApp, att: Attempt, exit_code: int, detail: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
        track = f"http://{self.rm_url().split('://', 1)[-1]}/cluster/app/{app.app_id}"
        # [src RMAppAttemptImpl.getAMContainerCrashedDiagnostics, container part inf]
        launch = ""
        if exit_code != 0:  # [inf] a zero exit without unregister has no container-launch exception
            launch = (f"[{stamp}]Exception from container-launch.\n"
                      f"Container id: {att.container_id}\nExit code: {exit_code}\n")
        att.diagnostics = (
            f"AM Container for {att.attempt_id} exited with  exitCode: {exit_code}\n"
            f"Failing this attempt.Diagnostics: {launch}{detail}"
            f"For more detailed output, check the application tracking page: {track} "
            "Then click on links to logs of each attempt.\n"
        )
        if len(app.attempts) < app.max_attempts:
            app.state = "ACCEPTED"
            self._new_attempt(app)
            return
        limits = ""
        if app.max_attempts != self.max_attempts:
            limits = f" (global limit ={self.max_attempts}; local limit is ={app.max_attempts})"
        app.diagnostics = (
            f"Application {app.app_id} failed {app.max_attempts} times{limits} due to {att.diagnostics}"
            ". Failing the application."
        )
        self._final_saving(app, "FAILED")

    def _final_saving(self, app: RMApp, target: str) -> None:
        app.state_before_final_saving = app.state
        app.state = "FINAL_SAVING"
        app.stored_finish_time = now_ms()
        self._soon(self._final_saved, app, target)

    def _final_saved(self, app: RMApp, target: str) -> None:
        if app.state != "FINAL_SAVING":
            return
        if target == "FINISHING":
            app.state = "FINISHING"
            att = app.current_attempt
            if att is None or att.container_end or att.node is None:
                if att is not None:
                    self._leave_scheduler(att)
                self._finish(app, "FINISHED")
            else:
                asyncio.get_running_loop().call_later(self.finishing_timeout, self._finishing_expired, app)
            return
        self._finish(app, target)

    def _finishing_expired(self, app: RMApp) -> None:
        att = app.current_attempt
        if app.state == "FINISHING" and att is not None and not att.container_end and self.nm is not None:
            self.nm.kill(att.container_id)

    def _finish(self, app: RMApp, state: str) -> None:
        att = app.current_attempt
        if att is not None:
            self._leave_scheduler(att)
        app.state = state
        app.finish_time = app.stored_finish_time or now_ms()

    # -- kill -----------------------------------------------------------------------------
    def kill(self, app: RMApp, user: str, diagnostics: str = "") -> bool:
        """``ClientRMService.forceKillApplication``; True when the kill is already complete."""
        if app.state in ("FINISHING", "FINISHED", "FAILED", "KILLED"):
            return True
        if app.state in ("KILLING", "FINAL_SAVING"):
            return False
        msg = f"Application {app.app_id} was killed by user {user}"
        if diagnostics:
            msg += f" with diagnostic message: {diagnostics}"
        app.diagnostics = msg
        if app.state == "NEW":
            app.state_before_final_saving = "NEW"
            app.stored_finish_time = now_ms()
            self._finish(app, "KILLED")
            return False
        if app.state in ("NEW_SAVING", "SUBMITTED"):
            self._final_saving(app, "KILLED")
            return False
        app.state_before_killing = app.state
        app.state = "KILLING"
        att = app.current_attempt
        if att is not None and att.node is not None and not att.container_end and self.nm is not None:
            self.nm.kill(att.container_id)
        else:
            self._soon(self._attempt_killed, app)
        return False

    def _attempt_killed(self, app: RMApp) -> None:
        if app.state != "KILLING":
            return
        att = app.current_attempt
        if att is not None:
            self._leave_scheduler(att)
        self._final_saving(app, "KILLED")

    # -- AM protocol (private minicluster endpoints) --------------------------------------
    def _am_attempt(self, app: RMApp, token: str) -> Attempt:
        att = app.current_attempt
        if att is None or not secrets.compare_digest(att.token.encode(), token.encode()):
            raise RemoteError(
                403, "InvalidToken", "org.apache.hadoop.security.token.SecretManager$InvalidToken",
                f"Invalid AMRMToken for {app.app_id}",
            )
        return att

    def register(self, app: RMApp, token: str, host: str, rpc_port: int) -> Attempt:
        """``registerApplicationMaster``: ACCEPTED -> RUNNING."""
        att = self._am_attempt(app, token)
        if att.registered:
            raise _registration_error(f"Application Master is already registered : {app.app_id}")
        if app.state != "ACCEPTED" or att.node is None:
            raise _registration_error(f"Application {app.app_id} is in state {app.state}; cannot register")
        att.registered = True
        att.host = host
        att.rpc_port = rpc_port
        att.progress = 0.1  # Spark's AM reports 0.1 -> progress 10.0
        att.diagnostics = ""
        app.state = "RUNNING"
        return att

    def unregister(self, app: RMApp, token: str, final_status: str, diagnostics: str) -> Attempt:
        """``finishApplicationMaster``: RUNNING -> FINAL_SAVING -> FINISHING (-> FINISHED on exit)."""
        att = self._am_attempt(app, token)
        if final_status not in ("SUCCEEDED", "FAILED", "KILLED"):
            raise bad_request(f"Invalid finalStatus {final_status}")
        if not att.registered:
            raise _registration_error(
                f"Application Master is trying to unregister before registering for: {att.attempt_id}"
            )
        if att.unregistered:
            return att
        if app.state != "RUNNING":
            raise _registration_error(f"Application {app.app_id} is in state {app.state}; cannot unregister")
        att.unregistered = True
        att.final_status = final_status
        att.progress = 1.0
        app.diagnostics = diagnostics
        self._final_saving(app, "FINISHING")
        return att

    # -- metrics --------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        states = [a.yarn_state() for a in self.apps.values()]
        return {
            "appsSubmitted": self.apps_submitted,
            "appsCompleted": sum(1 for s in states if s in ("FINISHED", "FAILED", "KILLED")),
            "appsPending": sum(1 for s in states if s == "ACCEPTED"),
            "appsRunning": sum(1 for s in states if s == "RUNNING"),
            "appsFailed": sum(1 for s in states if s == "FAILED"),
            "appsKilled": sum(1 for s in states if s == "KILLED"),
        }

    def live_containers(self) -> list[str]:
        return [cid for cid, (_, att) in self._containers.items() if not att.container_end]
