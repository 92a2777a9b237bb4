"""``dahash reproduce``: every transfer task x method x seed of the paper's comparison (Venkateswara et al., CVPR 2017, Tables 2, 3 and 5), resumable, as the paper's tables.

A *cell* is one (method, task, seed). Each cell lives in its own directory under
``OUT/cells/<method>/<source>_<target>/seed<k>/`` and is finished when its ``results.json``
exists; an interrupted reproduce recomputes nothing that finished, and a deep cell cut off
mid-training resumes from its last epoch's checkpoint. A cell is computed under its lock in
``seed<k>.partial/`` and renamed into place when done (:func:`run_unit`), on the local pool or on a
Dask, Ray or Slurm cluster (:mod:`dahash.executors`), so two drivers may share one ``OUT``. Deep methods train on the cached
backbone features (:mod:`dahash.training.methods`); shallow ones (:mod:`dahash.shallow`) read the same
features, each domain z-scored on its own (no labels). Target labels are read only to
score the predictions.

A method with a selected twin (``GFK-sel``, ..., ``DAH-sel``: :data:`SELECTED`) first has its
setting chosen per task from :data:`SELECTION_GRIDS` without target labels, by the same rule,
split and budget for every method (:mod:`dahash.runs.selection`), in ``OUT/selection/``; its cells
then run with that setting.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import InitVar, asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm.auto import tqdm

from dahash.cores import threads_per_worker, use_threads
from dahash.errors import ConfigError, DahashError
from dahash.executors import ExecutorConfig, run_all
from dahash.data.features import FeatureSet
from dahash.experiments.catalog import (
    ALL_METHODS,
    DATASET_DOMAINS,
    METHODS,
    SELECTED,
    SELECTION_BUDGET,
    SELECTION_GRIDS,
    SELECTION_SEED,
    SHALLOW,
    VAL_FRACTION,
)
from dahash.experiments.cell_results import paired_table, write_cells
from dahash.experiments.published import published_rows
from dahash.runs.selection import CRITERIA, Selection, expand_grid
from dahash.runs.tuning import select_config, select_shallow
from dahash.experiments.tables import markdown_table
from dahash.images.backbones import load_backbone
from dahash.images.datasets import domain_code
from dahash.images.preprocess import DEFAULT_DECODE
from dahash.images.features import (
    default_cache_dir,
    domain_features,
    image_feature_sets,
    open_domain,
)
from dahash.io import remove_stale_temporaries, write_csv, write_json, write_text
from dahash.locks import compute_once
from dahash.metrics.plots import plot_task_bars
from dahash.runs.data import report_skipped
from dahash.runs.estimator import INPUT_SETTINGS
from dahash.runs.run import run
from dahash.shallow import fit_predict_shallow
from dahash.shallow.api import make_adapter, preprocess_domains
from dahash.training.config import TrainConfig, fill_settings_before
from dahash.training.methods import method_config
from dahash.training.trainer import RESUME_MAY_CHANGE, flat_settings_differ, settings_differ
from dahash.validation import check_choice

SELECTIONS = "selection"
CELLS = "cells"
# A temporary file in OUT older than this was left by a killed driver; a younger one may be another's.
STALE_TEMPORARY_S = 3600.0
# What runs the backbone for the tables: torch, whatever the library's default engine. Every committed
# table was measured on torch's features; another engine's differ by up to 1e-5 of their scale, enough
# to move an SGD run's last digits, and a table must be remade from its command as it was measured.
TABLE_ENGINE = "torch"


@dataclass
class TablesConfig:
    """Settings shared by the accuracy (:class:`ReproduceConfig`) and retrieval reproductions."""

    data_root: str
    out: str
    dataset: str | None = None
    methods: list[str] = field(default_factory=list)
    tasks: list[str] | None = None
    seeds: int = 3
    backbone: str = "efficientnet_lite0"
    weights: str | None = None
    decode: str = DEFAULT_DECODE
    cache_dir: str | None = None
    workers: int = 1
    # TrainConfig settings applied to every deep method after its own (e.g. {"epochs": 50}).
    overrides: dict[str, Any] = field(default_factory=dict)

    def _validate_common(self, known_methods: Sequence[str], positive: Sequence[str]) -> list[str]:
        """Dataset, task format, the integer settings ``positive`` >= 1; returns ``methods``
        spelled as in ``known_methods``, deduplicated."""
        if self.dataset is not None and self.dataset not in DATASET_DOMAINS:
            raise ConfigError(f"dataset must be one of {', '.join(DATASET_DOMAINS)}; got {self.dataset!r}")
        known = {m.casefold(): m for m in known_methods}
        unknown = [m for m in self.methods if m.casefold() not in known]
        if unknown or not self.methods:
            raise ConfigError(f"unknown method(s) {', '.join(unknown) or '(none given)'}; "
                              f"known: {', '.join(known_methods)}")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        for task in self.tasks or []:
            if task.count(":") != 1 or not all(task.split(":")):
                raise ConfigError(f"task {task!r} must be SOURCE:TARGET, e.g. amazon:webcam or A:W")
        return list(dict.fromkeys(known[m.casefold()] for m in self.methods))


@dataclass
class ReproduceConfig(TablesConfig):
    """Every setting of one ``dahash reproduce``; saved as ``OUT/reproduce.yaml``."""

    methods: list[str] = field(default_factory=lambda: list(METHODS))
    bits: int = 64
    classifier: str = "1nn"
    # Parameters of the shallow methods, e.g. {"GFK": {"n_components": 10}}; unset ones are their papers'.
    # A selected twin starts from its method's, then takes the chosen setting.
    shallow_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Label-free selection of the SELECTED methods: each method's candidates (the ones given
    # replace SELECTION_GRIDS' entries) and the rule that picks one.
    selection_grids: dict[str, Any] = field(default_factory=dict)
    criterion: str = "paper"
    # reproduce.yaml files written before the per-method grids hold DAH-sel's grid under this name.
    selection_grid: InitVar[list[dict[str, Any]] | None] = None

    def __post_init__(self, selection_grid: list[dict[str, Any]] | None) -> None:
        given = dict(self.selection_grids)
        if selection_grid is not None:
            given.setdefault("DAH", selection_grid)
        # Every grid, the defaults too, so that reproduce.yaml records what was searched.
        self.selection_grids = {**copy.deepcopy(SELECTION_GRIDS), **given}

    def validate(self) -> "ReproduceConfig":
        self.methods = self._validate_common(ALL_METHODS, ("bits", "seeds", "workers"))
        check_choice("criterion", self.criterion, CRITERIA)
        bad = [m for m in self.shallow_params if m not in SHALLOW]
        if bad:
            raise ConfigError(f"shallow parameters given for {', '.join(bad)}; shallow methods: {', '.join(SHALLOW)}")
        if self.classifier not in ("1nn", "svm", "logreg"):
            raise ConfigError(f"classifier must be one of 1nn, svm, logreg; got {self.classifier!r}")
        bad = [m for m in self.selection_grids if m not in SELECTION_GRIDS]
        if bad:
            raise ConfigError(f"selection grid given for {', '.join(map(str, bad))}; methods with one: "
                              f"{', '.join(SELECTION_GRIDS)} (CORAL's paper tunes nothing)")
        for method, grid in self.selection_grids.items():
            candidates = expand_grid(grid)
            # The fairness rule: no method may search more settings than another (docs/selection.md).
            if len(candidates) > SELECTION_BUDGET:
                raise ConfigError(f"selection grid of {method} has {len(candidates)} candidates; the budget is at "
                                  f"most {SELECTION_BUDGET} per method and task, the same for every method")
            if method in SHALLOW:
                for candidate in candidates:  # an unknown parameter fails here, before any work
                    make_adapter(method.lower(), **{**self.shallow_params.get(method, {}), **candidate})
            self.selection_grids[method] = candidates
        return self


@dataclass(frozen=True)
class Cell:
    """One method on one transfer task with one seed."""

    method: str
    source: str
    target: str
    seed: int
    directory: str
    settings: dict[str, Any]


def resolve_tasks(config: TablesConfig) -> list[tuple[str, str]]:
    """``--tasks``, each domain spelled as the default tasks spell it, else every ordered pair of the
    dataset's (or the data root's) domains."""
    domains = default_domains(config)
    if config.tasks:
        return [canonical_task(t, domains) for t in config.tasks]
    return list(itertools.permutations(domains, 2))


def default_domains(config: TablesConfig) -> tuple[str, ...]:
    """The dataset's domain codes, else the data root's domain folders."""
    return DATASET_DOMAINS[config.dataset] if config.dataset else tuple(domain_folders(config.data_root))


def canonical_task(task: str, domains: Sequence[str]) -> tuple[str, str]:
    """``SOURCE:TARGET`` with each domain spelled as in ``domains`` when it names one of them by
    name, code or case ("amazon", "A" and "Amazon" are one domain): a task is one cell however
    it is typed. Other names (an image-list file) stay as given."""

    def canonical(name: str) -> str:
        for known in domains:
            if name.casefold() == known.casefold() or domain_code(name) == domain_code(known):
                return known
        return name

    source, target = task.split(":")
    return canonical(source), canonical(target)


def domain_folders(data_root: str) -> list[str]:
    """The domain folders under ``data_root``, sorted by name (at least two, else a ConfigError)."""
    root = Path(data_root)
    if not root.is_dir():
        raise ConfigError(f"{root}: data root not found")
    domains = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if len(domains) < 2:
        raise ConfigError(f"{root}: found {len(domains)} domain folder(s); a transfer task needs two")
    return domains


def task_label(source: str, target: str) -> str:
    return f"{domain_code(source)}→{domain_code(target)}"


def with_selected(methods: Sequence[str]) -> list[str]:
    """``methods``, each followed by its selected twin (``GFK`` -> ``GFK``, ``GFK-sel``) where it has a
    selection grid; names are matched case-insensitively, and unknown ones are kept for validation to name."""
    known = {m.casefold(): m for m in ALL_METHODS}
    out = []
    for name in methods:
        name = known.get(name.casefold(), name)
        out += [name] + ([f"{name}-sel"] if f"{name}-sel" in SELECTED else [])
    return list(dict.fromkeys(out))


def base_method(method: str) -> str:
    """The method a row runs: itself, or for a selected twin the method whose grid it searches."""
    return SELECTED.get(method, method)


def is_shallow(method: str) -> bool:
    return base_method(method) in SHALLOW


def plan_cells(config: ReproduceConfig, chosen: dict[tuple[str, str, str], dict[str, Any]] | None = None) -> list[Cell]:
    """Every cell of the run. Shallow methods are deterministic, so they get seed 0 only. A
    :data:`SELECTED` method's cells take the setting ``chosen[(method, source, target)]`` (they are
    left out while it is unknown)."""
    config.validate()
    chosen = chosen or {}
    cells = []
    out = Path(config.out) / CELLS
    # Seed-major, so that an interrupted reproduce has whole tables for the first seeds.
    for seed, (source, target), method in itertools.product(range(config.seeds), resolve_tasks(config),
                                                            config.methods):
        shallow = is_shallow(method)
        if shallow and seed > 0:
            continue
        if method in SELECTED and (method, source, target) not in chosen:
            continue
        setting = chosen.get((method, source, target), {})
        directory = out / method / f"{domain_code(source)}_{domain_code(target)}" / f"seed{seed}"
        settings: dict[str, Any] = {"data_root": os.path.abspath(config.data_root), "source": source,
                                    "target": target, "seed": seed, "backbone": config.backbone,
                                    "weights": config.weights, "decode": config.decode, "cache_dir": config.cache_dir}
        if shallow:
            settings["classifier"] = config.classifier
            # As results.json will hold them (tuples become lists), so that a rerun compares like with like.
            settings["params"] = json.loads(json.dumps({**config.shallow_params.get(base_method(method), {}),
                                                        **setting}))
        else:
            settings |= {"bits": config.bits, "out": str(directory), "engine": TABLE_ENGINE, **config.overrides,
                         **setting}
        cells.append(Cell(method, source, target, seed, str(directory), settings))
    return cells


def plan_selections(config: ReproduceConfig) -> list[Cell]:
    """One selection per task for each :data:`SELECTED` method, in ``OUT/selection/<method>/<S>_<T>/``:
    deep ones on seed 0's settings (its source split and training seed), shallow ones on their
    method's parameters and classifier."""
    jobs = []
    for (source, target), method in itertools.product(resolve_tasks(config), config.methods):
        if method not in SELECTED:
            continue
        directory = Path(config.out) / SELECTIONS / method / f"{domain_code(source)}_{domain_code(target)}"
        settings = {"data_root": os.path.abspath(config.data_root), "source": source, "target": target,
                    "seed": SELECTION_SEED, "backbone": config.backbone, "weights": config.weights,
                    "decode": config.decode, "cache_dir": config.cache_dir}
        if is_shallow(method):
            settings |= {"classifier": config.classifier,
                         "params": json.loads(json.dumps(config.shallow_params.get(base_method(method), {})))}
        else:
            settings |= {"bits": config.bits, "engine": TABLE_ENGINE, **config.overrides}
        jobs.append(Cell(method, source, target, SELECTION_SEED, str(directory), settings))
    return jobs


