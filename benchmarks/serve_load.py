"""Load test of `dahash serve` on loopback: uploads/s and p50/p90/p99 latency with dynamic batching
off and on, against the model-only rate measured in the same run.

Usage: python benchmarks/serve_load.py [--run runs/oc_k5/DAH/A_W/seed0] [--data-root DIR]
       [--requests-per-client 4] [--min-requests 40] [--concurrency 1 4 16 64]
       [--kinds new] [--max-batch 16] [--max-wait-ms 10] [--threads T ...] [--lanes L ...]
       [--cache-dir DIR] [--seed 0] [--out benchmarks/results] [--quick]

Indexes every image under ``--data-root`` (Office-Caltech-10: 2,533 images, FAISS flat) with the
run's model, then:

1. measures the model-only rate: the backbone alone (``model_only_throughput``, random input of
   its crop size) at batch ``--max-batch`` and at batch 1, with each server's thread count, in
   this process while no server runs, once before the servers and once after (the mean is the
   reference; both are printed: on a shared machine they differ);
2. starts ``python -m dahash serve`` as its own process on a free 127.0.0.1 port, once per mode:
   batching off (``--max-batch 1 --max-concurrent 4``, the server before batching: each upload
   encoded on its own, four at a time, with that server's default threads) and batching on
   (``--max-batch``/``--max-wait-ms``, ``--max-concurrent`` = ``--max-batch``, once per
   ``--threads`` and ``--lanes`` value; by default the server's default threads, with one lane
   and with the default lanes: one lane running batches on every thread, against one lane per
   thread running batches side by side);
3. sends, per cell, max(``--min-requests``, ``--requests-per-client`` x clients) searches from as
   many client threads as clients, each sending its next request when the last one is answered
   (closed loop), after 3 warm-up requests.

Query kinds (``--kinds``): ``new``, an upload of a mirrored JPEG of a dataset image that no cache
holds (decode, backbone, head, search: what batching is for); ``indexed``, an upload of an indexed
image (its features come from the feature cache); ``code``, a JSON hex code (an indexed code with
3 bits flipped). Each row reports req/s, its ratio to the model-only rate (same threads and lanes,
batch ``--max-batch``) and to the best model-only rate on as many cores, over the lanes and the batch
sizes measured (the model's limit on those cores), its speed-up over batching off with as many
clients, the latency percentiles and the mean batch the server ran (from its /stats). Any non-200 answer counts as an error. The client
runs on the same cores as the server, so the figures include its cost.
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
KINDS = {"new": "upload, new image", "indexed": "upload, indexed image", "code": "code"}


def ensure_run(run: str | None, data_root: str, cache_dir: str | None, work: Path, seed: int) -> tuple[Path, str]:
    """The run to serve: ``run`` when it holds a model, else a DAH run trained here (A->W, 20 epochs)."""
    if run and (Path(run) / "model.pt").is_file():
        return Path(run), f"run {run}"
    out = work / "run"
    extra = ["--cache-dir", cache_dir] if cache_dir else []
    subprocess.run([sys.executable, "-m", "dahash", "train", "--data-root", data_root, "--source", "A",
                    "--target", "W", "--bits", "64", "--epochs", "20", "--seed", str(seed),
                    "--out", str(out), "--quiet", *extra], check=True)
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
    return {"new": new, "indexed": indexed, "code": hexes}


class Server:
    """``python -m dahash serve`` in its own process, stopped on exit."""

    def __init__(self, index: Path, run: Path, *, threads: int, lanes: int, max_concurrent: int, max_batch: int,
                 max_wait_ms: float, cache_dir: str | None, log: Path, engine: str | None = None) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "dahash", "serve", "--index", str(index), "--run", str(run),
                "--port", str(self.port), "--max-concurrent", str(max_concurrent), "--max-batch", str(max_batch),
                "--max-wait-ms", str(max_wait_ms), "--threads", str(threads), "--lanes", str(lanes)]
        if cache_dir:
            args += ["--cache-dir", cache_dir]
        if engine:
            args += ["--engine", engine]
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

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (user + system, every thread)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def load(server: Server, kind: str, payloads: list, concurrency: int) -> dict:
    """Send every payload once, ``concurrency`` at a time (after 3 warm-up requests); latencies in
    ms, the error count, the server's mean batch, and the CPU the server and the clients used per
    request, over the timed requests."""
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

    def batching() -> dict:
        return client.get("/stats").json()["batching"]

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(base_url=server.url, timeout=120, limits=limits) as client:
        for item in payloads[:3]:  # warm-up: first-call allocations, thread pool start
            one(item)
        before = batching()
        server_cpu, client_cpu, t0 = server.cpu_seconds(), time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, payloads[3:]))
        wall = time.perf_counter() - t0
        server_cpu, client_cpu = server.cpu_seconds() - server_cpu, time.process_time() - client_cpu
        after = batching()
    ms = np.array([r[0] for r in results])
    batches = after.get("batches", 0) - before.get("batches", 0)
    images = after.get("images", 0) - before.get("images", 0)
    return {"requests": len(results), "errors": sum(r[1] for r in results), "req_per_s": len(results) / wall,
            "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
            "mean_batch": images / batches if batches else 1.0,
            "encoded_singly": after["encoded_singly"] - before["encoded_singly"],
            "server_cpu_ms": 1000 * server_cpu / len(results), "client_cpu_ms": 1000 * client_cpu / len(results)}


def model_only(backbone, configs: list[tuple[int, int]], max_batch: int) -> dict[tuple[int, int, int], float]:
    """img/s of the backbone alone, {(threads, lanes, batch): rate}, at batch max_batch and 1: ``lanes``
    threads side by side, each on threads // lanes torch threads, as the server runs its batches."""
    import torch

    from dahash.images.extract import model_only_throughput

    saved = torch.get_num_threads()
    rates = {}
    try:
        for t, lanes in configs:
            torch.set_num_threads(max(1, t // lanes))
            for batch in sorted({1, max_batch}):
                rates[(t, lanes, batch)] = model_only_throughput(backbone, batch_size=batch,
                                                                 n_batches=max(2, 32 // batch), lanes=lanes)
    finally:
        torch.set_num_threads(saved)
    return rates


def rates_line(rates: dict[tuple[int, int, int], float]) -> str:
    return ", ".join(f"{t} threads {lanes} lanes batch {b}: {r:.1f}" for (t, lanes, b), r in rates.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(REPO / "runs" / "oc_k5" / "DAH" / "A_W" / "seed0"))
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "office_caltech_10"))
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--min-requests", type=int, default=40, help="requests per cell at least")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--kinds", nargs="+", choices=sorted(KINDS), default=["new"])
    parser.add_argument("--max-batch", type=int, default=16, help="dahash serve --max-batch with batching on")
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="dahash serve --threads values with batching on (default: the server's default)")
    parser.add_argument("--lanes", type=int, nargs="+", default=None,
                        help="dahash serve --lanes values with batching on (default: 1 and the server's default)")
    parser.add_argument("--cache-dir", default=os.environ.get("DAHASH_CACHE"),
                        help="feature cache (default: the run's, else $DAHASH_CACHE, else ~/.cache/dahash)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--quick", action="store_true", help="1 and 16 clients, 20 requests at least")
    args = parser.parse_args()
    if args.quick:
        args.concurrency, args.min_requests = [1, 16], 20

    import faiss
    import torch

    from dahash.experiments.tables import markdown_table
    from dahash.images.features import collect_images
    from dahash.retrieval.search import build_index
    from dahash.retrieval.settings import default_lanes, default_threads
    from dahash.runs.loading import load_image_run

    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    line = machine(torch=torch.__version__, faiss=faiss.__version__)
    print(line, flush=True)
    off_threads = default_threads(4, 1)
    on_threads = args.threads or [default_threads(args.max_batch, args.max_batch)]
    modes = [("off", 1, 4, off_threads, 1)]
    for t in on_threads:
        for lanes in args.lanes or sorted({1, default_lanes(t, args.max_batch)}):
            modes.append(("on", args.max_batch, args.max_batch, t, lanes))
    configs = sorted({(m[3], m[4]) for m in modes} | {(t, t) for t in {m[3] for m in modes}})
    cells = {c: max(args.min_requests, args.requests_per_client * c) for c in args.concurrency}
    with tempfile.TemporaryDirectory(prefix="dahash-serve-load-") as tmp:
        work = Path(tmp)
        run, run_note = ensure_run(args.run, args.data_root, args.cache_dir, work, args.seed)
        index = work / "index"
        t0 = time.perf_counter()
        n = build_index(run, [args.data_root], index, cache_dir=args.cache_dir, progress=False)
        print(f"indexed {n:,} images in {time.perf_counter() - t0:.1f} s ({run_note})", flush=True)
        paths = [str(p) for p in collect_images([args.data_root])]
        payloads = queries(paths, index, max(cells.values()) + 3, rng)
        backbone = load_image_run(run).backbone
        first = model_only(backbone, configs, args.max_batch)
        print("model only (img/s): " + rates_line(first), flush=True)
        rows = []
        for mode, max_batch, max_concurrent, threads, lanes in modes:
            with Server(index, run, threads=threads, lanes=lanes, max_concurrent=max_concurrent, max_batch=max_batch,
                        max_wait_ms=args.max_wait_ms, cache_dir=args.cache_dir, log=work / "serve.log") as server:
                for kind in args.kinds:
                    for concurrency, count in cells.items():
                        cell = load(server, kind, payloads[kind][:count + 3], concurrency)
                        rows.append({"batching": mode, "max_batch": max_batch, "max_concurrent": max_concurrent,
                                     "server_threads": threads, "lanes": lanes, "query": KINDS[kind],
                                     "concurrency": concurrency,
                                     **cell})
                        print(f"batching {mode}, threads {threads}, lanes {lanes}, {KINDS[kind]}, {concurrency} clients: "
                              f"{cell['req_per_s']:.1f} req/s, p50 {cell['p50_ms']:.0f} ms, p99 {cell['p99_ms']:.0f} ms, "
                              f"mean batch {cell['mean_batch']:.1f}, CPU ms/request: server "
                              f"{cell['server_cpu_ms']:.1f}, clients {cell['client_cpu_ms']:.1f}, "
                              f"{cell['errors']} errors", flush=True)
        last = model_only(backbone, configs, args.max_batch)
        print("model only again (img/s): " + rates_line(last), flush=True)
    reference = {key: (first[key] + last[key]) / 2 for key in first}
    off = {(r["query"], r["concurrency"]): r for r in rows if r["batching"] == "off"}
    for r in rows:
        r["model_only_img_per_s"] = reference[(r["server_threads"], r["lanes"], args.max_batch)]
        r["ratio_to_model_only"] = r["req_per_s"] / r["model_only_img_per_s"]
        r["best_model_only_img_per_s"] = max(rate for (t, _, _), rate in reference.items() if t == r["server_threads"])
        r["ratio_to_best_model_only"] = r["req_per_s"] / r["best_model_only_img_per_s"]
        base = off[(r["query"], r["concurrency"])]
        r["speedup_vs_off"] = r["req_per_s"] / base["req_per_s"]
        r["p99_vs_off"] = r["p99_ms"] / base["p99_ms"]
    wall = time.perf_counter() - started
    table = markdown_table(
        ["batching", "server threads", "lanes", "query", "clients", "requests", "errors", "req/s", "÷ model only",
         "÷ best model only", "× batching off", "p50 ms", "p90 ms", "p99 ms", "p99 ÷ off", "mean batch", "run again alone",
         "server CPU ms / req", "client CPU ms / req"],
        [[r["batching"] + (f" (max {r['max_batch']})" if r["batching"] == "on" else ""), str(r["server_threads"]),
          str(r["lanes"]), r["query"], str(r["concurrency"]), str(r["requests"]), str(r["errors"]),
          f"{r['req_per_s']:.1f}", f"{r['ratio_to_model_only']:.2f}", f"{r['ratio_to_best_model_only']:.2f}",
          f"{r['speedup_vs_off']:.2f}", f"{r['p50_ms']:.0f}",
          f"{r['p90_ms']:.0f}", f"{r['p99_ms']:.0f}", f"{r['p99_vs_off']:.2f}", f"{r['mean_batch']:.1f}",
          str(r["encoded_singly"]), f"{r['server_cpu_ms']:.1f}", f"{r['client_cpu_ms']:.1f}"] for r in rows])
    ref_table = markdown_table(
        ["threads", "lanes", "batch", "model only img/s, before", "after", "mean (reference)"],
        [[str(t), str(lanes), str(b), f"{first[key]:.1f}", f"{last[key]:.1f}", f"{reference[key]:.1f}"]
         for key in first for t, lanes, b in [key]])
    config = dict(vars(args))
    text = (f"# dahash serve under load: dynamic batching off and on\n\n{line}\n\nIndex: {n:,} images of "
            f"{args.data_root} (FAISS flat, {run_note}); k = 10; closed-loop clients on the same machine. "
            f"Batching off: `--max-batch 1 --max-concurrent 4 --threads {off_threads}`; on: `--max-batch "
            f"{args.max_batch} --max-concurrent {args.max_batch} --max-wait-ms {args.max_wait_ms:g}`.\n\n"
            f"Model only (backbone alone, random input):\n\n{ref_table}\n{table}\n"
            f"Wall time {wall:.0f} s. Config: `{json.dumps(config)}`\n")
    write_results(args.out, "serve_load", text, rows)
    print("\n" + ref_table + "\n" + table)
    print(f"\nwall time {wall:.0f} s; written to {Path(args.out) / 'serve_load.md'}")


if __name__ == "__main__":
    main()
