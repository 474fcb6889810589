"""Fixtures of the fast YARN-provisioner tests: the stand-in ResourceManager."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from helpers.fake_rm import FakeRM


@pytest.fixture
async def fake_rm() -> AsyncIterator[FakeRM]:
    rm = FakeRM()
    rm.start()
    yield rm
    await rm.stop()
