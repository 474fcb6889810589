"""Batch state is per event loop (issue 16): a batch on one loop's thread neither holds back nor
flushes another's deferred writes."""

from __future__ import annotations

import threading

from yarn_gateway.relay.batch import batch, batching, defer_flush


def test_batches_on_two_threads_flush_each_their_own() -> None:
    flushed: list[str] = []
    a_inside, b_done = threading.Event(), threading.Event()

    def a() -> None:
        with batch():
            defer_flush(lambda: flushed.append("a"))
            a_inside.set()
            assert b_done.wait(10)
            assert flushed == ["b"]  # b's batch ended while a's goes on: b's write went out, a's did not
        assert flushed == ["b", "a"]

    def b() -> None:
        assert a_inside.wait(10)
        assert not batching()  # a's batch is not b's
        with batch():
            defer_flush(lambda: flushed.append("b"))
        b_done.set()

    errors: list[BaseException] = []

    def run(fn: object) -> None:
        try:
            fn()  # type: ignore[operator]
        except BaseException as exc:  # reported below
            errors.append(exc)
            a_inside.set()
            b_done.set()

    threads = [threading.Thread(target=run, args=(f,)) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    assert flushed == ["b", "a"]


def test_nested_batches_flush_once_at_the_outermost_end() -> None:
    flushed: list[int] = []
    with batch():
        with batch():
            defer_flush(lambda: flushed.append(1))
        assert flushed == [] and batching()
    assert flushed == [1] and not batching()
