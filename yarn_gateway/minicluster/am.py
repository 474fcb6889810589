"""The minicluster's ApplicationMaster: runs the real Spark driver inside the AM container.

This file is shipped into the container as a YARN local resource and run there by the
cluster's Python, possibly as another Unix user, so it MUST stay a single file that
imports nothing but the standard library.

Command line (written by ``yarn_gateway.minicluster.spark_submit``)::

    <python> __minicluster_am__.py --properties-file __spark_conf__.json
        [--class C] [--primary-py-file f.py | --primary-r-file f.R] [--jar app.jar]
        [--arg A]...

``__spark_conf__.json`` holds ``{"conf": {spark.*: value}, "jars": [...],
"pyFiles": [...], "archives": [[file, link], ...], "maxAttempts": n}`` with names relative to the
container working directory, where the NodeManager localized every resource.

Environment read (set by the NodeManager / the submission):
``MINICLUSTER_RM_URLS`` (comma-separated RM web addresses; else ``MINICLUSTER_RM_URL``),
``MINICLUSTER_AM_TOKEN`` (sent as ``X-Minicluster-Am-Token``, never passed on to the
driver), ``CONTAINER_ID``, ``MINICLUSTER_APP_ID`` (else derived from CONTAINER_ID),
``MAX_APP_ATTEMPTS``, ``NM_HOST``, ``SPARK_USER``, ``SPARK_HOME`` and ``PYSPARK_PYTHON``
(optional).

Behaviour, like Spark's ApplicationMaster in cluster mode:

- the driver is the real ``$SPARK_HOME/bin/spark-submit --master local[*] --deploy-mode
  client`` run as this process's user (with ``HADOOP_USER_NAME=$SPARK_USER`` when that
  differs, so ``sc.sparkUser()`` and Hadoop's UGI name the application's user);
  its stdout/stderr are this process's (the container log files);
- registration signal: a log4j2 configuration we control (``SPARK_SUBMIT_OPTS``) sends
  the two loggers ``org.apache.spark.util.Utils`` and ``org.apache.spark.storage.BlockManager``
  to a private file; ``Initialized BlockManager`` there means the SparkContext is up (in
  real YARN the AM registers at the end of SparkContext init; this line is the last
  one SparkContext logs before that point), the ``sparkDriver`` port line gives the
  RPC port. The file is ours, so user output and ``sc.setLogLevel`` cannot fake or hide it;
- ``POST /ws/v1/minicluster/apps/{id}/register`` then; none within
  ``spark.yarn.am.waitTime`` (100s) -> driver killed, exit 13 (``EXIT_SC_NOT_INITED``);
- driver exit: registered -> ``POST .../unregister`` SUCCEEDED (exit 0) or, on the last
  attempt, FAILED with ``User application exited with status N``; exit with its code.
  An AM that never registered does not unregister (YARN then fails the attempt);
- SIGTERM/SIGINT/SIGHUP are forwarded to the whole driver process tree.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from typing import Any, Optional

EXIT_SC_NOT_INITED = 13
SIGNAL_FILE = "__minicluster_am_signal__.log"
LOG4J_FILE = "__minicluster_log4j2__.properties"
DRIVER_PROPS_FILE = "__minicluster_driver__.properties"
KILL_GRACE_SECONDS = 10.0
_SC_UP = re.compile(r"^org\.apache\.spark\.storage\.BlockManager Initialized BlockManager")
_DRIVER_PORT = re.compile(r"^org\.apache\.spark\.util\.Utils Successfully started service 'sparkDriver' on port (\d+)")
# Spark's own console layout, so the driver's stderr looks as it would on YARN.
LOG4J_TEMPLATE = """\
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
logger.jetty.name = org.sparkproject.jetty
logger.jetty.level = warn
logger.jetty2.name = org.sparkproject.jetty.util.component.AbstractLifeCycle
logger.jetty2.level = error
appender.amsignal.type = File
appender.amsignal.name = amsignal
appender.amsignal.fileName = {signal_file}
appender.amsignal.immediateFlush = true
appender.amsignal.layout.type = PatternLayout
appender.amsignal.layout.pattern = %c %m%n
logger.amsignal1.name = org.apache.spark.storage.BlockManager
logger.amsignal1.level = info
logger.amsignal1.appenderRef.amsignal.ref = amsignal
logger.amsignal2.name = org.apache.spark.util.Utils
logger.amsignal2.level = info
logger.amsignal2.appenderRef.amsignal.ref = amsignal
"""


def log(level: str, msg: str) -> None:
    """One line in log4j's layout on stderr (the container's stderr log)."""
    sys.stderr.write(f"{time.strftime('%y/%m/%d %H:%M:%S')} {level} ApplicationMaster: {msg}\n")
    sys.stderr.flush()


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse our command line; values may start with "-" (app args often do)."""
    names = {"--properties-file": "properties_file", "--class": "main_class", "--primary-py-file": "primary_py_file",
             "--primary-r-file": "primary_r_file", "--jar": "jar"}
    ns = argparse.Namespace(properties_file=None, main_class=None, primary_py_file=None, primary_r_file=None,
                            jar=None, args=[])
    it = iter(argv)
    for opt in it:
        try:
            value = next(it)
        except StopIteration:
            raise SystemExit(f"ApplicationMaster: {opt} needs a value") from None
        if opt == "--arg":
            ns.args.append(value)
        elif opt in names:
            setattr(ns, names[opt], value)
        else:
            raise SystemExit(f"ApplicationMaster: unknown option {opt}")
    if not ns.properties_file:
        raise SystemExit("ApplicationMaster: --properties-file is required")
    return ns