def _selection_request(job: Cell, config: ReproduceConfig) -> dict[str, Any]:
    """What a selection depends on: the method's settings (a deep method's whole config), the grid and the rule."""
    method = base_method(job.method)
    grid = json.loads(json.dumps(config.selection_grids[method]))
    if is_shallow(job.method):
        s = job.settings
        return {"method": method, "classifier": s["classifier"], "params": s["params"], "preprocess": "zscore",
                "backbone": s["backbone"], "weights": s["weights"], "decode": s["decode"], "grid": grid,
                "criterion": config.criterion}
    base = method_config(method, job.settings, source=f"method {job.method}").to_dict()
    return {"config": {k: v for k, v in base.items() if k not in RESUME_MAY_CHANGE}, "grid": grid,
            "criterion": config.criterion}


def _selection_done(job: Cell, *, config: ReproduceConfig) -> dict[str, Any] | None:
    """The chosen setting of a finished selection, or None; one made with other settings is an error."""
    directory = Path(job.directory)
    if not (directory / "selection.json").exists() or not (directory / "request.json").exists():
        return None
    saved, mine = json.loads((directory / "request.json").read_text()), _selection_request(job, config)
    if "config" in mine:
        # A training setting added to dahash after the selection was made takes what that version did.
        differ = ({k for k in saved.keys() | mine.keys() if k != "config" and saved.get(k) != mine.get(k)}
                  or settings_differ(saved.get("config", {}), mine["config"]))
    else:
        differ = fill_settings_before(saved, mine) != mine
    if differ:
        raise DahashError(f"{directory}: holds a selection made with other settings (grid, criterion or "
                          "the method's settings); use another --out")
    return Selection.load(directory).best_params


