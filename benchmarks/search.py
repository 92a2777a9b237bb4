"""Search backends of dahash.index on 64-bit codes: build time, queries/s, recall@10 and bytes per code.

Usage: python benchmarks/search.py [--n-random 1000000] [--n-real 100000] [--n-queries 1000]
       [--run runs/oc_k5/DAH/A_W/seed0] [--noise 0.3] [--milvus-max 200000] [--no-milvus]
       [--milvus-uri URI] [--quick] [--seed 0] [--out DIR]

Two databases of 64-bit codes:

* random: N uniformly random codes; queries are fresh random codes;
* real-model: DAH head outputs on real features plus noise copies. The head of a finished DAH
  run (``--run``; trained here for a few epochs when absent) encodes the cached
  efficientnet_lite0 features of every Office-Caltech-10 image (2,533 when all four domains'
  features are cached, else the run's two domains); the database is ``--n-real`` codes, each the
  head's output on one real feature vector plus Gaussian noise of ``--noise`` times that
  feature's standard deviation (over the real images). Queries are noisy copies of random
  database items (the item's real feature with fresh noise). There are only ~2.5k real images,
  and the trained head maps them to only ~200 distinct clean codes (class clusters): codes repeat
  and distance ties are common; recall is tie-aware.

Backends: a NumPy popcount scan (the floor), the dahash FaissIndex kinds flat (exact), ivf
(nprobe 8 and 32) and hnsw (M 16, efSearch 64), and MilvusIndex BIN_IVF_FLAT (nlist 1024,
nprobe 16) on an embedded Milvus 2.3.5 server started here (or ``--milvus-uri``) over at most
``--milvus-max`` codes. FAISS indexes are built with all cores and searched with 1 thread (and 2).
recall@10: a returned id counts if its true distance is <= the exact 10th distance.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from benchlib import free_port, machine, timed
from dahash.codes import pack_codes
from dahash.experiments.demo import markdown_table
from dahash.index.faiss_index import FaissIndex

REPO = Path(__file__).resolve().parents[1]
K = 10
HAS_BITCOUNT = hasattr(np, "bitwise_count")
_LUT = np.array([bin(i).count("1") for i in range(1 << 16)], dtype=np.uint8)


# ------------------------------------------------------------------------------------ helpers

def words(codes: np.ndarray) -> np.ndarray:
    """Packed (n, 8) uint8 codes as (n,) uint64 words."""
    return np.ascontiguousarray(codes).view(np.uint64).reshape(-1)


def popcount(x: np.ndarray) -> np.ndarray:
    if HAS_BITCOUNT:
        return np.bitwise_count(x)
    v = x.view(np.uint16).reshape(*x.shape, 4)
    return _LUT[v].sum(-1, dtype=np.uint8)


def numpy_scan(q: np.ndarray, db: np.ndarray, k: int = K, chunk: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive top-k: XOR of uint64 words, popcount, argpartition, then sort the k."""
    qw, dw = words(q), words(db)
    ids = np.empty((len(qw), k), np.int64)
    dist = np.empty((len(qw), k), np.int32)
    for s in range(0, len(qw), chunk):
        d = popcount(np.bitwise_xor(qw[s:s + chunk, None], dw[None, :]))
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        pd = np.take_along_axis(d, part, 1)
        order = np.argsort(pd, axis=1, kind="stable")
        ids[s:s + chunk] = np.take_along_axis(part, order, 1)
        dist[s:s + chunk] = np.take_along_axis(pd, order, 1)
    return ids, dist


def tie_aware_recall(q: np.ndarray, db: np.ndarray, ids: np.ndarray, kth: np.ndarray) -> float:
    """Share of returned ids whose true distance is <= the exact k-th distance (id -1 = miss)."""
    valid = ids >= 0
    true = popcount(np.bitwise_xor(words(q)[:, None], words(db)[np.where(valid, ids, 0)])).astype(np.int32)
    return float((valid & (true <= kth[:, None])).sum() / ids.size)


def machine_line() -> str:
    try:
        import pymilvus
        pm = pymilvus.__version__
    except Exception:  # noqa: BLE001
        pm = "n/a"
    try:
        from importlib.metadata import version
        mv = version("milvus")
    except Exception:  # noqa: BLE001
        mv = "n/a"
    return machine(popcount="np.bitwise_count" if HAS_BITCOUNT else "16-bit lookup table", faiss=faiss.__version__,
                   pymilvus=pm, **{"milvus (embedded server)": mv})


