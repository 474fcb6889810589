"""Issue 15, item 4: session records are authenticated and re-validated; the directory store
is private (directory owner and mode, no symbolic links, no FIFOs, bounded size).

Fast: YARN kernels on the stand-in YARN (helpers.stub_yarn: the real launcher and ipykernel,
run locally; helpers.fake_rm), the real gateway in-process and restarted in-process, so a
kernel outlives its gateway as on YARN.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import uuid
from typing import Any

import pytest

from helpers.fake_rm import FakeRM
from helpers.stub_yarn import StubYarn
from yarn_gateway.kernels.housekeeping import sweep
from yarn_gateway.kernels.record_mac import seal
from yarn_gateway.kernels.session_record import new_record
from yarn_gateway.kernels.store import DirectoryStore, StoreConfigError

pytestmark = pytest.mark.fast
SPEC = "stub_yarn"


async def _start(gw: Any, user: str = "alice") -> str:
    r = await gw.client(user).request("POST", "api/kernels", {"name": SPEC}, timeout=60)
    assert r.code == 201, r.body
    return str(r.body["id"])


async def _run(gw: Any, kid: str, code: str, user: str = "alice") -> str:
    ws = await gw.client(user).connect(kid)
    try:
        return (await ws.execute(code)).text
    finally:
        ws.close()


async def _ids(gw: Any, user: str) -> list[str]:
    r = await gw.client(user).request("GET", "api/kernels")
    assert r.code == 200, r.body
    return sorted(m["id"] for m in r.body)


def _write(path: Any, data: bytes) -> None:
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _inner(sessions: Any, kid: str) -> dict[str, Any]:
    """The record the gateway stored for ``kid`` (inside its authenticated envelope)."""
    with open(sessions / f"{kid}.json", "rb") as f:
        doc = json.load(f)
    return dict(doc.get("record", doc))


def _legacy(record: dict[str, Any], **changes: Any) -> bytes:
    """A record as yarn-gateway wrote it before record MACs (or as anyone could plant it)."""
    return json.dumps({**record, **changes}).encode()


async def _first_gateway(make_gateway: Any, stub: StubYarn) -> str:
    """Alice's kernel (x = 'kept'), left running by a gateway that then stops."""
    stub.scenario(launch=True)
    first = await make_gateway(stub.config())
    kid = await _start(first)
    assert await _run(first, kid, "x = 'kept'; x") == "'kept'"
    await first.app.stop_server()  # the kernel is left running in "YARN"
    return kid


async def test_planted_forged_and_tampered_records_are_ignored_and_logged(
        make_gateway: Any, stub: StubYarn, fake_rm: FakeRM, sessions_dir: Any, tmp_path: Any,
        capfd: pytest.CaptureFixture[str]) -> None:
    kid = await _first_gateway(make_gateway, stub)
    legit = _inner(sessions_dir, kid)
    bob_env = {**legit["env"], "KERNEL_USERNAME": "bob"}
    planted = {name: str(uuid.uuid4()) for name in ("legacy", "forged", "tampered", "moved", "huge", "link")}
    # Bob plants a record in the format of the previous version that gives him alice's kernel.
    _write(sessions_dir / f"{planted['legacy']}.json",
           _legacy(legit, kernel_id=planted["legacy"], owner="bob", started_by="bob", env=bob_env))
    # ...or seals it himself, with a key of his own.
    forged = dict(legit, kernel_id=planted["forged"], owner="bob", started_by="bob", env=bob_env)
    _write(sessions_dir / f"{planted['forged']}.json", seal(secrets.token_bytes(32), forged))
    # ...or edits a genuine record: a new owner and name under the genuine MAC.
    with open(sessions_dir / f"{kid}.json", "rb") as f:
        genuine = f.read()
    doc = json.loads(genuine)
    doc.get("record", doc).update(kernel_id=planted["tampered"], owner="bob", started_by="bob")
    _write(sessions_dir / f"{planted['tampered']}.json", json.dumps(doc).encode())
    # ...or copies it, unchanged, under another kernel's name.
    _write(sessions_dir / f"{planted['moved']}.json", genuine)
    # A record past the size bound (a valid record of the old format, padded to 9 MiB).
    _write(sessions_dir / f"{planted['huge']}.json",
           _legacy(legit, kernel_id=planted["huge"], owner="bob", pad="x" * (9 << 20)))
    # A symbolic link to a record kept elsewhere.
    outside = tmp_path / "outside.json"
    _write(outside, _legacy(legit, kernel_id=planted["link"], owner="bob", started_by="bob", env=bob_env))
    os.symlink(outside, sessions_dir / f"{planted['link']}.json")

    second = await make_gateway(stub.config())
    for _ in range(3):  # every listing reads the store again
        assert await _ids(second, "bob") == []
        assert await _ids(second, "alice") == [kid]
    assert await _ids(second, "admin") == [kid]
    for name, pk in planted.items():
        assert (await second.client("bob").request("GET", f"api/kernels/{pk}")).code == 404, name
        assert (await second.client("admin").request("GET", f"api/kernels/{pk}")).code == 404, name
    # Alice's own kernel came back, state and all, and she can still start new ones.
    assert await _run(second, kid, "x") == "'kept'"
    new = await _start(second)
    assert await _run(second, new, "1 + 1") == "2"

    log = capfd.readouterr().err
    why = {"legacy": "written by a yarn-gateway version before session-record MACs",
           "forged": "its MAC does not verify", "tampered": "its MAC does not verify",
           "moved": "its MAC does not verify", "huge": "more than the limit of 8388608",
           "link": "is a symbolic link (never followed)"}
    for name, pk in planted.items():
        path = os.path.join(os.path.realpath(sessions_dir), f"{pk}.json")
        lines = [ln for ln in log.splitlines() if f"Ignoring session record {path}" in ln]
        assert len(lines) == 1, (name, lines)  # once, however often the store is read
        assert why[name] in lines[0], (name, lines[0])
        assert os.path.lexists(path), name  # logged, never deleted behind the operator's back
    legacy_line = next(ln for ln in log.splitlines() if planted["legacy"] in ln)
    assert "yarn application -kill" in legacy_line and "then delete the record" in legacy_line
    assert "same record key" in next(ln for ln in log.splitlines() if planted["forged"] in ln)
    assert legit["connection_info"]["key"] not in log
    with open(sessions_dir / f"{new}.json", "rb") as f:  # what the gateway writes: sealed
        doc = json.load(f)
    assert set(doc) == {"format", "version", "mac", "record"} and doc["mac"].startswith("hmac-sha256:")
    for k in (kid, new):
        assert (await second.client("alice").request("DELETE", f"api/kernels/{k}")).code == 204