def table_features(settings: dict[str, Any]) -> tuple[FeatureSet, FeatureSet]:
    """Both domains' features of a table cell's or selection's ``settings`` (data, backbone, weights,
    decoding, cache), made by :data:`TABLE_ENGINE`, without progress bars."""
    s = settings
    return image_feature_sets(s["data_root"], s["source"], s["target"], backbone=s["backbone"], weights=s["weights"],
                              cache_dir=s["cache_dir"], progress=False, decode=s["decode"], engine=TABLE_ENGINE)


def _select_shallow(job: Cell, grid: list[dict[str, Any]], criterion: str) -> Selection:
    """:func:`select_setting` of a shallow method on the task's features, each domain z-scored on its
    own as its cells do; the target's labels are dropped as soon as it is read."""
    s, method = job.settings, base_method(job.method).lower()
    source, target = table_features(s)
    report_skipped(source.skipped + target.skipped, Path(job.directory))
    target.y = None  # target labels never reach selection
    Xs, Xt = preprocess_domains(source.X, target.X, "zscore")
    return select_shallow(method, Xs, np.asarray(source.classes)[source.y], Xt, grid=grid,
                          classifier=s["classifier"], criterion=criterion, params=s["params"], out=job.directory)


def _selection_job(job: Cell, threads: int = 1, *, config: ReproduceConfig) -> dict[str, Any]:
    """Run one task's selection (no target label is read) and return the chosen setting."""

    use_threads(threads)
    method = base_method(job.method)
    grid = config.selection_grids[method]
    if is_shallow(job.method):
        selection = _select_shallow(job, grid, config.criterion)
    else:
        base = method_config(method, job.settings, source=f"method {job.method}")
        selection, _ = select_config(base, grid, method=method, criterion=config.criterion,
                                     val_fraction=VAL_FRACTION, out=job.directory, progress=False)
    # Written last: its presence marks the selection finished.
    write_json(Path(job.directory) / "request.json", _selection_request(job, config))
    return selection.best_params


