"""``dahash demo``: printed-font digits (source) -> handwritten digits (target), NoDA vs DAH, offline.

DAH runs as ``dahash train`` does by default: its gamma (and MMD estimate) chosen once without target labels
(the paper's rule, Sec. 5.2, on the seed-0 split of the source), then every seed trains that choice. NoDA
trains its preset. The comparison is paired by seed: the mean of DAH - NoDA with a 95 % t interval.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from dahash.cores import use_threads
from dahash.data.digits import (
    load_handwritten_digits,
    render_font_digits,
    save_digit_grid,
)
from dahash.data.features import FeatureSet, save_features
from dahash.experiments.paired import paired_difference
from dahash.experiments.tables import markdown_table
from dahash.io import write_csv, write_text
from dahash.metrics.plots import plot_pr_curves
from dahash.runs.run import run
from dahash.runs.tuning import select_config
from dahash.selection_grids import VAL_FRACTION, auto_grid
from dahash.training.config import TrainConfig

log = logging.getLogger(__name__)

# Rendered digits per class in the source domain, and the seed of that rendering.
SOURCE_PER_CLASS = 100
SOURCE_SEED = 0
# NoDA is the same network and objective with the two adaptation terms switched off.
METHODS: dict[str, dict[str, float]] = {"NoDA": {"gamma": 0.0, "eta": 0.0}, "DAH": {}}  # DAH's gamma: selected
REPORTED = (("target_accuracy", "accuracy (%)", 1), ("target_accuracy_codes", "accuracy, codes (%)", 1),
            ("map", "mAP", 3))


def demo_config(root: Path, epochs: int | None = None) -> TrainConfig:
    """The demo's settings; every choice is explained in docs/demo.md.

    Paper values except: a 256-wide head for 64 input pixels, inputs standardised with
    pooled source+target statistics, and K = 15 so a batch holds 300 samples (the paper's
    Office batches hold 310; with K = 5 and 10 classes the linear MMD would average only
    25 quadruples per layer). DAH's gamma is not set here: :func:`run_demo` chooses it without
    target labels, as ``dahash train`` does.
    """
    return TrainConfig(source_features=str(root / "data" / "source_printed.npz"),
                       target_features=str(root / "data" / "target_handwritten.npz"),
                       bits=64, hidden=[256, 256], feature_norm="standardize", k=15,
                       epochs=300 if epochs is None else epochs).validate()


def _run_one(config: TrainConfig) -> dict[str, Any]:


    # Two runs share the two cores; one thread each avoids oversubscription.
    use_threads(1)
    results = Path(config.out) / "results.json"
    if results.exists():
        return json.loads(results.read_text())["metrics"]
    return run(config, resume=True, progress=False)


def prepare_data(root: Path) -> tuple[FeatureSet, FeatureSet]:
    """Render the source, load the target, write both as feature files and a picture of them."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    Xs, ys = render_font_digits(SOURCE_PER_CLASS, seed=SOURCE_SEED)
    Xt, yt = load_handwritten_digits()
    classes = [str(d) for d in range(10)]
    source = FeatureSet(Xs, ys, ids=np.array([f"printed:{i}" for i in range(len(ys))]), classes=classes,
                        path=str(data / "source_printed.npz"))
    target = FeatureSet(Xt, yt, ids=np.array([f"handwritten:{i}" for i in range(len(yt))]), classes=classes,
                        path=str(data / "target_handwritten.npz"))
    save_features(source.path, source)
    save_features(target.path, target)
    save_digit_grid(root / "digits.png", Xs, ys, X_other=Xt, y_other=yt)
    return source, target


def summarize(results: dict[str, list[dict[str, Any]]]) -> tuple[list[str], list[list[str]]]:
    """Mean and sample standard deviation over seeds of each reported metric, per method."""
    header = ["method", "seeds"] + [label for _, label, _ in REPORTED]
    rows = []
    for method, runs in results.items():
        row = [method, str(len(runs))]
        for key, _, digits in REPORTED:
            values = np.array([r[key] for r in runs])
            spread = values.std(ddof=1) if len(values) > 1 else 0.0
            row.append(f"{values.mean():.{digits}f} ± {spread:.{digits}f}")
        rows.append(row)
    return header, rows


