"""``dahash reproduce --tables retrieval``: the paper's hashing comparison (Venkateswara et al., CVPR 2017, Sec. 5.4: Tables 4, 6, 7 and Figures 4-7), resumable.

Methods, as the paper's columns:

* NoDA: DPSH (:class:`~dahash.hashing.DPSHHasher`) trained on the labeled source, applied to both domains;
* ITQ, KMeans, BA, BDNN: unsupervised hashers fitted on the target features (no labels);
* DAH: the core trainer on labeled source + unlabeled target;
* SuH: DPSH trained on a labeled part of the target, the supervised upper bound.

Protocol (the authors' implementation, ``shared/notes/dah-reference-facts.md``): the queries are the
target domain's codes, the database is the source domain's codes, and a database item is relevant
when it has the query's class; ranking by Hamming distance, ties in database order. SuH has seen
the labels of part of the target, so its queries are only the held-out part (``holdout`` of each
target class, drawn with the seed); a second table scores every method on those same held-out
queries, so that SuH is compared like for like. One target domain per table row: the pairing
(``tasks``) gives each target its source, by default the paper's (Office-Home: Art for Clipart,
Product and Real-World, Clipart for Art; Office-31: Amazon and Webcam as a pair).

A cell is one (method, code length, task, seed) under
``OUT/retrieval-cells/<method>/<bits>bits/<S>_<T>/seed<k>/``; it holds the packed codes of both
domains (``codes.npz``) and ``results.json``, whose metrics come from :mod:`dahash.metrics.retrieval`
on those codes; the tables average those metrics, so a table entry can be recomputed from the codes.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dahash.cores import use_threads
from dahash.errors import ConfigError, DahashError
from dahash.executors import ExecutorConfig
from dahash.experiments.catalog import RETRIEVAL_METHODS
from dahash.experiments.published import MAP_METHODS, published_rows
from dahash.experiments.reproduce import (
    TABLE_ENGINE,
    Cell,
    TablesConfig,
    canonical_task,
    default_domains,
    domain_folders,
    executor_for,
    run_cells,
    table_features,
    task_label,
)
from dahash.experiments.tables import markdown_table
from dahash.hashing import (
    BDNNHasher,
    BinaryAutoencoderHasher,
    DPSHHasher,
    ITQHasher,
    KMeansHasher,
)
from dahash.images.datasets import domain_code
from dahash.io import atomic_path, write_csv, write_json, write_text
from dahash.metrics import (
    mean_average_precision,
    precision_at_k,
    precision_recall_curve,
    precision_within_radius,
)
from dahash.metrics.plots import plot_pr_curves
from dahash.runs.run import run
from dahash.runs.tuning import select_config
from dahash.selection_grids import SELECTION_SEED, VAL_FRACTION, auto_grid
from dahash.training.methods import method_config
from dahash.training.trainer import flat_settings_differ

UNSUPERVISED = ("ITQ", "KMeans", "BA", "BDNN")
#: The paper's source for each target domain (Table 4's caption); Office-Caltech, which the paper
#: does not use, follows the same rule: the first domain is the source of the others, the second its.
DEFAULT_PAIRING: dict[str, tuple[str, ...]] = {
    "office-home": ("Ar:Cl", "Ar:Pr", "Ar:Rw", "Cl:Ar"),
    "office31": ("W:A", "A:W"),
    "office-caltech": ("C:A", "A:C", "A:D", "A:W"),
}
#: Published table kind per code length (:func:`dahash.experiments.published.published_rows`).
PUBLISHED_KIND = {16: "map-16bits", 64: "map", 128: "map-128bits"}
#: The paper's row names of the target domains in Tables 4, 6 and 7.
PUBLISHED_DOMAIN = {"Ar": "Art", "Cl": "Clipart", "Pr": "Product", "Rw": "Real-World", "A": "Amazon", "W": "Webcam"}
CELLS = "retrieval-cells"
SELECTIONS = "retrieval-selection"
QUERY_SETS = ("all", "heldout")


@dataclass
class RetrievalConfig(TablesConfig):
    """Every setting of one ``dahash reproduce --tables retrieval``; saved as ``OUT/retrieval.yaml``.

    ``tasks`` (SOURCE:TARGET) gives one source per target domain, the table's rows; default: the
    dataset's pairing. ``overrides`` are DAH's training settings."""

    methods: list[str] = field(default_factory=lambda: list(RETRIEVAL_METHODS))
    bits: list[int] = field(default_factory=lambda: [16, 64, 128])
    # Fraction of each target class held out as SuH's queries (SuH trains on the rest, with labels).
    holdout: float = 0.3
    precision_k: int = 100
    # Hasher parameters, e.g. {"ITQ": {"n_iter": 100}, "SuH": {"epochs": 50}}; unset ones are the defaults.
    hasher_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def validate(self) -> "RetrievalConfig":
        given = self._validate_common(RETRIEVAL_METHODS, ("seeds", "workers", "precision_k"))
        self.methods = [m for m in RETRIEVAL_METHODS if m in given]  # the paper's column order
        if not self.bits or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in self.bits):
            raise ConfigError(f"bits must be positive integers, got {self.bits!r}")
        self.bits = list(dict.fromkeys(self.bits))
        if not 0.0 < self.holdout < 1.0:
            raise ConfigError(f"holdout must be a fraction in (0, 1), got {self.holdout!r}")
        bad = [m for m in self.hasher_params if m not in RETRIEVAL_METHODS or m == "DAH"]
        if bad:
            raise ConfigError(f"hasher parameters given for {', '.join(bad)}; they apply to "
                              f"{', '.join(m for m in RETRIEVAL_METHODS if m != 'DAH')} (DAH takes --set)")
        return self


def resolve_pairing(config: RetrievalConfig) -> list[tuple[str, str]]:
    """(source, target) per table row: ``tasks``, else the dataset's pairing, else (a folder of
    domains) the first domain as the source of every other and the second as the first's."""
    if config.tasks:
        pairs = [canonical_task(t, default_domains(config)) for t in config.tasks]
    elif config.dataset:
        pairs = [tuple(t.split(":")) for t in DEFAULT_PAIRING[config.dataset]]
    else:
        domains = domain_folders(config.data_root)
        pairs = [(domains[1], domains[0])] + [(domains[0], d) for d in domains[1:]]
    targets = [domain_code(t) for _, t in pairs]
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        raise ConfigError(f"target domain(s) {', '.join(repeated)} appear in more than one task; the table has "
                          "one row per target domain, so give each target one source")
    return pairs  # type: ignore[return-value]


