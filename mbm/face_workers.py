"""Face descriptors in worker processes, so portrait requests run side by side.

dlib's descriptor holds Python's GIL for its whole run (~60 ms a face on this CPU):
inside the app's single process, one portrait request stops every other request
and the web server itself. A :class:`FaceWorkerPool` runs the face model
(:mod:`mbm.face_features`, no torch: ~100 MB a worker) in ``workers`` separate
``python -m mbm.face_workers`` processes and has the same interface as
:class:`mbm.face_features.FaceEmbedder`, so :class:`mbm.portrait_inference.PortraitPredictor`
takes either.

    pool = FaceWorkerPool(2)
    feature = pool(rgb, require_face=True)   # FaceFeature, computed in a worker

Plain subprocesses with pickled messages over their pipes, not ``multiprocessing``:
its spawn mode would re-import the app's main script (and load every model) in each worker.
"""

from __future__ import annotations

import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from mbm.face_features import FaceFeature, face_embedder

ROOT = Path(__file__).resolve().parent.parent
_HEADER = struct.Struct("<Q")  # message length, then a pickle


def _send(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream):
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError("face worker pipe closed")
    (size,) = _HEADER.unpack(head)
    return pickle.loads(stream.read(size))


class _Worker:
    """One ``python -m mbm.face_workers`` process and its pipes."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "mbm.face_workers"], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if _receive(self.proc.stdout) != "ready":  # the models are loaded
            raise RuntimeError("face worker failed to start")

    def call(self, method: str, *args) -> tuple[str, object]:
        """("ok", result) or ("error", the exception the worker raised)."""
        _send(self.proc.stdin, (method, args))
        return _receive(self.proc.stdout)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class FaceWorkerPool:
    """A FaceEmbedder whose work runs in ``workers`` processes (started now, models loaded in each).

    Each call takes an idle worker (waiting for one if all are busy). Errors raised in a worker
    (e.g. :class:`mbm.errors.InputError`: no face found) are raised again in the caller, as the
    in-process embedder would raise them; a worker that died is replaced and the call retried.
    """

    def __init__(self, workers: int = 2):
        if workers < 1:
            raise ValueError("a face worker pool needs at least one worker")
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        starters = [threading.Thread(target=self._add) for _ in range(workers)]  # load the models in parallel
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        if len(self._all) < workers:
            self.close()
            raise RuntimeError("face workers failed to start (see the error above)")

    def _add(self) -> None:
        w = _Worker()
        with self._lock:
            self._all.append(w)
        self._idle.put(w)

    def _call(self, method: str, *args):
        for attempt in range(2):  # the work is a pure function: a worker that died is replaced and retried once
            w = self._idle.get()
            try:
                status, value = w.call(method, *args)
            except (EOFError, OSError):  # the worker died
                self._replace(w)
                continue
            except BaseException:  # interrupted mid-message: the pipe is out of step, so start afresh
                self._replace(w)
                raise
            self._idle.put(w)
            if status == "error":  # e.g. no face found: raised here as the in-process model raises it
                raise value
            return value
        raise RuntimeError("the face worker stopped unexpectedly twice; please try again")

    def _replace(self, w: _Worker) -> None:
        with self._lock:
            self._all.remove(w)
        w.close()
        self._add()

    def __call__(self, rgb: np.ndarray, require_face: bool = False) -> FaceFeature:
        return self._call("__call__", rgb, require_face)

    def chip(self, rgb: np.ndarray, require_face: bool = False) -> tuple[np.ndarray, bool, int]:
        return self._call("chip", rgb, require_face)

    def embed_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        return self._call("embed_chips", chips)

    def close(self) -> None:
        with self._lock:
            for w in self._all:
                w.close()
            self._all.clear()


def serve() -> None:
    """Worker loop: read (method, args) messages on stdin, answer (status, value) on stdout."""
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to stderr, not into the protocol
    embedder = face_embedder()
    _send(replies, "ready")
    while True:
        try:
            method, args = _receive(requests)
        except EOFError:
            return  # the app closed the pipe
        try:
            value = getattr(embedder, method)(*args)
            _send(replies, ("ok", value))
        except Exception as e:  # sent back and raised in the app, where it is handled
            _send(replies, ("error", e))


if __name__ == "__main__":
    serve()
