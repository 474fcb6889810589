"""ZMTP 3.0 framing, read within a size bound: what a kernel's TCP stream is cut into.

A ZMTP frame is a flags byte, a length (one byte, or eight with the LONG flag) and that
many bytes; a message is a run of frames with the MORE flag set on all but the last. The
length comes from the peer, so a :class:`FrameReader` never buffers on its word alone:

- a message (the sum of its frames, each counted with :data:`FRAME_OVERHEAD` bytes for the
  bookkeeping a frame costs) may not exceed ``max_message_bytes``. The frame whose header
  would pass the bound, and every later frame of that message, are *skipped*: read and
  discarded as they arrive, never kept. When the message ends, ``on_oversize`` learns the
  frames kept before the bound was passed (the routing ids and Jupyter header usually, a
  few KiB, within the bound) and the size the peer announced. A 2^63-byte announcement
  costs reading, not memory; the stream stays in step and the next message is read as usual.
- a command (PING, READY, ...) larger than ``max_command_bytes`` is a :class:`ProtocolError`.

It is a :class:`asyncio.BufferedProtocol` reader: the transport receives into the buffer
:meth:`get_buffer` hands out. Small frames are cut out of a reusable read buffer (one copy
each, as ``bytearray``); a frame that does not fit in what has arrived gets its own buffer
of its exact size, receives what had arrived (the only copy) and then the rest straight
from the socket.
"""

from __future__ import annotations

from typing import Callable, TypeAlias

#: Flag bits of a frame header.
MORE = 0x01
LONG = 0x02
COMMAND = 0x04
#: Bytes a kept frame is counted with beyond its length (a bytes object and a list slot), so
#: a million empty frames count against the bound too.
FRAME_OVERHEAD = 64
#: Read buffer: it starts small (most channels carry a few small replies) and doubles while
#: reads fill it (a flood of output), up to this many bytes.
READ_MIN = 8 * 1024
READ_MAX = 256 * 1024


#: A received frame: cut from the read buffer (bytes) or received into its own buffer.
Frame: TypeAlias = bytes | bytearray


class ProtocolError(Exception):
    """The peer does not speak ZMTP 3 with the NULL mechanism as we expect."""