def run_selections(config: ReproduceConfig, progress: bool,
                   executor: ExecutorConfig | None = None) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every :data:`SELECTED` method's setting per task, reusing finished selections; also writes
    ``OUT/selected.md`` (the chosen setting of every method and task, with the rule that chose it)."""
    jobs = plan_selections(config)
    if not jobs:
        return {}
    chosen, todo = {}, []
    for job in jobs:
        done = _selection_done(job, config=config)
        if done is None:
            todo.append(job)
        else:
            chosen[(job.method, job.source, job.target)] = done
    if todo:
        _prefetch_features(config, resolve_tasks(config), progress)
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="task", desc="select",
               disable=not progress, dynamic_ncols=True)
    work = functools.partial(_selection_job, config=config)
    done = functools.partial(_selection_done, config=config)
    for job, params in _execute(todo, work, done, executor_for(config, executor), config.out, bar):
        chosen[(job.method, job.source, job.target)] = params
    bar.close()
    rows = []
    for job in jobs:
        result = json.loads((Path(job.directory) / "selection.json").read_text())
        failed = sum(bool(c["errors"].get("fit")) for c in result["candidates"])
        link = Path(job.directory).relative_to(config.out) / "selection.md"
        rows.append([job.method, task_label(job.source, job.target), _setting_text(result["best_params"]),
                     f"{len(result['candidates'])}" + (f" ({failed} failed)" if failed else ""), f"[table]({link})"])

    write_text(Path(config.out) / "selected.md",
               f"## Settings chosen without target labels (criterion: {config.criterion})\n\n"
               f"Every method: the same rule, the same seed-{SELECTION_SEED} stratified split of the source "
               f"({VAL_FRACTION:.0%} held out), at most {SELECTION_BUDGET} candidates per task; target "
               "labels are never read (docs/selection.md). The chosen setting then runs on the whole source.\n\n"
               + markdown_table(["Method", "Task", "Chosen", "Candidates", "Every candidate's scores"], rows))
    return chosen


def _setting_text(params: dict[str, Any]) -> str:
    """``n_components=20, mu=1.0``; empty as "paper/default"."""
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "paper/default"


def cell_setting(cell: Cell) -> dict[str, Any]:
    """The parameters of ``cell`` that differ from its method's defaults (data, file and seed
    settings left out): a shallow adapter's and classifier's, or a deep method's training settings."""
    method = base_method(cell.method)
    if is_shallow(cell.method):
        defaults = make_adapter(method.lower()).get_params()
        own = {k: v for k, v in cell.settings["params"].items() if k not in defaults or defaults[k] != _tupled(v)}
        return own | ({"classifier": cell.settings["classifier"]} if cell.settings["classifier"] != "1nn" else {})
    preset = method_config(method, {}).to_dict()
    ignored = set(INPUT_SETTINGS) | set(RESUME_MAY_CHANGE) | {"seed", "engine"}
    return {k: v for k, v in _cell_config(cell).items() if k not in ignored and v != preset[k]}