async def test_record_running_as_another_user_is_refused(make_gateway: Any, stub: StubYarn, fake_rm: FakeRM,
                                                         sessions_dir: Any, capfd: pytest.CaptureFixture[str]) -> None:
    """A record that verifies (sealed with the gateway's key) but whose restart environment would
    run the kernel as bob (KERNEL_USERNAME becomes spark-submit's --proxy-user) under owner alice."""
    kid = await _first_gateway(make_gateway, stub)
    store = DirectoryStore(directory=str(sessions_dir))
    await store.start()
    record = await store.get(kid)
    assert record is not None and record["env"]["KERNEL_USERNAME"] == "alice"
    await store.put(dict(record, env={**record["env"], "KERNEL_USERNAME": "bob"}))

    cfg = stub.config()
    cfg["SessionKeeper"] = {"sweep_grace": 0.0}  # the sweep at start may take any application without a record
    second = await make_gateway(cfg)
    assert await _ids(second, "alice") == [] and await _ids(second, "bob") == []
    assert (await second.client("alice").request("GET", f"api/kernels/{kid}")).code == 404
    assert (await second.client("bob").request("GET", f"api/kernels/{kid}")).code == 404
    assert kid not in second.registry.kernels
    line = next(ln for ln in capfd.readouterr().err.splitlines() if f"Kernel {kid}: not re-attached" in ln)
    assert "KERNEL_USERNAME 'bob' is not its owner 'alice'" in line
    # Neither swept nor deleted: the operator decides.
    assert await sweep(second.registry.sessions) == ([], [])
    assert fake_rm.only_app()["state"] == "RUNNING" and (sessions_dir / f"{kid}.json").exists()
    # Once the operator removes the record, the application is an orphan like any other.
    os.remove(sessions_dir / f"{kid}.json")
    assert await sweep(second.registry.sessions) == ([fake_rm.only_app()["id"]], [])
    # Alice works as before.
    new = await _start(second)
    assert await _run(second, new, "6 * 7") == "42"
    assert (await second.client("alice").request("DELETE", f"api/kernels/{new}")).code == 204


async def test_a_recovered_kernel_keeps_only_the_environment_a_start_request_could_give(
        make_gateway: Any, stub: StubYarn, fake_rm: FakeRM, sessions_dir: Any,
        capfd: pytest.CaptureFixture[str]) -> None:
    kid = await _first_gateway(make_gateway, stub)
    store = DirectoryStore(directory=str(sessions_dir))
    await store.start()
    record = await store.get(kid)
    assert record is not None
    await store.put(dict(record, env={**record["env"], "LD_PRELOAD": "/tmp/evil.so", "KERNEL_EXTRA": "kept"}))
    second = await make_gateway(stub.config())
    assert await _ids(second, "alice") == [kid]
    assert await _run(second, kid, "x") == "'kept'"
    env = second.registry.kernels[kid].launch_env  # what a restart of this kernel would be given
    assert "LD_PRELOAD" not in env and env["KERNEL_EXTRA"] == "kept" and env["KERNEL_USERNAME"] == "alice"
    assert "LD_PRELOAD" not in second.registry.kernels[kid].km._launch_args["env"]
    assert f"Kernel {kid}: names dropped from its restart environment" in capfd.readouterr().err
    assert (await second.client("alice").request("DELETE", f"api/kernels/{kid}")).code == 204


