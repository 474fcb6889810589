"""Tornado handlers of one RM endpoint: Hadoop 3.3 RM REST v1 plus the minicluster's private API.

Public (Hadoop): ``/ws/v1/cluster[/info|/cluster]``, ``/metrics``, ``/scheduler``, ``/apps``
(GET filters, POST submit), ``/apps/new-application``, ``/apps/{id}``, ``/apps/{id}/state``
(GET/PUT), ``/apps/{id}/appattempts``, ``/cluster``, ``/cluster/cluster``, ``/isActive``.

The private minicluster API (``/ws/v1/minicluster/...``) is in ``rm/private.py``.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import re
from typing import TYPE_CHECKING, Any, Optional

import tornado.web

from yarn_gateway.minicluster.rm.apps import (
    YARN_APP_STATES,
    AMSpec,
    RenderContext,
    RMApp,
    check_deselects,
    lookup_app,
    render_app,
    render_attempt,
)
from yarn_gateway.minicluster.rm.errors import RemoteError, bad_request, illegal_argument
from yarn_gateway.minicluster.rm.security import ANONYMOUS, Caller, short_name, unauthorized_html

if TYPE_CHECKING:
    from yarn_gateway.minicluster.rm.server import RMServer

JSON_TYPE = "application/json; charset=utf-8"
_STANDBY_EXEMPT = {"/ws/v1/cluster/info", "/ws/v1/cluster/info/", "/cluster/cluster", "/isActive",
                   "/ws/v1/minicluster/failover"}


class RMHandler(tornado.web.RequestHandler):
    """Auth filter, doAs, standby redirect (in Hadoop's filter order), JSON helpers."""

    rm: RMServer
    am_endpoint = False  # private AM endpoints: AM-token auth instead of web auth

    def initialize(self, rm: RMServer) -> None:
        self.rm = rm
        self.user = ANONYMOUS
        self.caller = Caller(ANONYMOUS, ANONYMOUS, anonymous=True)

    async def prepare(self) -> None:
        if not self.am_endpoint and not (
            self.request.path == "/ws/v1/minicluster/failover"
            and self.request.headers.get("X-Minicluster-Admin-Token")
        ):
            if not await self._authenticate() or not await self._do_as():
                return
        if not self.rm.is_active and self.request.path not in _STANDBY_EXEMPT:
            self._standby_redirect()

    # -- authentication ---------------------------------------------------------------------
    def _set_auth_cookie(self, value: str) -> None:
        self.add_header("Set-Cookie", f'hadoop.auth="{value}"; Path=/; HttpOnly')

    async def _authenticate(self) -> bool:
        sec = self.rm.security
        cookie = self.get_cookie("hadoop.auth")
        if cookie:
            caller = sec.signer.verify(cookie, sec.cookie_type)
            if caller is not None:
                self.caller, self.user = caller, caller.short
                return True
        if not sec.secure:
            name = self.get_query_argument("user.name", None)
            if name:
                self.caller, self.user = Caller(name, name), name
                self._set_auth_cookie(sec.signer.make(name, name, sec.cookie_type))
            return True
        header = self.request.headers.get("Authorization", "")
        if not header.startswith("Negotiate ") or sec.spnego is None:
            self._auth_failure(401)
            return False
        try:
            token = base64.b64decode(header[len("Negotiate "):].strip())
            loop = asyncio.get_running_loop()
            principal, out = await loop.run_in_executor(None, sec.spnego.accept, token)
        except Exception as e:  # GSSException -> AuthenticationException -> 403
            self._auth_failure(403, f"GSSException: {type(e).__name__}")
            return False
        short = short_name(principal)
        if out:
            self.set_header("WWW-Authenticate", "Negotiate " + base64.b64encode(out).decode())
        self._set_auth_cookie(sec.signer.make(short, principal, sec.cookie_type))
        self.caller, self.user = Caller(short, principal), short
        return True

    def _auth_failure(self, status: int, message: str = "Authentication required") -> None:
        self.set_status(status)
        if status == 401:
            self.set_header("WWW-Authenticate", "Negotiate")
        self.add_header("Set-Cookie", "hadoop.auth=; Path=/; HttpOnly")
        self.set_header("Content-Type", "text/html;charset=utf-8")
        self.finish(unauthorized_html(self.request.path, status, message))

    async def _do_as(self) -> bool:
        do_as = None
        for key, values in self.request.query_arguments.items():
            if key.lower() == "doas" and values:
                do_as = values[0].decode("utf-8", "replace")
        if not do_as:
            return True
        try:
            if self.caller.anonymous:
                # [inf] an anonymous caller cannot impersonate: refuse instead of ignoring doAs
                raise RemoteError(403, "AuthorizationException",
                                  "org.apache.hadoop.security.authorize.AuthorizationException",
                                  f"User: {ANONYMOUS} is not allowed to impersonate {do_as}")
            await self.rm.security.proxyusers.authorize(self.caller, do_as, self.request.remote_ip or "")
        except RemoteError as e:
            self.send_remote_error(e)
            return False
        self.user = do_as
        return True

    def _standby_redirect(self) -> None:
        uri = self.request.uri or "/"
        target = self.rm.active_url()
        self.set_status(307)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        if target:
            self.set_header("Location", target + uri)
            self.finish(f"This is standby RM. The redirect url is: {html.escape(uri)}")
        else:
            self.finish("There is no active RM right now.")

    # -- helpers ----------------------------------------------------------------------------
    def write_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", JSON_TYPE)
        self.finish(json.dumps(obj, separators=(",", ":")))

    def send_remote_error(self, err: RemoteError) -> None:
        self.write_json(err.to_json(), err.status)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if not isinstance(value, RemoteError):  # RemoteErrors are answers, not failures
            super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, RemoteError):
            self.send_remote_error(exc)
            return
        if status_code >= 500:
            self.send_remote_error(RemoteError(500, "WebApplicationException",
                                               "javax.ws.rs.WebApplicationException", ""))
            return
        super().write_error(status_code, **kwargs)

    def body_json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise bad_request("Invalid JSON request body") from None
        if not isinstance(data, dict):
            raise bad_request("Invalid JSON request body")
        return data

    def render_ctx(self) -> RenderContext:
        sch = self.rm.core.scheduler
        return RenderContext(
            rm_cluster_ts=self.rm.cluster_ts,
            rm_webapp_address=self.rm.address,
            cluster_memory=sch.node_memory,
            queue_memory={q.name: sch.queue_capacity(q)[0] for q in sch.queues.values()},
            am_limits={q.name: sch.am_limit(q) for q in sch.queues.values()},
        )

    def arg(self, name: str) -> Optional[str]:
        return self.get_query_argument(name, None)


