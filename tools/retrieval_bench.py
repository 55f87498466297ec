"""Retrieval speed: ``python -m tools.bench --json`` (its ``retrieval`` section) or ``python -m tools.retrieval_bench``.

- one query over 10,000 items, encoding included, one thread: a typed text, a photo, photo + text;
- 1,000,000 random unit vectors of the index's size (192 floats): exact search (numpy, one thread)
  against FAISS IVF-Flat (``faiss-cpu``; nlist 1024, the smallest nprobe with recall@10 >= 0.95
  against exact), its recall@10 and speed-up; twice: uniform on the sphere (no structure, the
  worst case for any approximate index) and clustered around 2,000 centres (as real embeddings are);
- indexing: photos/s of ``mbm.scenarios.retrieval.index.build`` on generated 256 px JPEGs (decode included), 2 threads.

``python -m tools.retrieval_bench --index INDEX.npz``: the scale benchmark: query
p50 over a real built index (e.g. 10,000 photos), and FAISS at 1,000,000 vectors drawn from its
vectors (exact ``IndexFlatIP`` against IVF-Flat and IVF-SQ8: recall@10, p50, build time, memory).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _p50(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(float(np.median(times)), 2)


def bench_query(repeats: int, n_items: int = 10_000) -> dict:
    from mbm.paths import RETRIEVAL_ASSETS
    from mbm.scenarios.retrieval.index import Index
    from mbm.scenarios.retrieval.model import VECTOR_DIM, load_space
    from mbm.scenarios.retrieval.search import encode_query, search

    torch.set_num_threads(1)
    space = load_space()
    rng = np.random.default_rng(0)
    v = rng.normal(size=(n_items, VECTOR_DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    idx = Index.empty(Path("."))
    idx.vectors = v
    idx.items = [{"path": f"{i}.jpg"} for i in range(n_items)]
    photo = str(RETRIEVAL_ASSETS / "queries" / "monitor.jpg")
    out = {}
    for name, kw in (("text", {"text": "something to watch the news on"}), ("photo", {"photo": photo}),
                     ("photo_text", {"photo": photo, "text": "but a ceiling fan instead"})):
        out[f"query_{name}_10k_p50_ms"] = _p50(lambda kw=kw: search(space, idx, encode_query(space, None, **kw),
                                                              space.weights, k=8), repeats)
    return out


def _vectors(rng, n: int, dim: int, clusters: int | None) -> np.ndarray:
    """Unit vectors: uniform on the sphere, or around ``clusters`` random centres (cosine ~0.78 to
    their centre), the structure real embeddings have (classes, near-duplicates)."""
    if clusters is None:
        x = rng.standard_normal((n, dim), dtype=np.float32)
    else:
        centres = rng.standard_normal((clusters, dim), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        x = centres[rng.integers(0, clusters, n)] + 0.8 / np.sqrt(dim) * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def bench_ann(n: int = 1_000_000, dim: int = 192, queries: int = 100, clusters: int | None = None) -> dict:
    """Exact (numpy, one thread) vs FAISS IVF-Flat (nlist 1024; the smallest nprobe with recall@10 >= 0.95,
    or the largest tried) over n random unit vectors; queries drawn from the same distribution."""
    import faiss

    rng = np.random.default_rng(0)
    both = _vectors(rng, n + queries, dim, clusters)
    x, q = both[:n], both[n:]
    del both
    torch.set_num_threads(1)
    exact_ms, truth = [], []
    for i in range(queries):
        t = time.perf_counter()
        s = x @ q[i]
        top = np.argpartition(-s, 10)[:10]
        exact_ms.append((time.perf_counter() - t) * 1000)
        truth.append(set(top.tolist()))
    faiss.omp_set_num_threads(2)
    t = time.perf_counter()
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, 1024, faiss.METRIC_INNER_PRODUCT)
    ivf.train(x[rng.choice(n, min(n, 100_000), replace=False)])
    ivf.add(x)
    build_s = time.perf_counter() - t
    faiss.omp_set_num_threads(1)
    chosen = None
    for nprobe in (4, 8, 16, 32, 64, 128, 256):
        ivf.nprobe = nprobe
        ms, found = [], []
        for i in range(queries):
            t = time.perf_counter()
            _, ids = ivf.search(q[i:i + 1], 10)
            ms.append((time.perf_counter() - t) * 1000)
            found.append(len(truth[i] & set(ids[0].tolist())) / 10)
        chosen = (nprobe, float(np.median(ms)), float(np.mean(found)))
        if chosen[2] >= 0.95:
            break
    exact = float(np.median(exact_ms))
    return {"vectors": "uniform on the sphere" if clusters is None else f"around {clusters} random centres",
            "items": n, "dim": dim, "exact_p50_ms": round(exact, 2),
            "engine": f"faiss {faiss.__version__} IndexIVFFlat nlist=1024 nprobe={chosen[0]}",
            "ann_p50_ms": round(chosen[1], 3), "recall_at_10": round(chosen[2], 4),
            "speedup": round(exact / chosen[1], 1), "build_s": round(build_s, 1)}


def bench_indexing(n: int = 64) -> dict:
    from PIL import Image

    from mbm.scenarios.retrieval.encoders import IMAGE_SIZE, photo_features
    from mbm.scenarios.retrieval.index_build import build
    from mbm.scenarios.retrieval.model import load_space

    torch.set_num_threads(2)
    space = load_space()
    photo_features([np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)])  # warm: the network is read once per process
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "photos"
        d.mkdir()
        for i in range(n):
            arr = np.clip(rng.integers(0, 255, 3) + rng.normal(0, 30, (256, 256, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"{i}.jpg", quality=90)
        t = time.perf_counter()
        build(d, Path(tmp) / "i.npz", progress=False, space=space, log=lambda *_: None)
        s = time.perf_counter() - t
    torch.set_num_threads(1)
    return {"indexing_photos": n, "indexing_photos_per_s": round(n / s, 1), "indexing_threads": 2}


def bench_retrieval(quick: bool = False) -> dict:
    out = bench_query(10 if quick else 50)
    out.update(bench_indexing(32 if quick else 64))
    n = 200_000 if quick else 1_000_000
    out["ann_uniform"] = bench_ann(n)  # the worst case: no structure at all
    out["ann_clustered"] = bench_ann(n, clusters=2000)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from tools.retrieval_scale import bench_ann_real, bench_query_index

    ap = argparse.ArgumentParser(prog="python -m tools.retrieval_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, 200,000 vectors")
    ap.add_argument("--index", type=Path, default=None,
                    help="the scale benchmark on this built index instead: query p50 over its items, and FAISS "
                         "at --vectors vectors drawn from its vectors (docs/retrieval.md, 'Scale')")
    ap.add_argument("--vectors", type=int, default=1_000_000, help="with --index: how many vectors for FAISS")
    ap.add_argument("--queries", type=int, default=200, help="with --index: FAISS queries (half photos, half texts)")
    ap.add_argument("--repeats", type=int, default=60, help="with --index: timed queries of each kind")
    ap.add_argument("--nlist", type=int, default=1024, help="with --index: IVF lists")
    ap.add_argument("--no-ann", action="store_true", help="with --index: the query timing only")
    ap.add_argument("--no-query", action="store_true", help="with --index: FAISS only")
    ap.add_argument("--engines", default="ivf_flat,ivf_sq8", help="with --index: FAISS engines (ivf_flat, ivf_sq8)")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="with --index: the retrieval checkpoint the index was built with (default: the shipped one)")
    a = ap.parse_args(argv)
    if a.index is None:
        print(json.dumps(bench_retrieval(a.quick)))
        return 0
    if not a.index.is_file():
        print(f"error: no index at {a.index}; build one with python -m mbm.scenarios.retrieval.index build FOLDER --out {a.index}",
              file=sys.stderr)
        return 2
    if not set(a.engines.split(",")) <= {"ivf_flat", "ivf_sq8"}:
        print("error: --engines takes ivf_flat and/or ivf_sq8, comma-separated", file=sys.stderr)
        return 2
    if a.vectors < 1000 or a.queries < 2 or a.repeats < 1 or not 1 <= a.nlist <= a.vectors // 39:
        print("error: --vectors >= 1000, --queries >= 2, --repeats >= 1, 1 <= --nlist <= vectors / 39",
              file=sys.stderr)
        return 2
    out = {}
    if not a.no_query:
        out["query"] = bench_query_index(a.index, a.repeats, checkpoint=a.checkpoint)
        print(json.dumps(out), flush=True)
    if not a.no_ann:
        out["ann"] = bench_ann_real(a.index, a.vectors, a.queries, a.nlist, checkpoint=a.checkpoint,
                                    engines=tuple(e.strip() for e in a.engines.split(",")))
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
