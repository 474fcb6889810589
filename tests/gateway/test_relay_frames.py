"""FrameReader: ZMTP framing under random chunking, oversize frames and messages, absurd lengths."""

from __future__ import annotations

import random
from typing import Any

import pytest

from yarn_gateway.relay.frames import FRAME_OVERHEAD, READ_MAX, FrameReader, ProtocolError
from yarn_gateway.relay.zmtp import encode_command, encode_message

BOUND = 64 * 1024


class Collector:
    def __init__(self, bound: int = BOUND) -> None:
        self.messages: list[list[bytes]] = []
        self.commands: list[bytes] = []
        self.oversize: list[tuple[list[bytes], int]] = []
        self.reader = FrameReader(lambda f: self.messages.append([bytes(x) for x in f]), self.commands.append,
                                  lambda kept, n: self.oversize.append(([bytes(x) for x in kept], n)), bound)
        self.reader.commands_only = False
        self.largest_body = 0  # the largest buffer allocated for one frame
        self.largest_read = 0

    def feed(self, data: bytes, rng: random.Random) -> None:
        """As a transport does: receive into the buffer handed out, in random amounts."""
        pos = 0
        while pos < len(data):
            buf = self.reader.get_buffer()
            assert len(buf) > 0
            if self.reader._body is not None:
                self.largest_body = max(self.largest_body, len(self.reader._body))
            else:
                self.largest_read = max(self.largest_read, len(self.reader._buf))
            n = min(len(buf), len(data) - pos, rng.choice((1, 2, 7, 100, 4096, 70_000, 1 << 20)))
            buf[:n] = data[pos:pos + n]
            pos += n
            self.reader.buffer_updated(n)


def _fits(frames: list[bytes]) -> bool:
    return sum(len(f) + FRAME_OVERHEAD for f in frames) <= BOUND


@pytest.mark.parametrize("seed", range(12))
def test_random_chunking_delivers_every_message_in_order_and_reports_every_oversize_one(seed: int) -> None:
    rng = random.Random(seed)
    stream: list[bytes] = []
    expected: list[Any] = []
    for i in range(300):
        kind = rng.random()
        if kind < 0.05:
            stream.append(encode_command(b"PING", b"\x00\x01ctx"))
            expected.append(("command", b"\x04PING\x00\x01ctx"))
            continue
        sizes = [rng.choice((0, 1, 255, 256, 1000, 20_000, 70_000)) for _ in range(rng.randint(1, 6))]
        frames = [bytes([i % 256]) * n for n in sizes]
        stream.append(encode_message(frames))
        if _fits(frames):
            expected.append(("message", frames))
        else:
            kept: list[bytes] = []
            for f in frames:
                if not _fits([*kept, f]):
                    break
                kept.append(f)
            expected.append(("oversize", (kept, sum(sizes))))
    got = Collector()
    order: list[Any] = []
    got.reader.on_message = lambda f: order.append(("message", [bytes(x) for x in f]))
    got.reader.on_command = lambda c: order.append(("command", c))
    got.reader.on_oversize = lambda kept, n: order.append(("oversize", ([bytes(x) for x in kept], n)))
    got.feed(b"".join(stream), rng)
    assert order == expected
    # No frame buffer past the bound was ever allocated; the read buffer stays at its maximum.
    assert 0 < got.largest_body <= BOUND and got.largest_read <= READ_MAX


def test_an_announcement_of_2_63_bytes_is_skipped_without_buffering() -> None:
    got = Collector()
    rng = random.Random(1)
    got.feed(encode_message([b"id", b"<IDS|MSG>"])[:-len(b"<IDS|MSG>") - 2], rng)  # "id" with MORE
    header = bytes((0x02,)) + (2**63).to_bytes(8, "big")
    got.feed(header, rng)
    chunk = b"\0" * (1 << 20)
    for _ in range(50):  # 50 MiB of the 2^63 announced
        got.feed(chunk, rng)
    # Nothing was allocated for it (at most for the 2-byte id frame, if a read split it).
    assert got.largest_body <= 2 and got.largest_read <= READ_MAX
    assert not got.messages and not got.oversize


def test_a_large_frame_is_received_into_its_own_buffer_once() -> None:
    got = Collector(bound=8 << 20)
    body = bytes(range(256)) * 16384  # 4 MiB
    got.feed(encode_message([b"a", body]), random.Random(3))
    assert got.messages == [[b"a", body]]


def test_an_oversize_command_is_a_protocol_error() -> None:
    got = Collector()
    with pytest.raises(ProtocolError, match="command of"):
        got.feed(bytes((0x06,)) + (2**63).to_bytes(8, "big"), random.Random(0))
