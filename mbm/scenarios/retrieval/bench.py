"""Retrieval speed: ``python -m mbm.bench --json`` (its ``retrieval`` section) or ``python -m mbm.scenarios.retrieval.bench``.

- one query over 10,000 items, encoding included, one thread: a typed text, a photo, photo + text;
- 1,000,000 random unit vectors of the index's size (192 floats): exact search (numpy, one thread)
  against FAISS IVF-Flat (``faiss-cpu``; nlist 1024, the smallest nprobe with recall@10 >= 0.95
  against exact), its recall@10 and speed-up; twice: uniform on the sphere (no structure, the
  worst case for any approximate index) and clustered around 2,000 centres (as real embeddings are);
- indexing: photos/s of ``mbm.index.build`` on generated 256 px JPEGs (decode included), 2 threads.
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
    from mbm.index import Index
    from mbm.scenarios.retrieval.model import VECTOR_DIM, load_space
    from mbm.scenarios.retrieval.search import encode_query, search
    from mbm.paths import RETRIEVAL_ASSETS

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
        out[f"query_{name}_10k_p50_ms"] = _p50(lambda: search(space, idx, encode_query(space, None, **kw),
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

    from mbm.index import build
    from mbm.scenarios.retrieval.encoders import IMAGE_SIZE, photo_features
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


if __name__ == "__main__":
    import sys

    print(json.dumps(bench_retrieval("--quick" in sys.argv)))
