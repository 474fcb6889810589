"""KerberosLogin against a real KDC: private cache, renewal, re-login, named errors."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from helpers.waiting import wait_until
from yarn_gateway.kerberos import KerberosLogin, KerberosTicketError, read_tgt

pytestmark = pytest.mark.kerberos


def _login(krb, keytab: str, principal: str, **kw) -> KerberosLogin:
    return KerberosLogin(keytab=keytab, principal=krb.princ(principal), krb5_conf=krb.krb5_conf, **kw)


async def test_login_private_cache_and_submit_env(krb) -> None:
    login = _login(krb, krb.gw_keytab, "yarngw/_HOST")  # _HOST = this host's FQDN...
    login.principal = krb.princ("yarngw/localhost")  # ...which need not be localhost: name it
    await login.start()
    try:
        assert login.valid()
        t = await login.ensure_valid()
        assert t.principal == krb.princ("yarngw/localhost")
        assert 0 < t.remaining() <= 24 * 3600 and t.renewable
        st = os.stat(login.ccache_path)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(login.ccache_path)).st_mode) == 0o700
        assert read_tgt(login.ccache_path) == t
        env = login.submit_env()
        assert env["KRB5CCNAME"] == f"FILE:{login.ccache_path}"
        assert f"-Djava.security.krb5.conf={krb.krb5_conf}" in env["SPARK_SUBMIT_OPTS"]
        h = login.health()
        assert h["ok"] and h["principal"] == t.principal and h["expires"].endswith("Z")
        # The cache is usable by the real MIT tools.
        proc = await asyncio.create_subprocess_exec("klist", "-s", "-c", login.ccache_name,
                                                    env=dict(os.environ, KRB5_CONFIG=krb.krb5_conf))
        assert await proc.wait() == 0
    finally:
        await login.stop()
    assert not os.path.exists(login.ccache_path or "/nonexistent")


async def test_renews_then_logs_in_again(krb) -> None:
    p = "yarngw/renewunit"
    kt = krb.keytab_for(p, "renewunit.keytab")
    krb.realm.run_kadminl(f"modprinc -maxlife 12sec -maxrenewlife 20sec {krb.princ(p)}")
    login = _login(krb, kt, p, min_valid_seconds=2.0)
    await login.start()
    try:
        first = login.ticket
        assert first is not None and first.end - first.start <= 12 and first.renewable

        def logged_in_again() -> bool:
            assert login.valid(), "the ticket must never lapse"  # on every poll
            return login.refreshes["login"] >= 2

        await wait_until(logged_in_again, 30, lambda: f"a second login (refreshes: {login.refreshes})", interval=0.25)
        assert login.refreshes["renew"] >= 1, login.refreshes
        assert login.ticket is not None and login.ticket.end > first.renew_till - 1
    finally:
        await login.stop()


async def test_wrong_keytab_is_a_named_error(krb) -> None:
    p = "yarngw/stale"
    stale = krb.keytab_for(p, "stale.keytab")
    krb.realm.run_kadminl(f"cpw -randkey {krb.princ(p)}")  # new keys in the KDC: the keytab is now wrong
    login = _login(krb, stale, p, retry_interval=3600)
    await login.start()  # the daemon stays up; health and launches report the failure
    try:
        assert not login.valid()
        with pytest.raises(KerberosTicketError) as err:
            await login.ensure_valid()
        assert err.value.status == 503
        assert krb.princ(p) in err.value.message and stale in err.value.message
        assert "kinit" in err.value.message
        assert login.health()["ok"] is False
    finally:
        await login.stop()


async def test_missing_keytab_refuses_to_start(krb, tmp_path) -> None:
    login = _login(krb, str(tmp_path / "nope.keytab"), "yarngw/localhost")
    with pytest.raises(ValueError, match=r"nope\.keytab"):
        await login.start()


async def test_cancelled_login_leaves_no_kinit_running(krb, tmp_path) -> None:
    """A gateway stopped while kinit waits for a KDC that does not answer kills and reaps that kinit."""
    import socket

    import psutil

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a "KDC" that never answers
    silent.bind(("127.0.0.1", 0))
    conf = tmp_path / "krb5.conf"
    conf.write_text(f"[libdefaults]\n default_realm = {krb.name}\n udp_preference_limit = 100000\n"
                    f"[realms]\n {krb.name} = {{\n  kdc = 127.0.0.1:{silent.getsockname()[1]}\n }}\n")
    login = KerberosLogin(keytab=krb.gw_keytab, principal=krb.princ("yarngw/localhost"), krb5_conf=str(conf))
    task = asyncio.create_task(login.start())
    me = psutil.Process()
    kinits: list[psutil.Process] = await wait_until(lambda: [c for c in me.children() if c.name() == "kinit"], 20,
                                                    "kinit started", interval=0.05)
    await asyncio.sleep(0.3)
    assert kinits[0].is_running() and kinits[0].status() != psutil.STATUS_ZOMBIE  # still waiting for the KDC
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not psutil.pid_exists(kinits[0].pid)  # killed and reaped, not left for a closed loop
    assert login.ccache_path and not any(name.startswith(os.path.basename(login.ccache_path))
                                         for name in os.listdir(os.path.dirname(login.ccache_path)))
    await login.stop()
    silent.close()
