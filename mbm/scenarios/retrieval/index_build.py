"""Indexing a folder of photos, with their captions and voice notes, into an :class:`~mbm.scenarios.retrieval.index.Index`.

Re-running adds new and changed files only (unchanged ones keep their vectors; removed ones drop out); a
progress bar shows the work (photos/s, ETA); files that cannot be read are skipped and listed. Work is kept
in chunk files of 256 photos (:mod:`mbm.scenarios.retrieval.index_chunks`): a build stopped any way, ``kill -9``
included, continues from them when run again, and ends with the index an uninterrupted build writes.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mbm.errors import InputError
from mbm.scenarios.retrieval.folder import PHOTO_SUFFIXES, VOICE_SUFFIXES, photo_or_reason, read_caption, scan
from mbm.scenarios.retrieval.index import MAX_ITEMS, Index, add_open_vocabulary, checkpoint_id, open_arrays
from mbm.scenarios.retrieval.index_chunks import CHUNK_ARRAYS, CHUNK_PHOTOS, parts_dir, read_chunks, write_chunk

BATCH_PHOTOS = 32  # photos per network pass


@dataclass
class _Work:
    """A build in progress: one row per photo found (in scan order), the rows left to index, and why rows
    were skipped."""

    folder: Path
    items: list[dict]
    arrays: dict[str, np.ndarray]  # every per-photo array an index (and a chunk) holds: CHUNK_ARRAYS
    heard: np.ndarray  # seconds of voice note heard, per row
    todo: list[int] = field(default_factory=list)
    why: dict[int, list[str]] = field(default_factory=dict)  # row -> its skipped messages
    bad: set[int] = field(default_factory=set)  # rows whose photo could not be read
    resumed: int = 0  # rows finished by an interrupted build

    def skip(self, j: int, message: str) -> None:
        """List something of row j that was skipped (with its path)."""
        self.why.setdefault(j, []).append(f"{self.items[j]['path']}: {message}")


def build(folder: Path, out: Path, progress: bool = True, checkpoint: Path | None = None,
          space=None, log=print, audio_budget_s: float | None = None, speech_apart: bool = False,
          chunk: int = CHUNK_PHOTOS, resumable: bool = True) -> Index:
    """Index folder into out (incremental when out exists and was built with the same checkpoint).

    ``audio_budget_s``: at most this many seconds of voice notes are heard (the rest are skipped and
    listed); None: no limit (the command line). ``speech_apart``: voice notes are transcribed in a child
    process (the app: PocketSphinx holds the GIL while it decodes, which would stall every other request).

    ``resumable``: every ``chunk`` photos indexed are written to a chunk file in :func:`parts_dir` (a
    temporary file renamed into place, with a sha256 of its arrays); a build that was interrupted, even
    by ``kill -9``, continues from them on the next run, with the same result as one uninterrupted run
    (the photos are encoded in the same batches). A damaged chunk is reported and its photos indexed
    again. The chunk files are removed once ``out`` is written.
    """
    from mbm.scenarios.retrieval.model import load_space

    folder, photos, other = _photos_to_index(folder, chunk)
    space = space or load_space(checkpoint)
    ck = checkpoint_id(checkpoint)
    old = _previous_index(out, ck, folder, log)
    work = _Work(folder, [], _empty_rows(len(photos)), np.zeros(len(photos)))
    dims = {k: a.shape[1] for k, a in work.arrays.items() if a.ndim == 2}
    parts = parts_dir(out) if resumable else None
    done = read_chunks(parts, folder, ck, dims, log) if parts is not None else {}
    _sort_photos(work, photos, old, done)
    log(f"{len(photos)} photos: {len(photos) - len(work.todo) - work.resumed} unchanged, "
        + (f"{work.resumed} already indexed by an interrupted build, " if work.resumed else "")
        + f"{len(work.todo)} to index" + (f"; {len(other)} other files ignored" if other else ""))
    _read_captions(work)  # captions first: their words are the speech recogniser's vocabulary for the voice notes
    _index_todo(work, space, ck, parts, chunk, progress, audio_budget_s, speech_apart)
    return _write_index(work, space, ck, out, parts)


def _photos_to_index(folder: Path, chunk: int) -> tuple[Path, list[Path], list[str]]:
    """The folder (resolved), its photos and its other files; an :class:`InputError` for a request that
    cannot be built."""
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise InputError(f"chunk must be a whole number of photos >= 1, not {chunk!r}")
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    photos, other = scan(folder)
    if not photos:
        raise InputError(f"no photos in {folder} (looked for {', '.join(PHOTO_SUFFIXES)}); nothing to index")
    if len(photos) > MAX_ITEMS:
        raise InputError(f"{len(photos)} photos; an index holds at most {MAX_ITEMS}")
    return folder, photos, other


def _previous_index(out: Path, ck: str, folder: Path, log) -> Index | None:
    """The index already at ``out``, if it can be read and was built of this folder with this checkpoint."""
    if not Path(out).exists():
        return None
    try:
        old = Index.load(out)
    except InputError as e:
        log(f"note: the existing index could not be read ({e}); building from scratch")
        return None
    if old.checkpoint != ck or old.root != folder:
        log("note: the existing index was built with another checkpoint or folder; re-indexing everything")
        return None
    return old


def _empty_rows(n: int) -> dict[str, np.ndarray]:
    """Zero per-photo arrays for n photos (CHUNK_ARRAYS)."""
    from mbm.scenarios.retrieval.model import APP_DIM, SEM_DIM

    return {"photo_sem": np.zeros((n, SEM_DIM), np.float32), "app": np.zeros((n, APP_DIM), np.float32),
            "extra_sem": np.zeros((n, SEM_DIM), np.float32), "extra_mask": np.zeros(n, bool), **open_arrays(n)}


def _sort_photos(work: _Work, photos: list[Path], old: Index | None, done: dict[str, tuple]) -> None:
    """Each photo's row: kept from the old index when its file stamp is unchanged, taken from a chunk of an
    interrupted build when that one saw the same stamp, else to index (``work.todo``)."""
    kept = {it["path"]: i for i, it in enumerate(old.items)} if old is not None else {}
    for j, p in enumerate(photos):
        rel = str(p.relative_to(work.folder))
        st = p.stat()
        companions = [p.with_suffix(s) for s in (".txt", *VOICE_SUFFIXES)]
        stamp = [st.st_size, st.st_mtime_ns] + [c.stat().st_mtime_ns if c.exists() else 0 for c in companions]
        i = kept.get(rel)
        got = done.get(rel)
        if i is not None and old.items[i].get("stamp") == stamp:
            work.items.append(old.items[i])
            for k in CHUNK_ARRAYS:
                work.arrays[k][j] = getattr(old, k)[i]
        elif got is not None and got[0]["stamp"] == stamp:  # finished by an interrupted build
            work.resumed += 1
            entry, row, work.heard[j] = got
            if row is None:
                work.items.append({"path": rel, "stamp": stamp})
                work.bad.add(j)
            else:
                work.items.append({k: v for k, v in entry.items() if k != "skipped"})
                for k in CHUNK_ARRAYS:
                    work.arrays[k][j] = row[k]
            if entry.get("skipped"):
                work.why[j] = list(entry["skipped"])
        else:
            work.items.append({"path": rel, "stamp": stamp})
            work.todo.append(j)


def _read_captions(work: _Work) -> None:
    """The caption (and its notes: cut, not UTF-8, another language) of every photo to index."""
    from mbm.scenarios.retrieval.encoders import text_language_note

    for j in work.todo:
        it = work.items[j]
        p = work.folder / it["path"]
        it.update(caption="", transcript="", notes=[])
        if p.with_suffix(".txt").exists():
            try:
                cap, notes = read_caption(p.with_suffix(".txt"))
                it["caption"] = cap
                it["notes"] += notes
                lang = text_language_note(cap) if cap else None
                if lang:
                    it["notes"].append("caption: " + lang)
            except OSError as e:
                work.skip(j, f"caption unreadable ({e.strerror})")


def _index_todo(work: _Work, space, ck: str, parts: Path | None, chunk: int, progress: bool,
                audio_budget_s: float | None, speech_apart: bool) -> None:
    """Index the rows to do, in chunks of ``chunk`` photos (each saved to ``parts`` when resumable) and
    batches that never straddle chunks, so a resumed build encodes alike."""
    from concurrent.futures import ThreadPoolExecutor

    vocab = tuple(sorted({c for it in work.items for c in [it.get("caption", "")] if c and len(c) < 80}
                         | {Path(it["path"]).stem.replace("_", " ") for it in work.items}))
    batch_size = math.gcd(chunk, BATCH_PHOTOS)
    bar = None
    if progress and work.todo:
        from tqdm import tqdm

        bar = tqdm(total=len(work.todo), unit="photo", smoothing=0.05, dynamic_ncols=True,
                   desc="indexing" + (f" (resumed, {work.resumed} done before)" if work.resumed else ""))
    pool = ThreadPoolExecutor(max_workers=2)  # decoding and resizing (PIL) release the GIL
    if parts is not None and work.todo:
        parts.mkdir(parents=True, exist_ok=True)
    heard_s = float(work.heard.sum())
    try:
        for c in range(0, len(work.todo), chunk):
            rows = work.todo[c:c + chunk]
            for s in range(0, len(rows), batch_size):
                batch = rows[s:s + batch_size]
                pix, ok, voice = _load_photos(work, batch, pool)
                left = None if audio_budget_s is None else audio_budget_s - heard_s
                heard_s += _hear_voice_notes(work, voice, vocab, left, audio_budget_s, speech_apart)
                if pix:
                    _encode_photos(work, space, pix, ok)
                if bar is not None:
                    bar.update(len(batch))
            if parts is not None:
                _save_chunk(work, rows, parts, ck)
    finally:
        pool.shutdown()
        if bar is not None:
            bar.close()


def _load_photos(work: _Work, batch: list[int], pool) -> tuple[list[np.ndarray], list[int], list[tuple[int, Path]]]:
    """A batch's photos (decoded on the pool), the rows they are, and the voice notes of those rows;
    an unreadable photo is skipped and listed."""
    pix, ok, voice = [], [], []
    for j, got in zip(batch, pool.map(photo_or_reason, [work.folder / work.items[j]["path"] for j in batch])):
        p = work.folder / work.items[j]["path"]
        if isinstance(got, np.ndarray):
            pix.append(got)
            ok.append(j)
        else:
            work.skip(j, got)
            work.bad.add(j)
        vp = next((p.with_suffix(v) for v in VOICE_SUFFIXES if p.with_suffix(v).exists()), None)
        if vp is not None and j not in work.bad:
            voice.append((j, vp))
    return pix, ok, voice


def _hear_voice_notes(work: _Work, voice: list[tuple[int, Path]], vocab: tuple[str, ...], left: float | None,
                      audio_budget_s: float | None, speech_apart: bool) -> float:
    """Transcribe the voice notes into their rows' items (at most ``left`` seconds of them); the seconds heard.
    A note over the budget, or unreadable, is skipped and listed."""
    from mbm.scenarios.retrieval.speech import OVER_BUDGET, transcribe_notes

    heard_s = 0.0
    for (j, vp), got in zip(voice, transcribe_notes([str(vp) for _, vp in voice], vocab, left, apart=speech_apart)):
        if isinstance(got, str):
            work.skip(j, f"voice note {vp.name} "
                      + (f"not heard (the {audio_budget_s:g} s of voice notes one collection may use were "
                         "spent)" if got == OVER_BUDGET else f"unreadable ({got})"))
            continue
        text, notes, seconds = got
        heard_s += seconds
        work.heard[j] = seconds
        it = work.items[j]
        it["transcript"] = text
        it["notes"] += [f"voice note: {n}" for n in notes]
        if not text:
            it["notes"].append("voice note: no words made out")
    return heard_s


def _encode_photos(work: _Work, space, pix: list[np.ndarray], ok: list[int]) -> None:
    """Rows ``ok``'s arrays: the photos' meaning and appearance, their caption/transcript meaning, and the open
    vocabulary."""
    from mbm.scenarios.retrieval.encoders import photo_features, text_vectors

    arrays, items = work.arrays, work.items
    pooled, probs = photo_features(pix)
    arrays["photo_sem"][ok] = space.photo_sem(pooled, probs)
    arrays["app"][ok] = space.appearance(pooled)
    texts = [(j, " . ".join(t for t in (items[j]["caption"], items[j]["transcript"]) if t)) for j in ok]
    texts = [(j, t) for j, t in texts if t]
    tv = text_vectors([t for _, t in texts]) if texts else None
    if texts:
        arrays["extra_sem"][[j for j, _ in texts]] = space.text_sem(tv)
        arrays["extra_mask"][[j for j, _ in texts]] = True
    add_open_vocabulary(arrays, ok, probs, [items[j]["path"] for j in ok], [j for j, _ in texts], tv)


def _save_chunk(work: _Work, rows: list[int], parts: Path, ck: str) -> None:
    """A finished chunk of rows, kept in ``parts`` until the index is written."""
    good = [j for j in rows if j not in work.bad]
    write_chunk(parts, work.folder, ck, [{**work.items[j], "skipped": work.why.get(j, [])} for j in good],
                {k: work.arrays[k][good] for k in CHUNK_ARRAYS},
                [{"path": work.items[j]["path"], "stamp": work.items[j]["stamp"], "skipped": work.why.get(j, [])}
                 for j in rows if j in work.bad], [float(work.heard[j]) for j in good])


def _write_index(work: _Work, space, ck: str, out: Path, parts: Path | None) -> Index:
    """The index of every readable row, written to ``out`` (then the chunks are removed); an
    :class:`InputError` when no photo could be read."""
    n = len(work.items)
    skipped = [m for j in range(n) for m in work.why.get(j, [])]
    keep = np.array([j not in work.bad for j in range(n)], bool)
    items = [it for j, it in enumerate(work.items) if keep[j]]
    if not items:
        if parts is not None:
            shutil.rmtree(parts, ignore_errors=True)
        raise InputError(f"none of the {n} photos in {work.folder} could be read: " + "; ".join(skipped[:5]))
    kept_rows = {k: work.arrays[k][keep] for k in CHUNK_ARRAYS}
    idx = Index(space.item_vectors(*(kept_rows[k] for k in ("photo_sem", "app", "extra_sem", "extra_mask"))),
                items=items, root=work.folder, checkpoint=ck, skipped=skipped, **kept_rows)
    idx.save(out)
    if parts is not None:
        shutil.rmtree(parts, ignore_errors=True)
    return idx
