"""The minicluster's NodeManager: launches AM containers as local processes (asyncio, no shell).

Layout under ``base_dir`` (YARN's):

- working dir ``nm-local-dir/usercache/<user>/appcache/<app>/<container>/`` (owned by the user),
  ``local-resources`` copied (FILE) or unpacked (ARCHIVE) into it under their keys;
- logs ``nm-logs/<app>/<container>/{stdout,stderr}`` (what ``amContainerLogs`` points to),
  served by a small HTTP server at ``/node/containerlogs/<container>/<user>/<file>[?start=-N]``
  (plain text; the real NM wraps them in an HTML page).

The command is YARN's ``commands.command``: ``<LOG_DIR>``, ``{{VAR}}`` and ``<CPS>`` are replaced,
``$VAR``/``${VAR}`` expanded from the container environment outside single quotes (bash would do
it), then split like a POSIX shell; redirections (``1>``, ``2>``, ``>>``, ``2>&1``, with or
without a separate target) are dropped because stdout/stderr always go to the log files. Shell
operators (``|``, ``&&``, ``;``) are not supported: there is no shell.

When ``run_as_app_user`` (the minicluster runs as root) the process runs as the app user's Unix
account (uid, gid and supplementary groups), created with ``useradd -m`` if missing and
``create_users``. Directories created here are made traversable (0711/0755) so that user can reach
its working dir; the ancestors of ``base_dir`` must be traversable too (pytest's tmp dirs are
0700: use a dir under /tmp for such tests).
Kill = SIGTERM to the container's process group and every descendant, SIGKILL after
``kill_grace`` seconds (default 0.25). When the main process exits, its process group is killed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import re
import shutil
import signal
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import unquote, urlparse

import psutil
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from yarn_gateway.minicluster.rm.apps import NodeInfo
from yarn_gateway.minicluster.rm.core import ContainerLaunch

log = logging.getLogger(__name__)
_USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_CID_RE = re.compile(r"^container_(?:e\d+_)?(\d+)_(\d+)_\d+_\d+$")
_REDIRECT_RE = re.compile(r"^(?:[0-9]?>>?|&>)(.*)$")
# NodeManager env whitelist (yarn.nodemanager.env-whitelist): inherited unless the app sets them
_WHITELIST = ("JAVA_HOME", "HADOOP_COMMON_HOME", "HADOOP_HDFS_HOME", "HADOOP_YARN_HOME",
              "HADOOP_MAPRED_HOME", "LANG", "TZ")


class LaunchError(Exception):
    """Localization or launch failed; the container exits with YARN's -1000."""


@dataclass
class Container:
    launch: ContainerLaunch
    work_dir: str
    log_dir: str
    proc: Optional[asyncio.subprocess.Process] = None
    killed: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: Optional[asyncio.Task[None]] = None


def split_command(command: str, env: dict[str, str]) -> list[str]:
    """POSIX-shell-like word splitting with ``$VAR`` expansion outside single quotes."""
    words: list[str] = []
    cur: list[str] = []
    have = False
    i, n = 0, len(command)
    quote = ""
    while i < n:
        c = command[i]
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                cur.append(c)
            i += 1
            continue
        if c == "\\" and i + 1 < n:
            nxt = command[i + 1]
            if quote != '"' or nxt in '"\\$`':
                cur.append(nxt)
            else:
                cur.append(c + nxt)
            have = True
            i += 2
            continue
        if c == "$":
            m = re.match(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))", command[i:])
            if m:
                cur.append(env.get(m.group(1) or m.group(2), ""))
                have = True
                i += m.end()
                continue
        if quote == '"':
            if c == '"':
                quote = ""
            else:
                cur.append(c)
            i += 1
            continue
        if c in "'\"":
            quote = c
            have = True
        elif c.isspace():
            if have or cur:
                words.append("".join(cur))
            cur, have = [], False
        else:
            cur.append(c)
        i += 1
    if quote:
        raise ValueError("unterminated quote in container command")
    if have or cur:
        words.append("".join(cur))
    return words


