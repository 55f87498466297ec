"""Speed and memory benchmark of the shipped models and the app, on this machine.

    python -m mbm.bench --json          # full run
    python -m mbm.bench --quick --json  # fewer repetitions, under 40 s

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
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets" / "voice_control"


def _percentiles(samples_ms: list[float]) -> tuple[float, float]:
    a = np.asarray(samples_ms)
    return round(float(np.median(a)), 2), round(float(np.percentile(a, 95)), 2)


def bench_model(repeats: int) -> dict:
    """Forward pass (batch 1, all modalities) and the predictor's full predict."""
    from mbm.inference import VoiceControlPredictor

    predictor = VoiceControlPredictor.from_checkpoint()
    prep = predictor.prepare(audio=str(ASSETS / "up.wav"), image=str(ASSETS / "lamp.jpg"), text="turn it up")
    inputs, _ = predictor.batch(prep, [tuple(prep.present)])
    times = []
    with torch.inference_mode():
        for i in range(repeats + 5):
            t = time.perf_counter()
            predictor.model(inputs)
            if i >= 5:  # warm-up excluded
                times.append((time.perf_counter() - t) * 1000)
    model_p50, model_p95 = _percentiles(times)
    times = []
    for i in range(repeats // 2 + 3):
        t = time.perf_counter()
        predictor.predict(audio=str(ASSETS / "up.wav"), image=str(ASSETS / "lamp.jpg"), text="turn it up")
        if i >= 3:
            times.append((time.perf_counter() - t) * 1000)
    predict_p50, predict_p95 = _percentiles(times)
    return {"model_p50_ms": model_p50, "model_p95_ms": model_p95, "predict_p50_ms": predict_p50,
            "predict_p95_ms": predict_p95}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def bench_app(requests: int, timeout_s: float = 120.0) -> dict:
    """Start ``python app.py``, time the first served response, then ``requests`` calls."""
    from gradio_client import Client, handle_file

    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_SERVER_NAME": "127.0.0.1"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    audio, image = handle_file(str(ASSETS / "up.wav")), handle_file(str(ASSETS / "lamp.jpg"))
    try:
        client = None
        while client is None:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with code {proc.returncode} before serving")
            if time.perf_counter() - start > timeout_s:
                raise RuntimeError(f"app.py did not serve within {timeout_s:.0f} s")
            try:
                client = Client(url, verbose=False)
            except Exception:
                time.sleep(0.2)
        client.predict(audio, image, "", api_name="/voice_control")
        cold_start = time.perf_counter() - start
        times = []
        for _ in range(requests):
            t = time.perf_counter()
            client.predict(audio, image, "turn it up", api_name="/voice_control")
            times.append((time.perf_counter() - t) * 1000)
        p50, p95 = _percentiles(times)
        return {"request_p50_ms": p50, "request_p95_ms": p95, "cold_start_s": round(cold_start, 2),
                "peak_rss_mb": _peak_rss_mb(proc.pid)}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (under 40 s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("MBM_THREADS", "1")),
                        help="torch threads for the in-process measurements (the app reads MBM_THREADS)")
    parser.add_argument("--no-app", action="store_true", help="skip the app measurements")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats, requests = (40, 20) if args.quick else (200, 100)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
              "threads": args.threads, "repeats": repeats}
    result.update(bench_model(repeats))
    result["checkpoint_mb"] = round(sum(p.stat().st_size for p in (ROOT / "checkpoints").glob("*.pt")) / 1e6, 2)
    if not args.no_app:
        result.update(bench_app(requests))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