def _tupled(value: Any) -> Any:
    """Lists as tuples, to compare a JSON value with a parameter's default."""
    return tuple(value) if isinstance(value, list) else value


def write_settings(config: ReproduceConfig, cells: list[Cell],
                   chosen: dict[tuple[str, str, str], dict[str, Any]]) -> None:
    """``OUT/settings.md`` and ``.csv``: the setting every row ran with on every task, fixed and
    selected methods alike (a selected one's chosen setting always shown)."""
    rows: dict[tuple[str, str, str], list[int]] = {}
    for cell in cells:
        setting = _setting_text({**chosen.get((cell.method, cell.source, cell.target), {}), **cell_setting(cell)})
        rows.setdefault((cell.method, task_label(cell.source, cell.target), setting), []).append(cell.seed)
    body = []
    for (method, task, setting), seeds in rows.items():
        how = (f"chosen without target labels, [table]({SELECTIONS}/{method}/{task.replace('→', '_')}/selection.md)"
               if method in SELECTED else "fixed")
        body.append([method, task, ", ".join(map(str, sorted(seeds))), setting, how])
    body.sort(key=lambda r: config.methods.index(r[0]))
    header = ["Method", "Task", "Seeds", "Setting (differs from the method's defaults)", "How"]
    write_text(Path(config.out) / "settings.md",
               "## The setting of every row and task\n\nParameters that differ from each method's defaults "
               "(its paper's, docs/baselines.md), including --set and --shallow-set; \"paper/default\" when none "
               f"does. Shallow methods: {config.classifier} classifier, each domain z-scored on its own.\n\n"
               + markdown_table(header, body))
    write_csv(Path(config.out) / "settings.csv", header, body)


def _finished(cell: Cell) -> dict[str, Any] | None:
    """The metrics of a finished cell, or None; a cell finished with other settings is an error."""
    results = Path(cell.directory) / "results.json"
    if not results.exists():
        return None
    saved = json.loads(results.read_text())
    mine = _cell_config(cell)
    if is_shallow(cell.method):
        differ = flat_settings_differ(saved["config"], mine)
    else:
        differ = settings_differ(saved["config"], mine)
    if differ:
        raise DahashError(f"{cell.directory}: holds a finished run with other settings ({', '.join(differ)}); "
                          "use another --out")
    return saved["metrics"]


def _cell_config(cell: Cell) -> dict[str, Any]:
    if is_shallow(cell.method):
        return {"method": cell.method, **cell.settings}
    return method_config(base_method(cell.method), cell.settings, source=f"method {cell.method}").to_dict()


