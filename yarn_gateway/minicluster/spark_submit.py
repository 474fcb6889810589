"""The minicluster's ``spark-submit``: Spark's CLI, YARN cluster mode over the RM's REST API.

Run as ``python -m yarn_gateway.minicluster.spark_submit`` (the fake SPARK_HOME's
``bin/spark-submit`` does that). ``--master yarn --deploy-mode cluster`` behaves like
Spark 3.5's ``Client`` (reference/yarn_fidelity.md §5): same log lines on stderr, same
errors, same exit codes; the AM container runs ``am.py`` (see there). Everything else
(other masters, ``--help``, ``--version``, usage errors) is handed to the real PySpark
``spark-submit``, which prints exactly what Spark prints. YARN client mode is refused:
it would need Hadoop IPC, which no minicluster speaks.

Identity as in Hadoop: simple auth sends ``user.name`` (``HADOOP_USER_NAME`` or the OS
user); a secure cluster (core-site ``hadoop.security.authentication=kerberos``) needs a
ticket, used through SPNEGO, with the JVM's view of Kerberos: the krb5.conf comes from
``-Djava.security.krb5.conf`` in SPARK_SUBMIT_OPTS/JAVA_TOOL_OPTIONS/_JAVA_OPTIONS (the JVM
ignores KRB5_CONFIG; default /etc/krb5.conf). ``--proxy-user`` becomes ``doAs``.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from typing import NoReturn, Optional

from yarn_gateway.minicluster.hadoop_conf import load_hadoop_conf
from yarn_gateway.minicluster.spark_submit_client import ARGS_FRAMES, RmSession, SubmitFailure, java_exception, log
from yarn_gateway.minicluster.spark_submit_job import SparkYarnJob

# Spark's options (SparkSubmitOptionParser) that take a value, with the property they set.
VALUE_OPTS: dict[str, Optional[str]] = {
    "--master": "spark.master", "--deploy-mode": "spark.submit.deployMode", "--class": None,
    "--name": "spark.app.name", "--jars": "spark.jars", "--packages": "spark.jars.packages",
    "--exclude-packages": "spark.jars.excludes", "--repositories": "spark.jars.repositories",
    "--py-files": "spark.submit.pyFiles", "--files": "spark.yarn.dist.files",
    "--archives": "spark.yarn.dist.archives", "--conf": None, "-c": None, "--properties-file": None,
    "--driver-memory": "spark.driver.memory", "--driver-java-options": "spark.driver.extraJavaOptions",
    "--driver-library-path": "spark.driver.extraLibraryPath",
    "--driver-class-path": "spark.driver.extraClassPath", "--executor-memory": "spark.executor.memory",
    "--driver-cores": "spark.driver.cores", "--executor-cores": "spark.executor.cores",
    "--total-executor-cores": "spark.cores.max", "--num-executors": "spark.executor.instances",
    "--queue": "spark.yarn.queue", "--proxy-user": None, "--principal": "spark.kerberos.principal",
    "--keytab": "spark.kerberos.keytab", "--kill": None, "--status": None,
}
FLAG_OPTS = {"--verbose", "-v", "--help", "-h", "--version", "--supervise", "--usage-error"}
_PASS_THROUGH_FLAGS = {"--help", "-h", "--version", "--usage-error"}


class UsageError(Exception):
    """An argument error the launcher itself reports (the real spark-submit prints it)."""


@dataclass
class SubmitArgs:
    """What the command line said, in Spark's terms."""

    opts: dict[str, str] = field(default_factory=dict)  # last value wins, as in Spark
    conf: dict[str, str] = field(default_factory=dict)
    conf_errors: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    primary: Optional[str] = None
    app_args: list[str] = field(default_factory=list)


def parse_args(argv: list[str]) -> SubmitArgs:
    """Parse like SparkSubmitOptionParser: options up to the primary resource, then app args."""
    args = SubmitArgs()
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, value = arg, None
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
        if name in VALUE_OPTS:
            if value is None:
                if i + 1 >= len(argv):
                    raise UsageError(f"Missing argument for option '{name}'.")
                value = argv[i + 1]
                i += 1
            if name in ("--conf", "-c"):
                if "=" not in value:
                    args.conf_errors.append(f"Spark config without '=': {value}")
                else:
                    k, v = value.split("=", 1)
                    args.conf[k.strip()] = v.strip()
            else:
                args.opts[name] = value
        elif arg in FLAG_OPTS:
            args.flags.add(arg)
        elif arg.startswith("-"):
            raise UsageError(f"Unrecognized option: {arg}")
        else:
            args.primary = arg
            args.app_args = argv[i + 1 :]
            break
        i += 1
    return args


