"""Hearing speech outside the server process (PocketSphinx holds the GIL while it decodes).

A collection's voice notes go to a child of their own that exits when done (at most ``MBM_SPEECH_CHILDREN``
at once); the app's spoken queries to :class:`SpeechWorker`, one long-lived child that exits when idle. Both
run ``python -m mbm.scenarios.retrieval.speech`` (JSON in and out). Like that module this one imports no torch.
"""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import sys
import threading

from mbm import limits
from mbm.errors import InputError
from mbm.scenarios.retrieval import speech

# Children at once (each ~0.14 GB at its peak, one clip and one decoder): more wait their turn.
_children = threading.BoundedSemaphore(limits.SPEECH_CHILDREN)
CHILD_TIMEOUT_S = 120.0  # and 6 s per note: a child that takes longer is killed, its notes listed as unreadable


def notes_in_child(paths: list[str], vocabulary: tuple[str, ...], budget_s: float | None) -> list:
    """:func:`~mbm.scenarios.retrieval.speech.transcribe_notes` in a child process that exits when done (at most
    ``MBM_SPEECH_CHILDREN`` at once); every note unreadable if the child fails or takes too long."""
    from mbm.paths import ROOT

    request = json.dumps({"paths": paths, "vocabulary": list(vocabulary), "budget_s": budget_s})
    timeout = CHILD_TIMEOUT_S + 6 * len(paths)
    try:
        with _children:
            proc = subprocess.run([sys.executable, "-m", "mbm.scenarios.retrieval.speech"], input=request,
                                  text=True, capture_output=True, cwd=ROOT, timeout=timeout, check=False)
        answer = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        answer = None
    if not isinstance(answer, list) or len(answer) != len(paths):
        return ["the speech recogniser failed or took too long"] * len(paths)
    return [tuple(a) if isinstance(a, list) else a for a in answer]


class SpeechWorker:
    """One long-lived child (``python -m mbm.scenarios.retrieval.speech --serve``) that hears the app's spoken
    queries, one at a time, a JSON line each way. Its decoder stays warm while visitors search by voice (0.4 s
    a query; a fresh child per query took 1.5 s, and under the hostile load test that queue pushed normal p95
    from 5 to 12 s), it decodes outside the server's GIL, and it exits after ``MBM_SPEECH_WORKER_IDLE_S``
    without a query, taking its memory with it (in the server, the decoder stayed for good)."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def ask(self, request: dict, timeout_s: float, wait_s: float = 8.0) -> list | None:
        """The worker's answer to one request, or None (it failed or took longer than ``timeout_s``).
        Raises InputError when other requests keep it busy for ``wait_s``: a flood of long noise clips (5 s
        each) must not hold every shared request slot while it waits."""
        if not self.lock.acquire(timeout=wait_s):
            raise InputError("the speech recogniser is busy with other visitors' clips; try again in a moment")
        try:
            for _ in range(2):  # the worker may have just exited idle: once more with a fresh one
                if self.proc is None or self.proc.poll() is not None:
                    self.proc = self._start()
                try:
                    self.proc.stdin.write(json.dumps(request) + "\n")
                    self.proc.stdin.flush()
                    ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
                    line = self.proc.stdout.readline() if ready else None
                except (OSError, ValueError):  # its pipe closed: it had exited
                    line = ""
                if line is None:  # too slow: stopped, so the next query starts a fresh one
                    self.stop()
                    return None
                if line:
                    try:
                        return json.loads(line)
                    except ValueError:
                        self.stop()
                        return None
                self.stop()
            return None
        finally:
            self.lock.release()

    @staticmethod
    def _start() -> subprocess.Popen:
        from mbm.paths import ROOT

        return subprocess.Popen([sys.executable, "-m", "mbm.scenarios.retrieval.speech", "--serve",
                                 str(limits.SPEECH_WORKER_IDLE_S)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, bufsize=1, cwd=ROOT)

    def stop(self) -> None:
        """Kill the child (the next request starts a fresh one)."""
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.kill()
            self.proc.wait()
            self.proc = None


WORKER = SpeechWorker()  # the app's one worker
QUERY_TIMEOUT_S = 30.0  # a 10 s clip decodes in about 4 s at worst


def serve(idle_s: float) -> int:
    """The worker's loop: a JSON request per line in, its answer per line out; exits after ``idle_s`` idle or
    when the server closes the pipe."""
    while select.select([sys.stdin], [], [], idle_s)[0]:
        line = sys.stdin.readline()
        if not line:
            break
        request = json.loads(line)
        out = speech.transcribe_notes(request["paths"], tuple(request["vocabulary"]), request["budget_s"],
                               free=bool(request.get("free")))
        sys.stdout.write(json.dumps([list(a) if isinstance(a, tuple) else a for a in out]) + "\n")
        sys.stdout.flush()
    return 0


def child_main() -> int:
    """``python -m mbm.scenarios.retrieval.speech``: one request of voice notes on stdin (the answer on stdout), or
    with ``--serve IDLE_S`` the worker's loop."""
    if sys.argv[1:2] == ["--serve"]:
        return serve(float(sys.argv[2]))
    request = json.loads(sys.stdin.read())
    out = speech.transcribe_notes(request["paths"], tuple(request["vocabulary"]), request["budget_s"])
    print(json.dumps([list(a) if isinstance(a, tuple) else a for a in out]))
    return 0
