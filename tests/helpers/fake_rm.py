"""A tiny stand-in ResourceManager (REST only, loopback) for the fast failure-path tests.

It answers the handful of calls the gateway's RM client makes (``/cluster``, one application,
applications by tag and state, kill) from an in-memory table that the test and the stub
spark-submit (``stub_yarn.py``) write. It can go down (its port refuses connections) and come
back on the same port. Killing an application here also kills the process registered as its
"container" (the stub's local launcher), by PID, as YARN would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from typing import Any, Optional

from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

LIVE = ("NEW", "NEW_SAVING", "SUBMITTED", "ACCEPTED", "RUNNING")


class FakeRM:
    def __init__(self) -> None:
        self.apps: dict[str, dict[str, Any]] = {}
        self.pids: dict[str, int] = {}
        self.kills: list[str] = []
        self.calls = 0
        #: The state a newly submitted application gets (the test changes it to script a launch).
        self.initial_state = "ACCEPTED"
        self.initial_diagnostics = ""
        self._cluster_ts = int(time.time() * 1000)
        self._seq = 0
        self._server: Optional[HTTPServer] = None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    # -- the server -------------------------------------------------------------------
    def start(self) -> None:
        app = Application([
            (r"/cluster", _Cluster, {"rm": self}),
            (r"/ws/v1/cluster/info", _Cluster, {"rm": self}),
            (r"/ws/v1/cluster/apps", _Apps, {"rm": self}),
            (r"/ws/v1/cluster/apps/([^/]+)", _App, {"rm": self}),
            (r"/ws/v1/cluster/apps/([^/]+)/state", _State, {"rm": self}),
            (r"/fake/submit", _Submit, {"rm": self}),
            (r"/fake/apps/([^/]+)/container", _Container, {"rm": self}),
        ])
        self._server = HTTPServer(app)
        self._server.listen(self.port, "127.0.0.1", reuse_port=False)

    async def down(self) -> None:
        """Stop answering: new connections are refused, open ones closed."""
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None

    def up(self) -> None:
        if self._server is None:
            self.start()

    async def stop(self) -> None:
        await self.down()
        for app_id in list(self.pids):
            self._kill_container(app_id)

    # -- the table --------------------------------------------------------------------
    def submit(self, tags: str, user: str, queue: str) -> str:
        self._seq += 1
        app_id = f"application_{self._cluster_ts}_{self._seq:04d}"
        self.apps[app_id] = {
            "id": app_id, "user": user, "queue": queue or "default", "state": self.initial_state,
            "finalStatus": "UNDEFINED", "applicationTags": tags.lower(), "diagnostics": self.initial_diagnostics,
            "startedTime": int(time.time() * 1000), "amHostHttpAddress": "",
        }
        return app_id

    def set_state(self, app_id: str, state: str, diagnostics: str = "", final_status: str = "") -> None:
        app = self.apps[app_id]
        app["state"] = state
        if diagnostics:
            app["diagnostics"] = diagnostics
        if state == "RUNNING":
            app["amHostHttpAddress"] = "127.0.0.1:8042"
        if state in ("FINISHED", "FAILED", "KILLED"):
            app["finalStatus"] = final_status or {"FINISHED": "SUCCEEDED", "FAILED": "FAILED"}.get(state, "KILLED")
            self._kill_container(app_id)

    def kill(self, app_id: str) -> None:
        self.kills.append(app_id)
        if self.apps[app_id]["state"] in LIVE:
            self.set_state(app_id, "KILLED", "Application killed by user.")

    def _kill_container(self, app_id: str) -> None:
        pid = self.pids.pop(app_id, None)
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass

    def only_app(self) -> dict[str, Any]:
        assert len(self.apps) == 1, self.apps
        return next(iter(self.apps.values()))


class _Base(RequestHandler):
    def initialize(self, rm: FakeRM) -> None:
        self.rm = rm
        rm.calls += 1

    def answer(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def not_found(self, app_id: str) -> None:
        self.answer({"RemoteException": {"exception": "NotFoundException", "message":
                     f"java.lang.Exception: app with id: {app_id} not found"}}, 404)


class _Cluster(_Base):
    def get(self) -> None:
        self.answer({"clusterInfo": {"id": self.rm._cluster_ts, "state": "STARTED", "haState": "ACTIVE"}})


class _Apps(_Base):
    def get(self) -> None:
        tags = {t.lower() for t in self.get_argument("applicationTags", "").split(",") if t}
        states = {s.upper() for s in self.get_argument("states", "").split(",") if s}
        found = [a for a in self.rm.apps.values()
                 if (not tags or tags & set(a["applicationTags"].split(","))) and (not states or a["state"] in states)]
        self.answer({"apps": {"app": found} if found else None})


class _App(_Base):
    def get(self, app_id: str) -> None:
        if not app_id.startswith("application_"):
            self.answer({"RemoteException": {"exception": "BadRequestException", "message": "Invalid ApplicationId"}},
                        400)
        elif app_id in self.rm.apps:
            self.answer({"app": self.rm.apps[app_id]})
        else:
            self.not_found(app_id)


class _State(_Base):
    def put(self, app_id: str) -> None:
        if app_id not in self.rm.apps:
            return self.not_found(app_id)
        if json.loads(self.request.body or b"{}").get("state") == "KILLED":
            self.rm.kill(app_id)
        self.answer({"state": self.rm.apps[app_id]["state"]})


class _Submit(_Base):
    def post(self) -> None:
        req = json.loads(self.request.body)
        self.answer({"id": self.rm.submit(req["tags"], req["user"], req.get("queue", ""))})


class _Container(_Base):
    def post(self, app_id: str) -> None:
        self.rm.pids[app_id] = int(json.loads(self.request.body)["pid"])
        if self.rm.apps[app_id]["state"] == "ACCEPTED":
            self.rm.set_state(app_id, "RUNNING")
        self.answer({})
