"""Issue 15, identity/ACL/kernelspec/HTTP items: local kernels opt-in, kernelspec names resolved
before ACLs, kernelspec resource files, token file modes, cross-origin writes, log forging,
full-string name patterns, KERNEL_LAUNCH_TIMEOUT, deeply nested JSON."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from helpers.gateway_fixtures import TOKENS
from helpers.gwclient import GatewayClient, Reply

LOCAL_SPEC = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
              "display_name": "Local", "language": "python"}


async def round_trip(client: GatewayClient, name: str = "python_local") -> str:
    """A legitimate start and cell round trip; returns the kernel id."""
    kid = await client.start_kernel(name)
    ws = await client.connect(kid)
    try:
        assert (await ws.execute("6 * 7")).text == "42"
    finally:
        ws.close()
    return kid


async def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None,
                body: bytes | None = None) -> Reply:
    if body is None and method in ("POST", "PUT", "PATCH"):
        body = b""
    req = HTTPRequest(url, method=method, headers=headers or {}, body=body, allow_nonstandard_methods=True)
    resp = await AsyncHTTPClient().fetch(req, raise_error=False)
    text = resp.body.decode(errors="replace") if resp.body else ""
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return Reply(resp.code, parsed, resp.headers)


def auth(user: str = "alice", **extra: str) -> dict[str, str]:
    return {"Authorization": f"token {TOKENS[user]}", **extra}


# -- 3. local kernels are off unless named ---------------------------------------------------
def test_builtin_defaults_serve_yarn_kernelspecs_only() -> None:
    from yarn_gateway.app import YarnGatewayApp
    from yarn_gateway.auth.policy import AccessPolicy

    app = YarnGatewayApp()
    assert app.default_kernel_name == "spark_python_yarn_cluster"
    policy = AccessPolicy(parent=app)
    assert not policy.local_kernels_enabled and not policy.local_kernel_users and not policy.local_kernel_groups


async def test_local_kernels_refused_and_hidden_unless_named(make_gateway: Any, tmp_path: Any) -> None:
    specs = tmp_path / "specs"
    (specs / "other_local").mkdir(parents=True)
    (specs / "other_local" / "kernel.json").write_text(json.dumps(LOCAL_SPEC))
    from yarn_gateway.app import builtin_kernelspec_dir

    gw = await make_gateway({
        "YarnGatewayApp": {"kernelspec_dirs": [builtin_kernelspec_dir(), str(specs)]},
        "AccessPolicy": {"local_kernel_users": set(), "local_kernel_groups": {"devs"},
                         "user_groups": {"bob": ["devs"]}, "os_groups": False},
    })
    alice, bob = gw.client("alice"), gw.client("bob")
    for name in ("python_local", "Python_Local", "other_local"):
        r = await alice.request("POST", "api/kernels", {"name": name})
        assert r.code == 403, (name, r.code, r.body)
        assert "local_kernel_users" in r.body["message"] and "gateway's own Unix account" in r.body["message"]
        assert (await alice.request("GET", f"api/kernelspecs/{name}")).code == 403
        assert (await alice.request("GET", f"kernelspecs/{name}/logo-64x64.png")).code == 404
    assert not gw.registry.kernels
    listed = (await alice.request("GET", "api/kernelspecs")).body["kernelspecs"]
    assert "python_local" not in listed and "other_local" not in listed
    assert "spark_python_yarn_cluster" in listed  # the YARN kernelspecs stay visible
    # A member of a named group may use them, and sees them.
    assert {"python_local", "other_local"} <= set((await bob.request("GET", "api/kernelspecs")).body["kernelspecs"])
    await round_trip(bob)


async def test_local_kernels_for_named_users_only(make_gateway: Any) -> None:
    gw = await make_gateway({"AccessPolicy": {"local_kernel_users": {"bob"}}})
    r = await gw.client("alice").request("POST", "api/kernels", {"name": "python_local"})
    assert r.code == 403 and "name neither 'alice'" in r.body["message"]
    await round_trip(gw.client("bob"))


# -- 2. kernelspec names resolve before ACLs --------------------------------------------------
SPELLINGS = ("python_local", "Python_Local", "PYTHON_LOCAL", "pYthon_lOcal")


@pytest.mark.parametrize("acl_key", ["python_local", "Python_Local"])
async def test_kernelspec_acl_applies_to_every_spelling(make_gateway: Any, tmp_path: Any, acl_key: str) -> None:
    gw = await make_gateway({"AccessPolicy": {"kernelspec_acls": {acl_key: {"deny_users": ["bob"]}},
                                              "os_groups": False}})
    bob, alice = gw.client("bob"), gw.client("alice")
    for name in SPELLINGS:
        r = await bob.request("POST", "api/kernels", {"name": name})
        assert r.code == 403, (name, r.code, r.body)
        assert "'python_local'" in r.body["message"] and "deny_users" in r.body["message"]
        assert (await bob.request("GET", f"api/kernelspecs/{name}")).code == 403, name
    assert not gw.registry.kernels
    assert "python_local" not in (await bob.request("GET", "api/kernelspecs")).body["kernelspecs"]
    # Alice may: any spelling starts the canonical kernelspec.
    r = await alice.request("POST", "api/kernels", {"name": "Python_Local"})
    assert r.code == 201 and r.body["name"] == "python_local", r.body
    one = await alice.request("GET", "api/kernelspecs/PYTHON_LOCAL")
    assert one.code == 200 and one.body["name"] == "python_local"
    ws = await alice.connect(r.body["id"])
    assert (await ws.execute("1 + 1")).text == "2"
    ws.close()


async def test_restart_and_recovery_apply_current_acls(make_gateway: Any) -> None:
    gw = await make_gateway()
    alice = gw.client("alice")
    kid = await round_trip(alice, "Python_Local")
    assert gw.registry.kernels[kid].name == "python_local"
    gw.registry.policy.kernelspec_acls = {"PYTHON_LOCAL": {"deny_users": ["alice"]}}
    r = await alice.request("POST", f"api/kernels/{kid}/restart")
    assert r.code == 403 and "kernelspec_acls['PYTHON_LOCAL']" in r.body["message"], r.body
    # Recovery resolves a recorded name (any spelling) and applies the owner's ACLs to it.
    registry = gw.registry
    record = {"kernel_id": "00000000-0000-4000-8000-000000000001", "owner": "alice", "name": "Python_Local"}
    assert await registry.recovered_kernelspec(record) is None
    assert await registry.recovered_kernelspec({**record, "owner": "bob"}) == "python_local"
    # Bob's kernels keep working.
    await round_trip(gw.client("bob"), "PYTHON_LOCAL")


def test_acl_keys_naming_one_kernelspec_twice_are_refused() -> None:
    from yarn_gateway.auth.policy import AccessPolicy

    with pytest.raises(Exception, match="name the same kernelspec"):
        AccessPolicy(kernelspec_acls={"python_local": {}, "Python_Local": {"deny_users": ["bob"]}})


# -- 14. kernelspec resource files ------------------------------------------------------------
async def test_kernelspec_resources_acl_regular_files_inside_bounded(make_gateway: Any, tmp_path: Any) -> None:
    specs = tmp_path / "specs"
    d = specs / "logos"
    d.mkdir(parents=True)
    (d / "kernel.json").write_text(json.dumps(LOCAL_SPEC))
    (d / "logo-64x64.png").write_bytes(b"\x89PNG real logo")
    (d / "kernel.css").write_text("body {}")
    (d / "launcher_secret.py").write_text("SECRET = 'launcher file'")
    (d / "logo-32x32.png").symlink_to("/etc/passwd")  # a symlink out of the directory
    (d / "logo-svg.svg").symlink_to(d / "kernel.css")  # one within it is fine
    (d / "logo-128x128.png").write_bytes(b"x" * (2 * 1024 * 1024))  # over the bound
    os.mkfifo(d / "logo-16x16.png")  # not a regular file (reading it would block a thread forever)
    outside = tmp_path / "outside.css"
    outside.write_text("outside")
    (d / "kernel.js").symlink_to(outside)
    gw = await make_gateway({"YarnGatewayApp": {"kernelspec_dirs": [str(specs)], "default_kernel_name": "logos"},
                             "AccessPolicy": {"kernelspec_acls": {"logos": {"deny_users": ["bob"]}},
                                              "os_groups": False}})
    alice, bob = gw.client("alice"), gw.client("bob")
    for spelling in ("logos", "LOGOS"):
        ok = await alice.request("GET", f"kernelspecs/{spelling}/logo-64x64.png")
        assert ok.code == 200 and ok.body.endswith("PNG real logo") and ok.headers["Content-Type"] == "image/png"
    assert (await alice.request("GET", "kernelspecs/logos/logo-svg.svg")).code == 200
    for fname in ("logo-32x32.png", "kernel.js", "logo-128x128.png", "logo-16x16.png", "launcher_secret.py",
                  "kernel.json", "..%2Flogos%2Fkernel.json"):
        r = await alice.request("GET", f"kernelspecs/logos/{fname}")
        assert r.code == 404, (fname, r.code, r.body)
        assert "root:" not in json.dumps(r.body) and "SECRET" not in json.dumps(r.body)
    # A user denied the kernelspec gets exactly what a missing kernelspec gives.
    for spelling in ("logos", "Logos"):
        denied = await bob.request("GET", f"kernelspecs/{spelling}/logo-64x64.png")
        missing = await bob.request("GET", f"kernelspecs/{spelling}x/logo-64x64.png")
        assert denied.code == missing.code == 404
        assert denied.body["reason"] == missing.body["reason"]
        assert denied.body["message"].replace(spelling, "N") == missing.body["message"].replace(f"{spelling}x", "N")
    assert (await bob.request("HEAD", "kernelspecs/logos/logo-64x64.png")).code == 404
    await round_trip(alice, "logos")


# -- 11. token file modes and --token ---------------------------------------------------------
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
async def test_group_or_other_readable_token_file_is_refused(make_gateway: Any, token_file: str, mode: int) -> None:
    os.chmod(token_file, mode)
    with pytest.raises(PermissionError) as info:
        await make_gateway()
    assert token_file in str(info.value) and f"chmod 600 {token_file}" in str(info.value)
    os.chmod(token_file, 0o600)
    gw = await make_gateway()
    await round_trip(gw.client("alice"))


async def test_token_file_that_becomes_readable_is_not_trusted(make_gateway: Any, token_file: str) -> None:
    gw = await make_gateway()
    alice = gw.client("alice")
    assert (await alice.request("GET", "api")).code == 200
    os.chmod(token_file, 0o644)  # only the mode changes
    assert (await alice.request("GET", "api")).code == 401
    os.chmod(token_file, 0o600)
    await round_trip(alice)


def test_token_on_the_command_line_warns_and_points_to_safer_ways() -> None:
    from yarn_gateway.app import YarnGatewayApp

    app = YarnGatewayApp()
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    app.log.addHandler(handler)
    try:
        app.initialize(["--token=cli-secret-token-1234"])
    finally:
        app.log.removeHandler(handler)
    text = buf.getvalue()
    assert "command line" in text and "YARN_GATEWAY_TOKEN" in text and "token_file" in text
    assert "cli-secret-token-1234" not in text
    quiet = YarnGatewayApp()
    buf2 = io.StringIO()
    handler2 = logging.StreamHandler(buf2)
    quiet.log.addHandler(handler2)
    try:
        quiet.initialize([])
    finally:
        quiet.log.removeHandler(handler2)
    assert "command line" not in buf2.getvalue()


# -- 12. cross-origin writes ------------------------------------------------------------------
async def test_cross_origin_writes_and_websockets_are_refused(make_gateway: Any) -> None:
    gw = await make_gateway()
    evil = "https://evil.example.com"
    url = gw.url
    r = await fetch(url + "api/kernels", "POST", auth(Origin=evil), json.dumps({"name": "python_local"}).encode())
    assert r.code == 403 and r.body["reason"] == "Cross-origin request refused", r.body
    assert "allow_origin" in r.body["message"]
    assert not gw.registry.kernels
    null = await fetch(url + "api/kernels", "POST", auth(Origin="null"), b"{}")
    assert null.code == 403 and not gw.registry.kernels
    # No Origin (a desktop Jupyter server, a script) and a same-origin page both work.
    alice = gw.client("alice")
    kid = await round_trip(alice)
    same = await fetch(url + "api/kernels", "POST", auth(Origin=f"http://127.0.0.1:{gw.port}"),
                       json.dumps({"name": "python_local"}).encode())
    assert same.code == 201, same.body
    for method, path in (("DELETE", f"api/kernels/{kid}"), ("POST", f"api/kernels/{kid}/restart"),
                         ("POST", f"api/kernels/{kid}/interrupt")):
        refused = await fetch(url + path, method, auth(Origin=evil))
        assert refused.code == 403, (method, path, refused.code)
    assert kid in gw.registry.kernels
    # Reads stay readable (the browser keeps the answer from the page: no CORS headers).
    read = await fetch(url + "api/kernels", "GET", auth(Origin=evil))
    assert read.code == 200 and "Access-Control-Allow-Origin" not in read.headers
    ws_url = url.replace("http", "ws", 1) + f"api/kernels/{kid}/channels?session_id=x"
    with pytest.raises(HTTPClientError) as info:
        await websocket_connect(HTTPRequest(ws_url, headers=auth(Origin=evil)))
    assert info.value.code == 403
    ws = await alice.connect(kid)  # the legitimate client still relays
    assert (await ws.execute("2 + 2")).text == "4"
    ws.close()


async def test_allowed_origin_may_write(make_gateway: Any) -> None:
    site = "https://notebooks.example.com"
    gw = await make_gateway({"YarnGatewayApp": {"allow_origin": f"{site}, https://other.example.com:8443"}})
    pre = await fetch(gw.url + "api/kernels", "OPTIONS", {"Origin": site, "Access-Control-Request-Method": "POST"})
    assert pre.code == 204 and pre.headers["Access-Control-Allow-Origin"] == site
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    r = await fetch(gw.url + "api/kernels", "POST", auth(Origin=site), json.dumps({"name": "python_local"}).encode())
    assert r.code == 201 and r.headers["Access-Control-Allow-Origin"] == site
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    other = await fetch(gw.url + "api/kernels", "POST", auth(Origin="https://evil.example.com"), b"{}")
    assert other.code == 403
    bad_pre = await fetch(gw.url + "api/kernels", "OPTIONS", {"Origin": "https://evil.example.com"})
    assert bad_pre.code == 403
    ws_url = gw.url.replace("http", "ws", 1) + f"api/kernels/{r.body['id']}/channels?session_id=y"
    conn = await websocket_connect(HTTPRequest(ws_url, headers=auth(Origin=site)))
    conn.close()


# -- 13. client strings cannot forge log lines ------------------------------------------------
@contextmanager
def console_output(app: Any) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """What the daemon's own console handler writes, and what a plain handler (no filter)
    placed before it receives: the second shows the escaping at the log call sites."""
    real, plain = io.StringIO(), io.StringIO()
    console = app.log.handlers[0]
    old = console.setStream(real)
    raw = logging.StreamHandler(plain)
    raw.setFormatter(logging.Formatter("%(message)s"))
    app.log.handlers.insert(0, raw)
    try:
        yield real, plain
    finally:
        app.log.handlers.remove(raw)
        console.setStream(old)


async def test_newlines_in_names_and_paths_cannot_forge_log_lines(make_gateway: Any) -> None:
    gw = await make_gateway()
    alice = gw.client("alice")
    forged = "[W 2026-01-01 00:00:00.000 YarnGatewayApp] FORGED admin logged in"
    enc = forged.replace(" ", "%20").replace("[", "%5B").replace("]", "%5D")
    with console_output(gw.app) as (real, plain):
        assert (await alice.request("GET", f"api/kernelspecs/python_local%0A{enc}")).code == 404
        assert (await alice.request("GET", f"api/kernelspecs/x%0D%0A{enc}%1B[2J")).code == 404
        assert (await alice.request("GET", f"kernelspecs/python_local%0A{enc}/logo-64x64.png")).code == 404
        assert (await alice.request("POST", "api/kernels", {"name": f"nope\n{forged}"})).code == 404
        assert (await alice.request("POST", "api/kernels", {"name": f"nope\u2028{forged}"})).code == 404
        assert (await alice.request("GET", f"no/such%0A{enc}")).code == 404
        await round_trip(alice)
    for text in (real.getvalue(), plain.getvalue()):
        assert "FORGED" in text  # the attempts were logged...
        for line in text.splitlines():  # ...but never as a line of their own
            assert not line.startswith("[W 2026-01-01"), line
            assert "\x1b" not in line and "\r" not in line and "\u2028" not in line
        assert "\\x0a[W 2026-01-01" in text


def test_safe_text_escapes_every_control_character() -> None:
    from yarn_gateway.logs import safe_text

    assert safe_text("a\nb\rc\x00d\x1be\x7ff\x85g\u2028h\u2029i\tj") == \
        "a\\x0ab\\x0dc\\x00d\\x1be\\x7ff\\x85g\\u2028h\\u2029i\tj"
    assert safe_text("plain kernelspec_name-1.0 ünïcode") == "plain kernelspec_name-1.0 ünïcode"


# -- 15. full-string name patterns; KERNEL_LAUNCH_TIMEOUT -------------------------------------
async def test_trailing_newline_in_names_is_refused(make_gateway: Any) -> None:
    gw = await make_gateway()
    alice, admin = gw.client("alice"), gw.client("admin")
    r = await alice.request("POST", "api/kernels", {"name": "python_local", "env": {"KERNEL_FOO\n": "1"}})
    assert r.code == 400 and r.body["reason"] == "Bad env", r.body
    r = await admin.request("POST", "api/kernels", {"name": "python_local", "env": {"KERNEL_USERNAME": "bob\n"}})
    assert r.code == 400 and "KERNEL_USERNAME" in r.body["message"], r.body
    assert (await alice.request("POST", "api/kernels", {"name": "python_local\n"})).code == 404
    assert not gw.registry.kernels
    await round_trip(alice)


def test_name_patterns_match_whole_strings() -> None:
    from yarn_gateway.admin.rest import _kid
    from yarn_gateway.auth.kerberos import KerberosAuthenticator
    from yarn_gateway.kernels.params import ParameterSpecError, build_parameter, memory_bytes
    from yarn_gateway.yarn.spark_submit import is_valid_user_name

    assert is_valid_user_name("alice") and not is_valid_user_name("alice\n")
    krb = KerberosAuthenticator(auth_to_local=[r"(.+)@EXAMPLE\.COM => \1"])
    assert krb.map_principal("alice@EXAMPLE.COM", "EXAMPLE.COM") == "alice"
    assert krb.map_principal("alice\n@EXAMPLE.COM", "EXAMPLE.COM") is None
    plain = KerberosAuthenticator()
    assert plain.map_principal("bob\n@EXAMPLE.COM", "EXAMPLE.COM") is None
    uuid = "00000000-0000-4000-8000-000000000001"
    assert _kid(uuid) == uuid
    with pytest.raises(Exception, match="not a kernel id"):
        _kid(uuid + "\n")
    assert memory_bytes("1g") == 1024 ** 3
    with pytest.raises(ParameterSpecError, match="env must be"):
        build_parameter("x", {"type": "int", "env": "KERNEL_X\n", "maps_to": "spark.x"}, {}, None)
    with pytest.raises(ParameterSpecError, match="maps_to"):
        build_parameter("x", {"type": "int", "env": "KERNEL_X", "maps_to": "spark.x\n"}, {}, None)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1", "0"])
async def test_launch_timeout_must_be_a_finite_positive_number(make_gateway: Any, value: str) -> None:
    gw = await make_gateway()
    alice = gw.client("alice")
    r = await alice.request("POST", "api/kernels", {"name": "python_local", "env": {"KERNEL_LAUNCH_TIMEOUT": value}})
    assert r.code == 400 and r.body["reason"] == "Bad env" and "KERNEL_LAUNCH_TIMEOUT" in r.body["message"], r.body
    assert not gw.registry.kernels
    await round_trip(alice)


# -- 10. deeply nested JSON -------------------------------------------------------------------
@pytest.mark.parametrize("raw", [b"[" * 200_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
                                 b'{"name": "python_local", "env": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"])
async def test_deeply_nested_json_is_a_clear_400(make_gateway: Any, raw: bytes) -> None:
    gw = await make_gateway()
    alice = gw.client("alice")
    with console_output(gw.app) as (real, _plain):
        r = await alice.request("POST", "api/kernels", raw=raw)
    assert r.code == 400 and r.body["reason"] == "Malformed JSON", r.body
    assert "too deeply" in r.body["message"]
    assert "Traceback" not in real.getvalue() and "RecursionError" not in real.getvalue()
    assert not gw.registry.kernels
    await round_trip(alice)


# -- item 13: the websocket's session_id names the session in logs: only a plain name is taken ---------

async def test_a_session_id_with_control_characters_is_refused_and_a_uuid_accepted(gateway: Any) -> None:
    c = gateway.client()
    kid = await c.start_kernel()
    for bad in ("x\nFORGED log line", "x" * 129, "a b"):
        with pytest.raises(Exception) as info:
            await c.connect(kid, session_id=bad)
        assert "400" in str(info.value), info.value
    ws = await c.connect(kid, session_id=str(uuid.uuid4()))
    assert (await ws.execute("6*7")).text == "42"
    ws.close()
    await c.request("DELETE", f"api/kernels/{kid}")
