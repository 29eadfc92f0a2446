"""Merging concurrent ``/v1/predict`` requests into one catalogue.

Many small requests then cost about what one batch prediction of the same objects costs.

A single thread takes the oldest waiting request, adds every other waiting request that fits
(object budget, no position shared with the batch: shared positions would be flagged as
repeated ids), predicts the merged rows with `PredictionEngine.predict_frame` in a scratch
folder, and hands each request its slice.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections import deque
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pandas as pd

from mantis.serve._engine import PredictionEngine, position_ids

__all__ = ["Batcher"]


class Batcher:
    """Queue of ``/v1/predict`` requests served by one background thread.

    Parameters
    ----------
    engine : PredictionEngine
        Where predictions come from.
    scratch : Path
        Folder for the per-batch catalogue files (each removed after use).
    max_objects : int
        Most objects predicted in one merged batch.
    """

    def __init__(self, engine: PredictionEngine, scratch: Path, max_objects: int = 256) -> None:
        self.engine = engine
        self.scratch = scratch
        self.max_objects = max_objects
        self._queue: deque[tuple[pd.DataFrame, set, Future]] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="mantis-batcher", daemon=True)
        self._thread.start()

    def submit(self, frame: pd.DataFrame) -> Future:
        """Queue rows ``id``, ``ra``, ``dec``; the future gives ``(table, probs)``."""
        future: Future = Future()
        keys = set(position_ids(frame["ra"], frame["dec"]))
        with self._cond:
            self._queue.append((frame, keys, future))
            self._cond.notify()
        return future

    def close(self) -> None:
        """Stop the thread after the batch it is running."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=60)

    def _take(self) -> list[tuple[pd.DataFrame, set, Future]]:
        with self._cond:
            while not self._queue and not self._stop:
                self._cond.wait()
            if self._stop:
                return []
            batch = [self._queue.popleft()]
            n, keys = len(batch[0][0]), set(batch[0][1])
            kept: deque = deque()
            while self._queue:
                item = self._queue.popleft()
                if n + len(item[0]) <= self.max_objects and not keys & item[1]:
                    batch.append(item)
                    n += len(item[0])
                    keys |= item[1]
                else:
                    kept.append(item)
            self._queue.extendleft(reversed(kept))
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return
            workdir = Path(tempfile.mkdtemp(prefix="batch-", dir=self.scratch))
            try:
                merged = pd.concat([frame for frame, _, _ in batch], ignore_index=True)
                table, probs = self.engine.predict_frame(merged, workdir)
            except Exception as err:  # every waiting request learns what went wrong
                for _, _, future in batch:
                    future.set_exception(err)
                continue
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            start = 0
            for frame, _, future in batch:
                stop = start + len(frame)
                rows = table.iloc[start:stop].reset_index(drop=True)
                future.set_result((rows, np.ascontiguousarray(probs[start:stop])))
                start = stop
