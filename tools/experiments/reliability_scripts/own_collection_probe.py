"""Issue 27's probes of the Search tab's own collection, against a fresh ``python app.py`` on 127.0.0.1.

    python tools/experiments/reliability_scripts/own_collection_probe.py            # all three; JSON on stdout

1. bomb: one photo and a ``.index.npz`` (1 MB deflating to 1 GiB) uploaded as a collection: the server's
   peak memory during the request over its memory before (sampled every 50 ms, the app and its children);
2. junk: one photo and 15 junk ``.bin`` files (1 MB each): what the app keeps in its collections folder
   after the request (Gradio's own upload cache keeps uploads 15 minutes, as for every upload);
3. slots: four visitors at once, each indexing six photos + six 30 s noise voice notes (new files each, so
   no cache helps; a visitor told to wait tries again every second until indexed) while another visitor
   runs plain text searches back to back: the longest and median text search, and how long the
   indexing took.

Bounded: one server, 4 + 1 clients, at most ``--deadline`` seconds for the slots probe; loopback only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from tools.bench import tree_memory_mb
from tools.loadtest_attacks import index_bomb
from tools.loadtest_tools import Server, _du_bytes

PHOTOS = sorted((ROOT / "assets" / "retrieval" / "collection").glob("*.jpg"))


def search(client, files, text="a lamp"):
    from gradio_client import handle_file

    return client.predict(None, None, text, None, None, None, None, None, 4,
                          [handle_file(str(f)) for f in files] or None, api_name="/search")


def probe_bomb(client, server, work: Path) -> dict:
    bomb = index_bomb(work / ".index.npz")
    before = tree_memory_mb(server.proc.pid)
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(tree_memory_mb(server.proc.pid))
            stop.wait(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t = time.perf_counter()
    try:
        _, status, details = search(client, [PHOTOS[0], bomb])
        outcome = "answered; skipped: " + "; ".join(details.get("skipped", [])) if isinstance(details, dict) else status
    except Exception as e:  # noqa: BLE001 - the outcome is reported
        outcome = f"error: {str(e)[:200]}"
    seconds = time.perf_counter() - t
    time.sleep(0.3)
    stop.set()
    th.join()
    return {"bomb_file_mb": round(bomb.stat().st_size / 1e6, 2), "rss_before_mb": round(before, 1),
            "peak_over_before_mb": round(max(samples) - before, 1), "seconds": round(seconds, 2),
            "outcome": outcome[:300]}


def probe_junk(client, server_tmp: Path, work: Path) -> dict:
    junk = []
    for j in range(15):
        junk.append(work / f"junk{j}.bin")
        junk[-1].write_bytes(np.random.default_rng(100 + j).bytes(1_048_576))
    sent = sum(p.stat().st_size for p in [PHOTOS[1], *junk])
    before = _du_bytes(server_tmp / "mbm_search_collections")[0]
    try:
        _, _, details = search(client, [PHOTOS[1], *junk])
        outcome = f"answered; {len(details.get('skipped', []))} files skipped and listed"
    except Exception as e:  # noqa: BLE001
        outcome = f"error: {str(e)[:200]}"
    kept = _du_bytes(server_tmp / "mbm_search_collections")[0] - before
    return {"sent_mb": round(sent / 1e6, 2), "kept_by_the_app_mb": round(kept / 1e6, 3), "outcome": outcome,
            "gradio_upload_cache_mb": round(_du_bytes(server_tmp / "gradio")[0] / 1e6, 1)}


def probe_slots(url: str, work: Path, deadline_s: float) -> dict:
    import soundfile as sf
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    def visitor_files(v: int) -> list[Path]:
        d = work / f"visitor{v}"
        d.mkdir()
        out = []
        for j in range(6):
            shutil.copyfile(PHOTOS[(v * 6 + j) % len(PHOTOS)], d / f"p{j}.jpg")
            noise = (0.2 * np.random.default_rng(1000 * v + j).standard_normal(16000 * 30)).astype(np.float32)
            sf.write(d / f"p{j}.wav", noise, 16000, subtype="PCM_16")
            out += [d / f"p{j}.jpg", d / f"p{j}.wav"]
        return out

    files = [visitor_files(v) for v in range(4)]
    indexed, told_to_wait, errors = {}, {}, []
    text_ms: list[float] = []
    stop_at = time.perf_counter() + deadline_s
    start = time.perf_counter()

    def indexer(v: int) -> None:
        client = Client(url, verbose=False, ssl_verify=False, download_files=False)
        while time.perf_counter() < stop_at:
            try:
                search(client, files[v])
                indexed[v] = round(time.perf_counter() - start, 1)
                return
            except AppError as e:
                if "being indexed" in str(e):
                    told_to_wait[v] = told_to_wait.get(v, 0) + 1
                    time.sleep(1.0)
                else:
                    errors.append(str(e)[:200])
                    return
            except Exception as e:  # noqa: BLE001 - a transport failure is reported, and tried again
                errors.append(f"visitor {v} at {time.perf_counter() - start:.1f} s: {type(e).__name__}: {e}"[:200])

    def texter() -> None:
        client = Client(url, verbose=False, ssl_verify=False, download_files=False)
        time.sleep(1.0)
        while len(indexed) < 4 and time.perf_counter() < stop_at:
            t = time.perf_counter()
            try:
                search(client, [], text="something to watch the news on")
            except Exception as e:  # noqa: BLE001 - counted as a wait of its full length, and reported
                errors.append(f"text search at {t - start:.1f} s: {type(e).__name__}: {e}"[:200])
            text_ms.append((time.perf_counter() - t) * 1000)
            time.sleep(0.2)

    threads = [threading.Thread(target=indexer, args=(v,)) for v in range(4)] + [threading.Thread(target=texter)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(deadline_s + 120)
    return {"text_searches": len(text_ms), "text_search_max_s": round(max(text_ms) / 1000, 2) if text_ms else None,
            "text_search_median_s": round(float(np.median(text_ms)) / 1000, 2) if text_ms else None,
            "indexed_after_s": dict(sorted(indexed.items())), "times_told_to_wait": dict(sorted(told_to_wait.items())),
            "errors": errors[:3], "all_done_s": round(time.perf_counter() - start, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probes", default="bomb,junk,slots")
    ap.add_argument("--deadline", type=float, default=300.0, help="seconds at most for the slots probe")
    args = ap.parse_args()
    from gradio_client import Client

    work = Path(tempfile.mkdtemp(prefix="mbm_collection_probe_"))
    server_tmp = work / "server_tmp"
    server_tmp.mkdir()
    server = Server({"TMPDIR": str(server_tmp), "GRADIO_TEMP_DIR": str(server_tmp / "gradio"),
                     "MBM_GALLERY_DIR": str(work / "gallery")}, work / "app.log")
    out = {"commit_tree": str(ROOT)}
    try:
        server.start()
        client = Client(server.url, verbose=False, ssl_verify=False, download_files=False)
        search(client, [], text="lamp")  # warm: models loaded
        if "bomb" in args.probes:
            out["bomb"] = probe_bomb(client, server, work)
        if "junk" in args.probes:
            out["junk"] = probe_junk(client, server_tmp, work)
        if "slots" in args.probes:
            out["slots"] = probe_slots(server.url, work, args.deadline)
        out["rss_end_mb"] = round(tree_memory_mb(server.proc.pid), 1)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
