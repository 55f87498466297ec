"""Speech: what was said in a spoken query or a collection's voice note (PocketSphinx), with no torch.

PocketSphinx 5.1.1 (US-English model inside the wheel) with a JSGF grammar built from the collection's
vocabulary (its captions, the device names and paraphrases, the ImageNet names); the transcript is then a
text query (``mbm.scenarios.retrieval.search``).

Each collection has its own vocabulary, so its own decoder (~90 MB: the acoustic model is loaded per
decoder). :func:`recognizer` keeps them least recently used first out once their estimated memory passes
``MBM_SPEECH_CACHE_MB`` (issue 27: a cache of the last 8, whatever they weighed, let idle memory grow by
60-90 MB per uploaded collection). A decoder is used by one thread at a time.

A collection's voice notes are transcribed by :func:`transcribe_notes`; in the app (``apart=True``) in a
child process (``python -m mbm.scenarios.retrieval.speech``, JSON in and out) that exits when done:
PocketSphinx holds the GIL while it decodes (4 s for a 10 s noise clip with a collection's grammar), which
in the server stalled every other request, and the child's recogniser leaves no memory behind. This module
imports no torch (nor ``mbm.preprocess`` or ``encoders``; audio is read by ``mbm.safe_media``), so the child
holds PocketSphinx and one clip, not a second copy of torch: its peak RSS 0.14 GB instead of 0.70 GB.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
from collections import OrderedDict

import numpy as np

from mbm import limits
from mbm.errors import InputError

MAX_SPEECH_SECONDS = 10.0  # a longer clip is cut (and the user told): the grammar expects one phrase
BASE_PHRASES = ("blinds", "curtains", "window shade", "door", "front door", "fan", "ceiling fan", "desk fan",
                "tower fan", "heater", "space heater", "radiator", "lamp", "table lamp", "desk lamp",
                "floor lamp", "reading light", "light", "music player", "radio", "stereo", "boombox",
                "cd player", "cassette player", "speaker", "tv", "television", "monitor", "screen")
FILLERS = frozenset(("a", "an", "the", "some"))
# prior of the extra phrases (the ImageNet names) against the collection's own, chosen on the training voices:
# 0.1 / 0.01 / 1e-5 heard 0.795 / 0.821 / 0.846 of the device names exactly (0.897 without the extra phrases)
EXTRA_WEIGHT = 1e-5
FREE_MIN_WORDS = 4  # the free decoder's words are taken from four on (a description, not a name)
NOISE_FLOOR = 3e-3  # std of the noise added before decoding (measured by voice: docs/retrieval.md)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


class SpeechRecognizer:
    """PocketSphinx with a JSGF grammar of whole phrases: the vocabulary's phrases (a caption, a class
    name), and the base phrases, each optionally after "a/an/the/some"; phrases
    with a word outside its dictionary are dropped. A phrase grammar is far more exact than a loop of
    single words (measured: "television" -> "and bee to and" with a word loop)."""

    def __init__(self, vocabulary: list[str] | tuple[str, ...] = (), free: bool = False,
                 extra: list[str] | tuple[str, ...] = (), extra_weight: float | None = None):
        from pocketsphinx import Decoder

        # free (issue 29): a second decoder with PocketSphinx's general US-English language model, for
        # descriptions no phrase grammar holds ("a pouched animal that hops"); see :meth:`transcribe`
        self.free = Decoder(samprate=16000, loglevel="FATAL", cmn="batch") if free else None
        self.decoder = Decoder(samprate=16000, loglevel="FATAL", cmn="batch")  # batch CMN: no drift between queries
        known = lambda ps: sorted(p for p in ps if p and all(self.decoder.lookup_word(w) is not None
                                                             for w in p.split()))
        self.phrases = known({" ".join(_words(p)[:8]) for p in (*BASE_PHRASES, *vocabulary)})
        # extra (issue 29: the ImageNet names) are less likely a priori than the collection's own phrases,
        # so that they do not pull device names away ("heater" heard as "hen")
        self.extra = known({" ".join(_words(p)[:8]) for p in extra} - set(self.phrases))
        w = EXTRA_WEIGHT if extra_weight is None else extra_weight
        body = " | ".join(self.phrases) + (f" ;\n<x> = {' | '.join(self.extra)}" if self.extra else "")
        grammar = ("#JSGF V1.0;\ngrammar vocab;\npublic <s> = [a | an | the | some] <p> ;\n<p> = "
                   + (f"/1/ <m> | /{w:g}/ <x> ;\n<m> = " if self.extra else "") + body + " ;\n")
        self.decoder.add_jsgf_string("vocab", grammar)
        self.decoder.activate_search("vocab")

    @staticmethod
    def _decode(decoder, pcm: bytes) -> tuple[str, float]:
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        words = (hyp.hypstr if hyp is not None else "").split()
        # a partial path that never reached a phrase ("the") carries nothing
        return ("" if all(w in FILLERS for w in words) else " ".join(words)), (hyp.score if hyp is not None else -1e18)

    def transcribe(self, wave16k: np.ndarray) -> str:
        """A 16 kHz wave peak-normalised to 0.7 -> the phrase heard ("" if none). With the free decoder:
        its words when it hears at least ``FREE_MIN_WORDS`` (a description), else the grammar's phrase (a
        name: the grammar hears names far better, "umbrella" where the language model heard "in balance")."""
        # Synthetic, edited and browser-recorded audio holds stretches of exact digital silence, where
        # PocketSphinx's log-energy features degenerate and it decodes nothing. So: the silence before
        # and after the sound is cut (0.15 s kept; a long one would also skew the batch normalisation),
        # then a fixed faint noise floor is added (-47 dB under the peak; a microphone has its own).
        loud = np.flatnonzero(np.abs(wave16k) > 1e-3 * max(float(np.abs(wave16k).max()), 1e-8))
        if len(loud):
            wave16k = wave16k[max(0, loud[0] - 2400):loud[-1] + 2400]
        floor = NOISE_FLOOR * np.random.default_rng(0).standard_normal(len(wave16k)).astype(np.float32)
        pcm = (np.clip(wave16k + floor, -1, 1) * 32767).astype(np.int16).tobytes()
        if self.free is not None:
            self.free.start_utt()
            self.free.process_raw(pcm, full_utt=True)
            self.free.end_utt()
            hyp = self.free.hyp()
            words = [w for w in (hyp.hypstr if hyp is not None else "").split() if not w.startswith("<")]
            if len(words) >= FREE_MIN_WORDS:
                return " ".join(words)
        return self._decode(self.decoder, pcm)[0]


def speech_wave(source) -> tuple[np.ndarray, list[str]]:
    """A path / bytes / (rate, array) -> 16 kHz mono float32 peak-normalised, and notes (cut, ...)."""
    import soxr

    from mbm.safe_media import read_audio  # the same bounds and refusals as everywhere, no torch

    samples, rate = read_audio(source)
    samples = np.asarray(samples, np.float32)
    if samples.ndim == 2:
        samples = samples.mean(1)
    if samples.size == 0 or not np.all(np.isfinite(samples)):
        raise InputError("the voice clip is empty or invalid; record or upload a few words")
    notes = []
    if rate != 16000:
        samples = soxr.resample(samples, rate, 16000).astype(np.float32)
    cap = min(MAX_SPEECH_SECONDS, limits.MAX_AUDIO_DECODE_SECONDS)  # decoding itself stops at the latter
    if len(samples) >= (cap - 0.05) * 16000:
        length = "longer than that"
        if isinstance(source, str):
            import soundfile as sf

            with contextlib.suppress(Exception):  # an mp3 or odd header: the length stays unsaid
                length = f"{sf.info(source).duration:.0f} s long"
        notes.append(f"only the first {cap:.0f} s of the voice clip were used (it is {length})")
        samples = samples[:int(cap * 16000)]
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak < 1e-3:
        raise InputError("the voice clip is silent; record again closer to the microphone")
    return (samples * (0.7 / peak)).astype(np.float32), notes


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


def recognizer(vocabulary: tuple[str, ...] = (), free: bool = False, extra: tuple[str, ...] = ()):
    """(SpeechRecognizer, its lock) for a vocabulary: a kept one, or a new one kept within the budget.
    ``free``: with the general language model as well (spoken queries; voice notes use the grammar alone);
    ``extra``: phrases heard with a lower prior (the ImageNet names)."""
    key = (free, tuple(sorted(set(vocabulary))), tuple(sorted(set(extra))))
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            rec, lock, _ = _cache[key]
            return rec, lock
    before = _rss_bytes()
    rec = SpeechRecognizer(key[1], free=free, extra=key[2])
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


def transcribe(source, vocabulary: tuple[str, ...] = (), free: bool = False,
               extra: tuple[str, ...] = ()) -> tuple[str, list[str], float]:
    """What was said in a clip (path / bytes), its notes (cut, ...) and the seconds of audio heard.
    ``free``: a description in any English words is heard as well (spoken queries)."""
    wave, notes = speech_wave(source)
    rec, lock = recognizer(vocabulary, free, extra)
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