def _shallow_cell(cell: Cell) -> dict[str, Any]:
    s = cell.settings
    source, target = table_features(s)
    report_skipped(source.skipped + target.skipped, Path(cell.directory))
    t0 = time.perf_counter()
    # Each domain z-scored on its own before adapting, the protocol of the GFK and JDA authors' code.
    pred = fit_predict_shallow(base_method(cell.method).lower(), source.X, source.y, target.X, classifier=s["classifier"],
                               preprocess="zscore", seed=cell.seed, **s["params"])
    metrics = {"n_source": len(source), "n_target": len(target), "n_classes": source.n_classes,
               "target_accuracy": float((pred == target.y).mean() * 100),
               "train_seconds": time.perf_counter() - t0}
    Path(cell.directory).mkdir(parents=True, exist_ok=True)
    write_json(Path(cell.directory) / "results.json", {"config": _cell_config(cell), "metrics": metrics})
    return metrics


def run_cell(cell: Cell, threads: int = 1) -> dict[str, Any]:
    """Compute one unfinished cell (:func:`reproduce` skips the finished ones) and return its metrics."""

    use_threads(threads)
    if is_shallow(cell.method):
        return _shallow_cell(cell)

    return run(TrainConfig.from_dict(_cell_config(cell), source=f"method {cell.method}"), resume=True,
               progress=False)


def run_cells(config: TablesConfig, cells: list[Cell], tasks: list[tuple[str, str]],
              finished: Callable[[Cell], dict[str, Any] | None], work: Callable[[Cell, int], dict[str, Any]],
              key: Callable[[Cell], tuple], settings_file: str, progress: bool,
              executor: ExecutorConfig | None = None) -> tuple[dict[tuple, dict[str, Any]], int, str, float]:
    """Extract the tasks' features, reuse every ``finished`` cell, save the settings as
    ``settings_file`` and ``work`` out the rest on ``executor`` (the local pool of ``config.workers``
    by default); returns ``({key(cell): metrics}, cells computed, threads per cell in words, seconds)``."""
    t0 = time.perf_counter()
    _prefetch_features(config, tasks, progress)
    results, todo = {}, []
    for cell in cells:
        done = finished(cell)
        if done is None:
            todo.append(cell)
        else:
            results[key(cell)] = done
    # Only now: a rerun refused for other settings must not relabel the finished runs.
    write_text(Path(config.out) / settings_file, yaml.safe_dump(asdict(config), sort_keys=False))
    executor = executor_for(config, executor)
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), unit="run", desc=Path(settings_file).stem,
               disable=not progress, dynamic_ncols=True)
    for cell, metrics in _execute(todo, work, finished, executor, config.out, bar):
        results[key(cell)] = metrics
    bar.close()
    return results, len(todo), threads_text(executor), time.perf_counter() - t0


def executor_for(config: TablesConfig, executor: ExecutorConfig | None) -> ExecutorConfig:
    """``executor`` (the local pool by default) running ``config.workers`` cells at a time here."""
    return dataclasses.replace(executor or ExecutorConfig(), workers=config.workers).validate()


def threads_text(executor: ExecutorConfig) -> str:
    """How many threads each cell ran on, for the tables' notes."""
    if executor.kind == "local" or (executor.kind in ("dask", "ray") and not executor.address):
        threads = executor.cpus or threads_per_worker(executor.workers)
        return f"{threads} thread(s) each, {executor.workers} run(s) at a time on the {executor.kind} executor"
    return f"threads from each worker's allocation on the {executor.kind} executor"


def _execute(todo: list[Cell], work: Callable[[Cell, int], Any], finished: Callable[[Cell], Any],
             executor: ExecutorConfig, out: str, bar: tqdm) -> Iterator[tuple[Cell, Any]]:
    """``(cell, result)`` for every cell of ``todo`` on ``executor``'s engine, each computed once
    (:func:`run_unit`), advancing ``bar``; the first failure or Ctrl-C cancels the rest."""
    unit = functools.partial(run_unit, finished=finished, work=work)
    describe = lambda cell: f"{cell.method} {task_label(cell.source, cell.target)} seed {cell.seed}"  # noqa: E731
    for cell, result in run_all(executor, unit, todo, describe=describe, log_dir=out):
        yield cell, result
        bar.update(1)


