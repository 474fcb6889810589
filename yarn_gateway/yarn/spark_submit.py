"""Building and running ``spark-submit --master yarn --deploy-mode cluster``.

The command is always an argv list (no shell). Values that come from a request (the
user name, KERNEL_* variables) never become options: the user name is validated, and
environment values travel in a private properties file (mode 0600) rather than argv,
which also keeps the launch token out of process listings. That file starts with the
cluster's own spark-defaults.conf, because ``--properties-file`` replaces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Callable, Optional

APP_ID = re.compile(r"\b(application_\d+_\d+)\b")
_SUBMITTED = re.compile(r"Submitted application (application_\d+_\d+)")
_USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.@-]{0,63}")
_TAG = re.compile(r"[\x21-\x7e]{1,100}")


def is_valid_user_name(name: str) -> bool:
    """A name that is safe as a --proxy-user value (no option, no separators)."""
    return bool(_USER.fullmatch(name)) and name not in (".", "..")


@dataclass
class SubmitSpec:
    """Everything that goes into one spark-submit (see :func:`build_argv`)."""

    spark_submit: str
    proxy_user: str
    name: str
    primary: str
    app_args: list[str] = field(default_factory=list)
    queue: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    conf: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # driver (AM) environment: properties file
    spark_opts: list[str] = field(default_factory=list)  # admin-written options from the kernelspec
    main_class: Optional[str] = None
    py_files: list[str] = field(default_factory=list)
    jars: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def build_argv(spec: SubmitSpec, properties_file: str) -> list[str]:
    """The spark-submit argv for ``spec`` (YARN cluster mode, fire and forget, one attempt)."""
    if not is_valid_user_name(spec.proxy_user):
        raise ValueError(f"invalid user name {spec.proxy_user!r}")
    for tag in spec.tags:
        if not _TAG.fullmatch(tag) or "," in tag:
            raise ValueError(f"invalid YARN tag {tag!r}")
    conf = {
        "spark.yarn.submit.waitAppCompletion": "false",
        "spark.yarn.maxAppAttempts": "1",
        **spec.conf,
    }
    if spec.tags:
        conf["spark.yarn.tags"] = ",".join(spec.tags)
    argv = [
        spec.spark_submit, "--master", "yarn", "--deploy-mode", "cluster",
        "--proxy-user", spec.proxy_user, "--name", spec.name,
        "--properties-file", properties_file,
    ]
    if spec.queue:
        argv += ["--queue", spec.queue]
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    argv += list(spec.spark_opts)
    if spec.py_files:
        argv += ["--py-files", ",".join(spec.py_files)]
    if spec.jars:
        argv += ["--jars", ",".join(spec.jars)]
    primary, app_args, files, main_class = spec.primary, list(spec.app_args), list(spec.files), spec.main_class
    if _is_r_script(primary) and not main_class and not os.path.isfile(sparkr_archive(spec.spark_submit)):
        # spark-submit refuses an R script in YARN mode without $SPARK_HOME/R/lib/sparkr.zip (pip's PySpark
        # has no R directory): run it through Spark's own RRunner as an internal class instead. The AM
        # then starts the RBackend and `Rscript <script> <args>` in the container, with the script shipped
        # like any other file (the SparkR package, which that zip would carry, is not there anyway).
        files.append(primary)
        app_args = [os.path.basename(primary), *app_args]
        primary, main_class = SPARK_INTERNAL, R_RUNNER
    if files:
        argv += ["--files", ",".join(files)]
    if main_class:
        argv += ["--class", main_class]
    return [*argv, primary, *app_args]


#: spark-submit's primary resource for a main class already on Spark's class path.
SPARK_INTERNAL = "spark-internal"
R_RUNNER = "org.apache.spark.deploy.RRunner"


def _is_r_script(path: str) -> bool:
    return path.endswith((".R", ".r"))


def sparkr_archive(spark_submit: str) -> str:
    """``$SPARK_HOME/R/lib/sparkr.zip`` of the Spark home ``spark_submit`` belongs to."""
    return os.path.join(os.path.dirname(os.path.dirname(spark_submit)), "R", "lib", "sparkr.zip")


def _escape(text: str, is_key: bool = False) -> str:
    out = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch in "=: #!" and (is_key or (ch in " #!" and i == 0)):
            out.append("\\" + ch)
        elif ord(ch) > 0xFFFF:
            # Java's \uXXXX escapes are UTF-16 code units: a character outside the BMP is a
            # surrogate pair (one escape of five hex digits would read as another character).
            high, low = divmod(ord(ch) - 0x10000, 0x400)
            out.append(f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}")
        elif ord(ch) > 0x7E or ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def properties_text(props: Mapping[str, str]) -> str:
    """Java ``.properties`` text for ``props`` (what spark-submit --properties-file reads)."""
    return "".join(f"{_escape(k, True)}={_escape(v)}\n" for k, v in props.items())


def write_properties(path: str, driver_env: Mapping[str, str], defaults_file: Optional[str]) -> None:
    """Write the private properties file: the cluster defaults, then the driver environment."""
    text = ""
    if defaults_file and os.path.isfile(defaults_file):
        with open(defaults_file, encoding="utf-8") as f:
            text = f.read()
        if text and not text.endswith("\n"):
            text += "\n"
    text += properties_text({f"spark.yarn.appMasterEnv.{k}": v for k, v in driver_env.items()})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


@dataclass
class SubmitResult:
    returncode: int
    app_id: Optional[str]
    output: list[str]

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output[-lines:])


async def run_spark_submit(
    argv: list[str],
    env: Mapping[str, str],
    timeout: float,
    on_app_id: Optional[Callable[[str], None]] = None,
    max_lines: int = 400,
) -> SubmitResult:
    """Run spark-submit, reporting the application id as soon as it is printed.

    The process gets its own session; on timeout or cancellation the whole group is
    killed (killing the client never kills a cluster-mode application: the caller does).
    """
    proc = await asyncio.create_subprocess_exec(
        *argv, env=dict(env), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )
    output: list[str] = []
    app_id: Optional[str] = None

    async def pump() -> None:
        nonlocal app_id
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            output.append(line)
            if len(output) > max_lines:
                del output[: len(output) - max_lines]
            if app_id is None:
                m = _SUBMITTED.search(line)
                if m:
                    app_id = m.group(1)
                    if on_app_id:
                        on_app_id(app_id)
        await proc.wait()

    try:
        await asyncio.wait_for(pump(), timeout)
    except BaseException:
        _kill_group(proc)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)
        raise
    assert proc.returncode is not None
    return SubmitResult(proc.returncode, app_id, output)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def diagnose(output: Iterable[str]) -> str:
    """The lines of spark-submit output a user should see (errors, without Java stack frames)."""
    from ..errors import strip_java_stack

    # With --proxy-user, spark-submit runs in a doAs: every failure surfaces as a bare
    # UndeclaredThrowableException whose "Caused by:" line holds what went wrong (unknown queue,
    # refused impersonation, ...). Keep causes as exception lines; only stack frames go.
    output = [_CAUSED_BY.sub("", ln) for ln in output]
    lines = [ln for ln in output if re.search(r"Exception|Error|ERROR|refused|denied|not allowed|Unauthorized", ln)]
    return strip_java_stack("\n".join(lines or list(output)[-5:]), max_lines=8)


_CAUSED_BY = re.compile(r"^\s*Caused by: ")