def heldout_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices: ``round(fraction * n_c)`` of each class held out, at least one
    and at most ``n_c - 1`` (a class of one sample stays in training), drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n = 0 if len(members) < 2 else min(max(int(round(fraction * len(members))), 1), len(members) - 1)
        held.append(members[:n])
    query = np.sort(np.concatenate(held)).astype(np.int64)
    return np.setdiff1d(np.arange(len(labels)), query), query


def select_dah(config: RetrievalConfig, progress: bool = False,
               executor: ExecutorConfig | None = None) -> dict[tuple[int, str, str], dict[str, Any]]:
    """DAH's setting per (bits, source, target), chosen as ``dahash train`` chooses it: the label-free selection of
    DAH's default grid (those candidates that agree with ``overrides``) on the seed-0 split, once for every seed,
    in ``OUT/retrieval-selection/<bits>bits/<S>_<T>/`` (finished selections are reused), each candidate a cell of
    ``executor`` when given (else fitted here, one after another). Empty when DAH is not run or ``overrides``
    gives gamma, which then trains alone."""
    if "DAH" not in config.methods or "gamma" in config.overrides:
        return {}
    chosen = {}
    for bits, (source, target) in itertools.product(config.bits, resolve_pairing(config)):
        directory = Path(config.out) / SELECTIONS / f"{bits}bits" / f"{domain_code(source)}_{domain_code(target)}"
        values = {"data_root": os.path.abspath(config.data_root), "source": source, "target": target,
                  "seed": SELECTION_SEED, "bits": bits, "backbone": config.backbone, "weights": config.weights,
                  "decode": config.decode, "cache_dir": config.cache_dir, "precision_k": config.precision_k,
                  "engine": TABLE_ENGINE, **config.overrides}
        selection, _ = select_config(method_config("DAH", values, source="method DAH"),
                                     auto_grid("DAH", config.overrides), method="DAH", val_fraction=VAL_FRACTION,
                                     out=directory, progress=progress, executor=executor)
        chosen[(bits, source, target)] = selection.best_params
    return chosen


