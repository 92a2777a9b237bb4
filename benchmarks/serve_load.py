"""Load test of `dahash serve` on loopback: requests/s and p50/p90/p99 latency under concurrent searches.

Usage: python benchmarks/serve_load.py [--run runs/oc_k5/DAH/A_W/seed0] [--data-root DIR]
       [--requests 300] [--concurrency 1 4 16 64] [--threads 1 2] [--max-concurrent 4]
       [--cache-dir /tmp/dahash_cache] [--seed 0] [--out benchmarks/results] [--quick]

Indexes every image under ``--data-root`` (Office-Caltech-10: 2,533 images, FAISS flat) with the
run's model, starts ``python -m dahash serve`` as its own process on a free 127.0.0.1 port, and
sends ``--requests`` searches per cell from as many client threads as the concurrency, each thread
sending its next request when the last one is answered (closed loop). Three kinds of query:

* upload, new image: a mirrored JPEG of a dataset image, in no cache: decode, backbone forward,
  head, search;
* upload, indexed image: the file's features come from the feature cache (no forward pass);
* code: a JSON hex code (an indexed code with 3 bits flipped): eq. 6 prediction and search only.

Each ``--threads`` value is one server (``dahash serve --threads``); the default of the server on
this machine is printed. Any non-200 answer counts as an error. The client runs on the same
cores as the server, so the figures include its cost.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchlib import free_port, machine, write_results

REPO = Path(__file__).resolve().parents[1]
KINDS = ("upload, new image", "upload, indexed image", "code")



def ensure_run(run: str | None, data_root: str, cache_dir: str, work: Path, seed: int) -> tuple[Path, str]:
    """The run to serve: ``run`` when it holds a model, else a DAH run trained here (A->W, 20 epochs)."""
    if run and (Path(run) / "model.pt").is_file():
        return Path(run), f"run {run}"
    out = work / "run"
    subprocess.run([sys.executable, "-m", "dahash", "train", "--data-root", data_root, "--source", "A",
                    "--target", "W", "--bits", "64", "--epochs", "20", "--cache-dir", cache_dir, "--seed", str(seed),
                    "--out", str(out), "--quiet"], check=True)
    return out, "DAH run trained here (A→W, 64 bits, 20 epochs)"


def queries(paths: list[str], index_dir: Path, n: int, rng: np.random.Generator) -> dict[str, list]:
    """``n`` request payloads of each kind."""
    from PIL import Image

    picks = rng.choice(len(paths), size=n, replace=len(paths) < n)
    indexed = [(Path(paths[i]).name, Path(paths[i]).read_bytes()) for i in picks]
    new = []
    for i in picks:
        buffer = io.BytesIO()
        with Image.open(paths[i]) as image:
            image.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(buffer, format="JPEG", quality=90)
        new.append((f"new{i}.jpg", buffer.getvalue()))
    codes = np.load(index_dir / "codes.npy")
    chosen = codes[rng.integers(0, len(codes), n)].copy()
    bits = np.unpackbits(chosen, axis=1)
    for row in bits:
        row[rng.choice(bits.shape[1], 3, replace=False)] ^= 1
    hexes = [c.tobytes().hex() for c in np.packbits(bits, axis=1)]
    return {KINDS[0]: new, KINDS[1]: indexed, KINDS[2]: hexes}


class Server:
    """``python -m dahash serve`` in its own process, stopped on exit."""

    def __init__(self, index: Path, run: Path, threads: int | None, max_concurrent: int, cache_dir: str,
                 log: Path) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "dahash", "serve", "--index", str(index), "--run", str(run),
                "--port", str(self.port), "--max-concurrent", str(max_concurrent), "--cache-dir", cache_dir]
        if threads is not None:
            args += ["--threads", str(threads)]
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Server":
        import httpx

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dahash serve exited with status {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"dahash serve did not answer /health in 180 s; see {self.log.name}")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def load(url: str, kind: str, payloads: list, concurrency: int) -> dict:
    """Send every payload once, ``concurrency`` at a time; latencies in ms and the error count."""
    import httpx

    def one(item) -> tuple[float, int]:
        start = time.perf_counter()
        try:
            if kind == "code":
                r = client.post("/search", json={"code": item, "k": 10})
            else:
                r = client.post("/search", files={"image": (item[0], item[1], "image/jpeg")}, data={"k": "10"})
            ok = r.status_code == 200 and len(r.json()["hits"]) == 10
        except httpx.HTTPError:
            ok = False
        return (time.perf_counter() - start) * 1000, int(not ok)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(base_url=url, timeout=120, limits=limits) as client:
        for item in payloads[:3]:  # warm-up: first-call allocations, thread pool start
            one(item)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, payloads))
        wall = time.perf_counter() - t0
    ms = np.array([r[0] for r in results])
    return {"requests": len(results), "errors": sum(r[1] for r in results), "req_per_s": len(results) / wall,
            "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(REPO / "runs" / "oc_k5" / "DAH" / "A_W" / "seed0"))
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "office_caltech_10"))
    parser.add_argument("--requests", type=int, default=300, help="requests per cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="dahash serve --threads values")
    parser.add_argument("--max-concurrent", type=int, default=4)
    parser.add_argument("--cache-dir", default=os.environ.get("DAHASH_CACHE", "/tmp/dahash_cache"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--quick", action="store_true", help="30 requests, concurrency 1 and 16, threads 1")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.concurrency, args.threads = 30, [1, 16], [1]

    import faiss
    import torch

    from dahash.experiments.demo import markdown_table
    from dahash.images.features import collect_images
    from dahash.retrieval.search import build_index

    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    line = machine(torch=torch.__version__, faiss=faiss.__version__)
    print(line, flush=True)
    with tempfile.TemporaryDirectory(prefix="dahash-serve-load-") as tmp:
        work = Path(tmp)
        run, run_note = ensure_run(args.run, args.data_root, args.cache_dir, work, args.seed)
        index = work / "index"
        t0 = time.perf_counter()
        n = build_index(run, [args.data_root], index, cache_dir=args.cache_dir, progress=True)
        print(f"indexed {n:,} images in {time.perf_counter() - t0:.1f} s ({run_note})", flush=True)
        paths = [str(p) for p in collect_images([args.data_root])]
        payloads = queries(paths, index, args.requests, rng)
        rows = []
        for threads in args.threads:
            with Server(index, run, threads, args.max_concurrent, args.cache_dir, work / "serve.log") as server:
                for kind in KINDS:
                    for concurrency in args.concurrency:
                        cell = load(server.url, kind, payloads[kind], concurrency)
                        rows.append({"server_threads": threads, "query": kind, "concurrency": concurrency, **cell})
                        print(f"threads {threads}, {kind}, concurrency {concurrency}: {cell['req_per_s']:.1f} req/s, "
                              f"p50 {cell['p50_ms']:.0f} ms, p99 {cell['p99_ms']:.0f} ms, "
                              f"{cell['errors']} errors", flush=True)
    wall = time.perf_counter() - started
    default_threads = max(1, (os.cpu_count() or 1) // args.max_concurrent)
    table = markdown_table(
        ["server threads", "query", "concurrent clients", "requests", "errors", "req/s", "p50 ms", "p90 ms",
         "p99 ms", "max ms"],
        [[str(r["server_threads"]) + (" (default)" if r["server_threads"] == default_threads else ""), r["query"],
          str(r["concurrency"]), str(r["requests"]), str(r["errors"]), f"{r['req_per_s']:.1f}",
          f"{r['p50_ms']:.0f}", f"{r['p90_ms']:.0f}", f"{r['p99_ms']:.0f}", f"{r['max_ms']:.0f}"] for r in rows])
    config = {k: v for k, v in vars(args).items()}
    text = (f"# dahash serve under load\n\n{line}\n\nIndex: {n:,} images of {args.data_root} (FAISS flat, "
            f"{run_note}); `dahash serve --max-concurrent {args.max_concurrent}`; k = 10; closed-loop clients "
            f"on the same machine.\n\n{table}\n\nWall time {wall:.0f} s. Config: `{json.dumps(config)}`\n")
    write_results(args.out, "serve_load", text, rows)
    print("\n" + table)
    print(f"\nwall time {wall:.0f} s; written to {Path(args.out) / 'serve_load.md'}")


if __name__ == "__main__":
    main()