async def test_symlink_and_fifo_in_the_store_are_never_followed(make_gateway: Any, stub: StubYarn, fake_rm: FakeRM,
                                                                sessions_dir: Any, tmp_path: Any) -> None:
    stub.scenario(launch=True)
    gw = await make_gateway(stub.config())
    sessions_dir.mkdir(mode=0o700, exist_ok=True)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    # What the previous version wrote through: <record>.tmp.<pid>, a predictable name.
    kid = str(uuid.uuid4())
    os.symlink(victim, sessions_dir / f"{kid}.json.tmp.{os.getpid()}")
    os.symlink(victim, sessions_dir / f"{kid}.json")
    store = await gw.registry.sessions._get_store()
    await store.put(new_record(kernel_id=kid, name=SPEC, owner="alice", started_by="alice", gateway_id="default",
                                env={"KERNEL_USERNAME": "alice"}, connection_info=None, state="launching"))
    assert victim.read_text() == "precious\n"
    st = os.lstat(sessions_dir / f"{kid}.json")  # the link was replaced by the record, not written through
    assert not os.path.islink(sessions_dir / f"{kid}.json") and st.st_mode & 0o777 == 0o600
    assert (await store.get(kid))["owner"] == "alice"
    await store.remove(kid)
    # A FIFO named like a record neither blocks a reader nor is taken for one.
    fifo = str(uuid.uuid4())
    os.mkfifo(sessions_dir / f"{fifo}.json", 0o600)
    assert await asyncio.wait_for(store.all(), 10) == []
    assert "not a regular file" in store.rejected[fifo]
    # Meanwhile alice's kernels start, run and are recorded as usual.
    new = await _start(gw)
    assert await _run(gw, new, "'ok'") == "'ok'"
    assert _inner(sessions_dir, new)["owner"] == "alice"
    assert victim.read_text() == "precious\n"
    assert (await gw.client("alice").request("DELETE", f"api/kernels/{new}")).code == 204


@pytest.mark.parametrize("unsafe", ["group-writable", "parent-writable"])
async def test_a_store_directory_others_can_write_stops_the_gateway(make_gateway: Any, tmp_path: Any,
                                                                   unsafe: str) -> None:
    if unsafe == "group-writable":
        directory = tmp_path / "sessions-gw"
        directory.mkdir()
        os.chmod(directory, 0o770)
    else:
        parent = tmp_path / "open"
        parent.mkdir()
        os.chmod(parent, 0o777)  # world-writable, not sticky: the store directory could be swapped
        directory = parent / "sessions"
        directory.mkdir(mode=0o700)
    with pytest.raises(StoreConfigError) as err:
        await make_gateway({"DirectoryStore": {"directory": str(directory)}})
    msg = str(err.value)
    assert msg.startswith("DirectoryStore.directory: ") and "writable by group or others" in msg
    assert ("chmod 700" in msg) if unsafe == "group-writable" else ("a parent of" in msg)
    # The same directory made private: the gateway starts and serves kernels.
    os.chmod(directory if unsafe == "group-writable" else directory.parent, 0o700)
    gw = await make_gateway({"DirectoryStore": {"directory": str(directory)}})
    kid = await gw.client("alice").start_kernel()
    assert await _run(gw, kid, "3 * 3") == "9"


async def test_a_store_directory_of_another_user_stops_the_gateway(make_gateway: Any, tmp_path: Any) -> None:
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)  # nobody's
    else:
        theirs = tmp_path.__class__("/tmp")  # root's: writable by all (sticky), owned by someone else
    with pytest.raises(StoreConfigError, match=r"^DirectoryStore\.directory: .* is owned by .*, not by the "
                       r"gateway's user .*: chown it to the gateway's user"):
        await make_gateway({"DirectoryStore": {"directory": str(theirs)}})
    gw = await make_gateway()  # the default test store: the gateway's own
    kid = await gw.client("alice").start_kernel()
    assert await _run(gw, kid, "'mine'") == "'mine'"


async def test_an_unsafe_record_key_stops_the_gateway(make_gateway: Any, sessions_dir: Any) -> None:
    store = DirectoryStore(directory=str(sessions_dir))
    await store.start()
    key = sessions_dir / ".record-key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes().strip()) == 64
    os.chmod(key, 0o644)
    with pytest.raises(StoreConfigError, match=r"record_key_file: .*\.record-key is accessible by group or others"):
        await make_gateway()
    os.chmod(key, 0o600)
    gw = await make_gateway()
    kid = await gw.client("alice").start_kernel()
    assert await _run(gw, kid, "2 ** 5") == "32"
