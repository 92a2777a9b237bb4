"""Two versions of dahash measured alternately, pair by pair: feature extraction and serving rates
with the model-only references each version measures itself.

On a shared VM whose speed moves by tens of percent within minutes, one run of each version says
little; runs that alternate (before, after, before, after...) see the same drift. Each measurement
runs in its own process with ``PYTHONPATH`` set to the version's source tree (``--before``,
``--after``: a ``src`` directory, e.g. of ``git worktree add ../old <commit>``):

* ``extract``: the model alone at batch 16 on 2 torch threads (the issue's reference) and in 2
  lanes of 1 thread (best of 3 each), one cold ``extract_features`` of the DSLR + Webcam images
  (``cache_dir=None``, batch 16, the default decoding and lanes), and decoding + preprocessing
  alone on the first 96 of them (DSLR photos, the largest);
* ``serve``: the same two references plus 2 lanes at batch 1, then ``--requests`` uploads of new
  images (mirrored JPEGs) from ``--clients`` closed-loop clients to ``dahash serve --threads 2
  --lanes 2`` (the default), over the index ``--index`` of the run ``--run``.

Usage: python benchmarks/paired_versions.py --before ../old/src [--after src] [--pairs 5]
       [--what extract serve] [--run runs/serve_run --index runs/serve_index] [--clients 4]
       [--requests 300] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, write_results  # noqa: E402
from serve_load import Server, load, queries  # noqa: E402

from dahash.experiments.tables import markdown_table  # noqa: E402
from dahash.images.backbones import load_backbone  # noqa: E402
from dahash.images.extract import extract_features, model_only_throughput  # noqa: E402
from dahash.images.features import collect_images  # noqa: E402
from dahash.images.loading import is_image_file  # noqa: E402
from dahash.images.preprocess import eval_input  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "office_caltech_10"
BATCH = 16


def references(backbone, batch_one: bool) -> dict[str, float]:
    """Model-only img/s, best of 3: batch 16 on 2 threads, in 2 lanes, and optionally 2 lanes at batch 1."""
    torch.set_num_threads(2)
    out = {"model_2_threads": max(model_only_throughput(backbone, BATCH, 10) for _ in range(3)),
           "model_2_lanes": max(model_only_throughput(backbone, BATCH, 5, lanes=2) for _ in range(3))}
    if batch_one:
        out["model_2_lanes_batch_1"] = max(model_only_throughput(backbone, 1, 80, lanes=2) for _ in range(3))
    return out


def measure_extract(args: argparse.Namespace) -> dict[str, float]:
    paths = sorted(p for d in ("dslr", "webcam") for p in (Path(args.data_root) / d).rglob("*")
                   if p.is_file() and is_image_file(p))
    backbone = load_backbone("efficientnet_lite0")
    out = references(backbone, batch_one=False)
    torch.set_num_threads(2)
    start = time.perf_counter()
    extract_features(paths, backbone, cache_dir=None, batch_size=BATCH, progress=False)
    out["pipeline"] = len(paths) / (time.perf_counter() - start)
    sub = paths[:96]
    start = time.perf_counter()
    for p in sub:
        eval_input(p, backbone.preprocessing)
    out["decode_alone"] = len(sub) / (time.perf_counter() - start)
    return out


def measure_serve(args: argparse.Namespace) -> dict[str, float]:
    out = references(load_backbone("efficientnet_lite0"), batch_one=True)
    paths = [str(p) for p in collect_images([args.data_root])]
    payloads = queries(paths, Path(args.index), args.requests + 3, np.random.default_rng(0))["new"]
    log = Path(tempfile.gettempdir()) / "dahash_paired_versions_serve.log"  # the server's output, for a failure
    with Server(Path(args.index), Path(args.run), threads=2, lanes=2, max_concurrent=16, max_batch=16,
                max_wait_ms=10, cache_dir=None, log=log) as server:
        load(server, "new", payloads[:10], args.clients)  # warm-up: tracing, first allocations
        cell = load(server, "new", payloads[: args.requests], args.clients)
    out.update({"uploads_per_s": cell["req_per_s"], "p50_ms": cell["p50_ms"], "p99_ms": cell["p99_ms"],
                "server_cpu_ms": cell["server_cpu_ms"], "client_cpu_ms": cell["client_cpu_ms"],
                "errors": cell["errors"]})
    return out


def run_version(tree: str, what: str, argv: list[str]) -> dict[str, float]:
    """One measurement in a fresh process that imports dahash from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
    done = subprocess.run([sys.executable, __file__, "--measure", what, *argv], env=env, check=True,
                          stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratios(what: str, m: dict[str, float]) -> dict[str, float]:
    if what == "extract":
        return {"pipeline ÷ 2 threads": m["pipeline"] / m["model_2_threads"],
                "pipeline ÷ 2 lanes": m["pipeline"] / m["model_2_lanes"]}
    best = max(m["model_2_threads"], m["model_2_lanes"], m["model_2_lanes_batch_1"])
    return {"uploads ÷ 2 threads": m["uploads_per_s"] / m["model_2_threads"], "uploads ÷ best": m["uploads_per_s"] / best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="source tree of the version before (a src directory)")
    parser.add_argument("--after", default=str(REPO / "src"))
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--what", nargs="+", choices=["extract", "serve"], default=["extract", "serve"])
    parser.add_argument("--data-root", default=str(DATA))
    parser.add_argument("--run", default=str(REPO / "runs" / "serve_run"))
    parser.add_argument("--index", default=str(REPO / "runs" / "serve_index"))
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--measure", choices=["extract", "serve"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps((measure_extract if args.measure == "extract" else measure_serve)(args)))
        return
    if not args.before:
        parser.error("--before is required: the source tree of the version to compare with")
    if "serve" in args.what and not (Path(args.index) / "codes.npy").is_file():
        parser.error(f"--index {args.index} holds no index: build one with `dahash index` over --data-root "
                     "with the run --run")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    passed = ["--data-root", args.data_root, "--run", args.run, "--index", args.index, "--clients", str(args.clients),
              "--requests", str(args.requests), "--out", args.out]
    started = time.perf_counter()
    line = machine(torch=torch.__version__)
    print(line, flush=True)
    rows: list[dict] = []
    sections = []
    for what in args.what:
        for pair in range(1, args.pairs + 1):
            for version, tree in (("before", args.before), ("after", args.after)):
                m = run_version(tree, what, passed)
                rows.append({"what": what, "pair": pair, "version": version, **m, **ratios(what, m)})
                print(what, pair, version, json.dumps({k: round(v, 2) for k, v in rows[-1].items()
                                                      if isinstance(v, float)}), flush=True)
        mine = [r for r in rows if r["what"] == what]
        keys = [k for k in mine[0] if k not in ("what", "pair", "version")]
        table = markdown_table(["pair", "version", *keys],
                               [[str(r["pair"]), r["version"], *(f"{r[k]:.2f}" for k in keys)] for r in mine])
        main_key = "pipeline" if what == "extract" else "uploads_per_s"
        gains = [a[main_key] / b[main_key] for b, a in zip(mine[::2], mine[1::2])]
        medians = {v: {k: statistics.median(r[k] for r in mine if r["version"] == v) for k in keys}
                   for v in ("before", "after")}
        summary = markdown_table(["median over pairs", *keys],
                                 [[v, *(f"{medians[v][k]:.2f}" for k in keys)] for v in ("before", "after")])
        sections.append(f"## {what}\n\n{table}\n{summary}\nafter ÷ before, {main_key}, pair by pair: "
                        + ", ".join(f"{g:.2f}" for g in gains) + f" (median {statistics.median(gains):.2f}).\n")
        print("\n" + sections[-1], flush=True)
    wall = time.perf_counter() - started
    text = (f"# Two versions, alternately\n\n{line}\n\nbefore: {args.before}; after: {args.after}; "
            f"{args.pairs} pairs.\n\n" + "\n".join(sections) + f"\nWall time {wall:.0f} s.\n")
    write_results(args.out, "paired_versions", text, rows)


if __name__ == "__main__":
    main()