def summary_csv(results: dict[str, list[dict[str, Any]]]) -> tuple[list[str], list[list[Any]]]:
    """The numbers of :func:`summarize` as numbers: per method, the seeds and each metric's mean and
    sample standard deviation in columns of their own."""
    header = ["method", "seeds"] + [f"{key}_{stat}" for key, _, _ in REPORTED for stat in ("mean", "std")]
    rows = []
    for method, runs in results.items():
        row: list[Any] = [method, len(runs)]
        for key, _, _ in REPORTED:
            values = np.array([r[key] for r in runs], dtype=float)
            row += [float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0]
        rows.append(row)
    return header, rows


def mean_pr_curve(runs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at each Hamming radius, averaged over seeds (radii no seed retrieves at are dropped)."""
    with np.errstate(invalid="ignore"):
        precision = np.array([r["pr_curve"]["precision"] for r in runs], dtype=float)
        recall = np.array([r["pr_curve"]["recall"] for r in runs], dtype=float)
        keep = ~np.isnan(precision).all(0)
        return np.nanmean(precision[:, keep], 0), np.nanmean(recall[:, keep], 0)


def paired_table(by_method: dict[str, list[dict[str, Any]]]) -> tuple[list[str], list[list[str]]]:
    """DAH - NoDA per reported metric, paired by seed: the mean, its 95 % t interval, and seeds won / lost."""
    rows = []
    for key, label, digits in REPORTED:
        p = paired_difference([r[key] for r in by_method["DAH"]], [r[key] for r in by_method["NoDA"]])
        rows.append([label, p.text(digits), f"{p.wins} / {p.losses} of {p.n}"])
    return ["DAH - NoDA, paired by seed", "mean [95 % interval]", "seeds DAH ahead / behind"], rows


def run_demo(out: str | os.PathLike = "dahash-demo", seeds: int = 10, epochs: int | None = None,
             progress: bool = True, workers: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """Choose DAH's gamma without target labels, train NoDA and DAH for ``seeds`` seeds each, print and
    write the comparison table with the paired difference.

    Finished runs are kept: rerunning the same command skips them (and resumes a run
    that was interrupted, the selection included).
    """
    root = Path(out)
    t0 = time.perf_counter()
    source, target = prepare_data(root)
    base = demo_config(root, epochs)
    workers = workers or min(2, os.cpu_count() or 1)
    grid = auto_grid("DAH")
    # A first run takes tens of seconds: say what is happening before it ends.
    log.info(f"demo: {' and '.join(METHODS)}, {seeds} seed(s) each, {base.epochs} epochs, on {len(source)} "
             f"printed -> {len(target)} handwritten digits, {workers} run(s) at a time; DAH's gamma chosen first "
             f"among {len(grid)} candidates without target labels; results go to {root}/")
    selection, _ = select_config(base, grid, method="DAH", val_fraction=VAL_FRACTION, out=root / "selection",
                                 progress=progress)
    chosen = {"NoDA": METHODS["NoDA"], "DAH": selection.best_params}
    jobs = {(method, seed): replace(base, seed=seed, out=str(root / method / f"seed{seed}"), **chosen[method])
            for seed in range(seeds) for method in METHODS}
    results: dict[tuple[str, int], dict[str, Any]] = {}
    bar = tqdm(total=len(jobs), unit="run", desc="demo", disable=not progress)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_run_one, config): key for key, config in jobs.items()}
        for future in futures:
            results[futures[future]] = future.result()
            bar.update(1)
    bar.close()
    by_method = {m: [results[(m, s)] for s in range(seeds)] for m in METHODS}
    header, rows = summarize(by_method)
    table = markdown_table(header, rows) + "\n" + markdown_table(*paired_table(by_method))
    chosen_text = ", ".join(f"{k}={v}" for k, v in selection.best_params.items())
    table += f"\nDAH's setting, chosen without target labels: {chosen_text} ({selection.rule}).\n"
    seconds = time.perf_counter() - t0
    write_text(root / "demo_results.md", f"# dahash demo: printed -> handwritten digits\n\n{table}\n"
                                         f"Wall time: {seconds:.0f} s for {len(jobs)} runs and "
                                         f"{len(selection.candidates)} candidates.\n")
    write_csv(root / "demo_results.csv", *summary_csv(by_method))
    plot_pr_curves(root / "pr_curve.png", {m: mean_pr_curve(by_method[m]) for m in METHODS},
                   title=f"Handwritten queries vs printed database\n64 bits, mean of {seeds} seeds")
    log.info(f"{len(jobs)} runs in {seconds:.0f} s; results in {root}/ (demo_results.md, pr_curve.png, digits.png)")
    return by_method
