"""Choosing a run's setting without target labels (Venkateswara et al., CVPR 2017, Sec. 5.2): the selection on a
:class:`dahash.training.config.TrainConfig`'s data, and a run whose tuned setting is chosen that way first.

``dahash train --method DAH`` without ``--gamma`` and ``dahash select`` call these. The candidates of a
method's tuned setting are :func:`dahash.selection_grids.auto_grid`'s; the rule and the validators are
:mod:`dahash.runs.selection`'s. Target labels are dropped as soon as the target is read.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from dahash.cores import use_threads
from dahash.data.normalize import FeatureNormalizer
from dahash.errors import ConfigError
from dahash.executors import ExecutorConfig, run_all
from dahash.runs.data import load_domains
from dahash.runs.estimator import DAH, INPUT_SETTINGS
from dahash.runs.run import run
from dahash.runs.selection import (
    CANDIDATES,
    CRITERIA,
    Selection,
    check_val_fraction,
    expand_grid,
    fit_candidates,
    select_setting,
    setting_text,
)
from dahash.selection_grids import SELECTION_GRIDS, SELECTION_SEED, VAL_FRACTION
from dahash.shallow.api import ADAPTERS, fit_predict_shallow, make_shallow_pipeline, preprocess_domains
from dahash.training.config import TrainConfig
from dahash.validation import check_choice

__all__ = ["SCHEDULE_DIR", "SELECTION_DIR", "Trained", "fit_predict_selected", "select_config", "select_schedule",
           "select_shallow", "train_selected"]

#: Where a run whose setting was chosen keeps that selection: every candidate's scores and the rule.
SELECTION_DIR = "selection"
#: Where a run whose training schedule was chosen keeps that stage's selection.
SCHEDULE_DIR = "schedule"


class Trained(NamedTuple):
    """What :func:`train_selected` did: the schedule stage and the setting's selection (None where they did
    not run) and the run's metrics (None on a torchrun rank other than 0)."""

    schedule: Selection | None
    selection: Selection | None
    metrics: dict[str, Any] | None


def select_config(config: TrainConfig, grid: dict[str, Sequence[Any]] | Sequence[dict[str, Any]], *,
                  method: str = "DAH", criterion: str = "paper", val_fraction: float = 0.2,
                  out: str | os.PathLike | None = None, progress: bool = True,
                  executor: ExecutorConfig | None = None) -> tuple[Selection, TrainConfig]:
    """:func:`dahash.runs.selection.select_setting` for DAH (``method``, any :data:`dahash.training.methods.DEEP_METHODS` preset)
    on ``config``'s data (feature files or cached image features), each candidate ``config``
    updated by one setting of ``grid`` (TrainConfig fields); returns the selection and the chosen
    TrainConfig (its ``out`` unset), which ``out`` also receives as ``config.yaml``.

    The target domain's labels, if its file has them, are dropped as soon as it is read. With ``executor``
    (and ``out``), each candidate is a cell of that engine (:func:`select_candidate`), fitted where it runs.
    """
    check_choice("criterion", criterion, CRITERIA)
    check_val_fraction(val_fraction)
    candidates = expand_grid(grid)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in dict.fromkeys(k for c in candidates for k in c):
        if key not in known:
            raise ConfigError(f"grid key {key!r} is not a training setting; known: {', '.join(sorted(known))}")
        if key in INPUT_SETTINGS:
            raise ConfigError(f"grid key {key!r} names data or files, which selection cannot vary")
    if config.finetune:
        raise ConfigError("selection trains heads on fixed features; finetune must be false")
    base = dataclasses.replace(config, out=None)
    for params in candidates:  # every candidate's settings are checked before anything trains
        TrainConfig.from_dict({**base.to_dict(), **params}, source=f"grid setting {setting_text(params)}")
    DAH.from_config(base, method=method).make_config()
    if executor is not None:
        if out is None:
            raise ConfigError("out is required to select on an executor: the candidates' cells are saved there")
        work = functools.partial(select_candidate, config=base.to_dict(), grid=candidates, method=method,
                                 val_fraction=val_fraction, out=str(out))
        # A saved candidate is not sent again (select_setting below refits one saved with other settings).
        todo = [i for i in range(len(candidates)) if not (Path(out) / CANDIDATES / f"{i:03d}.json").exists()]
        for _ in run_all(executor, work, todo, describe=lambda i: f"candidate {i}", log_dir=out):
            pass
    Xs, ys, Xt = _selection_data(base, progress)
    selection = select_setting(lambda params: DAH.from_config(base, method=method, **params), candidates, Xs, ys,
                               Xt, criterion=criterion, val_fraction=val_fraction, seed=base.seed, out=out,
                               progress=progress)
    chosen = TrainConfig.from_dict({**base.to_dict(), **selection.best_params}, source="chosen setting")
    if out is not None:
        chosen.save(Path(out) / "config.yaml")
    return selection, chosen


