"""Load test: concurrent gradio_client clients against a fresh ``python app.py`` on 127.0.0.1.

    python -m tools.loadtest --clients 20 --requests 50 --json
    python -m tools.loadtest --hostile --json        # normal requests mixed with attacks

Each client alternates voice-control and portrait requests (committed assets). ``--hostile`` (see
:func:`run_hostile`) mixes them with attacks for a fixed time and checks the reliability targets of
docs/reliability.md, including a ``kill -9`` and restart.
Bounded in count (clients x requests) and time; loopback only. Prints errors,
p50/p95 latency and throughput as one JSON object, plus the CPU time the app
process (with any children) and this client process spent per request: with every client waiting
on its answer (no pause between requests), latency is about
clients x CPU per request / cores, so these say where the time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

import numpy as np

from tools.bench import ASSETS, PORTRAIT_ASSETS, cpu_seconds, running_app
from tools.loadtest_tools import normal_request


def run_load(clients: int, requests: int, deadline_s: float, ssl_verify: bool = False) -> dict:
    from gradio_client import Client, handle_file

    audio, image = handle_file(str(ASSETS / "up.wav")), handle_file(str(ASSETS / "lamp.jpg"))
    face = handle_file(str(PORTRAIT_ASSETS / "examples" / "s1_clear.png"))
    latencies: dict[str, list[float]] = {"voice_control": [], "portrait": []}
    errors: list[str] = []
    lock = threading.Lock()

    with running_app() as (proc, url, cold_start):
        stop_at = time.perf_counter() + deadline_s

        def client_loop(k: int) -> None:
            # ssl_verify=False: the URL is plain HTTP on loopback, so nothing is ever verified, but
            # gradio_client would still load the CA bundle for each of its HTTP calls (~100 ms CPU
            # per predict on this machine, more than the app spends answering it).
            client = Client(url, verbose=False, ssl_verify=ssl_verify)
            for i in range(requests):
                if time.perf_counter() > stop_at:
                    return
                scenario = "voice_control" if (i + k) % 2 == 0 else "portrait"
                try:
                    ms = normal_request(client, scenario, audio, image, face)
                    with lock:
                        latencies[scenario].append(ms)
                except Exception as e:  # noqa: BLE001 - every failure is counted and reported, never hidden
                    with lock:
                        errors.append(f"{scenario}: {type(e).__name__}: {str(e)[:120]}")

        start = time.perf_counter()
        server_cpu0, client_cpu0 = cpu_seconds(proc.pid), time.process_time()
        threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - start
        server_cpu, client_cpu = cpu_seconds(proc.pid) - server_cpu0, time.process_time() - client_cpu0

    done = sum(len(v) for v in latencies.values())
    every = np.array([x for v in latencies.values() for x in v]) if done else np.zeros(1)
    result = {"clients": clients, "requests_per_client": requests, "client_ssl_verify": ssl_verify,
              "completed": done, "errors": len(errors), "error_samples": errors[:5], "wall_s": round(wall, 1),
              "throughput_rps": round(done / wall, 2),
              "p50_ms": round(float(np.median(every)), 1), "p95_ms": round(float(np.percentile(every, 95)), 1),
              "cold_start_s": round(cold_start, 2),
              "server_cpu_ms_per_request": round(server_cpu * 1000 / max(done, 1), 1),
              "client_cpu_ms_per_request": round(client_cpu * 1000 / max(done, 1), 1), "cores": os.cpu_count()}
    for scenario, values in latencies.items():
        if values:
            result[f"{scenario}_p50_ms"] = round(float(np.median(values)), 1)
            result[f"{scenario}_p95_ms"] = round(float(np.percentile(values, 95)), 1)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    parser.add_argument("--deadline", type=float, default=600.0, help="stop sending after this many seconds")
    parser.add_argument("--ssl-verify", action="store_true",
                        help="let gradio_client load the CA bundle per call, as by default (costs client CPU)")
    parser.add_argument("--hostile", action="store_true",
                        help="normal requests mixed with attacks for --duration seconds, then kill -9 "
                             "and restart; prints the measured numbers beside the targets")
    parser.add_argument("--duration", type=float, default=60.0, help="--hostile: seconds of load (10-600)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not (1 <= args.clients <= 64 and 1 <= args.requests <= 500):
        parser.error("keep the load bounded: 1-64 clients, 1-500 requests each")
    if args.hostile:
        if not 10 <= args.duration <= 600:
            parser.error("keep the load bounded: --duration 10-600 seconds")
        from tools.loadtest_hostile import run_hostile

        result = run_hostile(args.clients, args.duration)
        print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
        raise SystemExit(0 if result["targets_met"] else 1)
    result = run_load(args.clients, args.requests, args.deadline, ssl_verify=args.ssl_verify)
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