def plan_cells(config: RetrievalConfig, chosen: dict[tuple[int, str, str], dict[str, Any]] | None = None) -> list[Cell]:
    """Every (method, bits, task, seed), seed-major so that an interrupted run has whole tables first; DAH's
    cells take the setting ``chosen`` for their (bits, source, target) (:func:`select_dah`), if any."""
    config.validate()
    chosen = chosen or {}
    out = Path(config.out) / CELLS
    cells = []
    for seed, bits, (source, target), method in itertools.product(
            range(config.seeds), config.bits, resolve_pairing(config), config.methods):
        directory = out / method / f"{bits}bits" / f"{domain_code(source)}_{domain_code(target)}" / f"seed{seed}"
        settings: dict[str, Any] = {"data_root": os.path.abspath(config.data_root), "source": source,
                                    "target": target, "seed": seed, "bits": bits, "backbone": config.backbone,
                                    "weights": config.weights, "decode": config.decode, "cache_dir": config.cache_dir,
                                    "holdout": config.holdout, "precision_k": config.precision_k}
        if method == "DAH":
            settings["overrides"] = {**config.overrides, **chosen.get((bits, source, target), {})}
        else:
            settings["params"] = dict(config.hasher_params.get(method, {}))
        # As results.json will hold them (tuples become lists), so that a rerun compares like with like.
        settings = json.loads(json.dumps(settings))
        cells.append(Cell(method, source, target, seed, str(directory), settings))
    return cells


def _dah_config(cell: Cell) -> Any:
    s = cell.settings
    values = {k: s[k] for k in ("data_root", "source", "target", "seed", "bits", "backbone", "weights", "decode",
                                 "cache_dir")}
    values |= {"precision_k": s["precision_k"], "out": str(Path(cell.directory) / "run"), "engine": TABLE_ENGINE,
               **s["overrides"]}
    return method_config("DAH", values, source="method DAH")


def _finished(cell: Cell) -> dict[str, Any] | None:
    """The metrics of a finished cell, or None; a cell finished with other settings is an error."""
    results = Path(cell.directory) / "results.json"
    if not results.exists():
        return None
    saved = json.loads(results.read_text())
    mine = {"method": cell.method, **cell.settings}
    differ = flat_settings_differ(saved["config"], mine)
    if differ:
        raise DahashError(f"{cell.directory}: holds a finished run with other settings ({', '.join(differ)}); "
                          "use another --out")
    return saved["metrics"]


