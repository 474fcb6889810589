"""How the R launcher is handed to spark-submit, with and without ``$SPARK_HOME/R/lib/sparkr.zip``.

Real spark-submit refuses an R script in YARN mode when that archive is missing ("sparkr.zip does not
exist for R application in YARN mode"), as with pip's PySpark; the gateway then runs the script through
Spark's RRunner as an internal class (the end-to-end tests in test_r_kernel_yarn.py do exactly that)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from yarn_gateway.yarn.spark_submit import SubmitSpec, build_argv


def _spec(spark_home: Path, primary: str, **kw: Any) -> SubmitSpec:
    return SubmitSpec(spark_submit=str(spark_home / "bin" / "spark-submit"), proxy_user="alice", name="k",
                      primary=primary, app_args=["--kernel-id", "k1"], **kw)


def _after(argv: list[str], option: str) -> str:
    return argv[argv.index(option) + 1]


def test_r_script_without_sparkr_archive_runs_through_rrunner(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "/opt/launchers/launch_IRkernel.R", files=["/opt/launchers/rbackend_client.R"])
    argv = build_argv(spec, "/tmp/props")
    assert _after(argv, "--class") == "org.apache.spark.deploy.RRunner"
    files = ["/opt/launchers/rbackend_client.R", "/opt/launchers/launch_IRkernel.R"]
    assert _after(argv, "--files").split(",") == files
    # spark-internal (no user jar), then RRunner's own arguments: the script's name in the container, then ours.
    assert argv[argv.index("spark-internal"):] == ["spark-internal", "launch_IRkernel.R", "--kernel-id", "k1"]


def test_r_script_with_sparkr_archive_is_the_primary_resource(tmp_path: Path) -> None:
    (tmp_path / "R" / "lib").mkdir(parents=True)
    with zipfile.ZipFile(tmp_path / "R" / "lib" / "sparkr.zip", "w") as z:
        z.writestr("SparkR/", "")
    spec = _spec(tmp_path, "/opt/launchers/launch_IRkernel.R", files=["/opt/launchers/rbackend_client.R"])
    argv = build_argv(spec, "/tmp/props")
    assert "--class" not in argv and "spark-internal" not in argv
    assert _after(argv, "--files") == "/opt/launchers/rbackend_client.R"
    assert argv[-3:] == ["/opt/launchers/launch_IRkernel.R", "--kernel-id", "k1"]


def test_other_launchers_are_unchanged(tmp_path: Path) -> None:
    py = build_argv(_spec(tmp_path, "/opt/launchers/launch_ipykernel.py"), "/tmp/props")
    assert "--class" not in py and py[-3:] == ["/opt/launchers/launch_ipykernel.py", "--kernel-id", "k1"]
    jar = build_argv(_spec(tmp_path, "/opt/launchers/toree.jar", main_class="yarngateway.toree.ToreeLauncher"),
                     "/tmp/props")
    assert _after(jar, "--class") == "yarngateway.toree.ToreeLauncher"
    assert jar[-3:] == ["/opt/launchers/toree.jar", "--kernel-id", "k1"]
