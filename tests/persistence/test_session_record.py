"""The typed session record: what a store writes comes back as the same typed record; a stored
object with a field of the wrong type is refused (with the field named) before any code reads
it; a record that omits optional fields gets their defaults."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from yarn_gateway.kernels.record_mac import seal
from yarn_gateway.kernels.session_record import RecordMalformed, new_record, parse_record
from yarn_gateway.kernels.store import DirectoryStore

KID = "0f4b6d2e-1111-2222-3333-444455556666"


def _full() -> dict[str, Any]:
    return dict(new_record(kernel_id=KID, owner="alice", name="spark_python_yarn_cluster",
                           env={"KERNEL_USERNAME": "alice"}, provisioner="YarnProvisioner",
                           provisioner_info={"kernel_id": KID, "app_id": "application_1_0001", "owner": "alice",
                                             "control_host": "127.0.0.1", "control_port": 40001},
                           connection_info={"ip": "127.0.0.1", "key": "k"}, last_activity=5.0))


def test_a_record_parses_back_to_itself() -> None:
    full = _full()
    assert parse_record(full) == full


def test_a_minimal_record_gets_the_defaults() -> None:
    rec = parse_record({"version": 1, "kernel_id": KID, "owner": "bob"})
    assert rec["started_by"] == "bob" and rec["provisioner_info"] == {} and rec["env"] == {}
    assert (rec["state"], rec["connection_info"], rec["last_activity"], rec["gateway_id"]) == \
        ("running", None, None, "default")
    assert parse_record({**_full(), "provisioner_info": None})["provisioner_info"] == {}


@pytest.mark.parametrize(("change", "named"), [
    ({"version": 2}, "record version '2'"),
    ({"owner": 7}, "no kernel_id or owner"),
    ({"env": ["KERNEL_USERNAME"]}, "'env' is a list"),
    ({"created": True}, "'created' is a bool"),
    ({"started_by": None}, "'started_by' is a NoneType"),
    ({"state": "zombie"}, "state 'zombie'"),
    ({"provisioner_info": {"app_id": 17}}, "provisioner_info 'app_id' is a int"),
    ({"provisioner_info": {"control_port": "40001"}}, "provisioner_info 'control_port' is a str"),
    ({"connection_info": "127.0.0.1:5555"}, "'connection_info' is a str"),
])
def test_a_field_of_the_wrong_type_is_refused_and_named(change: dict[str, Any], named: str) -> None:
    with pytest.raises(RecordMalformed) as err:
        parse_record({**_full(), **change})
    assert named in str(err.value)


async def test_a_store_ignores_a_sealed_record_of_the_wrong_shape(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    store = DirectoryStore(directory=str(tmp_path / "sessions"))
    await store.prepare()
    await store.put(new_record(kernel_id=KID, owner="alice", name="x"))
    assert (await store.get(KID) or {}).get("owner") == "alice"
    assert store._key is not None
    bad = {**_full(), "provisioner_info": {"app_id": ["application_1_0001"]}}
    path = tmp_path / "sessions" / f"{KID}.json"
    path.write_bytes(seal(store._key, bad))  # a genuine MAC: the shape is what is wrong
    with caplog.at_level(logging.WARNING):
        assert await store.get(KID) is None
        assert await store.all() == []
    assert "provisioner_info 'app_id' is a list" in caplog.text and store.rejected[KID]
