"""Fixtures of the relay's channel tests (test_relay_zmtp.py, test_relay_libzmq.py,
test_relay_curve_zmtp.py): a libzmq context for the kernel-like peers, the kernel's CurveZMQ
key pair, and taps closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import zmq

from helpers.zmq_peers import Tap


@pytest.fixture
def ctx() -> Iterator[zmq.Context[Any]]:
    context: zmq.Context[Any] = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    """The kernel's CurveZMQ key pair (public, secret), Z85."""
    return zmq.curve_keypair()


@pytest.fixture
async def taps() -> AsyncIterator[list[Tap]]:
    made: list[Tap] = []
    yield made
    for tap in made:
        await tap.close()
