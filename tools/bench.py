"""Speed and memory benchmark of the shipped models and the app, on this machine.

    python -m tools.bench --json          # full run
    python -m tools.bench --quick --json  # fewer repetitions, under 40 s

Prints one JSON object: model forward latency (batch 1, CPU), the library's
full predict, a full app request through gradio_client against a freshly
started ``python app.py`` (figures included), the app's cold start and peak
RSS, and the size of the shipped checkpoints. Medians and 95th percentiles;
the machine is shared and noisy, so compare ratios, not single runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from mbm.paths import CHECKPOINTS, PORTRAIT_ASSETS, ROOT
from mbm.paths import VOICE_CONTROL_ASSETS as ASSETS


def _percentiles(samples_ms: list[float]) -> tuple[float, float]:
    a = np.asarray(samples_ms)
    return round(float(np.median(a)), 2), round(float(np.percentile(a, 95)), 2)


def bench_model(repeats: int) -> dict:
    """Voice control: forward pass (batch 1, all modalities) and the predictor's full predict.

    (The portrait model's own forward is a fusion over three feature tokens; its cost is the
    pretrained face descriptor, measured in :func:`bench_portrait`.)
    """
    from mbm.scenarios.voice_control.predictor import VoiceControlPredictor

    predictor = VoiceControlPredictor.from_checkpoint()
    prep = predictor.prepare(audio=str(ASSETS / "up.wav"), image=str(ASSETS / "lamp.jpg"), text="turn it up")
    inputs = predictor.batch(prep)
    # Two photos that differ by a hair, taken in turn: the pretrained image encoder reuses its last
    # backbone pass for identical pixels (the predictor's presence check), which must not be timed.
    photos = [inputs["image"], inputs["image"] + 1e-3]
    times = []
    with torch.inference_mode():
        for i in range(repeats + 5):
            t = time.perf_counter()
            predictor.model({**inputs, "image": photos[i % 2]})
            if i >= 5:  # warm-up excluded
                times.append((time.perf_counter() - t) * 1000)
    model_p50, model_p95 = _percentiles(times)
    times = []
    files = [str(ASSETS / "lamp.jpg"), str(ASSETS / "tv.jpg")]  # in turn, for the same reason
    for i in range(repeats // 2 + 3):
        t = time.perf_counter()
        predictor.predict(audio=str(ASSETS / "up.wav"), image=files[i % 2], text="turn it up")
        if i >= 3:
            times.append((time.perf_counter() - t) * 1000)
    predict_p50, predict_p95 = _percentiles(times)
    return {"model_p50_ms": model_p50, "model_p95_ms": model_p95, "predict_p50_ms": predict_p50,
            "predict_p95_ms": predict_p95}


def bench_portrait(repeats: int) -> dict:
    """The portrait predictor's full predict: face descriptor (pretrained dlib ResNet, run by torch), voice, fusion."""
    from mbm.scenarios.portrait.predictor import PortraitPredictor

    predictor = PortraitPredictor.from_checkpoint(gallery_folder=None)  # the shipped gallery, read-only
    face, voice = str(PORTRAIT_ASSETS / "examples" / "s1_clear.png"), str(PORTRAIT_ASSETS / "examples" / "mic_george.wav")
    times = []
    for i in range(repeats + 2):
        t = time.perf_counter()
        predictor.predict(face=face, voice=voice, text="short, works at the clinic")
        if i >= 2:
            times.append((time.perf_counter() - t) * 1000)
    p50, p95 = _percentiles(times)
    return {"portrait_predict_p50_ms": p50, "portrait_predict_p95_ms": p95}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc): the app and any process it started (e.g. FFmpeg)."""
    pids, k = [pid], 0
    while k < len(pids):
        for task in Path(f"/proc/{pids[k]}/task").glob("*"):
            try:
                pids += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        k += 1
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by a process and its descendants (e.g. FFmpeg)."""
    total = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def tree_memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A /proc status field (VmRSS: resident now; VmHWM: peak) of a process plus each of its descendants, in MB.

    For VmHWM a sum of per-process peaks: an upper bound on what the app and its children held at once.
    """
    total_kb = 0
    for p in process_tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        total_kb += sum(int(line.split()[1]) for line in status.splitlines() if line.startswith(f"{field}:"))
    return total_kb / 1024


@contextmanager
def running_app(timeout_s: float = 120.0, env: dict[str, str] | None = None):
    """Start ``python app.py`` on a free loopback port; yields (process, url, cold start seconds).

    The cold start runs from the spawn to the first served /voice_control response. ``env`` adds
    settings (e.g. ``MBM_GALLERY_DIR``). The app is always stopped afterwards.
    """
    from gradio_client import Client, handle_file

    port = _free_port()
    env = {**os.environ, **(env or {}), "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_SERVER_NAME": "127.0.0.1"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        client = None
        while client is None:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with code {proc.returncode} before serving")
            if time.perf_counter() - start > timeout_s:
                raise RuntimeError(f"app.py did not serve within {timeout_s:.0f} s")
            try:
                client = Client(url, verbose=False)
            except Exception:  # noqa: BLE001 - not serving yet: any failure means try again
                time.sleep(0.2)
        client.predict(handle_file(str(ASSETS / "up.wav")), handle_file(str(ASSETS / "lamp.jpg")), "",
                       api_name="/voice_control")
        yield proc, url, time.perf_counter() - start
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def bench_app(requests: int) -> dict:
    """Cold start, then ``requests`` sequential full requests (figures included) through gradio_client.

    The client passes ``ssl_verify=False``: the URL is plain HTTP on loopback, where nothing is
    verified, but gradio_client would otherwise load the CA bundle for each of its HTTP calls
    (~100 ms of client CPU per predict here, timed as if the app were slow).
    """
    from gradio_client import Client, handle_file

    audio = handle_file(str(ASSETS / "up.wav"))
    images = [handle_file(str(ASSETS / name)) for name in ("lamp.jpg", "tv.jpg")]  # in turn: no reused pass
    with running_app() as (proc, url, cold_start):
        client = Client(url, verbose=False, ssl_verify=False)
        times = []
        for i in range(requests):
            t = time.perf_counter()
            client.predict(audio, images[i % 2], "turn it up", api_name="/voice_control")
            times.append((time.perf_counter() - t) * 1000)
        p50, p95 = _percentiles(times)
        face = handle_file(str(PORTRAIT_ASSETS / "examples" / "s1_clear.png"))
        times = []
        for _ in range(max(5, requests // 2)):
            t = time.perf_counter()
            client.predict(face, None, "", api_name="/portrait")
            times.append((time.perf_counter() - t) * 1000)
        pt50, pt95 = _percentiles(times)
        return {"voice_control_request_p50_ms": p50, "voice_control_request_p95_ms": p95,
                "portrait_request_p50_ms": pt50, "portrait_request_p95_ms": pt95,
                "request_p95_ms": max(p95, pt95), "cold_start_s": round(cold_start, 2),
                "peak_rss_mb": round(tree_memory_mb(proc.pid, "VmHWM"), 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (under 40 s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("MBM_THREADS", "1")),
                        help="torch threads for the in-process measurements (the app reads MBM_THREADS)")
    parser.add_argument("--no-app", action="store_true", help="skip the app measurements")
    parser.add_argument("--no-retrieval", action="store_true", help="skip the retrieval measurements")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats, requests = (40, 20) if args.quick else (200, 100)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
              "threads": args.threads, "repeats": repeats}
    result.update(bench_model(repeats))
    result.update(bench_portrait(max(5, repeats // 4)))
    for stat in ("p50", "p95"):  # the worst scenario, and each one
        result[f"voice_control_predict_{stat}_ms"] = result[f"predict_{stat}_ms"]
        result[f"predict_{stat}_ms"] = max(result[f"predict_{stat}_ms"], result[f"portrait_predict_{stat}_ms"])
    result["checkpoint_mb"] = round(sum(p.stat().st_size for p in CHECKPOINTS.iterdir()) / 1e6, 2)
    if not args.no_retrieval:  # query over 10k items, exact vs FAISS over 1M vectors, indexing
        from tools.retrieval_bench import bench_retrieval

        result["retrieval"] = bench_retrieval(quick=args.quick)
    if not args.no_app:
        result.update(bench_app(requests))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