class AboutHandler(RMHandler):
    """``/cluster``, ``/cluster/cluster``: the web UI (yarn-api-client probes ``<endpoint>/cluster``)."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(f"<html><head><title>About the Cluster</title></head><body>ResourceManager "
                    f"{html.escape(self.rm.rm_id)} state: {self.rm.ha_state}</body></html>\n")


class IsActiveHandler(RMHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        if self.rm.is_active:
            self.finish("I am Active!")
        else:
            self.set_status(405)
            self.set_header("Connection", "close")
            self.finish("I am not Active!")


class ClusterInfoHandler(RMHandler):
    def get(self) -> None:
        self.write_json({"clusterInfo": self.rm.cluster_info()})


class MetricsHandler(RMHandler):
    def get(self) -> None:
        core = self.rm.core
        sch = core.scheduler
        used_mb, used_vc = sch.used()
        pend_mb, pend_vc, pend_n = sch.pending()
        allocated = len([a for q in sch.queues.values() for a in q.attempts if a.allocated])
        m: dict[str, Any] = dict(core.counts())
        m.update({
            "reservedMB": 0, "availableMB": sch.node_memory - used_mb, "allocatedMB": used_mb,
            "pendingMB": pend_mb, "reservedVirtualCores": 0, "availableVirtualCores": sch.node_vcores - used_vc,
            "allocatedVirtualCores": used_vc, "pendingVirtualCores": pend_vc,
            "containersAllocated": allocated, "containersReserved": 0, "containersPending": pend_n,
            "totalMB": sch.node_memory, "totalVirtualCores": sch.node_vcores, "totalNodes": 1,
            "lostNodes": 0, "unhealthyNodes": 0, "decommissioningNodes": 0, "decommissionedNodes": 0,
            "rebootedNodes": 0, "activeNodes": 1, "shutdownNodes": 0,
            "totalUsedResourcesAcrossPartition": {"memory": used_mb, "vCores": used_vc},
            "totalClusterResourcesAcrossPartition": {"memory": sch.node_memory, "vCores": sch.node_vcores},
            "totalReservedResourcesAcrossPartition": {"memory": 0, "vCores": 0},
            "totalAllocatedContainersAcrossPartition": allocated,
            "crossPartitionMetricsAvailable": True,
        })
        self.write_json({"clusterMetrics": m})


class SchedulerHandler(RMHandler):
    def get(self) -> None:
        self.write_json(self.rm.core.scheduler.render())


def _parse_queries(values: list[str], is_state: bool) -> set[str]:
    """``WebServices.parseQueries``: comma lists, trimmed, lower-cased; states validated."""
    out: set[str] = set()
    for query in values:
        for p in query.split(","):
            p = p.strip()
            if not p:
                continue
            if is_state and p.upper() not in YARN_APP_STATES:
                raise bad_request(f"Invalid application-state {p} specified. It should be one of "
                                  f"[{', '.join(YARN_APP_STATES)}]")
            out.add(p.lower())
    return out


def _long(value: Optional[str], name: str, default: int) -> int:
    if value is None or value == "":
        return default
    if not re.match(r"^[+-]?\d+$", value):  # Long.parseLong
        raise bad_request(f"{name} value must be a number!")
    return int(value)


class AppsHandler(RMHandler):
    """``GET /apps`` with YARN's filters (ApplicationsRequestBuilder + ClientRMService) and submit."""

    def get(self) -> None:
        sch = self.rm.core.scheduler
        states = self.get_query_arguments("states")
        state = self.arg("state")
        user, queue, name = self.arg("user"), self.arg("queue"), self.arg("name")
        s_begin = _long(self.arg("startedTimeBegin"), "startedTimeBegin", 0)
        s_end = _long(self.arg("startedTimeEnd"), "startedTimeEnd", 2**63 - 1)
        f_begin = _long(self.arg("finishedTimeBegin"), "finishedTimeBegin", 0)
        f_end = _long(self.arg("finishedTimeEnd"), "finishedTimeEnd", 2**63 - 1)
        types = _parse_queries(self.get_query_arguments("applicationTypes"), False)
        tags = _parse_queries(self.get_query_arguments("applicationTags"), False)
        if queue and queue not in sch.queues:
            raise bad_request(f"Unknown queue: {queue}")
        limit = self.arg("limit")
        limit_n = None
        if limit:
            limit_n = _long(limit, "limit", 0)
            if limit_n <= 0:
                raise bad_request("limit value must be greater then 0")
        for lo, hi, what in ((s_begin, s_end, "started"), (f_begin, f_end, "finish")):
            begin = "startedTimeBegin" if what == "started" else "finishTimeBegin"
            end = "startedTimeEnd" if what == "started" else "finishTimeEnd"
            if lo < 0:
                raise bad_request(f"{begin} must be greater than 0")
            if hi < 0:
                raise bad_request(f"{end} must be greater than 0")
            if lo > hi:
                raise bad_request(f"{end} must be greater than {'startTimeBegin' if what == 'started' else begin}")
        wanted_states = _parse_queries(([state] if state else []) + states, True)
        deselects = check_deselects(self.get_query_arguments("deSelects"))
        final_status = self.arg("finalStatus")
        selected: list[RMApp] = []
        for app in self.rm.core.apps.values():
            if limit_n is not None and len(selected) >= limit_n:
                break
            if wanted_states and app.yarn_state().lower() not in wanted_states:
                continue
            if user and app.user != user:
                continue
            if queue:
                att = app.current_attempt
                if app.queue != queue or att is None or not att.in_scheduler:
                    continue  # getAppsInQueue: only apps still in the scheduler
            if types and app.app_type.lower() not in types:
                continue
            if tags and not tags.intersection(app.tags):
                continue
            if name is not None and app.name != name:
                continue
            if not (s_begin <= app.submit_time <= s_end and f_begin <= app.finish_time <= f_end):
                continue
            selected.append(app)
        ctx = self.render_ctx()
        out = []
        for app in selected:
            if final_status:
                # FinalApplicationStatus.valueOf per app, after the query (RMWebServices.getApps)
                if final_status not in ("UNDEFINED", "SUCCEEDED", "FAILED", "KILLED", "ENDED"):
                    raise illegal_argument(
                        "No enum constant org.apache.hadoop.yarn.api.records.FinalApplicationStatus."
                        + final_status)
                if app.final_status().lower() != final_status.lower():
                    continue
            out.append(render_app(app, ctx, deselects))
        self.write_json({"apps": {"app": out} if out else None})

    def post(self) -> None:
        data = self.body_json()
        app_id = str(data.get("application-id") or "")
        spec_in = data.get("am-container-spec") or {}
        env = {str(e["key"]): str(e.get("value", "")) for e in _entries(spec_in.get("environment"))}
        res = {str(e["key"]): dict(e.get("value") or {}) for e in _entries(spec_in.get("local-resources"))}
        command = (spec_in.get("commands") or {}).get("command") or ""
        resource = data.get("resource") or {}
        tags_in = (data.get("application-tags") or {}).get("tag") or []
        if isinstance(tags_in, str):
            tags_in = [tags_in]
        tags: list[str] = []
        for t in tags_in:
            t = str(t).strip().lower()  # ApplicationSubmissionContextPBImpl lower-cases tags
            if t and t not in tags:
                tags.append(t)
        try:
            self.rm.core.submit(
                app_id, user=self.user, name=str(data.get("application-name") or "N/A"),
                queue=str(data.get("queue") or "default"),
                # [inf] a REST submission without application-type gets YARN's default "YARN"
                app_type=str(data.get("application-type") or "YARN"), tags=tags,
                priority=int(data.get("priority") or 0), max_attempts=int(data.get("max-app-attempts") or -1),
                memory=int(resource.get("memory") or 0), vcores=int(resource.get("vCores") or 0),
                spec=AMSpec(local_resources=res, environment=env, command=str(command)),
            )
        except (TypeError, ValueError, KeyError) as e:
            raise bad_request(f"Invalid submission: {e}") from None
        url = self.request.full_url().split("?", 1)[0]
        self.set_status(202)
        self.set_header("Location", url + ("" if url.endswith("/") else "/") + app_id)
        self.clear_header("Content-Type")
        self.finish()


