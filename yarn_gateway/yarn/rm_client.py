"""One asynchronous ResourceManager client per gateway.

yarn-api-client's ``ResourceManager`` is blocking; every call here runs in the gateway's
executor. The endpoint list (HA) is probed when the client is built and again whenever
a call fails on a connection error, so a failover costs one retried call. The auth
object (``None``, ``SimpleAuth``, ``HTTPKerberosAuth``) is injected by the caller.

Application states of running kernels are not fetched one kernel at a time: a single
refresher lists this gateway's live applications (by tag) every ``poll_interval`` and
answers :meth:`RMClient.cached_state` for all kernels from that list.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Optional

import requests
from yarn_api_client.base import Response
from yarn_api_client.errors import APIError
from yarn_api_client.resource_manager import ResourceManager

from ..utils import run_blocking

log = logging.getLogger(__name__)

LIVE_STATES = ("NEW", "NEW_SAVING", "SUBMITTED", "ACCEPTED", "RUNNING")
FINAL_STATES = frozenset({"FINISHED", "FAILED", "KILLED"})


class RMError(Exception):
    """A ResourceManager call failed (the message is user-safe). Callers decide by subclass:

    - :class:`RMUnavailable`: no ResourceManager answered (down, failing over, unreachable);
      worth retrying later;
    - :class:`RMNotFound`: the RM answered 404 (for an application: YARN does not know it,
      or has forgotten it);
    - :class:`RMRefused`: the RM answered 401/403 (authentication or a YARN ACL);
    - :class:`RMError` itself: any other answer (an unexpected status or payload).
    """

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


class RMUnavailable(RMError):
    """No ResourceManager could be reached."""


class RMNotFound(RMError):
    """The ResourceManager answered 404."""


class RMRefused(RMError):
    """The ResourceManager answered 401 or 403."""


class _HTTPStatus(Exception):
    """A non-success answer, raised by :class:`_StatusSession` before yarn-api-client turns it into text."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(status)
        self.status = status
        self.text = text


class _StatusSession(requests.Session):
    """The session yarn-api-client uses, keeping an error answer's status as a number."""

    max_error_text = 4096

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        resp = super().request(*args, **kwargs)
        if resp.status_code not in (200, 202):
            raise _HTTPStatus(resp.status_code, resp.text[: self.max_error_text])
        return resp


def _typed(method: str, err: _HTTPStatus) -> RMError:
    detail = " ".join(err.text.split())[:300]
    message = f"the ResourceManager answered {err.status} to {method}" + (f": {detail}" if detail else "")
    if err.status == 404:
        return RMNotFound(message, err.status)
    if err.status in (401, 403):
        return RMRefused(message, err.status)
    return RMError(message, err.status)


