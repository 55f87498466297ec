"""Speech: what was said in a spoken query or a collection's voice note (PocketSphinx), with no torch.

PocketSphinx 5.1.1 (US-English model inside the wheel) with a JSGF grammar built from the collection's
vocabulary (its captions and names, the device names and paraphrases); the transcript is then a
text query (``mbm.scenarios.retrieval.search``).

One PocketSphinx decoder per process holds the acoustic model, the dictionary and the general language
model (91 MB); each vocabulary is one more grammar search on it (a few MB), so a spoken query's two passes
(the language model, then the collection's grammar) need no second decoder. Before, every vocabulary built
two decoders of its own: 184 MB per collection searched by voice. The grammars are kept least recently used
first out within ``MBM_SPEECH_CACHE_MB`` of estimated memory; the decoder is used by one thread at a time
(PocketSphinx holds the GIL while it decodes, so nothing ran beside it anyway).

In the app nothing is decoded in the server process: PocketSphinx holds the GIL while it decodes (0.4 s for
a short spoken query with both passes, 4 s for a 10 s noise clip with a collection's grammar), which stalled
every other request, and a decoder kept there stayed for good (1.14 GB 30 s after the hostile load test with
spoken searches in it). A spoken query goes to ``SpeechWorker``, one long-lived child that exits when idle; a
collection's voice notes to a child of their own that exits when done (``apart=True``; at most
``MBM_SPEECH_CHILDREN`` at once): both in ``mbm.scenarios.retrieval.speech_worker``. Both run ``python -m mbm.scenarios.retrieval.speech`` (JSON in and out).
This module imports no torch (nor ``mbm.preprocess`` or ``encoders``; audio is read by ``mbm.safe_media``), so
a child holds PocketSphinx and one clip, not a second copy of torch: its peak RSS 0.14 GB instead of 0.70 GB.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
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
# prior of the extra phrases (the experiment scripts' ImageNet names; the app passes none) against the
# collection's own, chosen on the training voices:
# 0.1 / 0.01 / 1e-5 heard 0.795 / 0.821 / 0.846 of the device names exactly (0.897 without the extra phrases)
EXTRA_WEIGHT = 1e-5
FREE_MIN_WORDS = 4  # the free decoder's words are taken from four on (a description, not a name)
NOISE_FLOOR = 3e-3  # std of the noise added before decoding (measured by voice: docs/retrieval.md)
LANGUAGE_MODEL_SEARCH = "_default"  # PocketSphinx's name for the general language model's search


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


_decoder_lock = threading.Lock()  # held while the shared decoder is used (building a grammar, decoding)
_shared: dict[str, object] = {}


def shared_decoder():
    """The process's one decoder (built on first use); hold :data:`_decoder_lock` while using it."""
    if "decoder" not in _shared:
        from pocketsphinx import Decoder

        _shared["decoder"] = Decoder(samprate=16000, loglevel="FATAL", cmn="batch")  # batch CMN: no drift
    return _shared["decoder"]