def run_unit(cell: Cell, threads: int, *, finished: Callable[[Cell], Any], work: Callable[[Cell, int], Any]) -> Any:
    """``finished(cell)``, else ``work`` on the cell in its staging folder, renamed to the cell's directory
    when done: on whatever machine and however often an engine starts it, a cell is computed once, under
    its lock, and appears whole (:func:`dahash.locks.compute_once`)."""

    def compute(staging: Path) -> Any:
        settings = {**cell.settings, "out": str(staging)} if "out" in cell.settings else cell.settings
        result = work(dataclasses.replace(cell, directory=str(staging), settings=settings), threads)
        _relabel(staging, Path(cell.directory))
        return result

    return compute_once(cell.directory, lambda: finished(cell), compute)


def _relabel(staging: Path, final: Path) -> None:
    """Point the ``out`` that a run's config.yaml and results.json record at the cell's own directory,
    where they will be once ``staging`` is renamed."""
    for path in [*staging.rglob("config.yaml"), *staging.rglob("results.json")]:
        text = path.read_text()
        saved = yaml.safe_load(text) if path.suffix == ".yaml" else json.loads(text)
        config = saved.get("config", saved) if isinstance(saved, dict) else None
        if not isinstance(config, dict) or not str(config.get("out") or "").startswith(str(staging)):
            continue
        config["out"] = str(final) + config["out"][len(str(staging)):]
        if path.suffix == ".yaml":
            write_text(path, yaml.safe_dump(saved, sort_keys=False))
        else:
            write_json(path, saved)


def _prefetch_features(config: TablesConfig, tasks: list[tuple[str, str]], progress: bool) -> None:
    """Extract (or find cached) every domain's features once, before parallel cells read them."""
    backbone = load_backbone(config.backbone, config.weights, config.decode)
    cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    for name in dict.fromkeys(d for task in tasks for d in task):
        domain_features(open_domain(config.data_root, name), backbone, cache, progress=progress)


def summarize(config: ReproduceConfig, results: dict[tuple[str, str, int], dict[str, Any]],
              tasks: list[tuple[str, str]], metric: str = "target_accuracy",
              digits: int = 2) -> tuple[list[str], list[list[str]], dict[str, list[float]]]:
    """Methods as rows, tasks and Avg as columns, ``mean ± std`` of ``metric`` over seeds (seed-0
    value for deterministic shallow methods); methods whose runs lack ``metric`` (mAP of a softmax
    or shallow method) are left out. Also the mean per task and Avg, for plotting."""
    labels = [task_label(s, t) for s, t in tasks]
    header = ["Method", *labels, "Avg"]
    body, means = [], {}
    for method in config.methods:
        seeds = 1 if is_shallow(method) else config.seeds
        runs = [[results[(method, label, k)] for label in labels] for k in range(seeds)]
        if any(metric not in r for row in runs for r in row):
            continue
        grid = np.array([[r[metric] for r in row] for row in runs])
        columns = [grid[:, j] for j in range(grid.shape[1])] + [grid.mean(1)]
        body.append([method] + [f"{c.mean():.{digits}f}" if len(c) == 1 else f"{c.mean():.{digits}f} ± {c.std(ddof=1):.{digits}f}"
                                for c in columns])
        means[method] = [float(c.mean()) for c in columns]
    return header, body, means


def _published(config: ReproduceConfig, labels: list[str]) -> tuple[str, list[list[str]]]:
    """The paper's rows for the same tasks (Tables 2 and 3, and for Office-Home Table 5's other
    code lengths), as Markdown and CSV rows."""
    if config.dataset is None:
        return "", []

    md, rows = "", []
    for kind in ("accuracy", "accuracy-bits"):
        table = published_rows(config.dataset, kind)
        if table is None or any(label not in table.tasks for label in labels):
            continue
        index = [table.tasks.index(label) for label in labels]
        subset = len(labels) < len(table.tasks) - 1
        shown = []
        for name, values in table.rows.items():
            if any(r[0] == f"{name} (published)" for r in rows) or (kind == "accuracy-bits" and name == "DAH-64"):
                continue  # Table 5 repeats Table 3's DAN, DANN and DAH (64 bits)
            picked = [values[i] for i in index]
            # On a subset of the tasks the paper's Avg is not comparable; average the same columns instead.
            avg = float(np.mean(picked)) if subset else values[table.tasks.index("Avg")]
            shown.append([f"{name} (published)"] + [f"{v:.2f}" for v in picked] + [f"{avg:.2f}"])
        note = " Avg is over the tasks shown." if subset else ""
        md += (f"\n### Published, {table.name}: {table.caption}\n\n{table.note}.{note}\n\n"
               + markdown_table(["Method", *labels, "Avg"], shown))
        rows += shown
    return md, rows


