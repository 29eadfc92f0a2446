"""A chain of background threads, one per stage, each running ahead of the next.

Prediction of a cold-cache catalogue is a fetch (network-bound), a build (CPU) and the network
(CPU). Run one after the other per chunk, the fetch of chunk ``k + 1`` waits for the build of
chunk ``k``; in a chain of threads the fetcher keeps downloading while the builder reprojects and
the network infers, so the slowest stage, not the sum of all three, sets the pace. Every stage
is a single thread, so items leave in the order they came in.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["staged"]

_FINISHED = object()
_POLL_S = 0.1


class _Failure:
    """An exception raised by a stage, travelling down the chain to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _put(out: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put ``item``, giving up (False) once the consumer has stopped listening."""
    while not stop.is_set():
        try:
            out.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _drain(inbox: queue.Queue, stop: threading.Event) -> Iterator[Any]:
    """Items of ``inbox`` up to the end marker; a failure is passed on as an item."""
    while not stop.is_set():
        try:
            item = inbox.get(timeout=_POLL_S)
        except queue.Empty:
            continue
        if item is _FINISHED:
            return
        yield item
        if isinstance(item, _Failure):
            return


def _run_stage(func: Callable, items: Iterable, out: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in items:
            if stop.is_set():
                return
            result = item if isinstance(item, _Failure) else func(item)
            if not _put(out, result, stop) or isinstance(result, _Failure):
                return
        _put(out, _FINISHED, stop)
    except BaseException as err:  # handed to the consumer, which re-raises it
        _put(out, _Failure(err), stop)


def staged(items: Iterable, stages: list[tuple[Callable[[Any], Any], int]]) -> Iterator[Any]:
    """Yield ``stages[-1](...stages[0](item))`` for every item, each stage in its own thread.

    Parameters
    ----------
    items : iterable
        Inputs of the first stage (consumed in the first stage's thread).
    stages : list of (callable, int)
        Each stage's function and how many finished results it may hold ahead of the next.

    Yields
    ------
    object
        Results of the last stage, in input order.

    Raises
    ------
    BaseException
        The first exception any stage (or the input iterator) raised, re-raised here.
    """
    stop = threading.Event()
    threads = []
    source: Iterable = items
    outbox: queue.Queue | None = None
    for k, (func, ahead) in enumerate(stages):
        outbox = queue.Queue(maxsize=max(1, int(ahead)))
        thread = threading.Thread(
            target=_run_stage,
            args=(func, source, outbox, stop),
            name=f"mantis-predict-stage{k}",
            daemon=True,
        )
        threads.append(thread)
        source = _drain(outbox, stop)
    for thread in threads:
        thread.start()
    try:
        for item in source:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join()