def _entries(obj: Any) -> list[dict[str, Any]]:
    if not obj:
        return []
    entry = obj.get("entry") if isinstance(obj, dict) else obj
    if isinstance(entry, dict):
        return [entry]
    return [e for e in (entry or []) if isinstance(e, dict) and "key" in e]


class NewApplicationHandler(RMHandler):
    def post(self) -> None:
        app_id = self.rm.core.new_application_id(self.rm.cluster_ts)
        sch = self.rm.core.scheduler
        self.write_json({"application-id": app_id,
                         "maximum-resource-capability": {"memory": sch.node_memory, "vCores": sch.node_vcores}})


class AppHandler(RMHandler):
    def get(self, app_id: str) -> None:
        app = lookup_app(self.rm.core.apps, app_id)
        self.write_json({"app": render_app(app, self.render_ctx())})


class AppAttemptsHandler(RMHandler):
    def get(self, app_id: str) -> None:
        app = lookup_app(self.rm.core.apps, app_id)
        self.write_json({"appAttempts": {"appAttempt": [render_attempt(app, a) for a in app.attempts]}})


class AppStateHandler(RMHandler):
    def get(self, app_id: str) -> None:
        app = lookup_app(self.rm.core.apps, app_id)
        self.write_json({"state": app.state})  # raw RMAppState (KILLING, FINAL_SAVING, ...)

    async def put(self, app_id: str) -> None:
        if self.rm.security.secure and self.user == ANONYMOUS:
            self.set_status(403)
            self.finish("The default static user cannot carry out this operation.")
            return
        app = lookup_app(self.rm.core.apps, app_id)
        data = self.body_json()
        target = str(data.get("state") or "")
        if app.state == target:
            self.write_json({"state": app.state})
            return
        if target != "KILLED":
            raise bad_request("Only 'KILLED' is allowed as a target state.")
        if not await self.rm.security.can_modify(self.user, app.user):
            self.set_status(403)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"Unauthorized attempt to kill appid {app.app_id} by remote user {self.user}")
            return
        before = app.state
        done = self.rm.core.kill(app, self.user, str(data.get("diagnostics") or ""))
        if done:
            self.write_json({"state": app.state})
            return
        self.set_header("Location", self.request.full_url())
        self.write_json({"state": before}, 202)
