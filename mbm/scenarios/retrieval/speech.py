"""Speech recognisers for collection vocabularies, kept within a memory budget (issue 27).

Each collection has its own vocabulary, so its own PocketSphinx decoder (~90 MB: the acoustic model is
loaded per decoder). ``encoders.recognizer`` keeps the last 8 whatever they weigh (idle memory grew by
60-90 MB per uploaded collection); the app and the indexer get theirs from here instead: least recently
used first out once their estimated memory passes ``MBM_SPEECH_CACHE_MB``. A decoder is used by one
thread at a time.

A collection's voice notes are transcribed by :func:`transcribe_notes`; in the app (``apart=True``) in a
child process (``python -m mbm.scenarios.retrieval.speech``, JSON in and out) that exits when done:
PocketSphinx holds the GIL while it decodes (4 s for a 10 s noise clip with a collection's grammar), which
in the server stalled every other request, and the child's recogniser leaves no memory behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import OrderedDict

from mbm import limits

_lock = threading.Lock()
_cache: OrderedDict[tuple[str, ...], tuple[object, threading.Lock, int]] = OrderedDict()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except (OSError, ValueError, IndexError):
        return 0


def cached_bytes() -> int:
    """The estimated memory of the recognisers kept now."""
    with _lock:
        return sum(size for _, _, size in _cache.values())


def clear() -> None:
    with _lock:
        _cache.clear()


def recognizer(vocabulary: tuple[str, ...] = ()):
    """(SpeechRecognizer, its lock) for a vocabulary: a kept one, or a new one kept within the budget."""
    from mbm.scenarios.retrieval.encoders import SpeechRecognizer

    key = tuple(sorted(set(vocabulary)))
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            rec, lock, _ = _cache[key]
            return rec, lock
    before = _rss_bytes()
    rec = SpeechRecognizer(key)
    # the memory it took (other requests running meanwhile may add to it: counted at most twice the estimate)
    size = min(max(_rss_bytes() - before, limits.SPEECH_RECOGNISER_BYTES), 2 * limits.SPEECH_RECOGNISER_BYTES)
    lock = threading.Lock()
    with _lock:
        if key in _cache:  # built meanwhile by another request: use that one
            _cache.move_to_end(key)
            return _cache[key][:2]
        if size <= limits.SPEECH_CACHE_BYTES:
            _cache[key] = (rec, lock, size)
            while sum(s for _, _, s in _cache.values()) > limits.SPEECH_CACHE_BYTES:
                _cache.popitem(last=False)
    return rec, lock


def transcribe(source, vocabulary: tuple[str, ...] = ()) -> tuple[str, list[str], float]:
    """What was said in a clip (path / bytes), its notes (cut, ...) and the seconds of audio heard."""
    from mbm.scenarios.retrieval.encoders import speech_wave

    wave, notes = speech_wave(source)
    rec, lock = recognizer(vocabulary)
    with lock:
        text = rec.transcribe(wave)
    return text, notes, len(wave) / 16000


OVER_BUDGET = "over budget"
CHILD_TIMEOUT_S = 120.0  # and 6 s per note: a child that takes longer is killed, its notes listed as unreadable


def transcribe_notes(paths: list[str], vocabulary: tuple[str, ...], budget_s: float | None = None,
                     apart: bool = False) -> list:
    """Each voice note: ``(text, notes, seconds heard)``, or why it was not (a string; :data:`OVER_BUDGET` once
    ``budget_s`` seconds were heard). ``apart``: in a child process."""
    if not paths:
        return []
    if apart:
        return _in_child(paths, vocabulary, budget_s)
    out, heard = [], 0.0
    for p in paths:
        if budget_s is not None and heard >= budget_s:
            out.append(OVER_BUDGET)
            continue
        try:
            text, notes, seconds = transcribe(p, vocabulary)
        except Exception as e:  # noqa: BLE001 - the caller lists it
            out.append(str(e)[:160] or type(e).__name__)
            continue
        heard += seconds
        out.append((text, notes, seconds))
    return out


def _in_child(paths: list[str], vocabulary: tuple[str, ...], budget_s: float | None) -> list:
    from mbm.paths import ROOT

    request = json.dumps({"paths": paths, "vocabulary": list(vocabulary), "budget_s": budget_s})
    timeout = CHILD_TIMEOUT_S + 6 * len(paths)
    try:
        proc = subprocess.run([sys.executable, "-m", "mbm.scenarios.retrieval.speech"], input=request, text=True,
                              capture_output=True, cwd=ROOT, timeout=timeout, check=False)
        answer = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        answer = None
    if not isinstance(answer, list) or len(answer) != len(paths):
        return ["the speech recogniser failed or took too long"] * len(paths)
    return [tuple(a) if isinstance(a, list) else a for a in answer]


def _child_main() -> int:
    request = json.loads(sys.stdin.read())
    out = transcribe_notes(request["paths"], tuple(request["vocabulary"]), request["budget_s"])
    print(json.dumps([list(a) if isinstance(a, tuple) else a for a in out]))
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main())