def reproduce(config: ReproduceConfig, progress: bool = True, executor: ExecutorConfig | None = None) -> dict[str, Any]:
    """Run (or finish) every selection and cell on ``executor`` (the local pool by default), then write
    ``accuracy.md/.csv/.png``, for the methods with hash codes ``map.md/.csv``, ``settings.md/.csv``
    and, with selected methods, ``selected.md`` in ``config.out``."""
    config.validate()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    # What a killed earlier invocation was writing; not what another driver on this --out writes now.
    remove_stale_temporaries(out, older_than_s=STALE_TEMPORARY_S)
    tasks = resolve_tasks(config)
    for cell in plan_cells(config) + plan_selections(config):
        if not is_shallow(cell.method):
            _cell_config(cell)  # a bad override fails here, before any work
    for job in plan_selections(config):
        if not is_shallow(job.method):
            for candidate in config.selection_grids[base_method(job.method)]:  # so does a bad candidate
                method_config(base_method(job.method), {**job.settings, **candidate},
                              source=f"{job.method} candidate {_setting_text(candidate)}")
    chosen = run_selections(config, progress, executor)
    cells = plan_cells(config, chosen)
    results, computed, threads, seconds = run_cells(
        config, cells, tasks, _finished, run_cell,
        lambda cell: (cell.method, task_label(cell.source, cell.target), cell.seed), "reproduce.yaml", progress,
        executor)
    write_settings(config, cells, chosen)

    header, body, means = summarize(config, results, tasks)
    labels = header[1:-1]
    published_md, published_rows = _published(config, labels)
    what = config.dataset or Path(config.data_root).name
    timing = {m: np.mean([r["train_seconds"] for (method, _, _), r in results.items() if method == m])
              for m in config.methods}
    text = (f"## Target accuracy (%), {what}, {config.bits} bits, {config.backbone} features\n\n"
            f"Mean ± standard deviation over {config.seeds} seed(s) for the deep methods; the shallow "
            f"methods ({config.classifier} classifier) are deterministic and run once.\n\n"
            + markdown_table(header, body)
            + f"\nTraining time per run (s, mean over tasks and seeds, {threads}): " + ", ".join(f"{m} {t:.1f}" for m, t in timing.items())
            + f". This invocation: {seconds:.0f} s wall for {computed} runs ({len(cells) - computed} reused).\n"
            + "\nThe setting of every row on every task: settings.md"
            + ("; the -sel rows' choices, made without target labels: selected.md.\n"
               if any(m in SELECTED for m in config.methods) else ".\n")
            + published_md)
    write_text(out / "accuracy.md", text)
    write_csv(out / "accuracy.csv", ["source", *header], [["ours", *r] for r in body]
              + [["published", *r] for r in published_rows])
    map_header, map_body, _ = summarize(config, results, tasks, metric="map", digits=3)
    if map_body:
        map_text = (f"## mAP, {what}, {config.bits} bits, {config.backbone} features\n\n"
                    "Target codes as queries, source codes as database, relevant = same class (the "
                    f"paper's protocol); mean ± standard deviation over {config.seeds} seed(s). Only methods "
                    "with hash codes.\n\n" + markdown_table(map_header, map_body))
        write_text(out / "map.md", map_text)
        write_csv(out / "map.csv", map_header, map_body)
        text += "\n" + map_text
    rows = [{"method": m, "task": task, "seed": seed, **metrics} for (m, task, seed), metrics in results.items()]
    write_cells(out / "cells.csv", rows)  # per cell: what benchmarks/cell_tables.py remakes every table from
    paired_header, paired_body = paired_table(rows, config.methods)
    if paired_body:
        paired_text = ("## Paired differences in target accuracy (points)\n\nEach method minus the reference on the "
                       "same task and seed, averaged over the (task, seed) cells they share, with a 95 % t interval "
                       "(over these tasks, which are a fixed set), and the cells where the method is ahead or "
                       "behind. NoDA-sel is the source-only ablation with its training length chosen by the same "
                       "label-free rule as every -sel row.\n\n" + markdown_table(paired_header, paired_body))
        write_text(out / "paired.md", paired_text)
        write_csv(out / "paired.csv", paired_header, paired_body)
        text += "\n" + paired_text
    plot_task_bars(out / "accuracy.png", [*labels, "Avg"], means,
                   title=f"{what}: target accuracy, {config.bits} bits, {config.backbone} features")
    return {"table": text, "seconds": seconds, "cells": len(cells), "computed": computed,
            "train_seconds": {m: float(t) for m, t in timing.items()}}
