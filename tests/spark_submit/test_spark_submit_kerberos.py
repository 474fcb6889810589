"""spark-submit against a secure (Kerberos/SPNEGO) minicluster with a real KDC (k5test)."""

from __future__ import annotations

import os
import subprocess

import pytest
import requests
from conftest import ClusterThread

pytestmark = pytest.mark.kerberos


@pytest.fixture(scope="module")
def secure_cluster():
    k5test = pytest.importorskip("k5test")
    realm = k5test.K5Realm(portbase=61370, get_creds=False)
    saved = {k: os.environ.get(k) for k in ("KRB5_CONFIG", "KRB5_KTNAME")}
    try:
        realm.addprinc(f"alice@{realm.realm}", "alicepw")
        realm.addprinc(f"HTTP/localhost@{realm.realm}")
        keytab = os.path.join(realm.tmpdir, "http.keytab")
        realm.extract_keytab(f"HTTP/localhost@{realm.realm}", keytab)
        os.environ["KRB5_CONFIG"] = realm.env["KRB5_CONFIG"]  # the RM's acceptor runs in this process
        mc = ClusterThread(secure=True, http_keytab=keytab, http_principal=f"HTTP/localhost@{realm.realm}")
        try:
            yield realm, mc
        finally:
            mc.close()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        realm.stop()


def _submit(mc: ClusterThread, job: str, ccache: str, krb5_conf: str) -> subprocess.CompletedProcess[str]:
    env = mc.env(KRB5CCNAME=f"FILE:{ccache}", SPARK_SUBMIT_OPTS=f"-Djava.security.krb5.conf={krb5_conf}")
    env.pop("KRB5_CONFIG", None)
    return subprocess.run([os.path.join(mc.spark_home, "bin", "spark-submit"), "--master", "yarn", "--deploy-mode",
                           "cluster", "--conf", "spark.yarn.submit.waitAppCompletion=false", job],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.jvm
def test_spark_submit_secure_needs_a_ticket(secure_cluster, tmp_path) -> None:
    realm, mc = secure_cluster
    job = tmp_path / "job.py"
    job.write_text("print('hello')\n")
    ccache = str(tmp_path / "alice.ccache")
    krb5_conf = realm.env["KRB5_CONFIG"]
    r = _submit(mc, str(job), ccache, krb5_conf)
    assert r.returncode == 1
    assert "org.apache.hadoop.security.AccessControlException: Client cannot authenticate via:[TOKEN, KERBEROS]" in (
        r.stderr)
    assert r.stderr.splitlines()[1].startswith('Exception in thread "main" java.io.IOException: DestHost:destPort ')
    assert "Submitted application" not in r.stderr
    # the REST API itself refuses callers without SPNEGO
    assert requests.get(f"{mc.rm_url}/ws/v1/cluster/apps", timeout=10).status_code == 401

    realm.kinit(f"alice@{realm.realm}", "alicepw", env=dict(realm.env, KRB5CCNAME=f"FILE:{ccache}"))
    r = _submit(mc, str(job), ccache, krb5_conf)
    assert r.returncode == 0, r.stderr
    assert "(state: ACCEPTED)" in r.stderr and "\t user: alice\n" in r.stderr


@pytest.mark.jvm
def test_spark_submit_secure_principal_and_keytab(secure_cluster, tmp_path) -> None:
    realm, mc = secure_cluster
    job = tmp_path / "job.py"
    job.write_text("print('hello')\n")
    realm.addprinc(f"bob@{realm.realm}")  # its own principal: ktadd re-keys it
    keytab = str(tmp_path / "bob.keytab")
    realm.extract_keytab(f"bob@{realm.realm}", keytab)
    env = mc.env(KRB5CCNAME=f"FILE:{tmp_path}/none.ccache",
                 SPARK_SUBMIT_OPTS=f"-Djava.security.krb5.conf={realm.env['KRB5_CONFIG']}")
    r = subprocess.run([os.path.join(mc.spark_home, "bin", "spark-submit"), "--master", "yarn", "--deploy-mode",
                        "cluster", "--principal", f"bob@{realm.realm}", "--keytab", keytab, "--conf",
                        "spark.yarn.submit.waitAppCompletion=false", str(job)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"INFO Client: Kerberos credentials: principal = bob@{realm.realm}, keytab = {keytab}" in r.stderr
    assert "\t user: bob\n" in r.stderr