class FrameReader:
    """Cuts a ZMTP byte stream (after the greeting) into messages and commands.

    ``on_command(body)`` gets every command frame, and every frame while
    :attr:`commands_only` is set (before READY: some ZMTP 3.0 peers send READY without the
    command flag). ``on_message(frames)`` gets every whole message within the bound, and
    ``on_oversize(kept, announced)`` every message that passed it (see the module docstring).
    A callback may call :meth:`halt`: nothing more is parsed.
    """

    def __init__(self, on_message: Callable[[list[Frame]], None], on_command: Callable[[bytes], None],
                 on_oversize: Callable[[list[Frame], int], None], max_message_bytes: int,
                 max_command_bytes: int = 64 * 1024) -> None:
        self.on_message = on_message
        self.on_command = on_command
        self.on_oversize = on_oversize
        self.max_message_bytes = max_message_bytes
        self.max_command_bytes = max_command_bytes
        self.commands_only = True
        self.halted = False
        self._buf = bytearray(READ_MIN)
        self._view = memoryview(self._buf)
        self._start = self._end = 0  # unparsed bytes of the read buffer
        self._filled = False  # the last read filled the read buffer: grow it when it is empty
        # A frame being received into its own buffer.
        self._body: bytearray | None = None
        self._body_view = memoryview(b"")
        self._body_pos = 0
        self._body_flags = 0
        # A frame being skipped: bytes still to discard, and its flags.
        self._skip = 0
        self._skip_flags = 0
        # The message being read.
        self._frames: list[Frame] = []
        self._kept = 0  # bytes counted against the bound
        self._announced = 0  # bytes its frames announced (kept or not)
        self._dropping = False

    def halt(self) -> None:
        self.halted = True

    # -- asyncio.BufferedProtocol's half ------------------------------------------------
    def get_buffer(self) -> memoryview:
        """Where the next bytes from the socket go (never empty)."""
        if self._body is not None:
            return self._body_view[self._body_pos:]
        if self._end == len(self._buf):
            # Only a partial frame header (< 9 bytes) can be left: a frame body that did not
            # fit went to its own buffer.
            rest = self._end - self._start
            self._buf[:rest] = self._buf[self._start:self._end]
            self._start, self._end = 0, rest
        return self._view[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` arrived in the buffer :meth:`get_buffer` gave: parse what is complete."""
        body = self._body
        if body is not None:
            self._body_pos += nbytes
            if self._body_pos < len(body):
                return
            flags = self._body_flags
            self._body, self._body_view = None, memoryview(b"")
            self._frame(flags, body)
            return  # the read buffer was empty when the body began
        self._filled = self._end + nbytes == len(self._buf)
        self._end += nbytes
        self._parse()

    # -- parsing ------------------------------------------------------------------------
    def _parse(self) -> None:
        buf, view = self._buf, self._view
        pos, end = self._start, self._end
        frames = self._frames
        while pos < end and not self.halted:
            if self._skip:
                n = min(self._skip, end - pos)
                pos += n
                self._skip -= n
                if not self._skip:
                    self._skipped()
                    frames = self._frames
                continue
            left = end - pos
            if left < 2:
                break
            flags = buf[pos]
            if flags & LONG:
                if left < 9:
                    break
                size = int.from_bytes(buf[pos + 1:pos + 9], "big")
                pos += 9
            else:
                size = buf[pos + 1]
                pos += 2
            stop = pos + size
            if not flags & COMMAND and not self.commands_only and not self._dropping:
                # The hot path: a data frame within the bound (what _admit and _frame do, inline).
                self._announced += size
                kept = self._kept + size + FRAME_OVERHEAD
                if kept <= self.max_message_bytes and stop <= end:
                    self._kept = kept
                    frames.append(buf[pos:stop])
                    pos = stop
                    if not flags & MORE:
                        self._frames = []
                        self._kept = self._announced = 0
                        self.on_message(frames)
                        frames = self._frames
                    continue
                self._announced -= size  # counted again below
            if not self._admit(flags, size):
                self._skip, self._skip_flags = size, flags
                if not size:
                    self._skipped()
                    frames = self._frames
                continue
            if stop <= end:
                body = buf[pos:stop]
                pos = stop
                self._frame(flags, body)
                frames = self._frames
                continue
            # The rest of this frame goes straight into its own buffer.
            partial = bytearray(size)
            partial[:end - pos] = view[pos:end]
            self._body, self._body_view = partial, memoryview(partial)
            self._body_pos, self._body_flags = end - pos, flags
            pos = end
        if pos == end:
            pos = end = 0
            if self._filled and len(self._buf) < READ_MAX:
                self._buf = bytearray(2 * len(self._buf))
                self._view = memoryview(self._buf)
            self._filled = False
        self._start, self._end = pos, end

    def _admit(self, flags: int, size: int) -> bool:
        """Whether a frame of ``size`` bytes is to be kept (else skipped)."""
        if flags & COMMAND or self.commands_only:
            if size > self.max_command_bytes:
                raise ProtocolError(f"it announced a command of {size} bytes")
            return True
        self._announced += size
        if self._dropping:
            return False
        kept = self._kept + size + FRAME_OVERHEAD
        if kept > self.max_message_bytes:
            self._dropping = True
            return False
        self._kept = kept
        return True

    def _frame(self, flags: int, body: Frame) -> None:
        if flags & COMMAND or self.commands_only:
            self.on_command(bytes(body))
            return
        self._frames.append(body)
        if not flags & MORE:
            frames = self._frames
            self._reset()
            self.on_message(frames)

    def _skipped(self) -> None:
        if self._skip_flags & MORE:
            return
        kept, announced = self._frames, self._announced
        self._reset()
        self.on_oversize(kept, announced)

    def _reset(self) -> None:
        self._frames = []
        self._kept = self._announced = 0
        self._dropping = False