def ids_from_env(env: dict[str, str]) -> tuple[str, int]:
    """(application id, attempt number) from MINICLUSTER_APP_ID / CONTAINER_ID.

    Container ids are ``container_[e<epoch>_]<clusterTs>_<seq>_<attempt>_<n>``.
    """
    m = re.match(r"^container_(?:e\d+_)?(\d+)_(\d+)_(\d+)_\d+$", env.get("CONTAINER_ID", ""))
    attempt = int(m.group(3)) if m else 1
    app_id = env.get("MINICLUSTER_APP_ID") or (f"application_{m.group(1)}_{m.group(2)}" if m else "")
    if not app_id:
        raise SystemExit("ApplicationMaster: neither MINICLUSTER_APP_ID nor a valid CONTAINER_ID in the environment")
    return app_id, attempt


def find_spark_home(env: dict[str, str]) -> str:
    """A real SPARK_HOME: $SPARK_HOME if it has jars/, else the pyspark of this interpreter."""
    home = env.get("SPARK_HOME", "")
    if home and os.path.isdir(os.path.join(home, "jars")):
        return home
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.origin:
        raise SystemExit(f"ApplicationMaster: no SPARK_HOME and no pyspark importable by {sys.executable}")
    return os.path.dirname(spec.origin)


class RmClient:
    """POSTs to the RM's private AM endpoints, trying each address, following 307."""

    def __init__(self, urls: str, token: str) -> None:
        self.urls = [u.strip().rstrip("/") for u in urls.split(",") if u.strip()]
        self.token = token

    def post(self, path: str, body: dict[str, Any], attempts: int = 5) -> None:
        data = json.dumps(body).encode()
        last: Optional[BaseException] = None
        for i in range(attempts):
            for base in self.urls:
                url = base + path
                for _hop in range(3):  # a standby answers 307 to the active
                    if not url.startswith(("http://", "https://")):
                        raise RuntimeError(f"not an RM web address: {url}")
                    req = urllib.request.Request(url, data=data, method="POST")  # noqa: S310 - checked above
                    req.add_header("Content-Type", "application/json")
                    req.add_header("X-Minicluster-Am-Token", self.token)
                    try:
                        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
                            resp.read()
                        return
                    except urllib.error.HTTPError as e:
                        if e.code in (307, 308) and e.headers.get("Location"):
                            url = e.headers["Location"]
                            continue
                        raise RuntimeError(f"RM answered {e.code} to {path}: {e.read()[:500]!r}") from e
                    except OSError as e:  # dead RM: try the next one
                        last = e
                        break
            time.sleep(min(0.5 * 2**i, 5.0))
        raise RuntimeError(f"no ResourceManager reachable for {path}: {last}")


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        # the command name may contain spaces and parentheses: ppid follows the last ")"
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(name))
    return children


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc)."""
    children, out, todo = _children_map(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def signal_pids(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def _die_with_parent() -> None:
    """In the driver child: SIGKILL it if this AM dies abruptly (prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def unpack_archives(archives: list[list[str]]) -> None:
    """Unpack ``--archives`` into directories named by their link (YARN ARCHIVE semantics).

    The NodeManager may already have unpacked them (then ``link`` is a directory).
    """
    for name, link in archives:
        if os.path.isdir(link):
            continue
        src = name if os.path.isfile(name) else link
        tmp = f"{src}.__packed__"
        os.replace(src, tmp)
        os.makedirs(link, exist_ok=True)
        if zipfile.is_zipfile(tmp):
            with zipfile.ZipFile(tmp) as z:
                z.extractall(link)  # noqa: S202 - zipfile drops absolute and ".." parts
        else:
            with tarfile.open(tmp) as t:
                if hasattr(tarfile, "data_filter"):
                    t.extractall(link, filter="data")
                else:  # pragma: no cover - interpreters without PEP 706
                    t.extractall(link)  # noqa: S202
        os.remove(tmp)


def driver_java_options(conf: dict[str, str], log4j_path: str) -> None:
    """Make our log4j2 file part of the driver's logging even if the user named one.

    In client mode spark.driver.extraJavaOptions come after SPARK_SUBMIT_OPTS on the
    java command line, so a user's ``-Dlog4j2.configurationFile=X`` would replace ours;
    rewrite it to ``X,ours`` (log4j2 merges a comma list into one composite config).
    """
    opts = conf.get("spark.driver.extraJavaOptions", "")
    key = "-Dlog4j2.configurationFile="
    if key in opts:
        conf["spark.driver.extraJavaOptions"] = re.sub(
            re.escape(key) + r"(\S+)", lambda m: f"{key}{m.group(1)},{log4j_path}", opts
        )


def java_escape(text: str, is_key: bool) -> str:
    """Escape for java.util.Properties.load (keys also escape spaces)."""
    out = []
    for i, ch in enumerate(text):
        if ch in "\\=:#!":
            out.append("\\" + ch)
        elif ch == " " and (is_key or i == 0):
            out.append("\\ ")
        elif ch in "\n\r\t\f":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}[ch])
        elif ord(ch) < 0x20 or ord(ch) > 0x7E:
            out.append("".join(f"\\u{u:04x}" for u in _utf16(ch)))
        else:
            out.append(ch)
    return "".join(out)