def read_properties(path: str) -> dict[str, str]:
    """A Java properties file (spark-defaults.conf style: ``key value`` or ``key=value``)."""
    props: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#!":
                continue
            m = re.match(r"^(\S+?)\s*[=:\s]\s*(.*)$", line)
            if m:
                props[m.group(1)] = m.group(2).strip()
            else:
                props[line] = ""
    return props


def effective_conf(args: SubmitArgs, env: dict[str, str]) -> tuple[dict[str, str], Optional[str]]:
    """Spark properties in Spark's precedence: options > --conf > properties file.

    Returns the properties and the properties file used (None if none).
    """
    conf = dict(args.conf)
    props_file = args.opts.get("--properties-file")
    if props_file is None:
        conf_dir = env.get("SPARK_CONF_DIR") or os.path.join(env.get("SPARK_HOME", ""), "conf")
        candidate = os.path.join(conf_dir, "spark-defaults.conf")
        props_file = candidate if os.path.isfile(candidate) else None
    if props_file:
        for k, v in read_properties(props_file).items():
            conf.setdefault(k, v)
    for opt, value in args.opts.items():
        key = VALUE_OPTS.get(opt)
        if key:
            conf[key] = value
    for k in [k for k in conf if not k.startswith("spark.")]:
        warn(f"Ignoring non-Spark config property: {k}")
        del conf[k]
    if "spark.app.name" not in conf:
        name = args.opts.get("--class") or (os.path.basename(args.primary) if args.primary else None)
        if name:
            conf["spark.app.name"] = name
    return conf, props_file


def warn(msg: str) -> None:
    sys.stderr.write(f"Warning: {msg}\n")


def real_spark_home(conf: dict[str, str], env: dict[str, str]) -> str:
    """The real PySpark SPARK_HOME of the cluster env (``minicluster.container.spark-home``)."""
    home = conf.get("minicluster.container.spark-home")
    if home:
        return home
    base = env.get("YARN_GATEWAY_CLUSTER_ENV", "/opt/yarn-gateway-dev/cluster-venv")
    lib = os.path.join(base, "lib")
    for entry in sorted(os.listdir(lib)) if os.path.isdir(lib) else []:
        cand = os.path.join(lib, entry, "site-packages", "pyspark")
        if os.path.isdir(os.path.join(cand, "jars")):
            return cand
    raise SystemExit(f"spark-submit (minicluster): no real Spark found under {base}; run `make cluster-env`")


def exec_real(argv: list[str], hconf: dict[str, str], env: dict[str, str]) -> NoReturn:
    """Replace this process with the real spark-submit (same arguments, restored env)."""
    home = real_spark_home(hconf, env)
    env = dict(env, SPARK_HOME=home)
    if env.pop("MINICLUSTER_PYTHONPATH_ADDED", None):  # the fake SPARK_HOME's shim extended PYTHONPATH
        saved = env.pop("MINICLUSTER_SAVED_PYTHONPATH", None)
        if saved is None:
            env.pop("PYTHONPATH", None)
        else:
            env["PYTHONPATH"] = saved
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(os.path.join(home, "bin", "spark-submit"), ["spark-submit", *argv], env)  # noqa: S606


