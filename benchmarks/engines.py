"""The frozen backbone on every installed inference engine (``--engine``), all in one run on the same cores.

1. Model only: img/s of EfficientNet-Lite0 alone on random input of its crop size, for each
   installed engine, at 1 and 2 threads and batch 1 and 16, and in 2 lanes of 1 thread (batch 1,
   4 and 16). The torch reference is the project's own ``model_only_throughput``: channels-last
   input, the traced and BatchNorm-folded model, chunks of 4. ONNX Runtime runs the
   cached ONNX export (NCHW); ONNX Runtime also in chunks of 4 (``InChunks``), to see whether the
   chunking torch needs helps it, and on 2 threads also with its threads spinning while they wait
   (ONNX Runtime's default; dahash's sessions sleep instead). Ratios: each engine against torch at the same threads, lanes and
   batch, and best against best.
   The same cells at 2 threads (batch 1 and 16, and 2 lanes x batch 1) again with each engine alone in
   a new process, engines interleaved over ``--repeats`` rounds (part ``isolated``): the median and best.
2. Extraction: ``extract_features`` of ``--extract-images`` Office-Caltech-10 images, cache cold
   (``cache_dir=None``), as a fraction of the same engine's best model-only rate.
3. Serve: ``dahash serve --engine E`` (batching on, its default threads and lanes) under 4 and 16
   closed-loop clients uploading new images (``serve_load.py``'s server and load), as a fraction
   of the engine's best model-only rate.
4. Encode: wall time of ``dahash encode --engine E`` of every image under ``--encode-root``
   (default all 2,533 Office-Caltech-10 images) in a new process, feature cache cold; the ONNX
   export is made before (its time is printed on its own), as a user's second encode finds it.

Usage: python benchmarks/engines.py [--run RUN] [--data-root DIR] [--engines torch onnxruntime]
       [--extract-images 256] [--encode-root DIR] [--requests 48] [--quick] [--out benchmarks/results]

``--quick`` checks that everything runs (fewer images, requests and repeats); its figures are not
for the README. Without ``--run`` a DAH run (D→W, 64 bits, 5 epochs, gamma 5000) is trained first.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, write_results  # noqa: E402

from dahash.experiments.tables import markdown_table  # noqa: E402
from dahash.images.backbones import CPU_CHUNK, EXPORTS_DIR, InChunks, load_backbone, use_engine  # noqa: E402
from dahash.images.engines import OnnxRuntimeRunner, installed  # noqa: E402
from dahash.images.extract import extract_features, model_only_throughput  # noqa: E402
from dahash.images.features import collect_images  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "office_caltech_10"


def rate(net, batch: int, seconds: float, lanes: int = 1) -> float:
    """img/s of ``net`` on random (batch, 3, 224, 224) input over about ``seconds``, after one warm-up
    call: in ``lanes`` threads side by side when lanes > 1 (each engine session is made per thread count)."""
    x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)

    def work(deadline: float) -> int:
        n = 0
        with torch.no_grad():
            while time.perf_counter() < deadline:
                net(x)
                n += batch
        return n

    with torch.no_grad():
        net(x)
    start = time.perf_counter()
    if lanes == 1:
        n = work(start + seconds)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(lanes) as pool:
            n = sum(pool.map(work, [start + seconds] * lanes))
    return n / (time.perf_counter() - start)


SPINNING = "onnxruntime, threads spinning"


def model_only(nets: dict, seconds: float, repeats: int) -> list[dict]:
    """The model-only grid, every cell the best of ``repeats`` runs (:func:`one_cell`), cells of engines
    interleaved; ONNX Runtime also with spinning threads and, at batch 16, in chunks of ``CPU_CHUNK``."""
    cells = [(t, 1, b) for t in (1, 2) for b in (1, 16)] + [(2, 2, b) for b in (1, 4, 16)]
    best: dict[tuple, float] = {}
    saved = torch.get_num_threads()
    try:
        for _ in range(repeats):
            for threads, lanes, batch in cells:
                for name, backbone in nets.items():
                    # dahash's sessions do not spin; the spinning variant is measured beside them.
                    spins = name == "onnxruntime" and threads // lanes > 1
                    for variant in [name] + ([SPINNING] if spins else []):
                        key = (variant, threads, lanes, batch)
                        best[key] = max(best.get(key, 0.0), one_cell(backbone, variant, threads, lanes, batch, seconds))
                    if name == "onnxruntime" and batch == 16:
                        net = backbone.inference(threads=threads // lanes)
                        key = (name + f" in chunks of {CPU_CHUNK}", threads, lanes, batch)
                        best[key] = max(best.get(key, 0.0), rate(InChunks(net, CPU_CHUNK), batch, seconds, lanes))
    finally:
        torch.set_num_threads(saved)
    rows = []
    for (name, threads, lanes, batch), r in best.items():
        ref = best[("torch", threads, lanes, batch)]
        rows.append({"part": "model only", "engine": name, "threads": threads, "lanes": lanes, "batch": batch,
                     "img_per_s": r, "ratio_to_torch": r / ref})
    return rows


def one_cell(backbone, name: str, threads: int, lanes: int, batch: int, seconds: float) -> float:
    """img/s of one model-only cell: torch through the project's reference (``model_only_throughput``), an
    engine's inference session, or ONNX Runtime with spinning threads (:data:`SPINNING`)."""
    torch.set_num_threads(threads // lanes)
    if name == "torch":
        return model_only_throughput(backbone, batch, max(2, int(seconds * 60 / batch)), lanes=lanes)
    if name == SPINNING:
        return rate(OnnxRuntimeRunner(backbone.export, threads // lanes, spinning=True), batch, seconds, lanes)
    return rate(backbone.inference(threads=threads // lanes), batch, seconds, lanes)


ISOLATED_CELLS = ((2, 1, 1), (2, 1, 16), (2, 2, 1))


def isolated(exports: Path, engines: list[str], seconds: float, repeats: int) -> list[dict]:
    """The cells of :data:`ISOLATED_CELLS`, each engine alone in a new process (as a user's process runs
    one engine), engines interleaved, ``repeats`` rounds: a check that :func:`model_only`'s one-process
    figures are not set by what ran before in that process (before the runner copied with numpy,
    ONNX Runtime at 2 threads x batch 1 ran 92-115 img/s after torch and 127-143 alone)."""
    found: dict[tuple, list[float]] = {}
    names = engines + ([SPINNING] if "onnxruntime" in engines else [])
    for _ in range(repeats):
        for threads, lanes, batch in ISOLATED_CELLS:
            for e in names:
                if e == SPINNING and lanes > 1:
                    continue  # a lane's session has one thread: no pool to spin
                out = subprocess.run([sys.executable, __file__, "--one-cell", e, str(threads), str(lanes), str(batch),
                                      "--exports", str(exports), "--seconds", str(seconds)],
                                     check=True, capture_output=True, text=True).stdout
                found.setdefault((e, threads, lanes, batch), []).append(float(out.split()[-1]))
    rows = []
    for (e, threads, lanes, batch), rates in found.items():
        ref = found[("torch", threads, lanes, batch)]
        rows.append({"part": "model only, one engine per process", "engine": e, "threads": threads, "lanes": lanes,
                     "batch": batch, "img_per_s": float(np.median(rates)), "best": max(rates), "runs": rates,
                     "ratio_to_torch": float(np.median(rates) / np.median(ref)), "best_ratio": max(rates) / max(ref)})
    return rows


def best_rate(rows: list[dict], engine: str) -> float:
    return max(r["img_per_s"] for r in rows if r["part"] == "model only" and r["engine"] == engine)


def ensure_run(run: str | None, data_root: str, cache: Path, work: Path) -> Path:
    """``run`` when it holds a model, else a small DAH run trained here (features into ``cache``)."""
    if run and (Path(run) / "model.pt").is_file():
        return Path(run)
    out = work / "run"
    subprocess.run([sys.executable, "-m", "dahash", "train", "--data-root", data_root, "--source", "D", "--target",
                    "W", "--bits", "64", "--epochs", "5", "--gamma", "5000", "--seed", "0", "--out", str(out),
                    "--cache-dir", str(cache), "--quiet"], check=True, stdout=subprocess.DEVNULL)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None)
    parser.add_argument("--data-root", default=str(DATA))
    parser.add_argument("--engines", nargs="+", default=None, help="default: torch and every installed engine")
    parser.add_argument("--extract-images", type=int, default=256)
    parser.add_argument("--encode-root", default=None, help="images to encode (default --data-root)")
    parser.add_argument("--requests", type=int, default=48, help="requests per serve cell")
    parser.add_argument("--seconds", type=float, default=3.0, help="per model-only cell and repeat")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--parts", nargs="+", default=["model", "isolated", "extract", "serve", "encode"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--one-cell", nargs=4, default=None, metavar=("ENGINE", "THREADS", "LANES", "BATCH"),
                        help=argparse.SUPPRESS)  # one cell of 'isolated', in its own process
    parser.add_argument("--exports", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_cell:
        name, threads, lanes, batch = args.one_cell[0], *map(int, args.one_cell[1:])
        net = use_engine(load_backbone(), "onnxruntime" if name == SPINNING else name, args.exports)
        one_cell(net, name, threads, lanes, batch, args.seconds)  # warm-up: first-call allocations, kernel choice
        print(one_cell(net, name, threads, lanes, batch, args.seconds))
        return
    if args.quick:
        args.extract_images, args.requests, args.seconds, args.repeats = 32, 12, 1.0, 1
        args.encode_root = args.encode_root or str(Path(args.data_root) / "dslr")
    engines = args.engines or ["torch"] + [e for e in ("onnxruntime",) if installed(e)]
    started = time.perf_counter()
    line = machine(torch=torch.__version__, **{e: __import__(e).__version__ for e in engines if e != "torch"})
    print(line, flush=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dahash-engines-") as tmp:
        work = Path(tmp)
        exports = work / "exports"  # the ONNX exports, made once for every part
        backbone = load_backbone()
        nets = {}
        for e in engines:
            t0 = time.perf_counter()
            nets[e] = use_engine(backbone, e, exports)
            if e != "torch":
                print(f"{e}: export and check {time.perf_counter() - t0:.1f} s", flush=True)

        if "model" in args.parts:
            rows += model_only(nets, args.seconds, args.repeats)
            for r in rows:
                print(f"model only, {r['engine']}, {r['threads']} threads, {r['lanes']} lanes, batch {r['batch']}: "
                      f"{r['img_per_s']:.1f} img/s, {r['ratio_to_torch']:.2f}x torch", flush=True)

        if "isolated" in args.parts:
            found = isolated(exports, engines, args.seconds, args.repeats)
            rows += found
            for r in found:
                print(f"model only, one engine per process, {r['engine']}, {r['threads']} threads, {r['lanes']} lanes, "
                      f"batch {r['batch']}: median {r['img_per_s']:.1f} img/s ({r['ratio_to_torch']:.2f}x torch), "
                      f"best {r['best']:.1f} ({r['best_ratio']:.2f}x)", flush=True)

        paths = [str(p) for p in collect_images([args.data_root])]
        if "extract" in args.parts:
            picks = np.random.default_rng(0).choice(len(paths), args.extract_images, replace=False)
            subset = [paths[i] for i in sorted(picks)]
            for e, net in nets.items():
                t0 = time.perf_counter()
                _, kept, _ = extract_features(subset, net, cache_dir=None, batch_size=16, progress=False)
                ips = len(kept) / (time.perf_counter() - t0)
                model = best_rate(rows, e) if "model" in args.parts else float("nan")
                rows.append({"part": "extraction", "engine": e, "threads": torch.get_num_threads(), "batch": 16,
                             "img_per_s": ips, "fraction_of_model_only": ips / model})
                print(f"extraction, {e}: {ips:.1f} img/s, {ips / model:.2f} of its best model-only rate", flush=True)

        if "serve" in args.parts or "encode" in args.parts:
            cache = work / "cache"
            run = ensure_run(args.run, args.data_root, cache, work)
        if "serve" in args.parts:
            from serve_load import Server, load, queries

            from dahash.retrieval.search import build_index

            index = work / "index"
            build_index(run, [args.data_root], index, cache_dir=str(cache), progress=False)
            payloads = queries(paths, index, args.requests + 3, np.random.default_rng(0))["new"]
            for e in engines:
                shutil.copytree(exports / EXPORTS_DIR, cache / EXPORTS_DIR, dirs_exist_ok=True)
                with Server(index, run, threads=os.cpu_count() or 1, lanes=os.cpu_count() or 1, max_concurrent=16,
                            max_batch=16, max_wait_ms=10.0, cache_dir=str(cache), log=work / "serve.log",
                            engine=e) as server:
                    for clients in (4, 16):
                        cell = load(server, "new", payloads, clients)
                        model = best_rate(rows, e) if "model" in args.parts else float("nan")
                        rows.append({"part": "serve", "engine": e, "clients": clients, **cell,
                                     "fraction_of_model_only": cell["req_per_s"] / model})
                        print(f"serve, {e}, {clients} clients: {cell['req_per_s']:.1f} uploads/s, "
                              f"{cell['req_per_s'] / model:.2f} of its best model-only rate, p50 {cell['p50_ms']:.0f} "
                              f"ms, server CPU {cell['server_cpu_ms']:.1f} ms/upload, {cell['errors']} errors",
                              flush=True)
        if "encode" in args.parts:
            root = args.encode_root or args.data_root
            n = len(collect_images([root]))
            for e in engines:
                cold = work / f"encode-cache-{e}"
                if e != "torch":  # the export is made once per machine: a second encode finds it
                    shutil.copytree(exports / EXPORTS_DIR, cold / EXPORTS_DIR)
                t0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
                subprocess.run([sys.executable, "-m", "dahash", "-q", "encode", "--run", str(run), "--images", root,
                                "--out", str(work / f"codes-{e}.npz"), "--cache-dir", str(cold), "--engine", e,
                                "--quiet"], check=True, stdout=subprocess.DEVNULL)
                seconds = time.perf_counter() - t0
                cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                # CPU seconds as well: on a shared machine they are what the wall time cannot say.
                cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
                rows.append({"part": "encode", "engine": e, "images": n, "seconds": seconds, "cpu_seconds": cpu})
                print(f"encode, {e}: {n} images in {seconds:.1f} s ({cpu:.1f} CPU s), cache cold", flush=True)
    wall = time.perf_counter() - started
    text = report(rows, line, wall, vars(args))
    write_results(args.out, "engines", text, rows)
    print("\n" + text)


def report(rows: list[dict], line: str, wall: float, config: dict) -> str:
    """The results as Markdown tables."""
    parts = [f"# The frozen backbone on each inference engine\n\n{line}\n"]
    model = [r for r in rows if r["part"] == "model only"]
    if model:
        parts.append(markdown_table(["engine", "threads", "lanes", "batch", "img/s", "÷ torch"],
                                    [[r["engine"], str(r["threads"]), str(r["lanes"]), str(r["batch"]),
                                      f"{r['img_per_s']:.1f}", f"{r['ratio_to_torch']:.2f}"] for r in model]))
        engines = dict.fromkeys(r["engine"] for r in model)
        best = {e: max((r for r in model if r["engine"] == e), key=lambda r: r["img_per_s"]) for e in engines}
        parts.append("Best of each: " + "; ".join(
            f"{e} {r['img_per_s']:.1f} ({r['threads']} threads, {r['lanes']} lanes, batch {r['batch']}; "
            f"{r['img_per_s'] / best['torch']['img_per_s']:.2f}x torch's best)" for e, r in best.items()) + "\n")
    for part, header, cells in (
            ("model only, one engine per process", ["engine", "threads", "lanes", "batch", "img/s, median (runs)",
                                                    "÷ torch, medians", "best", "÷ torch, bests"],
             lambda r: [r["engine"], str(r["threads"]), str(r["lanes"]), str(r["batch"]),
                        f"{r['img_per_s']:.1f} ({', '.join(f'{v:.1f}' for v in r['runs'])})",
                        f"{r['ratio_to_torch']:.2f}", f"{r['best']:.1f}", f"{r['best_ratio']:.2f}"]),
            ("extraction", ["engine", "img/s", "÷ its best model only"],
             lambda r: [r["engine"], f"{r['img_per_s']:.1f}", f"{r['fraction_of_model_only']:.2f}"]),
            ("serve", ["engine", "clients", "uploads/s", "÷ its best model only", "p50 ms", "p99 ms",
                       "server CPU ms / upload"],
             lambda r: [r["engine"], str(r["clients"]), f"{r['req_per_s']:.1f}", f"{r['fraction_of_model_only']:.2f}",
                        f"{r['p50_ms']:.0f}", f"{r['p99_ms']:.0f}", f"{r['server_cpu_ms']:.1f}"]),
            ("encode", ["engine", "images", "seconds, cache cold", "CPU seconds"],
             lambda r: [r["engine"], str(r["images"]), f"{r['seconds']:.1f}", f"{r['cpu_seconds']:.1f}"])):
        chosen = [r for r in rows if r["part"] == part]
        if chosen:
            parts.append(f"{part}:\n\n" + markdown_table(header, [cells(r) for r in chosen]))
    parts.append(f"Wall time {wall:.0f} s. Config: `{json.dumps(config)}`\n")
    return "\n".join(parts)


if __name__ == "__main__":
    main()
