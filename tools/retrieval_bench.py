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
import os
import re
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
    from mbm.scenarios.retrieval.index import build
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


# --- scale: a real index of many photos, and a million vectors drawn from it ---------------

SCALE_TEXTS = ("a kangaroo", "a pouched animal that hops", "something to watch the news on", "a desk lamp",
               "a ceiling fan", "an old radio", "a wooden front door", "curtains over a window", "a coffee mug",
               "a butterfly on a flower", "a helicopter in the sky", "a face in the dark")


def _rss_mb() -> float:
    """This process's resident memory now (MB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_query_index(index_path: Path, repeats: int = 50, threads: int = 1, checkpoint: Path | None = None) -> dict:
    """Query p50/p95 over a real index through the app's search path (``encode_query`` + ``search``, k = 8,
    near-duplicates folded), encoding included, ``threads`` torch threads; the queries cycle through 12
    texts and 12 photos of the index's own folder (and those together), so no encoding is cached. Also
    the scoring alone (the query already encoded)."""
    from mbm.scenarios.retrieval.index import Index
    from mbm.scenarios.retrieval.model import load_space
    from mbm.scenarios.retrieval.search import encode_query, search

    torch.set_num_threads(threads)
    space = load_space(checkpoint)
    t = time.perf_counter()
    idx = Index.load(index_path)
    load_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    photos = [str(idx.path_of(int(i))) for i in rng.choice(len(idx), min(12, len(idx)), replace=False)]
    kinds = {"text": [{"text": x} for x in SCALE_TEXTS],
             "photo": [{"photo": p} for p in photos],
             "photo_text": [{"photo": p, "text": x} for p, x in zip(photos, SCALE_TEXTS)]}
    out = {"index": str(index_path), "items": len(idx), "index_load_s": round(load_s, 2), "threads": threads,
           "load_average_start": [round(x, 1) for x in os.getloadavg()]}
    for name, queries in kinds.items():
        search(space, idx, encode_query(space, idx, **queries[0]), space.weights, k=8)  # warm
        total, scoring, cpu = [], [], []
        for r in range(repeats):
            kw = queries[r % len(queries)]
            c, t = time.process_time(), time.perf_counter()
            q = encode_query(space, idx, **kw)
            t1 = time.perf_counter()
            search(space, idx, q, space.weights, k=8)
            t2 = time.perf_counter()
            cpu.append((time.process_time() - c) * 1000)
            total.append((t2 - t) * 1000)
            scoring.append((t2 - t1) * 1000)
        out[f"query_{name}_p50_ms"] = round(float(np.median(total)), 2)
        out[f"query_{name}_p95_ms"] = round(float(np.percentile(total, 95)), 2)
        out[f"query_{name}_cpu_p50_ms"] = round(float(np.median(cpu)), 2)  # CPU time: what the load does not inflate
        out[f"search_only_{name}_p50_ms"] = round(float(np.median(scoring)), 2)
    out["load_average_end"] = [round(x, 1) for x in os.getloadavg()]
    torch.set_num_threads(1)
    return out


def _search_p50(index, q: np.ndarray) -> tuple[float, float]:
    """Median wall and CPU ms of one-query searches (top 10) over the rows of q. On a loaded machine a
    search longer than the time slice it started in waits out the other processes' slices (wall jumps by
    ~20 ms at load 8 on 2 cores); CPU time is what the load does not inflate."""
    ms, cpu = [], []
    for i in range(len(q)):
        c, t = time.process_time(), time.perf_counter()
        index.search(q[i:i + 1], 10)
        ms.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return float(np.median(ms)), float(np.median(cpu))


def _group(path: str) -> str:
    """Copies of one photo (``name_v0.jpg``, ``name_v1.jpg`` of the scale folder) share a group."""
    return re.sub(r"_v\d+$", "", str(Path(path).with_suffix("")))


def _noisy_copies(parts: tuple[np.ndarray, np.ndarray], weights: tuple[float, float], sources: np.ndarray,
                  sigma: float, rng) -> np.ndarray:
    """Item vectors [a·sem', b·app'] with sem' / app' the sources' unit parts plus Gaussian noise of norm
    ~sigma, each part renormalised (so every vector is a unit vector of the index's own make-up)."""
    out = []
    for part, w in zip(parts, weights):
        p = part[sources]
        p = p + (sigma / np.sqrt(p.shape[1])) * rng.standard_normal(p.shape, dtype=np.float32)
        p /= np.linalg.norm(p, axis=1, keepdims=True).clip(1e-8)
        out.append(w * p)
    return np.concatenate(out, 1).astype(np.float32)


def bench_ann_real(index_path: Path, n: int = 1_000_000, queries: int = 200, nlist: int = 1024,
                   threads: int = 2, seed: int = 0, checkpoint: Path | None = None,
                   engines: tuple[str, ...] = ("ivf_flat", "ivf_sq8")) -> dict:
    """FAISS at ``n`` vectors drawn to resemble a real index: exact (``IndexFlatIP``) vs IVF-Flat and
    IVF-SQ8 (nlist ``nlist``, nprobe swept), recall@10 against exact, p50 per single query (one thread:
    wall and CPU time; the chosen nprobe also on ``threads``), build time (on ``threads``), memory.

    The index's photos are split by photo (copies ``name_v<k>`` together): 90 % are sources, 10 % held out
    as query photos. The n vectors are the sources' semantic and appearance parts plus Gaussian noise,
    each part renormalised; the noise is set so that a copy is as near its source as a real item is to
    its nearest other photo (median over the index), i.e. a collection n / N times as dense. Queries:
    half the held-out photos' own query vectors (``Space.photo_query``), half typed texts (ImageNet class
    names, "a photo of a …", through ``encode_query``), each as the combined vector the search scores with.
    """
    import faiss

    from mbm.scenarios.retrieval.encoders import imagenet_names
    from mbm.scenarios.retrieval.index import Index
    from mbm.scenarios.retrieval.model import SEM_DIM, combined_query, load_space
    from mbm.scenarios.retrieval.search import encode_query

    rng = np.random.default_rng(seed)
    torch.set_num_threads(1)
    space = load_space(checkpoint)
    idx = Index.load(index_path)
    v = idx.vectors.astype(np.float32)
    parts = (v[:, :SEM_DIM] / space.a, v[:, SEM_DIM:] / space.b)
    groups = sorted({_group(it["path"]) for it in idx.items})
    held = set(rng.choice(groups, max(1, len(groups) // 10), replace=False).tolist())
    is_query = np.array([_group(it["path"]) in held for it in idx.items])
    src, qsrc = np.flatnonzero(~is_query), np.flatnonzero(is_query)
    # the real density: each item's nearest item of another photo (a sample of 2,000 items)
    sample = rng.choice(src, min(2000, len(src)), replace=False)
    sims = v[sample] @ v[src].T
    gid = np.array([_group(idx.items[i]["path"]) for i in src])
    for r, i in enumerate(sample):
        sims[r, gid == _group(idx.items[i]["path"])] = -np.inf
    nn_cos = float(np.median(sims.max(1)))
    del sims
    sigma = float(np.sqrt(1 / nn_cos ** 2 - 1))
    t = time.perf_counter()
    x = np.empty((n, v.shape[1]), np.float32)
    for s in range(0, n, 100_000):
        x[s:s + 100_000] = _noisy_copies(parts, (space.a, space.b), rng.choice(src, min(100_000, n - s)), sigma, rng)
    gen_s = time.perf_counter() - t
    n_photo = min(queries // 2, len(qsrc))
    qi = rng.choice(qsrc, n_photo, replace=False)
    q_photo = space.photo_query(idx.photo_sem[qi], idx.app[qi])
    texts = [f"a photo of a {imagenet_names()[int(c)]}" for c in rng.choice(1000, queries - n_photo, replace=False)]
    q_text = np.stack([combined_query(encode_query(space, None, text=tx).vectors, space.weights) for tx in texts])
    q = np.ascontiguousarray(np.concatenate([q_photo * space.weights.get("photo", 1.0), q_text]).astype(np.float32))
    kind = np.array(["photo"] * len(q_photo) + ["text"] * len(q_text))

    faiss.omp_set_num_threads(threads)
    rss0 = _rss_mb()
    t = time.perf_counter()
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    flat_build_s = time.perf_counter() - t
    flat_mb = _rss_mb() - rss0
    _, truth = flat.search(q, 10)
    exact_p50 = {}
    for th in sorted({1, threads}):
        faiss.omp_set_num_threads(th)
        exact_p50[th] = _search_p50(flat, q[::max(1, len(q) // 50)])  # 50 queries: a scan is slow
    del flat
    out = {"index": str(index_path), "real_items": len(idx), "source_items": len(src), "query_photos": n_photo,
           "query_texts": len(q_text), "vectors": n, "dim": int(x.shape[1]), "threads": threads,
           "real_nearest_other_photo_cosine_p50": round(nn_cos, 4), "noise_sigma": round(sigma, 4),
           "generate_s": round(gen_s, 1), "faiss": faiss.__version__,
           "load_average_start": [round(x, 1) for x in os.getloadavg()],
           "exact": {"engine": "IndexFlatIP", "build_s": round(flat_build_s, 1), "memory_mb": round(flat_mb),
                     "p50_ms": round(exact_p50[threads][0], 2), "p50_ms_1_thread": round(exact_p50[1][0], 2),
                     "cpu_p50_ms_1_thread": round(exact_p50[1][1], 2)}}
    use, engines = engines, {"ivf_flat": lambda quant: faiss.IndexIVFFlat(quant, x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT),
               "ivf_sq8": lambda quant: faiss.IndexIVFScalarQuantizer(quant, x.shape[1], nlist,
                                                                     faiss.ScalarQuantizer.QT_8bit,
                                                                     faiss.METRIC_INNER_PRODUCT)}
    train = x[rng.choice(n, min(n, max(40 * nlist, 50_000)), replace=False)]
    for name, make in engines.items():
        if name not in use:
            continue
        rss0 = _rss_mb()
        t = time.perf_counter()
        quant = faiss.IndexFlatIP(x.shape[1])
        ann = make(quant)
        ann.train(train)
        ann.add(x)
        build_s = time.perf_counter() - t
        mem = _rss_mb() - rss0
        rows, chosen = [], None
        faiss.omp_set_num_threads(1)  # one query at a time, as the app asks: timed on one thread
        for nprobe in [p for p in (1, 2, 4, 8, 16, 32, 64, 128, 256) if p <= nlist]:
            ann.nprobe = nprobe
            ms, cpu, found = [], [], np.zeros(len(q))
            for i in range(len(q)):
                c, t = time.process_time(), time.perf_counter()
                _, ids = ann.search(q[i:i + 1], 10)
                ms.append((time.perf_counter() - t) * 1000)
                cpu.append((time.process_time() - c) * 1000)
                found[i] = len(set(truth[i].tolist()) & set(ids[0].tolist())) / 10
            row = {"nprobe": nprobe, "recall_at_10": round(float(found.mean()), 4),
                   "recall_at_10_photo": round(float(found[kind == "photo"].mean()), 4),
                   "recall_at_10_text": round(float(found[kind == "text"].mean()), 4),
                   "p50_ms": round(float(np.median(ms)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3),
                   "cpu_p50_ms": round(float(np.median(cpu)), 3)}
            rows.append(row)
            if chosen is None and row["recall_at_10"] >= 0.95:
                chosen = row
            if row["recall_at_10"] >= 0.995:
                break
        if chosen:
            faiss.omp_set_num_threads(threads)
            ann.nprobe = chosen["nprobe"]
            chosen[f"p50_ms_{threads}_threads"] = round(_search_p50(ann, q)[0], 3)
        faiss.omp_set_num_threads(threads)
        index_mb = (ann.ntotal * (ann.code_size + 8) + nlist * x.shape[1] * 4) / 2 ** 20  # codes + ids + centroids
        out[name] = {"engine": type(ann).__name__, "nlist": nlist, "train_vectors": len(train),
                     "build_s": round(build_s, 1), "index_mb": round(index_mb), "rss_growth_mb": round(mem),
                     "sweep": rows,
                     "chosen": chosen, "speedup_vs_exact": round(out["exact"]["p50_ms"] / chosen["p50_ms"], 1)
                     if chosen else None}
        del ann, quant
    out["peak_rss_mb"] = round(_peak_rss_mb())
    out["load_average_end"] = [round(x, 1) for x in os.getloadavg()]
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

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
