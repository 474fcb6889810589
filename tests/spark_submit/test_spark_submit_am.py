"""The ApplicationMaster wrapper against the real PySpark driver (JVM) and a recording RM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import AM_PY, AmRecorder

APP = "application_1700000000000_0007"
CONTAINER = "container_1700000000000_0007_01_000001"


def _container(tmp_path, files: dict[str, str], conf: dict[str, str] | None = None, **spec) -> str:
    cwd = tmp_path / "container"
    cwd.mkdir()
    shutil.copy(AM_PY, cwd / "__minicluster_am__.py")
    for name, text in files.items():
        (cwd / name).write_text(text)
    (cwd / "__spark_conf__.json").write_text(json.dumps({"conf": conf or {}, **spec}))
    return str(cwd)


def _run_am(python: str, cwd: str, rec: AmRecorder, args: list[str], **kw) -> subprocess.Popen:
    env = {
        "PATH": os.environ["PATH"], "MINICLUSTER_RM_URL": rec.url, "MINICLUSTER_AM_TOKEN": "s3cret",
        "CONTAINER_ID": CONTAINER, "SPARK_USER": "alice", "NM_HOST": "localhost",
    }
    return subprocess.Popen([python, "__minicluster_am__.py", "--properties-file", "__spark_conf__.json", *args],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_spark_submit_am_ids_and_args() -> None:
    sys.path.insert(0, os.path.dirname(AM_PY))
    import am  # the shipped single file, imported like the container would run it

    assert am.ids_from_env({"CONTAINER_ID": "container_e17_1700000000000_0012_02_000001"}) == (
        "application_1700000000000_0012", 2)
    ns = am.parse_args(["--properties-file", "p.json", "--primary-py-file", "job.py", "--arg", "a", "--arg", "-b"])
    assert ns.args == ["a", "-b"] and ns.primary_py_file == "job.py"
    conf = {"spark.driver.extraJavaOptions": "-Dx=1 -Dlog4j2.configurationFile=user.xml"}
    am.driver_java_options(conf, "/c/ours.properties")
    assert conf["spark.driver.extraJavaOptions"] == "-Dx=1 -Dlog4j2.configurationFile=user.xml,/c/ours.properties"


@pytest.mark.jvm
def test_spark_submit_am_runs_driver_registers_and_unregisters(tmp_path, cluster_python, am_recorder) -> None:
    job = (
        "import getpass, os, sys\nfrom pyspark import SparkContext\nsc = SparkContext()\n"
        "sc.setLogLevel('ERROR')\n"
        "print('SPARKUSER', sc.sparkUser(), 'OSUSER', getpass.getuser(), 'ARGS', sys.argv[1:], flush=True)\n"
        "print('TOKEN', os.environ.get('MINICLUSTER_AM_TOKEN'), flush=True)\n"
        "print('SUM', sc.parallelize(range(10)).sum(), flush=True)\nsc.stop()\nsys.exit(int(sys.argv[1]))\n"
    )
    cwd = _container(tmp_path, {"job.py": job}, {"spark.app.name": "amtest"})
    p = _run_am(cluster_python, cwd, am_recorder, ["--primary-py-file", "job.py", "--arg", "3", "--arg", "x y"])
    out, err = p.communicate(timeout=120)
    assert p.returncode == 3, err
    assert "SPARKUSER alice" in out and "ARGS ['3', 'x y']" in out and "SUM 45" in out
    assert "TOKEN None" in out  # the AM token never reaches user code
    assert "INFO SparkContext: Running Spark version" in err  # driver log in Spark's layout
    paths = am_recorder.paths()
    assert paths == [f"/ws/v1/minicluster/apps/{APP}/register", f"/ws/v1/minicluster/apps/{APP}/unregister"]
    reg, unreg = am_recorder.posts[0][1], am_recorder.posts[1][1]
    assert reg["host"] == "localhost" and reg["rpcPort"] > 0
    assert unreg == {"finalStatus": "FAILED", "diagnostics": "User application exited with status 3"}
    assert all(tok == "s3cret" for _, _, tok in am_recorder.posts)


@pytest.mark.jvm
def test_spark_submit_am_times_out_without_spark_context(tmp_path, cluster_python, am_recorder) -> None:
    cwd = _container(tmp_path, {"idle.py": "import time\ntime.sleep(60)\n"}, {"spark.yarn.am.waitTime": "3s"})
    t0 = time.monotonic()
    p = _run_am(cluster_python, cwd, am_recorder, ["--primary-py-file", "idle.py"])
    _out, err = p.communicate(timeout=60)
    assert p.returncode == 13, err
    assert time.monotonic() - t0 < 30
    assert "Timed out waiting for SparkContext." in err
    assert am_recorder.posts == []  # never registered, so never unregisters


@pytest.mark.jvm
def test_spark_submit_am_forwards_sigterm_to_driver_tree(tmp_path, cluster_python, am_recorder) -> None:
    job = "import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(120)\n"
    cwd = _container(tmp_path, {"sleepy.py": job})
    p = _run_am(cluster_python, cwd, am_recorder, ["--primary-py-file", "sleepy.py"])
    pid_file = os.path.join(cwd, "pid")
    deadline = time.monotonic() + 30
    while not os.path.exists(pid_file) and time.monotonic() < deadline:
        time.sleep(0.1)
    user_pid = int(open(pid_file).read())
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=30)
    assert p.returncode != 0
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(user_pid, 0)


def test_spark_submit_am_java_properties_escaping(tmp_path) -> None:
    sys.path.insert(0, os.path.dirname(AM_PY))
    import am

    assert am.java_escape("a b=c", True) == "a\\ b\\=c"
    assert am.java_escape(" x:y\n\u00e9", False) == "\\ x\\:y\\n\\u00e9"