def hadoop_user(env: dict[str, str]) -> str:
    """The simple-auth login user: HADOOP_USER_NAME, else the OS user (like Hadoop's UGI)."""
    return env.get("HADOOP_USER_NAME") or pwd.getpwuid(os.geteuid()).pw_name


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    env = dict(os.environ)
    conf_dir = env.get("HADOOP_CONF_DIR") or env.get("YARN_CONF_DIR")
    hconf = load_hadoop_conf(conf_dir) if conf_dir else {}
    try:
        args = parse_args(argv)
    except UsageError:
        exec_real(argv, hconf, env)
    if args.flags & _PASS_THROUGH_FLAGS or args.primary is None or "--kill" in args.opts or "--status" in args.opts:
        exec_real(argv, hconf, env)
    sconf, props_file = effective_conf(args, env)
    master = sconf.get("spark.master", "local[*]")
    if master != "yarn":
        exec_real(argv, hconf, env)
    if sconf.get("spark.submit.deployMode", "client") != "cluster":
        sys.stderr.write("Error: the minicluster's spark-submit runs --master yarn only with --deploy-mode cluster "
                         "(YARN client mode needs Hadoop IPC to the ResourceManager).\n")
        return 1
    if "--verbose" in args.flags or "-v" in args.flags:
        print_verbose(args, sconf, props_file)
    for msg in args.conf_errors:
        java_exception("org.apache.spark.SparkException", msg, ARGS_FRAMES)
        return 1
    if not conf_dir:
        java_exception(
            "org.apache.spark.SparkException",
            "When running with master 'yarn' either HADOOP_CONF_DIR or YARN_CONF_DIR must be set in the environment.",
            ARGS_FRAMES)
        return 1
    proxy_user = args.opts.get("--proxy-user")
    if proxy_user and sconf.get("spark.kerberos.principal"):
        java_exception("org.apache.spark.SparkException",
                                 "Only one of --proxy-user or --principal can be provided.",
                                 ARGS_FRAMES)
        return 1
    if sconf.get("spark.jars.packages"):
        sys.stderr.write("Error: --packages is not supported by the minicluster (no Maven repository); "
                         "use --jars with local files.\n")
        return 1
    return run_cluster(args, sconf, hconf, env, proxy_user)


def _exit_on_signal(signum: int, _frame: object) -> None:
    sys.exit(128 + signum)


def run_cluster(args: SubmitArgs, sconf: dict[str, str], hconf: dict[str, str], env: dict[str, str],
                proxy_user: Optional[str]) -> int:
    """Spark's Client.run for cluster mode; returns the exit code."""
    tmp = tempfile.mkdtemp(prefix="spark-")
    # Like the JVM: SIGTERM/SIGINT still run the shutdown hooks (the log lines and the cleanup).
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    try:
        session = RmSession.from_conf(hconf, env, sconf, proxy_user=proxy_user, login_user=hadoop_user(env))
        job = SparkYarnJob(args.primary or "", args.app_args, args.opts.get("--class"), sconf, hconf, env,
                           session, tmp)
        return job.run()
    except SubmitFailure as e:
        e.print()
        return 1
    finally:
        log("INFO", "ShutdownHookManager", "Shutdown hook called")
        log("INFO", "ShutdownHookManager", f"Deleting directory {tmp}")
        shutil.rmtree(tmp, ignore_errors=True)


def print_verbose(args: SubmitArgs, sconf: dict[str, str], props_file: Optional[str]) -> None:
    """A short form of SparkSubmitArguments' --verbose output."""
    out = sys.stdout
    out.write(f"Using properties file: {props_file}\n")
    out.write("Parsed arguments:\n")
    for label, key in (("master", "spark.master"), ("deployMode", "spark.submit.deployMode"),
                       ("executorMemory", "spark.executor.memory"), ("driverMemory", "spark.driver.memory"),
                       ("queue", "spark.yarn.queue"), ("name", "spark.app.name"), ("jars", "spark.jars"),
                       ("pyFiles", "spark.submit.pyFiles"), ("files", "spark.yarn.dist.files"),
                       ("archives", "spark.yarn.dist.archives")):
        out.write(f"  {label:<25}{sconf.get(key, 'null')}\n")
    out.write(f"  {'mainClass':<25}{args.opts.get('--class', 'null')}\n")
    out.write(f"  {'primaryResource':<25}{args.primary}\n")
    out.write(f"  {'childArgs':<25}[{' '.join(args.app_args)}]\n")
    out.write(f"  {'verbose':<25}true\n\n")
    out.write("Spark properties used, including those specified through\n --conf and those from the properties file "
              f"{props_file}:\n")
    for k in sorted(sconf):
        shown = "*********(redacted)" if re.search(r"(?i)secret|password|token|appMasterEnv", k) else sconf[k]
        out.write(f"  ({k},{shown})\n")
    out.write("\n")
    out.flush()


if __name__ == "__main__":
    sys.exit(main())