def select_candidate(index: int, threads: int, *, config: dict[str, Any], grid: list[dict[str, Any]], method: str,
                     val_fraction: float, out: str) -> None:
    """Fit and score candidate ``index`` of :func:`select_config`'s selection on ``threads`` threads, saving it
    in ``out`` (a cell of an executor: reads its data itself, wherever it runs)."""
    use_threads(threads)
    base = TrainConfig.from_dict(config, source="selection")
    Xs, ys, Xt = _selection_data(base, progress=False)
    fit_candidates(functools.partial(_dah, base, method), grid, [index], Xs, ys, Xt, out=out,
                   val_fraction=val_fraction, seed=base.seed)


def _dah(base: TrainConfig, method: str, params: dict[str, Any]) -> DAH:
    return DAH.from_config(base, method=method, **params)


def _selection_data(base: TrainConfig, progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The source's features and labels and the target's features (its labels dropped), unnormalised."""
    # Raw features: each candidate's estimator fits its normaliser on its own training rows.
    domains = load_domains(base, normalizer=FeatureNormalizer("none"), progress=progress)
    if domains.pretrained_fc is not None:
        raise ConfigError(f"backbone {base.backbone!r} starts the head from its pretrained fc6/fc7, which "
                          "selection does not support; use a backbone without them (e.g. efficientnet_lite0)")
    domains.target.y = None  # target labels never reach selection
    return domains.source.X, np.asarray(domains.source.classes)[domains.source.y], domains.target.X


def select_schedule(config: TrainConfig, grid: Sequence[dict[str, Any]], *, out: str | os.PathLike | None = None,
                    progress: bool = True) -> Selection:
    """Choose ``config``'s training schedule (``lr_start``, ``lr_end``, ``epochs``) among ``grid`` by held-out source
    accuracy (issue 31; :func:`dahash.runs.selection.choose`'s ``"schedule"`` rule, which keeps the first, the paper's,
    unless another beats it beyond noise): each candidate trains the source-only twin (NoDA: the hash loss alone)
    on the split every selection uses. The target's features (never its labels) enter as NoDA's unlabeled rows
    do: the input normalisation's statistics, and the batches' BatchNorm and quantisation term."""
    base = dataclasses.replace(config, out=None, finetune=False)
    Xs, ys, Xt = _selection_data(base, progress)
    return select_setting(functools.partial(_source_only, base), grid, Xs, ys, Xt, criterion="schedule",
                          val_fraction=VAL_FRACTION, seed=base.seed, out=out, progress=progress)


def _source_only(base: TrainConfig, params: dict[str, Any]) -> DAH:
    return DAH.from_config(base, method="NoDA", gamma=0.0, eta=0.0, **params)


def train_selected(config: TrainConfig, grid: Sequence[dict[str, Any]], *, method: str = "DAH",
                   criterion: str = "paper", schedule: Sequence[dict[str, Any]] = (), resume: bool = False,
                   progress: bool = True) -> Trained:
    """Choose ``config``'s schedule among ``schedule`` (:func:`select_schedule`, into ``OUT/schedule/``) and then its
    setting among ``grid`` without target labels (the paper's procedure, Sec. 5.2, into ``OUT/selection/``: every
    candidate's scores, the rule, its table), then train the choice on the whole source into ``config.out``.
    An empty ``schedule`` or ``grid`` skips that stage.

    Both stages run on frozen features; a fine-tuning ``config`` fine-tunes with the setting chosen there
    (docs/finetuning.md). An interrupted selection keeps its finished candidates, so rerunning resumes it.
    """
    if not config.out:
        raise ConfigError("out is required: the run directory keeps the selection beside the run")
    chosen_schedule = selection = None
    if schedule:
        chosen_schedule = select_schedule(config, schedule, out=Path(config.out) / SCHEDULE_DIR, progress=progress)
        config = TrainConfig.from_dict({**config.to_dict(), **chosen_schedule.best_params}, source="chosen schedule")
    if grid:
        frozen = dataclasses.replace(config, finetune=False)
        selection, _ = select_config(frozen, grid, method=method, criterion=criterion, val_fraction=VAL_FRACTION,
                                     out=Path(config.out) / SELECTION_DIR, progress=progress)
        config = TrainConfig.from_dict({**config.to_dict(), **selection.best_params}, source="chosen setting")
    return Trained(chosen_schedule, selection, run(config, resume=resume, progress=progress))


def select_shallow(method: str, Xs: Any, ys: Any, Xt: Any, *, grid: Sequence[dict[str, Any]] | None = None,
                   classifier: str = "1nn", criterion: str = "paper", params: dict[str, Any] | None = None,
                   out: str | os.PathLike | None = None, progress: bool = False) -> Selection:
    """:func:`dahash.runs.selection.select_setting` of a shallow method (GFK, TCA, JDA, SA, OT) on features
    already scaled as it fits them (:func:`dahash.shallow.api.preprocess_domains`): its candidates (default: the
    ``-sel`` row's grid, :data:`dahash.selection_grids.SELECTION_GRIDS`) on top of ``params``, the same rule,
    split and budget as every method; no target label is read."""
    name = method.upper()
    candidates = expand_grid(grid if grid is not None else SELECTION_GRIDS.get(name, []))
    return select_setting(
        lambda candidate: make_shallow_pipeline(method.lower(), classifier=classifier, seed=SELECTION_SEED,
                                                **{**(params or {}), **candidate}),
        candidates, Xs, ys, Xt, criterion=criterion, val_fraction=VAL_FRACTION, seed=SELECTION_SEED, out=out,
        progress=progress)


def fit_predict_selected(method: str, Xs: Any, ys: Any, Xt: Any, *, classifier: str = "1nn",
                         criterion: str = "paper", preprocess: str = "zscore",
                         out: str | os.PathLike | None = None) -> tuple[np.ndarray, Selection]:
    """:func:`dahash.shallow.api.fit_predict_shallow` with the method's setting chosen first without target
    labels (:func:`select_shallow`, on the source and target scaled by ``preprocess``); returns the target's
    predicted labels and the selection. Cheap: the adapters fit in seconds on Office-sized features."""
    tuned = [m for m in SELECTION_GRIDS if m.lower() in ADAPTERS]
    if method.upper() not in tuned:
        raise ConfigError(f"method {method!r} has no selection grid among the shallow methods; with one: "
                          f"{', '.join(tuned)}")
    scaled_s, scaled_t = preprocess_domains(np.asarray(Xs, dtype=float), np.asarray(Xt, dtype=float), preprocess)
    selection = select_shallow(method, scaled_s, ys, scaled_t, classifier=classifier, criterion=criterion, out=out)
    predicted = fit_predict_shallow(method.lower(), Xs, ys, Xt, classifier=classifier, preprocess=preprocess,
                                    seed=SELECTION_SEED, **selection.best_params)
    return predicted, selection