def build_argv(command: str, env: dict[str, str], log_dir: str) -> list[str]:
    """YARN's command string -> argv (see the module docstring)."""
    text = command.replace("<LOG_DIR>", log_dir).replace("<CPS>", ":")
    text = re.sub(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}", lambda m: env.get(m.group(1), ""), text)
    argv: list[str] = []
    skip_next = False
    for word in split_command(text, env):
        if skip_next:
            skip_next = False
            continue
        m = _REDIRECT_RE.match(word)
        if m:
            skip_next = m.group(1) == ""
            continue
        argv.append(word)
    if not argv:
        raise LaunchError("empty container command")
    return argv


def _terminate_tree(pid: int, grace: float) -> None:
    """SIGTERM the group and all descendants, SIGKILL what is left after ``grace``. Blocking."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        procs = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except OSError:
            pass
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass
        if sig == signal.SIGKILL:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            procs = [p for p in procs if _alive(p)]
            if not procs:
                return
            time.sleep(0.02)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _tail(path: str, size: int = 4096) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class NodeManager:
    """One node: launches, tracks and kills containers; reports to the RM through callbacks."""

    def __init__(
        self,
        base_dir: str,
        *,
        conf_dir: str,
        rm_urls: Callable[[], list[str]],
        on_launched: Callable[[str], None],
        on_exit: Callable[[str, int, str], None],
        host: str = "localhost",
        bind_address: str = "127.0.0.1",
        run_as_app_user: bool = False,
        create_users: bool = False,
        kill_grace: float = 0.25,
        rpc_port: int = 45454,
    ) -> None:
        self.base_dir = os.path.abspath(base_dir)
        self.conf_dir = conf_dir
        self.rm_urls = rm_urls
        self.on_launched = on_launched
        self.on_exit = on_exit
        self.host = host
        self.bind_address = bind_address
        self.run_as_app_user = run_as_app_user
        self.create_users = create_users
        self.kill_grace = kill_grace
        self.rpc_port = rpc_port
        self.local_dir = os.path.join(self.base_dir, "nm-local-dir")
        self.log_root = os.path.join(self.base_dir, "nm-logs")
        self.containers: dict[str, Container] = {}
        self.http_port = 0
        self._http: Optional[HTTPServer] = None
        self._user_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def node(self) -> NodeInfo:
        return NodeInfo(host=self.host, http_port=self.http_port, rpc_port=self.rpc_port)

    async def start(self, http_port: int = 0) -> None:
        for d in (self.local_dir, os.path.join(self.local_dir, "usercache"), self.log_root):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)  # noqa: S103 - app users must traverse these
        socks = bind_sockets(http_port, self.bind_address)
        self.http_port = socks[0].getsockname()[1]
        app = tornado.web.Application([(r"/node/containerlogs/([^/]+)/([^/]+)(?:/([^/]+))?/?", _LogsHandler,
                                        {"nm": self})])
        self._http = HTTPServer(app)
        self._http.add_sockets(socks)

    async def stop(self) -> None:
        """Kill every container and wait for them; stop the log server."""
        for cid in list(self.containers):
            self.kill(cid)
        tasks = [c.task for c in self.containers.values() if c.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            self._http.stop()
            await self._http.close_all_connections()

    # -- RM-facing ---------------------------------------------------------------------------
    def launch(self, launch: ContainerLaunch) -> None:
        app_dir = os.path.join(self.local_dir, "usercache", launch.user, "appcache", launch.app_id)
        c = Container(launch=launch, work_dir=os.path.join(app_dir, launch.container_id),
                      log_dir=os.path.join(self.log_root, launch.app_id, launch.container_id))
        self.containers[launch.container_id] = c
        c.task = asyncio.get_running_loop().create_task(self._run(c))

    def kill(self, container_id: str) -> None:
        c = self.containers.get(container_id)
        if c is None or c.killed or c.done.is_set():
            return
        c.killed = True
        if c.proc is not None:
            self._background(self._terminate(c))

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _terminate(self, c: Container) -> None:
        if c.proc is not None and c.proc.returncode is None:
            await asyncio.get_running_loop().run_in_executor(None, _terminate_tree, c.proc.pid, self.kill_grace)

    # -- launching ---------------------------------------------------------------------------
    async def _run(self, c: Container) -> None:
        loop = asyncio.get_running_loop()
        code, detail = -1000, ""
        try:
            ids = await self._user_ids(c.launch.user)
            await loop.run_in_executor(None, self._prepare_dirs, c, ids)
            env = self._env(c, ids)
            argv = build_argv(c.launch.spec.command, env, c.log_dir)
            if c.killed:
                code = 143  # [inf] killed before it started
                return
            out = open(os.path.join(c.log_dir, "stdout"), "ab")  # noqa: ASYNC230 - local file, O(1)
            err = open(os.path.join(c.log_dir, "stderr"), "ab")  # noqa: ASYNC230
            try:
                kwargs: dict[str, Any] = {}
                if ids is not None:
                    kwargs = {"user": ids[0], "group": ids[1], "extra_groups": ids[2]}
                c.proc = await asyncio.create_subprocess_exec(
                    *argv, cwd=c.work_dir, env=env, stdin=asyncio.subprocess.DEVNULL,
                    stdout=out, stderr=err, start_new_session=True, **kwargs)
            finally:
                out.close()
                err.close()
            self.on_launched(c.launch.container_id)
            if c.killed:
                self._background(self._terminate(c))
            rc = await c.proc.wait()
            code = 128 - rc if rc < 0 else rc
            try:
                os.killpg(c.proc.pid, signal.SIGKILL)  # leftovers of the container's process group
            except OSError:
                pass
            if code != 0 and not c.killed:
                tail = await loop.run_in_executor(None, _tail, os.path.join(c.log_dir, "stderr"))
                stamp = time.strftime("%Y-%m-%d %H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
                detail = (f"\n[{stamp}]Container exited with a non-zero exit code {code}. "
                          "Error file: prelaunch.err.\nLast 4096 bytes of prelaunch.err :\n"
                          f"Last 4096 bytes of stderr :\n{tail}\n\n")
        except (LaunchError, OSError, ValueError) as e:
            detail = f"\n{type(e).__name__}: {e}\n"
            log.warning("container %s failed to launch: %s", c.launch.container_id, e)
        finally:
            c.done.set()
            try:
                self.on_exit(c.launch.container_id, code, detail)
            except Exception:
                log.exception("RM callback for container %s failed", c.launch.container_id)

    async def _user_ids(self, user: str) -> Optional[tuple[int, int, list[int], str]]:
        """(uid, gid, groups, home) of the app user when switching users, else None."""
        if not self.run_as_app_user:
            return None
        loop = asyncio.get_running_loop()
        async with self._user_lock:
            try:
                pw = await loop.run_in_executor(None, pwd.getpwnam, user)
            except KeyError:
                if not self.create_users:
                    raise LaunchError(f"User {user} not found") from None
                if not _USER_RE.match(user):
                    raise LaunchError(f"Invalid user name {user!r}") from None
                proc = await asyncio.create_subprocess_exec(
                    "useradd", "-m", user, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
                _, err = await proc.communicate()
                if proc.returncode != 0:
                    raise LaunchError(f"useradd {user} failed: {err.decode(errors='replace').strip()}") from None
                pw = await loop.run_in_executor(None, pwd.getpwnam, user)
        groups = await loop.run_in_executor(None, os.getgrouplist, user, pw.pw_gid)
        return pw.pw_uid, pw.pw_gid, list(groups), pw.pw_dir

    def _prepare_dirs(self, c: Container, ids: Optional[tuple[int, int, list[int], str]]) -> None:
        """Create the container dirs, localize resources, hand everything to the user. Blocking."""
        user_dir = os.path.join(self.local_dir, "usercache", c.launch.user)
        app_log = os.path.dirname(c.log_dir)
        for d in (user_dir, os.path.join(user_dir, "appcache"), os.path.dirname(c.work_dir), c.work_dir,
                  app_log, c.log_dir):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o711 if d in (user_dir, app_log) else 0o750)
            if ids is not None:
                os.chown(d, ids[0], ids[1])
        for name in ("stdout", "stderr"):
            path = os.path.join(c.log_dir, name)
            with open(path, "ab"):
                pass
            if ids is not None:
                os.chown(path, ids[0], ids[1])
        for key, res in c.launch.spec.local_resources.items():
            self._localize(c.work_dir, key, res, ids)

    def _localize(
        self, work: str, key: str, res: dict[str, Any], ids: Optional[tuple[int, int, list[int], str]]
    ) -> None:
        url = str(res.get("resource") or "")
        parsed = urlparse(url)
        if parsed.scheme not in ("", "file"):
            raise LaunchError(f"Unsupported local resource scheme for {url} (only file:// and paths)")
        src = unquote(parsed.path) if parsed.scheme else url
        dest = os.path.normpath(os.path.join(work, key))
        if not dest.startswith(work + os.sep):
            raise LaunchError(f"Invalid local resource key {key!r}")
        if not os.path.exists(src):
            raise LaunchError(f"java.io.FileNotFoundException: File file:{src} does not exist")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        kind = str(res.get("type") or "FILE").upper()
        if kind == "ARCHIVE" and os.path.isfile(src):
            shutil.unpack_archive(src, dest)
        elif os.path.isdir(src):
            shutil.copytree(src, dest)
        else:
            shutil.copy2(src, dest)
        if ids is not None:
            for root, dirs, files in os.walk(dest):
                for n in dirs + files:
                    os.lchown(os.path.join(root, n), ids[0], ids[1])
            os.lchown(dest, ids[0], ids[1])

    def _env(self, c: Container, ids: Optional[tuple[int, int, list[int], str]]) -> dict[str, str]:
        launch = c.launch
        env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")}
        env.update({k: os.environ[k] for k in _WHITELIST if k in os.environ})
        env["HADOOP_CONF_DIR"] = self.conf_dir
        env.update(launch.spec.environment)
        user = launch.user
        home = ids[3] if ids is not None else os.environ.get("HOME", c.work_dir)
        urls = self.rm_urls()
        env.update({
            "CONTAINER_ID": launch.container_id,
            "APPLICATION_WEB_PROXY_BASE": f"/proxy/{launch.app_id}",
            "NM_HOST": self.host,
            "NM_PORT": str(self.rpc_port),
            "NM_HTTP_PORT": str(self.http_port),
            "LOCAL_DIRS": os.path.dirname(c.work_dir),
            "LOCAL_USER_DIRS": os.path.join(self.local_dir, "usercache", user) + "/",
            "LOG_DIRS": c.log_dir,
            "USER": user,
            "LOGNAME": user,
            "HOME": home,
            "PWD": c.work_dir,
            "APP_SUBMIT_TIME_ENV": str(launch.submit_time),
            "MAX_APP_ATTEMPTS": str(launch.max_attempts),
            "MINICLUSTER_AM_TOKEN": launch.am_token,
            "MINICLUSTER_RM_URL": urls[0] if urls else "",
            "MINICLUSTER_RM_URLS": ",".join(urls),
            "MINICLUSTER_APP_ID": launch.app_id,
            "MINICLUSTER_APP_ATTEMPT_ID": launch.attempt_id,
        })
        return env

    def log_dir_for(self, container_id: str) -> Optional[str]:
        m = _CID_RE.match(container_id)
        if not m:
            return None
        app_id = f"application_{m.group(1)}_{m.group(2)}"
        return os.path.join(self.log_root, app_id, container_id)


class _LogsHandler(tornado.web.RequestHandler):
    def initialize(self, nm: NodeManager) -> None:
        self.nm = nm

    async def get(self, cid: str, user: str, name: Optional[str]) -> None:
        log_dir = self.nm.log_dir_for(cid)
        loop = asyncio.get_running_loop()
        files = await loop.run_in_executor(None, _listdir, log_dir) if log_dir else None
        if log_dir is None or files is None:
            raise tornado.web.HTTPError(404)
        if name is None:
            links = "".join(f'<p><a href="/node/containerlogs/{cid}/{user}/{f}">{f}</a></p>' for f in files)
            self.finish(f"<html><body><h1>Logs for {cid}</h1>{links}</body></html>")
            return
        if name not in files:
            raise tornado.web.HTTPError(404)
        start = int(self.get_query_argument("start", "0") or 0)
        data = await loop.run_in_executor(None, _read_from, os.path.join(log_dir, name), start)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(data)


def _listdir(path: str) -> Optional[list[str]]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return None


def _read_from(path: str, start: int) -> bytes:
    with open(path, "rb") as f:
        if start < 0:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() + start))
        else:
            f.seek(start)
        return f.read()