def _utf16(ch: str) -> list[int]:
    b = ch.encode("utf-16-be")
    return [int.from_bytes(b[i : i + 2], "big") for i in range(0, len(b), 2)]


# Settings the AM decides itself (master/deploy mode) or that only make sense on the client.
_DROP = ("spark.master", "spark.submit.deployMode", "spark.jars", "spark.files", "spark.archives",
         "spark.submit.pyFiles", "spark.kerberos.principal", "spark.kerberos.keytab",
         "spark.yarn.principal", "spark.yarn.keytab")


def build_driver(ns: argparse.Namespace, spec: dict[str, Any], env: dict[str, str], cwd: str,
                 app_id: str) -> tuple[list[str], dict[str, str]]:
    """The driver's argv and environment."""
    conf = {k: str(v) for k, v in spec.get("conf", {}).items() if k not in _DROP}
    conf["spark.ui.port"] = "0"  # like the YARN AM: never fight over 4040
    conf.setdefault("spark.yarn.app.id", app_id)
    log4j_path = os.path.join(cwd, LOG4J_FILE)
    driver_java_options(conf, log4j_path)
    spark_home = find_spark_home(env)
    argv = [os.path.join(spark_home, "bin", "spark-submit"), "--master", "local[*]", "--deploy-mode", "client"]
    # A properties file, not --conf: settings can carry secrets (spark.yarn.appMasterEnv.*)
    # and argv is visible to every user on the host.
    props = os.path.join(cwd, DRIVER_PROPS_FILE)
    fd = os.open(props, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(f"{java_escape(k, True)}={java_escape(v, False)}\n" for k, v in sorted(conf.items()))
    argv += ["--properties-file", props]
    if spec.get("jars"):
        argv += ["--jars", ",".join(os.path.join(cwd, j) for j in spec["jars"])]
    if spec.get("pyFiles"):
        argv += ["--py-files", ",".join(os.path.join(cwd, p) for p in spec["pyFiles"])]
    if ns.main_class and not (ns.primary_py_file or ns.primary_r_file):
        argv += ["--class", ns.main_class]
    primary = ns.primary_py_file or ns.primary_r_file or ns.jar
    if not primary:
        raise SystemExit("ApplicationMaster: no primary resource")
    argv += [os.path.join(cwd, primary), *ns.args]

    denv = {k: v for k, v in env.items() if k not in ("MINICLUSTER_AM_TOKEN", "HADOOP_CONF_DIR", "YARN_CONF_DIR")}
    denv["SPARK_HOME"] = spark_home
    # Not running as the app user (a minicluster started without root): make Spark and
    # Hadoop see that user anyway. HADOOP_USER_NAME rather than --proxy-user, because a
    # proxy-user driver turns "python exited with N" into exit 1 (UndeclaredThrowable).
    spark_user = env.get("SPARK_USER", "")
    if spark_user and spark_user != pwd.getpwuid(os.geteuid()).pw_name:
        denv["HADOOP_USER_NAME"] = spark_user
    denv.setdefault("PYSPARK_PYTHON", sys.executable)
    denv.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    tmp = os.path.join(cwd, "tmp")
    os.makedirs(tmp, exist_ok=True)
    # Spark sees CONTAINER_ID and then insists on YARN's LOCAL_DIRS for its scratch space.
    denv.setdefault("LOCAL_DIRS", tmp)
    opts = f"-Djava.io.tmpdir={tmp} -Dlog4j2.configurationFile={log4j_path}"
    denv["SPARK_SUBMIT_OPTS"] = (env.get("SPARK_SUBMIT_OPTS", "") + " " + opts).strip()
    return argv, denv


class AppMaster:
    """Runs one driver and keeps the RM informed."""

    def __init__(self, ns: argparse.Namespace, env: dict[str, str]) -> None:
        self.ns = ns
        self.env = env
        self.cwd = os.getcwd()
        with open(ns.properties_file, encoding="utf-8") as f:
            self.spec: dict[str, Any] = json.load(f)
        self.conf: dict[str, str] = {k: str(v) for k, v in self.spec.get("conf", {}).items()}
        self.app_id, self.attempt = ids_from_env(env)
        urls = env.get("MINICLUSTER_RM_URLS") or env.get("MINICLUSTER_RM_URL", "")
        self.rm = RmClient(urls, env.get("MINICLUSTER_AM_TOKEN", ""))
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.terminated = False
        self.tree: list[int] = []  # the driver's process tree when we were told to stop

    def wait_time_ms(self) -> int:
        raw = self.conf.get("spark.yarn.am.waitTime", "100s").strip().lower()
        m = re.match(r"^(\d+)\s*(ms|s|m|min|h)?$", raw)
        if not m:
            return 100_000
        mult = {"ms": 1, "s": 1000, None: 1000, "m": 60_000, "min": 60_000, "h": 3_600_000}[m.group(2)]
        return int(m.group(1)) * mult

    def max_attempts(self) -> int:
        """min(spark.yarn.maxAppAttempts, yarn.resourcemanager.am.max-attempts), from the submit."""
        try:
            return int(self.env.get("MAX_APP_ATTEMPTS") or self.spec.get("maxAttempts")
                       or self.conf.get("spark.yarn.maxAppAttempts", "1"))
        except ValueError:
            return 1

    def on_signal(self, signum: int, _frame: Any) -> None:
        log("ERROR", f"RECEIVED SIGNAL {signal.Signals(signum).name}")
        self.terminated = True
        if self.proc is not None and self.proc.poll() is None:
            self.tree = process_tree(self.proc.pid)
            signal_pids(self.tree, signal.SIGTERM)

    def run(self) -> int:
        log("INFO", f"ApplicationAttemptId: appattempt_{self.app_id[len('application_'):]}_{self.attempt:06d}")
        unpack_archives(self.spec.get("archives", []))
        argv, denv = build_driver(self.ns, self.spec, self.env, self.cwd, self.app_id)
        sig_path = os.path.join(self.cwd, SIGNAL_FILE)
        with open(os.path.join(self.cwd, LOG4J_FILE), "w", encoding="utf-8") as f:
            f.write(LOG4J_TEMPLATE.format(signal_file=sig_path))
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, self.on_signal)
        log("INFO", "Starting the user application in a separate process")
        self.proc = subprocess.Popen(argv, env=denv, cwd=self.cwd, preexec_fn=_die_with_parent)
        log("INFO", "Waiting for spark context initialization...")
        registered = self.wait_for_context(sig_path)
        code = self.wait_driver()
        if self.terminated:
            return code
        if registered is None:  # timed out: driver already killed
            return EXIT_SC_NOT_INITED
        if registered:
            self.unregister(code)
        return code

    def wait_for_context(self, sig_path: str) -> Optional[bool]:
        """True once registered, False if the driver exited first, None on timeout."""
        assert self.proc is not None
        deadline = time.monotonic() + self.wait_time_ms() / 1000.0
        port, pos = 0, 0
        while True:
            try:
                with open(sig_path, encoding="utf-8", errors="replace") as f:
                    f.seek(pos)
                    chunk = f.read()
            except FileNotFoundError:
                chunk = ""
            lines = chunk.split("\n")
            pos += len(chunk) - len(lines[-1])  # keep a partial last line for next time
            for line in lines[:-1]:
                m = _DRIVER_PORT.match(line)
                if m:
                    port = int(m.group(1))
                if _SC_UP.match(line):
                    self.register(port)
                    return True
            if self.proc.poll() is not None or self.terminated:
                return False
            if time.monotonic() > deadline:
                log("ERROR", f"SparkContext did not initialize after waiting for {self.wait_time_ms()} ms. "
                    "Please check earlier log output for errors. Failing the application.")
                log("INFO", f"Final app status: FAILED, exitCode: {EXIT_SC_NOT_INITED}, "
                    "(reason: Timed out waiting for SparkContext.)")
                self.kill_driver()
                return None
            time.sleep(0.1)

    def register(self, port: int) -> None:
        host = self.env.get("NM_HOST") or socket.gethostname()
        self.rm.post(f"/ws/v1/minicluster/apps/{self.app_id}/register", {"host": host, "rpcPort": port})
        log("INFO", f"Registered with the ResourceManager (driver at {host}:{port})")

    def unregister(self, code: int) -> None:
        if code == 0:
            status, diag = "SUCCEEDED", ""
        else:
            status, diag = "FAILED", f"User application exited with status {code}"
            log("ERROR", diag)
            if self.attempt < self.max_attempts():
                return  # not the last attempt: let YARN retry, as Spark's AM does
        log("INFO", f"Final app status: {status}, exitCode: {code}" + (f", (reason: {diag})" if diag else ""))
        log("INFO", f"Unregistering ApplicationMaster with {status}" + (f" (diag message: {diag})" if diag else ""))
        self.rm.post(f"/ws/v1/minicluster/apps/{self.app_id}/unregister", {"finalStatus": status, "diagnostics": diag})

    def wait_driver(self) -> int:
        assert self.proc is not None
        while True:
            try:
                rc = self.proc.wait()
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
        if self.terminated:
            time.sleep(1.0)  # let children finish their own shutdown before the hard kill
            signal_pids(self.tree[1:], signal.SIGKILL)
        return rc if rc >= 0 else 128 - rc

    def kill_driver(self) -> None:
        """SIGTERM the driver tree, then SIGKILL whatever is left after the grace period."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            return
        # Snapshot while the driver is alive (not reaped): its pid cannot be reused yet.
        tree = process_tree(self.proc.pid)
        signal_pids(tree, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_SECONDS
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.proc.poll() is None:
            tree = sorted(set(tree) | set(process_tree(self.proc.pid)))
        signal_pids(tree, signal.SIGKILL)
        self.proc.wait()


def main(argv: Optional[list[str]] = None) -> int:
    ns = parse_args(sys.argv[1:] if argv is None else argv)
    return AppMaster(ns, dict(os.environ)).run()


if __name__ == "__main__":
    sys.exit(main())
