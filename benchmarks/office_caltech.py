"""Office-Caltech-10: all 12 transfer tasks, source-only linear classifier vs NoDA vs DAH on cached features.

Usage: python benchmarks/office_caltech.py [--data-root ../shared/data/office_caltech_10] [--out runs/office_caltech]
       [--bits 64] [--seeds 1] [--workers 2] [--tasks A:W D:C ...] [--set KEY=VALUE ...]

Every setting is the library default (the paper's) unless given with --set. Finished cells are
reused, so an interrupted benchmark continues where it stopped. Writes accuracy.md/.csv and
map.md/.csv in --out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import yaml

from dahash.training.config import TrainConfig
from dahash.experiments.demo import markdown_table

DOMAINS = ("A", "C", "D", "W")
METHODS = {"NoDA": {"gamma": 0.0, "eta": 0.0}, "DAH": {}}
REPO = Path(__file__).resolve().parents[1]


def _cell(config: TrainConfig) -> dict:
    import torch

    from dahash.runs.run import run
    from dahash.training.trainer import settings_differ

    torch.set_num_threads(1)
    results = Path(config.out) / "results.json"
    if results.exists():
        saved = json.loads(results.read_text())
        if settings_differ(saved["config"], config.to_dict()):
            raise SystemExit(f"{config.out} holds a run with other settings; use another --out")
        return saved["metrics"]
    return run(config, resume=True, progress=False)


def source_only_linear(base: TrainConfig, source: str, target: str) -> float:
    """Target accuracy (%) of a logistic regression trained on standardised source features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from dahash.images.features import image_feature_sets

    s, t = image_feature_sets(base.data_root, source, target, backbone=base.backbone, cache_dir=base.cache_dir,
                              num_workers=base.num_workers, progress=False)
    scaler = StandardScaler().fit(s.X)
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(s.X), s.y)
    return float((clf.predict(scaler.transform(t.X)) == t.y).mean() * 100)


def table(rows: dict[str, list[list[float]]], tasks: list[str], digits: int) -> tuple[list[str], list[list[str]]]:
    """Methods as rows, tasks and Avg as columns; mean ± std over seeds where there are several."""
    header = ["method"] + tasks + ["Avg"]
    body = []
    for method, per_seed in rows.items():
        values = np.array(per_seed)  # (seeds, tasks)
        cells = [values[:, j] for j in range(values.shape[1])] + [values.mean(1)]
        fmt = (lambda v: f"{v.mean():.{digits}f}" if len(v) == 1 else f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}")
        body.append([method] + [fmt(c) for c in cells])
    return header, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "office_caltech_10"))
    parser.add_argument("--out", default=str(REPO / "runs" / "office_caltech"))
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--tasks", nargs="+", default=[f"{s}:{t}" for s, t in itertools.permutations(DOMAINS, 2)])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides")
    args = parser.parse_args()

    # YAML values, so that lists work too: --set hidden=[512,512] k=15
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    base = TrainConfig.from_dict({"data_root": os.path.abspath(args.data_root), "source": "A", "target": "W",
                                  "bits": args.bits, **overrides}, source="--set")
    out = Path(args.out)
    tasks = [tuple(t.split(":")) for t in args.tasks]
    names = [f"{s}→{t}" for s, t in tasks]
    t0 = time.perf_counter()
    # Extract (or find cached) features of every domain once, before the parallel runs read them.
    linear = {f"{s}→{t}": source_only_linear(base, s, t) for s, t in tasks}
    t_features = time.perf_counter() - t0
    jobs = {(m, f"{s}→{t}", seed): replace(base, source=s, target=t, seed=seed,
                                            out=str(out / m / f"{s}_{t}" / f"seed{seed}"), **o)
            for seed in range(args.seeds) for (s, t) in tasks for m, o in METHODS.items()}
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("spawn")) as pool:
        futures = {key: pool.submit(_cell, cfg) for key, cfg in jobs.items()}
        results = {key: f.result() for key, f in futures.items()}
    seconds = time.perf_counter() - t0
    train_seconds = [r["train_seconds"] for r in results.values()]

    acc = {"Source-only (LR)": [[linear[n] for n in names]]}
    acc |= {m: [[results[(m, n, s)]["target_accuracy"] for n in names] for s in range(args.seeds)] for m in METHODS}
    maps = {m: [[results[(m, n, s)]["map"] for n in names] for s in range(args.seeds)] for m in METHODS}
    text = [f"# Office-Caltech-10, {args.bits} bits, backbone {base.backbone} (frozen, cached features)\n"]
    for title, rows, digits, stem in (("Target accuracy (%)", acc, 2, "accuracy"), ("mAP (target queries, source database)", maps, 3, "map")):
        header, body = table(rows, names, digits)
        md = f"## {title}\n\n" + markdown_table(header, body)
        (out / f"{stem}.md").write_text(md)
        with open(out / f"{stem}.csv", "w") as f:
            f.write(",".join(header) + "\n" + "\n".join(",".join(r) for r in body) + "\n")
        text.append(md)
    from dahash.metrics.plots import plot_task_bars

    from dahash.training.trainer import RESUME_MAY_CHANGE

    means = {m: list(np.array(v).mean(0)) for m, v in acc.items()}
    changed = {k: v for k, v in overrides.items() if k not in RESUME_MAY_CHANGE}
    plot_task_bars(out / "accuracy.png", names + ["Avg"], {m: v + [float(np.mean(v))] for m, v in means.items()},
                   title=f"Office-Caltech-10, {args.bits} bits, {base.backbone} features, "
                   f"{changed or 'defaults'}, {args.seeds} seed(s)")
    text.append(f"Wall time {seconds:.0f} s ({t_features:.0f} s features and linear baseline); head training "
                f"{np.mean(train_seconds):.1f} s per run on one thread (max {np.max(train_seconds):.1f} s), "
                f"{args.workers} runs in parallel.\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
