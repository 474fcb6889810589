"""The named-behaviour blocks of the end-to-end tests name the behaviour that failed."""

from __future__ import annotations

import asyncio

import pytest

from helpers.steps import behaviour


def test_a_failed_assertion_is_named_after_its_behaviour() -> None:
    with pytest.raises(AssertionError, match=r"^\[interrupt returns\] assert 7 < 5") as err:
        with behaviour("interrupt returns"):
            assert 7 < 5
    assert isinstance(err.value.__cause__, AssertionError)


def test_another_error_is_named_too_and_kept_below() -> None:
    with pytest.raises(AssertionError, match=r"^\[kernel starts\] TimeoutError: no reply") as err:
        with behaviour("kernel starts"):
            raise TimeoutError("no reply")
    assert isinstance(err.value.__cause__, TimeoutError)


async def test_a_passing_block_changes_nothing() -> None:
    with behaviour("cell runs"):
        assert await asyncio.sleep(0, result=42) == 42