def _fit_codes(cell: Cell, source: Any, target: Any, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Packed (source codes, target codes) of the cell's method."""
    s = cell.settings
    if cell.method == "DAH":
        run(_dah_config(cell), resume=True, progress=False)
        run_dir = Path(cell.directory) / "run"
        with np.load(run_dir / "codes_source.npz") as fs, np.load(run_dir / "codes_target.npz") as ft:
            return fs["codes"], ft["codes"]
    if cell.method in ("NoDA", "SuH"):
        hasher = DPSHHasher(s["bits"], random_state=cell.seed, **s["params"])
        if cell.method == "NoDA":
            hasher.fit(source.X, source.y)
        else:
            hasher.fit(target.X[train], target.y[train])
    else:
        kind = {"ITQ": ITQHasher, "KMeans": KMeansHasher, "BA": BinaryAutoencoderHasher, "BDNN": BDNNHasher}
        hasher = kind[cell.method](s["bits"], random_state=cell.seed, **s["params"])
        hasher.fit(target.X)  # unsupervised: no labels
    return hasher.transform(source.X), hasher.transform(target.X)


def score_codes(query_codes: np.ndarray, query_labels: np.ndarray, db_codes: np.ndarray, db_labels: np.ndarray,
                n_bits: int, precision_k: int) -> dict[str, Any]:
    """mAP, precision@k, precision within Hamming radius 2 and the PR curve (radii 0..n_bits) of
    one query set against the database, all from :mod:`dahash.metrics.retrieval`."""
    args = (query_codes, query_labels, db_codes, db_labels)
    precision, recall, _ = precision_recall_curve(*args, n_bits=n_bits)
    return {"n_queries": int(len(query_labels)), "map": mean_average_precision(*args),
            "precision_at_k": precision_at_k(*args, precision_k),
            "precision_radius_2": precision_within_radius(*args, radius=2),
            # NaN (a radius at which no query retrieves anything) becomes null: strict JSON.
            "pr_precision": [None if np.isnan(v) else float(v) for v in precision],
            "pr_recall": [None if np.isnan(v) else float(v) for v in recall]}


def run_cell(cell: Cell, threads: int = 1) -> dict[str, Any]:
    """Fit the cell's method, save both domains' codes and score them; returns the metrics."""


    use_threads(threads)
    s = cell.settings
    source, target = table_features(s)
    if target.y is None:
        raise DahashError(f"{s['target']}: target images have no class folders; retrieval is scored by class")
    train, heldout = heldout_split(target.y, s["holdout"], cell.seed)
    t0 = time.perf_counter()
    codes_s, codes_t = _fit_codes(cell, source, target, train)
    seconds = time.perf_counter() - t0
    directory = Path(cell.directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "codes.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, source_codes=codes_s, source_labels=source.y, target_codes=codes_t, target_labels=target.y,
                 heldout=heldout, n_bits=np.int64(s["bits"]))
    metrics: dict[str, Any] = {"n_source": len(source), "n_target": len(target), "train_seconds": seconds}
    # SuH trained on the other target samples' labels: only its held-out queries are fair.
    query_sets = {"heldout": heldout} if cell.method == "SuH" else {"all": np.arange(len(target)), "heldout": heldout}
    for name, rows in query_sets.items():
        metrics[name] = score_codes(codes_t[rows], target.y[rows], codes_s, source.y, s["bits"], s["precision_k"])
    write_json(directory / "results.json", {"config": {"method": cell.method, **s}, "metrics": metrics})
    return metrics


def _main_query_set(method: str) -> str:
    return "heldout" if method == "SuH" else "all"


def _row_label(source: str, target: str) -> str:
    return f"{domain_code(target)} ({task_label(source, target)})"


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def _table(config: RetrievalConfig, results: dict[tuple, dict[str, Any]], pairs: list[tuple[str, str]], bits: int,
           metric: str, query_set: str | None) -> tuple[list[str], list[list[str]], dict[str, list[float]]]:
    """Target domains as rows, methods as columns, ``mean ± std`` over seeds, and an Avg row
    (the mean over targets of each seed's values, then mean ± std over seeds)."""
    header = ["Target (task)", *config.methods]
    per_seed = {m: np.array([[results[(m, bits, task_label(s, t), k)][query_set or _main_query_set(m)][metric]
                              for s, t in pairs] for k in range(config.seeds)]) for m in config.methods}
    body = [[_row_label(s, t)] + [_mean_std(list(per_seed[m][:, j])) for m in config.methods]
            for j, (s, t) in enumerate(pairs)]
    body.append(["Avg"] + [_mean_std(list(per_seed[m].mean(axis=1))) for m in config.methods])
    means = {m: [float(v) for v in per_seed[m].mean(axis=0)] + [float(per_seed[m].mean())] for m in config.methods}
    return header, body, means


def _published(config: RetrievalConfig, pairs: list[tuple[str, str]], bits: int) -> tuple[str, list[list[str]]]:
    """The paper's mAP rows for the same target domains at this code length, transposed to our layout."""
    if config.dataset is None or bits not in PUBLISHED_KIND:
        return "", []
    table = published_rows(config.dataset, PUBLISHED_KIND[bits])
    names = [PUBLISHED_DOMAIN.get(domain_code(t)) for _, t in pairs]
    if table is None or not any(n in table.tasks for n in names):
        return "", []
    shown = [n for n in names if n in table.tasks]
    methods = [m for m in config.methods if m in MAP_METHODS]
    rows = [[f"{n} (published)"] + [f"{table.value(m, n):.3f}" for m in methods] for n in shown]
    rows.append(["Avg of these (published)"] + [f"{np.mean([table.value(m, n) for n in shown]):.3f}"
                                                 for m in methods])
    md = (f"\n**Published, {table.name}**: {table.caption} ({table.note}.)\n\n"
          + markdown_table(["Target", *methods], rows))
    return md, rows


def _pr_figure(config: RetrievalConfig, results: dict[tuple, dict[str, Any]], source: str, target: str,
               bits: int, path: Path) -> None:
    """All methods' PR curves for one target at one code length, averaged over seeds per Hamming radius."""
    curves = {}
    for method in config.methods:
        entries = [results[(method, bits, task_label(source, target), k)][_main_query_set(method)]
                   for k in range(config.seeds)]
        as_array = [np.array([np.nan if v is None else v for v in e[key]], dtype=float)
                    for e in entries for key in ("pr_precision", "pr_recall")]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "Mean of empty slice": no seed reached that radius
            precision = np.nanmean(np.stack(as_array[0::2]), axis=0)
            recall = np.nanmean(np.stack(as_array[1::2]), axis=0)
        keep = ~(np.isnan(precision) | np.isnan(recall))
        curves[method + (" (held-out queries)" if method == "SuH" else "")] = (precision[keep], recall[keep])
    what = config.dataset or Path(config.data_root).name
    plot_pr_curves(path, curves, title=f"{what} {task_label(source, target)}: target queries vs source "
                                       f"database, {bits} bits")


PROTOCOL = ("Queries: the target domain's codes (SuH: only the held-out {holdout:.0%} of each target class, "
            "since it trained on the rest with labels). Database: the source domain's codes. Relevant: same "
            "class. Ranking by Hamming distance, ties in database order. NoDA and SuH are DPSH on labeled source "
            "and labeled target; ITQ, KMeans, BA and BDNN are fitted on the target features without labels.")


def reproduce_retrieval(config: RetrievalConfig, progress: bool = True,
                        executor: ExecutorConfig | None = None) -> dict[str, Any]:
    """Run (or finish) every cell on ``executor`` (the local pool by default), then write ``map.md``, ``map.csv``, ``retrieval.csv`` and one
    ``pr_<target>_<bits>bits.png`` per target domain and code length in ``config.out``."""
    config.validate()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = resolve_pairing(config)
    for cell in plan_cells(config):
        if cell.method == "DAH":
            _dah_config(cell)  # a bad override fails here, before any work
    # The candidates go where the cells go: an engine named by the caller, else this machine's pool.
    cells = plan_cells(config, select_dah(config, progress=progress, executor=executor_for(config, executor)))
    results, computed, threads, seconds = run_cells(
        config, cells, pairs, _finished, run_cell,
        lambda cell: (cell.method, cell.settings["bits"], task_label(cell.source, cell.target), cell.seed),
        "retrieval.yaml", progress, executor)

    what = config.dataset or Path(config.data_root).name
    text = (f"# Retrieval, {what}, {config.backbone} features\n\n"
            + PROTOCOL.format(holdout=config.holdout)
            + f" Mean ± standard deviation over {config.seeds} seed(s); Avg is the mean over the target domains.\n")
    map_rows, long_rows, figures = [], [], []
    for bits in config.bits:
        header, body, _ = _table(config, results, pairs, bits, "map", None)
        published_md, published = _published(config, pairs, bits)
        text += f"\n## mAP @{bits} bits\n\n" + markdown_table(header, body) + published_md
        map_rows += [[bits, "ours", "paper protocol", *r] for r in body]
        map_rows += [[bits, "published", "paper protocol", *r] for r in published]
        header, body, _ = _table(config, results, pairs, bits, "map", "heldout")
        text += (f"\nSame queries for every method (the held-out {config.holdout:.0%} of each target class, "
                 f"SuH's): mAP @{bits} bits\n\n" + markdown_table(header, body))
        map_rows += [[bits, "ours", "held-out queries", *r] for r in body]
        for metric, name in (("precision_at_k", f"Precision@{config.precision_k}"),
                             ("precision_radius_2", "Precision within Hamming radius 2")):
            header, body, _ = _table(config, results, pairs, bits, metric, None)
            text += f"\n{name} @{bits} bits (same queries as the mAP table)\n\n" + markdown_table(header, body)
        for source, target in pairs:
            path = out / f"pr_{domain_code(target)}_{bits}bits.png"
            _pr_figure(config, results, source, target, bits, path)
            figures.append(path.name)
    for (method, bits, task, seed), metrics in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][3])):
        for query_set in QUERY_SETS:
            if query_set in metrics:
                m = metrics[query_set]
                long_rows.append([bits, task, method, seed, query_set, m["n_queries"], f"{m['map']:.6f}",
                                  f"{m['precision_at_k']:.6f}", f"{m['precision_radius_2']:.6f}",
                                  f"{metrics['train_seconds']:.2f}"])
    timing = {m: float(np.mean([r["train_seconds"] for (method, *_), r in results.items() if method == m]))
              for m in config.methods}
    text += ("\n\nTraining time per run (s, mean over tasks, code lengths and seeds, "
             f"{threads}): "
             + ", ".join(f"{m} {t:.1f}" for m, t in timing.items())
             + f". This invocation: {seconds:.0f} s wall for {computed} runs ({len(cells) - computed} reused).\n"
             + "\nPrecision-recall figures: " + ", ".join(figures) + "\n")
    write_text(out / "map.md", text)
    write_csv(out / "map.csv", ["bits", "numbers", "queries", "target", *config.methods], map_rows)
    write_csv(out / "retrieval.csv", ["bits", "task", "method", "seed", "queries", "n_queries", "map",
                                      f"precision_at_{config.precision_k}", "precision_radius_2", "train_seconds"],
              long_rows)
    return {"table": text, "seconds": seconds, "cells": len(cells), "computed": computed, "figures": figures,
            "train_seconds": timing}