# ------------------------------------------------------------------------------------ data

def random_set(n: int, n_q: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    db = rng.integers(0, 256, size=(n, 8), dtype=np.uint8)
    q = rng.integers(0, 256, size=(n_q, 8), dtype=np.uint8)
    return db, q, f"{n:,} uniformly random 64-bit codes; {n_q:,} random query codes"


def load_head(run: str | None, data_root: str, cache_dir: str, seed: int):
    """(model, config, normaliser, feature matrix of all real images, note)."""
    from dahash.runs.loading import load_run

    if run and (Path(run) / "model.pt").exists():
        model, config, domains = load_run(run)
        note = f"head of the finished run {run} ({config.source}→{config.target}, {config.bits} bits, {config.epochs} epochs)"
    else:
        from dahash.training.config import TrainConfig
        from dahash.runs.data import load_domains
        from dahash.training.trainer import train_model

        config = TrainConfig.from_dict({"data_root": os.path.abspath(data_root), "source": "A", "target": "W", "bits": 64,
                                        "epochs": 5, "cache_dir": cache_dir, "seed": seed}, source="search.py")
        domains = load_domains(config, progress=False)
        t0 = time.perf_counter()
        model = train_model(config, domains, progress=False)
        note = f"DAH head trained here for 5 epochs on A→W ({time.perf_counter() - t0:.0f} s; no --run given/found)"
    feats = [domains.source.X, domains.target.X]
    names = [config.source, config.target]
    others = [d for d in ("A", "C", "D", "W") if d not in (config.source, config.target)]
    if len(others) == 2 and not config.finetune:
        try:
            from dahash.images.features import image_feature_sets

            s, t = image_feature_sets(config.data_root, others[0], others[1], backbone=config.backbone,
                                      weights=config.weights, cache_dir=config.cache_dir, progress=False)
            feats += [domains.normalizer.transform(s.X), domains.normalizer.transform(t.X)]
            names += others
        except Exception as exc:  # noqa: BLE001 - fall back to the run's two domains
            note += f"; domains {others} not used ({type(exc).__name__}: {exc})"
    X = np.concatenate(feats).astype(np.float32)
    return model, X, note + f"; real features: {len(X):,} images of domains {'+'.join(names)}"


def real_set(n: int, n_q: int, noise: float, run: str | None, data_root: str, cache_dir: str,
             rng: np.random.Generator, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    import torch

    from dahash.models.predict import encode

    torch.manual_seed(seed)
    model, X, note = load_head(run, data_root, cache_dir, seed)
    std = X.std(0, keepdims=True).astype(np.float32)

    def codes_of(base: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, len(base), 10_000):
            b = base[s:s + 10_000]
            x = X[b] + noise * std * rng.standard_normal((len(b), X.shape[1]), dtype=np.float32)
            out.append(pack_codes(encode(model, x)))
        return np.concatenate(out)

    clean = pack_codes(encode(model, X))
    base = rng.integers(0, len(X), n)
    base[:len(X)] = np.arange(min(n, len(X)))  # every real image appears at least once
    db = codes_of(base)
    picks = rng.integers(0, n, n_q)
    q = codes_of(base[picks])
    flips = popcount(np.bitwise_xor(words(db), words(clean)[base])).mean()
    qflips = popcount(np.bitwise_xor(words(q), words(db)[picks])).mean()
    distinct = len(np.unique(words(db)))
    desc = (f"real-model codes = DAH head outputs on real features plus noise copies: {n:,} codes, each the head's "
            f"code of one real image's feature + N(0, ({noise:g}·feature std)²) noise ({note}); "
            f"{distinct:,} distinct codes; a noise copy differs from the clean code in {flips:.1f} of 64 bits on average. "
            f"{n_q:,} queries: fresh noise copies of random database items ({qflips:.1f} bits from that item on average)")
    return db, q, desc


# ------------------------------------------------------------------------------------ Milvus

class MilvusServer:
    """The embedded ``milvus.default_server`` under a temporary base dir on a free port (as tests/conftest.py)."""

    def __init__(self) -> None:
        from milvus import default_server

        self.server = default_server
        self.base = tempfile.mkdtemp(prefix="dahash-bench-milvus-")
        port = free_port()
        default_server.set_base_dir(self.base)
        default_server.listen_port = port
        default_server.wait_for_started = False
        # The query node swaps in freshly indexed segments every second instead of every 10.
        os.environ["QUERYCOORD_UPDATENEXTTARGETINTERVAL"] = "1"
        t0 = time.perf_counter()
        default_server.start()
        default_server.wait_started(timeout=180_000)
        self.start_s = time.perf_counter() - t0
        self.uri = f"http://127.0.0.1:{default_server.listen_port}"

    def stop(self) -> None:
        self.server.stop()
        self.server.cleanup()


def milvus_row(uri: str, db: np.ndarray, q: np.ndarray, kth_fn, name: str) -> tuple[dict, np.ndarray]:
    from dahash.index.milvus_index import MilvusIndex

    t0 = time.perf_counter()
    index = MilvusIndex(64, uri, name, index_type="BIN_IVF_FLAT", nlist=1024, nprobe=16, timeout=60)
    try:
        index.add(db, np.arange(len(db)))
        t_insert = time.perf_counter() - t0
        index.wait_for_index(timeout=600)
        build = time.perf_counter() - t0
        index.search(q[:10], K)  # warm-up
        res, secs = timed(lambda: index.search(q, K))
        try:
            segs = index.client.list_loaded_segments(name)
            mem = sum(s.mem_size for s in segs)
            bpc = f"{mem / len(db):.1f} (server-side, segment mem_size; id + code + meta)" if mem else "n/a (server-side)"
        except Exception:  # noqa: BLE001
            bpc = "n/a (server-side)"
        kth = kth_fn(len(db))
        row = {"backend": f"Milvus BIN_IVF_FLAT nlist 1024, nprobe 16 ({len(db):,} codes)", "build": build,
               "qps": len(q) / secs, "qps2": None, "recall": tie_aware_recall(q, db, res.ids, kth), "bytes": bpc,
               "note": f"insert+flush {t_insert:.1f} s, index build and segment swap-in {build - t_insert:.1f} s"}
    finally:
        try:
            index.drop()
        except Exception:  # noqa: BLE001
            index.close()
    return row, res.ids


# ------------------------------------------------------------------------------------ benchmark

def bench(title: str, db: np.ndarray, q: np.ndarray, milvus_uri: str | None, milvus_max: int,
          threads: int, log) -> list[dict]:
    n = len(db)
    rows = []

    def faiss_search(index: FaissIndex) -> tuple[np.ndarray, float, float | None]:
        faiss.omp_set_num_threads(1)
        index.search(q[:10], K)
        res, secs = timed(lambda: index.search(q, K))
        qps2 = None
        if threads > 1:
            faiss.omp_set_num_threads(threads)
            _, s2 = timed(lambda: index.search(q, K))
            qps2 = len(q) / s2
        return res.ids, len(q) / secs, qps2

    (np_ids, np_dist), np_s = timed(lambda: numpy_scan(q, db))
    log(f"  numpy scan: {np_s:.1f} s")
    faiss.omp_set_num_threads(threads)
    flat, t_flat = timed(lambda: (lambda ix: (ix.add(db, np.arange(n)), ix)[1])(FaissIndex(64, "flat")))
    ids, qps, qps2 = faiss_search(flat)
    exact = flat.search(q, K)
    kth = exact.distances[:, K - 1].astype(np.int32)
    kth_note = (f"exact 10th-neighbour distance: mean {kth.mean():.2f} bits, 0 for {(kth == 0).mean():.1%} of queries "
                f"(then any 10 exact duplicates are a correct answer)")
    log(f"  {kth_note}")
    if not np.array_equal(np.sort(np_dist, 1), np.sort(exact.distances, 1)):
        log("  WARNING: NumPy scan and FAISS flat disagree on the top-10 distances")
    rows.append({"backend": "NumPy popcount scan (exact)", "build": 0.0, "qps": len(q) / np_s, "qps2": None,
                 "recall": tie_aware_recall(q, db, np_ids, kth), "bytes": "8",
                 "note": "single thread; build = none (raw uint64 codes)"})
    rows.append({"backend": "FAISS flat (exact)", "build": t_flat, "qps": qps, "qps2": qps2,
                 "recall": tie_aware_recall(q, db, ids, kth),
                 "bytes": f"{faiss.serialize_index_binary(flat._index).size / n:.1f}", "note": "IndexBinaryIDMap(Flat): code + id"})
    log(f"  faiss flat: build {t_flat:.1f} s, {qps:.0f} q/s")
    del flat

    faiss.omp_set_num_threads(threads)
    nlist = max(1, min(1024, round(math.sqrt(n))))
    ivf, t_ivf = timed(lambda: (lambda ix: (ix.add(db, np.arange(n)), ix)[1])(FaissIndex(64, "ivf", nlist=nlist, nprobe=8)))
    ivf_bytes = f"{faiss.serialize_index_binary(ivf._index).size / n:.1f}"
    for nprobe in (8, 32):
        ivf._index.nprobe = nprobe
        ids, qps, qps2 = faiss_search(ivf)
        rows.append({"backend": f"FAISS IVF nlist {nlist}, nprobe {nprobe}", "build": t_ivf, "qps": qps, "qps2": qps2,
                     "recall": tie_aware_recall(q, db, ids, kth), "bytes": ivf_bytes,
                     "note": "trained on all codes (k-means); one index, both nprobe"})
        log(f"  faiss ivf nprobe {nprobe}: build {t_ivf:.1f} s, {qps:.0f} q/s")
    del ivf

    faiss.omp_set_num_threads(threads)
    hnsw, t_hnsw = timed(lambda: (lambda ix: (ix.add(db, np.arange(n)), ix)[1])(
        FaissIndex(64, "hnsw", hnsw_m=16, ef_search=64)))
    ids, qps, qps2 = faiss_search(hnsw)
    rows.append({"backend": "FAISS HNSW M 16, efSearch 64", "build": t_hnsw, "qps": qps, "qps2": qps2,
                 "recall": tie_aware_recall(q, db, ids, kth),
                 "bytes": f"{faiss.serialize_index_binary(hnsw._index).size / n:.1f}", "note": "graph + codes"})
    log(f"  faiss hnsw: build {t_hnsw:.1f} s, {qps:.0f} q/s")
    del hnsw

    if milvus_uri:
        m = min(n, milvus_max)
        sub = db[:m]
        if m < n:
            # Recall against the exact ranking of the same subset.
            kth_fn = lambda _m: numpy_scan(q, sub)[1][:, K - 1].astype(np.int32)  # noqa: E731
        else:
            kth_fn = lambda _m: kth  # noqa: E731
        name = "bench_" + "".join(c for c in title.lower() if c.isalnum())[:20] + f"_{os.getpid()}"
        try:
            row, _ = milvus_row(milvus_uri, sub, q, kth_fn, name)
            if m < n:
                # The NumPy floor on the same subset, for a fair speed-up.
                _, s_sub = timed(lambda: numpy_scan(q, sub))
                row["np_qps"] = len(q) / s_sub
                row["note"] += f"; subset of the first {m:,} codes, compared with a NumPy scan of that subset"
            rows.append(row)
            log(f"  milvus: build {row['build']:.1f} s, {row['qps']:.0f} q/s")
        except Exception as exc:  # noqa: BLE001
            rows.append({"backend": "Milvus BIN_IVF_FLAT", "build": float("nan"), "qps": float("nan"), "qps2": None,
                         "recall": float("nan"), "bytes": "n/a", "note": f"failed: {type(exc).__name__}: {exc}"})
            log(f"  milvus failed: {exc}")
    base_qps = rows[0]["qps"]
    rows[0]["kth_note"] = kth_note
    for r in rows:
        r["speedup"] = r["qps"] / r.get("np_qps", base_qps)
    return rows


def render(rows: list[dict], threads: int) -> tuple[list[str], list[list[str]]]:
    header = ["backend", "build s", "queries/s (1 thread)", f"queries/s ({threads} threads)", "speed-up vs NumPy scan",
              "recall@10", "bytes/code", "notes"]
    body = []
    for r in rows:
        body.append([r["backend"], f"{r['build']:.2f}", f"{r['qps']:,.0f}",
                     "–" if r["qps2"] is None else f"{r['qps2']:,.0f}", f"{r['speedup']:.1f}×",
                     f"{r['recall']:.4f}", r["bytes"], r["note"]])
    return header, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-random", type=int, default=1_000_000)
    parser.add_argument("--n-real", type=int, default=100_000)
    parser.add_argument("--n-queries", type=int, default=1_000)
    parser.add_argument("--noise", type=float, default=2.0, help="feature noise, in units of each feature's std")
    parser.add_argument("--run", default=str(REPO / "runs" / "oc_k5" / "DAH" / "A_W" / "seed0"),
                        help="finished 64-bit DAH run whose head encodes the real features (trained here if absent)")
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "office_caltech_10"))
    parser.add_argument("--cache-dir", default="/tmp/dahash_cache")
    parser.add_argument("--milvus-max", type=int, default=200_000, help="codes inserted into Milvus (first ones)")
    parser.add_argument("--milvus-uri", default=None, help="use this server instead of starting the embedded one")
    parser.add_argument("--no-milvus", action="store_true")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--quick", action="store_true", help="100k random, 20k real codes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write search.md and search.csv here")
    args = parser.parse_args()
    if args.quick:
        args.n_random, args.n_real = min(args.n_random, 100_000), min(args.n_real, 20_000)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    info = machine_line()
    text = ["# Search backends of dahash.index, 64-bit codes\n",
            f"Machine: {info}.\n",
            f"Command: `python {' '.join(sys.argv)}` (seed {args.seed}, {args.n_queries:,} queries, top-{K}).\n"]
    server = None
    uri = args.milvus_uri
    if not args.no_milvus and not uri:
        try:
            server = MilvusServer()
            uri = server.uri
            log(f"Milvus server at {uri} started in {server.start_s:.1f} s")
        except Exception as exc:  # noqa: BLE001
            text.append(f"Milvus server could not start ({type(exc).__name__}: {exc}); Milvus rows omitted.\n")
    csv_rows = []
    try:
        for key in ("random", "real"):
            rng = np.random.default_rng(args.seed + (0 if key == "random" else 1))
            if key == "random":
                if args.n_random <= 0:
                    continue
                db, q, desc = random_set(args.n_random, args.n_queries, rng)
                title = f"Random codes, N = {args.n_random:,}"
            else:
                if args.n_real <= 0:
                    continue
                (db, q, desc), t_data = timed(lambda: real_set(args.n_real, args.n_queries, args.noise, args.run,
                                                               args.data_root, args.cache_dir, rng, args.seed))
                desc += f" (built in {t_data:.0f} s)"
                title = f"Real-model codes, N = {args.n_real:,}"
            log(f"{title}: {desc}")
            rows = bench(title, db, q, uri, args.milvus_max, args.threads, log)
            header, body = render(rows, args.threads)
            text.append(f"## {title}\n\n{desc}; {rows[0]['kth_note']}.\n\n" + markdown_table(header, body))
            csv_rows += [[key, str(len(db))] + [c.replace(",", "") if 1 <= i <= 6 else c for i, c in enumerate(b)]
                         for b in body]
    finally:
        if server is not None:
            server.stop()
    seconds = time.perf_counter() - t_start
    text.append(
        f"Wall time {seconds:.0f} s{f' (Milvus server start {server.start_s:.0f} s)' if server else ''}. "
        f"queries/s: one batch of all {args.n_queries:,} queries after a 10-query warm-up; FAISS searched with "
        f"faiss.omp_set_num_threads(1), then {args.threads}; FAISS indexes built with {args.threads} threads through "
        "dahash.index.FaissIndex (build s includes its id checks and its own copy of codes and ids, which add 16 bytes "
        "per code beyond the FAISS index). Milvus: MilvusIndex on a server on the same machine (its own threads), "
        "over gRPC, returning the meta field; build s = insert + flush + index build + query-node swap-in "
        "(QUERYCOORD_UPDATENEXTTARGETINTERVAL=1). recall@10 is tie-aware: a hit counts if its true distance <= the "
        "exact 10th distance.\n")
    report = "\n".join(text)
    print(report)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "search.md").write_text(report)
        import csv

        with open(out / "search.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["dataset", "n"] + render([], args.threads)[0])
            writer.writerows(csv_rows)


if __name__ == "__main__":
    main()