class RMClient:
    """See the module docstring."""

    def __init__(
        self,
        endpoints: list[str],
        *,
        auth_factory: Optional[Callable[[], Any]] = None,
        timeout: float = 30.0,
        verify: bool | str = True,
        poll_interval: float = 5.0,
        live_tag: Optional[str] = None,
        observer: Optional[Callable[[str, float, Optional[str]], None]] = None,
    ) -> None:
        if not endpoints:
            raise ValueError("no ResourceManager endpoints configured")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.auth_factory = auth_factory
        self.timeout = timeout
        self.verify = verify
        self.poll_interval = poll_interval
        self.live_tag = live_tag
        #: Called after every REST call with (method, seconds, error kind or None): the gateway's metrics.
        self.observer = observer
        self._rm: Optional[ResourceManager] = None
        self._rm_lock = asyncio.Lock()
        self._live: dict[str, dict[str, Any]] = {}
        self._final: dict[str, dict[str, Any]] = {}
        self._live_at = 0.0
        self._refresh_lock = asyncio.Lock()

    # -- plumbing -----------------------------------------------------------------------
    def _build(self) -> ResourceManager:
        auth = self.auth_factory() if self.auth_factory else None
        try:
            rm = ResourceManager(service_endpoints=list(self.endpoints), timeout=self.timeout, auth=auth,
                                 verify=self.verify)
        except Exception as exc:  # yarn-api-client raises a bare Exception("No active RMs found")
            refused = self._refusing_endpoints(auth)
            if refused:
                said = "; ".join(f"{endpoint} answered {status}" for endpoint, status in refused)
                raise RMRefused(f"the ResourceManager refused the gateway's credentials ({said}): check "
                                "YarnServices.rm_auth and the gateway's Kerberos ticket", refused[0][1]) from None
            raise RMUnavailable(f"no active ResourceManager among {', '.join(self.endpoints)} ({exc})") from None
        session = _StatusSession()
        session.auth, session.verify, session.proxies = rm.session.auth, rm.session.verify, rm.session.proxies
        rm.session = session
        return rm

    def _refusing_endpoints(self, auth: Any) -> list[tuple[str, int]]:
        """The endpoints that answer 401/403 (blocking; only after yarn-api-client found no active RM)."""
        refused = []
        for endpoint in self.endpoints:
            try:
                resp = requests.get(f"{endpoint}/ws/v1/cluster/info", timeout=self.timeout, auth=auth,
                                    verify=self.verify)
            except Exception as exc:  # unreachable, or the auth itself failed: not a refusal by the RM
                log.debug("RM %s: probe failed: %s", endpoint, exc)
                continue
            if resp.status_code in (401, 403):
                refused.append((endpoint, resp.status_code))
        return refused

    async def _client(self, rebuild: bool = False) -> ResourceManager:
        async with self._rm_lock:
            if self._rm is None or rebuild:
                self._rm = await run_blocking(self._build)
            return self._rm

    async def call(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Call ``ResourceManager.<method>`` off the loop; re-probe endpoints once on failure."""
        for attempt in (0, 1):
            started = time.monotonic()
            try:
                rm = await self._client(rebuild=attempt == 1)
            except RMError:
                self._observe(method, started, "no_active_rm")
                raise
            try:
                resp: Response = await run_blocking(getattr(rm, method), *args, **kwargs)
                self._observe(method, started, None)
                return resp.data if isinstance(resp.data, dict) else {}
            except requests.RequestException as exc:
                self._observe(method, started, _error_kind(exc))
                if attempt == 1:
                    raise RMUnavailable(f"ResourceManager unreachable ({type(exc).__name__}): {exc}") from None
                log.warning("RM call %s failed (%s); re-probing %s", method, type(exc).__name__, self.endpoints)
            except _HTTPStatus as exc:
                self._observe(method, started, "api")
                raise _typed(method, exc) from None
            except APIError as exc:  # yarn-api-client's own checks (configuration, arguments)
                self._observe(method, started, "api")
                raise RMError(str(exc)) from None
        raise AssertionError("unreachable")

    def _observe(self, method: str, started: float, error_kind: Optional[str]) -> None:
        if self.observer is not None:
            self.observer(method, time.monotonic() - started, error_kind)

    # -- applications -------------------------------------------------------------------
    async def app(self, app_id: str) -> dict[str, Any]:
        data = await self.call("cluster_application", app_id)
        app = data.get("app")
        if not isinstance(app, dict):
            raise RMError(f"unexpected answer for {app_id}")
        return app

    async def find_by_tag(self, tag: str) -> Optional[dict[str, Any]]:
        """The newest application carrying ``tag`` (tags are lower-case in YARN)."""
        data = await self.call("cluster_applications", application_tags=[tag.lower()])
        apps = _apps(data)
        return max(apps, key=lambda a: a.get("startedTime", 0)) if apps else None

    async def list_tagged(self, tag: str, live_only: bool = True) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"application_tags": [tag.lower()]}
        if live_only:
            kwargs["states"] = list(LIVE_STATES)
        return _apps(await self.call("cluster_applications", **kwargs))

    async def kill(self, app_id: str, wait: float = 30.0) -> str:
        """Kill ``app_id`` and wait (up to ``wait`` s) for a final state; return the last state."""
        state = ""
        deadline = time.monotonic() + wait
        delay = 0.2
        while True:
            data = await self.call("cluster_application_kill", app_id)
            state = str(data.get("state", ""))
            if state in FINAL_STATES:
                return state
            if time.monotonic() > deadline:
                return state
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    # -- cached state for poll() -------------------------------------------------------
    async def cached_state(self, app_id: str) -> Optional[str]:
        """The app's state, at most ``poll_interval`` old; None if unknown to the RM."""
        if app_id in self._final:
            return str(self._final[app_id].get("state"))
        if time.monotonic() - self._live_at > self.poll_interval:
            await self._refresh()
        if app_id in self._live:
            return str(self._live[app_id].get("state"))
        try:  # not live (any more): one direct look, remembered if final
            app = await self.app(app_id)
        except RMNotFound:
            return None
        if app.get("state") in FINAL_STATES:
            self._final[app_id] = app
        return str(app.get("state"))

    async def _refresh(self) -> None:
        async with self._refresh_lock:
            if time.monotonic() - self._live_at <= self.poll_interval:
                return
            if self.live_tag is None:
                self._live_at = time.monotonic()
                return
            apps = await self.list_tagged(self.live_tag)
            self._live = {a["id"]: a for a in apps}
            self._live_at = time.monotonic()

    def forget(self, app_id: str) -> None:
        self._final.pop(app_id, None)
        self._live.pop(app_id, None)


def _error_kind(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timeout"
    if isinstance(exc, requests.ConnectionError):
        return "connection"
    return "http"


def _apps(data: dict[str, Any]) -> list[dict[str, Any]]:
    apps = data.get("apps")
    if not isinstance(apps, dict):  # YARN answers {"apps": null} when there are none
        return []
    items = apps.get("app") or []
    return [a for a in items if isinstance(a, dict)]
