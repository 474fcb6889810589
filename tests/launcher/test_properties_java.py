"""The private properties file (spark_submit.write_properties) read back by a real JVM, as
spark-submit reads ``--properties-file`` (issue 15, item 15): every value, characters above
U+FFFF included, survives the round trip. Spark (Utils.getPropertiesFromFile) reads the file
as UTF-8 with java.util.Properties.load; the writer keeps the file ASCII and writes Java
``\\uXXXX`` escapes, which are UTF-16 code units, so an astral character is a surrogate pair."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from devcluster.spark_env import DEFAULT_CLUSTER_ENV
from yarn_gateway.yarn.spark_submit import write_properties

pytestmark = pytest.mark.jvm

PROBE_SRC = Path(__file__).with_name("PropertiesProbe.java")
SPARK_JARS = sorted(Path(DEFAULT_CLUSTER_ENV).glob("lib/python3*/site-packages/pyspark/jars"))

FIXED = {
    "EMOJI": "grinning 😀 face",
    "MUSIC": "clef 𝄞, umlaut ü, CJK 中文, last plane \U0010ffff",
    "ONLY_ASTRAL": "😀😀",
    "ESCAPES": "a=b:c #not a comment !nor this \\ back\\slash\ttab\nnewline\rcr",
    "LEADING_SPECIALS": "#!= starts with specials",
    "CONTROL": "\x01\x1f\x7f\x80\u2028\ufeff",
    "EMPTY": "",
}


def _random_values(n: int, seed: int = 15) -> dict[str, str]:
    rng = random.Random(seed)
    pools = [(0x20, 0x7E), (0xA0, 0x2FF), (0x4E00, 0x4FFF), (0xE000, 0xFFFD), (0x10000, 0x10FFFF)]
    out = {}
    for i in range(n):
        chars = []
        for _ in range(rng.randint(1, 24)):
            lo, hi = rng.choice(pools)
            chars.append(chr(rng.randint(lo, hi)))
        out[f"RANDOM_{i}"] = "".join(chars)
    return out


def _read_back(tmp_path: Path, values: dict[str, str], mode: str, classpath: str) -> dict[str, str]:
    java, javac = shutil.which("java"), shutil.which("javac")
    if not java or not javac:
        pytest.skip("java/javac not on PATH")
    classes = tmp_path / "classes"
    classes.mkdir(exist_ok=True)
    r = subprocess.run([javac, "-d", str(classes), "-cp", classpath, str(PROBE_SRC)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    props = tmp_path / f"kernel-{mode}.properties"
    write_properties(str(props), values, None)
    assert props.read_bytes().isascii()
    r = subprocess.run([java, "-cp", f"{classes}:{classpath}", "PropertiesProbe", mode, str(props)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    got = {}
    for line in r.stdout.splitlines():
        k, v = line.split(" ")
        got[bytes.fromhex(k).decode("utf-8")] = "" if v == "-" else bytes.fromhex(v).decode("utf-8")
    return got


def test_properties_round_trip_through_java_properties_load(tmp_path: Path) -> None:
    values = {**FIXED, **_random_values(200)}
    got = _read_back(tmp_path, values, "plain", ".")
    expected = {f"spark.yarn.appMasterEnv.{k}": v for k, v in values.items()}
    assert got == expected


@pytest.mark.skipif(not SPARK_JARS, reason="no Spark jars (make cluster-env)")
def test_properties_round_trip_through_spark_itself(tmp_path: Path) -> None:
    # Spark trims leading and trailing whitespace/control characters of every value (Spark's
    # choice, not the file's): compare only values it leaves alone.
    values = {k: v for k, v in {**FIXED, **_random_values(200, seed=16)}.items()
              if v and v[0] > " " and v[-1] > " "}
    assert "EMOJI" in values and "MUSIC" in values
    got = _read_back(tmp_path, values, "spark", f"{SPARK_JARS[0]}/*")
    assert got == {f"spark.yarn.appMasterEnv.{k}": v for k, v in values.items()}