class SpeechRecognizer:
    """A JSGF grammar of whole phrases on the shared decoder: the vocabulary's phrases (a caption, a class
    name), and the base phrases, each optionally after "a/an/the/some"; phrases with a word outside the
    dictionary are dropped. A phrase grammar is far more exact than a loop of single words (measured:
    "television" -> "and bee to and" with a word loop). Build and use it holding :data:`_decoder_lock`."""

    def __init__(self, vocabulary: list[str] | tuple[str, ...] = (), extra: list[str] | tuple[str, ...] = (),
                 extra_weight: float | None = None):
        self.decoder = shared_decoder()
        known = lambda ps: sorted(p for p in ps if p and all(self.decoder.lookup_word(w) is not None
                                                             for w in p.split()))
        self.phrases = known({" ".join(_words(p)[:8]) for p in (*BASE_PHRASES, *vocabulary)})
        # extra (the ImageNet names) are less likely a priori than the collection's own phrases,
        # so that they do not pull device names away ("heater" heard as "hen")
        self.extra = known({" ".join(_words(p)[:8]) for p in extra} - set(self.phrases))
        w = EXTRA_WEIGHT if extra_weight is None else extra_weight
        body = " | ".join(self.phrases) + (f" ;\n<x> = {' | '.join(self.extra)}" if self.extra else "")
        self.grammar = ("#JSGF V1.0;\ngrammar vocab;\npublic <s> = [a | an | the | some] <p> ;\n<p> = "
                        + (f"/1/ <m> | /{w:g}/ <x> ;\n<m> = " if self.extra else "") + body + " ;\n")
        self.search = "g" + hashlib.sha256(self.grammar.encode()).hexdigest()[:16]
        self._activate()

    def _activate(self) -> None:
        try:
            self.decoder.activate_search(self.search)
        except (KeyError, ValueError, RuntimeError):  # not added yet, or removed when its cache entry went
            self.decoder.add_jsgf_string(self.search, self.grammar)
            self.decoder.activate_search(self.search)

    def release(self) -> None:
        """Remove the grammar from the decoder (hold :data:`_decoder_lock`)."""
        with contextlib.suppress(KeyError, ValueError, RuntimeError):
            self.decoder.remove_search(self.search)

    def _decode(self, pcm: bytes) -> str:
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def transcribe(self, wave16k: np.ndarray, free: bool = False) -> str:
        """A 16 kHz wave peak-normalised to 0.7 -> the phrase heard ("" if none). ``free``: first with the
        general language model, whose words are taken when it hears at least ``FREE_MIN_WORDS`` (a
        description no phrase grammar holds, "a pouched animal that hops"), else the grammar's phrase (a
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
        if free:
            self.decoder.activate_search(LANGUAGE_MODEL_SEARCH)
            words = [w for w in self._decode(pcm).split() if not w.startswith("<")]
            if len(words) >= FREE_MIN_WORDS:
                return " ".join(words)
        self._activate()
        words = self._decode(pcm).split()
        # a partial path that never reached a phrase ("the") carries nothing
        return "" if all(w in FILLERS for w in words) else " ".join(words)


def speech_wave(source) -> tuple[np.ndarray, list[str]]:
    """A path / bytes / (rate, array) -> 16 kHz mono float32 peak-normalised, and notes (cut, ...)."""
    from mbm.safe_media import mono_at, read_audio  # the same bounds and refusals as everywhere, no torch

    samples, rate = read_audio(source)
    samples = mono_at(samples, rate, 16000, what="the voice clip")
    notes = []
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


_lock = threading.Lock()  # guards _cache (never held while waiting for _decoder_lock)
_cache: OrderedDict[tuple[str, ...], tuple[SpeechRecognizer, int]] = OrderedDict()  # vocabulary -> (grammar, bytes)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except (OSError, ValueError, IndexError):
        return 0


def cached_bytes() -> int:
    """The estimated memory of the grammars kept now (the shared decoder not counted)."""
    with _lock:
        return sum(size for _, size in _cache.values())


def clear() -> None:
    """Forget every grammar and the shared decoder, stop the worker (tests; a later call builds them again)."""
    with _decoder_lock, _lock:
        _cache.clear()
        _shared.clear()
    from mbm.scenarios.retrieval.speech_worker import WORKER

    with WORKER.lock:
        WORKER.stop()


def recognizer(vocabulary: tuple[str, ...] = ()):
    """(SpeechRecognizer, the lock to hold while using it) for a vocabulary: a kept one, or a new one kept
    within the budget."""
    key = tuple(sorted(set(vocabulary)))
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key][0], _decoder_lock
    with _decoder_lock:
        shared_decoder()
        before = _rss_bytes()  # other requests running meanwhile may add to it: the estimate errs high
        rec = SpeechRecognizer(key)
        size = max(_rss_bytes() - before, limits.SPEECH_GRAMMAR_BYTES)
    dropped = []
    with _lock:
        if key in _cache:  # built meanwhile by another request: the same grammar, the same search
            _cache.move_to_end(key)
            return _cache[key][0], _decoder_lock
        _cache[key] = (rec, size)
        while sum(s for _, s in _cache.values()) > limits.SPEECH_CACHE_BYTES:
            dropped.append(_cache.popitem(last=False)[1][0])
    with _decoder_lock:
        for old in dropped:
            if old is not rec:
                old.release()
    return rec, _decoder_lock


def transcribe(source, vocabulary: tuple[str, ...] = (), free: bool = False,
               apart: bool = False) -> tuple[str, list[str], float]:
    """What was said in a clip (path / bytes), its notes (cut, ...) and the seconds of audio heard.
    ``free``: a description in any English words is heard as well (spoken queries). ``apart``: in a child
    process (a path only; the app's spoken queries), which raises the child's message as an InputError."""
    if apart:
        request = {"paths": [str(source)], "vocabulary": list(vocabulary), "budget_s": None, "free": free}
        from mbm.scenarios.retrieval.speech_worker import QUERY_TIMEOUT_S, WORKER

        answer = WORKER.ask(request, QUERY_TIMEOUT_S)
        if not isinstance(answer, list) or len(answer) != 1:
            raise InputError("the speech recogniser failed or took too long; try a shorter clip")
        if isinstance(answer[0], str):
            raise InputError(answer[0])
        return tuple(answer[0])
    wave, notes = speech_wave(source)
    rec, lock = recognizer(vocabulary)
    with lock:
        text = rec.transcribe(wave, free=free)
    return text, notes, len(wave) / 16000


OVER_BUDGET = "over budget"
def transcribe_notes(paths: list[str], vocabulary: tuple[str, ...], budget_s: float | None = None,
                     apart: bool = False, free: bool = False) -> list:
    """Each voice note: ``(text, notes, seconds heard)``, or why it was not (a string; :data:`OVER_BUDGET` once
    ``budget_s`` seconds were heard). ``apart``: in a child process that exits when done (a collection's notes,
    in the app). ``free``: as :func:`transcribe` (the worker's spoken queries)."""
    if not paths:
        return []
    if apart:
        from mbm.scenarios.retrieval.speech_worker import notes_in_child

        return notes_in_child(paths, vocabulary, budget_s)
    out, heard = [], 0.0
    for p in paths:
        if budget_s is not None and heard >= budget_s:
            out.append(OVER_BUDGET)
            continue
        try:
            text, notes, seconds = transcribe(p, vocabulary, free=free)
        except Exception as e:  # noqa: BLE001 - the caller lists it
            out.append(str(e)[:400] or type(e).__name__)
            continue
        heard += seconds
        out.append((text, notes, seconds))
    return out


if __name__ == "__main__":  # a child of the app: speech_worker.child_main reads the request
    from mbm.scenarios.retrieval.speech_worker import child_main

    raise SystemExit(child_main())
