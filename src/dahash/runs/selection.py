"""Choosing a domain-adaptation setting without target labels (Venkateswara et al., CVPR 2017, Sec. 5.2, and skada's scorers).

:func:`select_setting` works with any estimator in skada's convention (``fit(X, y,
sample_domain=...)``, target rows ``sample_domain < 0`` with ``y = -1``): it splits the labeled
source into a stratified train and validation part, fits every candidate setting on source-train
plus the whole unlabeled target, scores it without target labels and picks one:

* ``source_val_accuracy``: accuracy (%) on the held-out source rows;
* ``domain_error``: error (%) of a linear domain classifier telling held-out source features
  from target features (the paper's criterion: closer to 50 means better-aligned domains);
* ``iw``, ``dev``, ``snd``, ``entropy``, ``mixval``, ``mano``: skada's ``ImportanceWeightedScorer``
  (Sugiyama et al., JMLR 2007), ``DeepEmbeddedValidation`` (You et al., ICML 2019),
  ``SoftNeighborhoodDensity`` (Saito et al., ICCV 2021), ``PredictionEntropyScorer`` (Morerio et al.,
  ICLR 2018), ``MixValScorer`` (Hu et al., NeurIPS 2023) and ``MaNoScorer`` (Xie et al., NeurIPS 2024),
  as skada returns them: greater is better (DEV and entropy are negated losses).

Target labels are never read: no function here takes them. With ``out``, each candidate's predicted
target classes are kept beside its scores (``candidates/<index>.target.npy``), so that a validator
study (:mod:`dahash.experiments.validator_study`) can score the validators later, against labels this
module never sees. :func:`dahash.runs.tuning.select_config` is the same selection for DAH on the data
of a :class:`dahash.training.config.TrainConfig`, what ``dahash select`` and ``dahash train`` call.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import config_context
from tqdm.auto import tqdm

from dahash.errors import ConfigError, DahashError, DataError
from dahash.selection_grids import CRITERIA, CRITERION_SCORE, RULES, SCHEDULE_MARGIN_SE
from dahash.io import atomic_path, write_csv, write_json, write_text
from dahash.locks import DirectoryLock
from dahash.validation import check_choice

__all__ = ["CRITERIA", "SCORES", "Selection", "choose", "domain_classifier_error", "expand_grid", "parse_grid",
           "select_setting", "setting_text"]

#: Every score recorded per candidate, in table order.
SCORES: tuple[str, ...] = ("source_val_accuracy", "domain_error", "iw", "dev", "snd", "entropy", "mixval", "mano")
#: The paper rule considers candidates whose source accuracy is within this many points of the best.
ACCURACY_GUARD = 1.0
SOURCE_DOMAIN, TARGET_DOMAIN, MASKED = 1, -2, -1  # skada's default domain labels and masked target label
CANDIDATES = "candidates"  # folder of finished candidates' records under a selection's out
PREDICTIONS = "{index:03d}.target.npy"  # a candidate's predicted target classes, in that folder
_MAX_REASON = 200
# Warnings about library versions, not about a candidate: not recorded.
_LIBRARY_NOISE = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)

Estimator = Any  # a skada-convention estimator: fit(X, y, sample_domain=...), predict, predict_proba


@dataclass
class Selection:
    """The outcome of :func:`select_setting`: every candidate's setting and scores, and the one chosen."""

    criterion: str
    rule: str  # why the chosen candidate won, in words
    best_index: int
    best_params: dict[str, Any]
    candidates: list[dict[str, Any]]  # index, params, each of SCORES, fit_seconds, errors, warnings
    split: dict[str, Any] = field(default_factory=dict)  # sizes, val_fraction and seed of the source split

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON-ready dict (NaN and infinities as None)."""
        return _plain({"criterion": self.criterion, "rule": self.rule, "best_index": self.best_index,
                       "best_params": self.best_params, "accuracy_guard_points": ACCURACY_GUARD,
                       "split": self.split, "candidates": self.candidates})

    @classmethod
    def load(cls, out: str | os.PathLike) -> "Selection":
        """The selection saved in ``out``, its choice made again by today's rule from the recorded
        scores (no candidate is refitted); the files are rewritten when that choice differs."""
        saved = json.loads((Path(out) / "selection.json").read_text())
        candidates = [{k: (math.nan if v is None and k in SCORES else v) for k, v in c.items()}
                      for c in saved["candidates"]]
        best, rule = choose(candidates, saved["criterion"], n_val=saved["split"].get("n_source_val"))
        selection = cls(saved["criterion"], rule, best, dict(candidates[best]["params"]), candidates, saved["split"])
        if best != saved["best_index"] or rule != saved["rule"]:
            selection.save(out)
        return selection

    def param_names(self) -> list[str]:
        """The grid's keys, in first-seen order."""
        return list(dict.fromkeys(k for c in self.candidates for k in c["params"]))

    def table(self) -> str:
        """The candidates as a Markdown table; the chosen row is marked."""
        names = self.param_names()
        header = ["#", *names, "src val acc %", "domain err %", "IW", "DEV", "SND", "entropy", "MixVal", "MaNo",
                  "fit s", "chosen"]
        rows = []
        for c in self.candidates:
            cells = [str(c["index"]), *(_cell(c["params"].get(n, "")) for n in names)]
            cells += [_number(c[s], ".2f" if s in ("source_val_accuracy", "domain_error") else ".4g") for s in SCORES]
            cells += [f"{c['fit_seconds']:.1f}", "yes" if c["index"] == self.best_index else ""]
            rows.append(cells)
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"

    def save(self, out: str | os.PathLike) -> None:
        """``selection.json``, ``selection.csv`` and ``selection.md`` in ``out``, each written atomically."""
        out = Path(out)
        write_json(out / "selection.json", self.to_dict())
        names = self.param_names()
        rows = []
        for c in self.candidates:
            errors = "; ".join(f"{k}: {v}" for k, v in c["errors"].items())
            rows.append([c["index"], *(_csv_value(c["params"].get(n)) for n in names),
                         *("" if not math.isfinite(c[s]) else repr(float(c[s])) for s in SCORES),
                         f"{c['fit_seconds']:.3f}", int(c["index"] == self.best_index), errors])
        write_csv(out / "selection.csv", ["index", *names, *SCORES, "fit_seconds", "chosen", "errors"], rows)
        failed = [f"- candidate {c['index']}, {k}: {v}" for c in self.candidates for k, v in c["errors"].items()]
        text = (f"# Label-free selection ({self.criterion})\n\n{self.table()}\n"
                f"Chosen: candidate {self.best_index}, {setting_text(self.best_params)}.\n\nRule: {self.rule}\n")
        if failed:
            text += "\nNot scored (NaN):\n\n" + "\n".join(failed) + "\n"
        write_text(out / "selection.md", text)


# ----------------------------------------------------------------------------- grid


def expand_grid(grid: dict[str, Sequence[Any]] | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The candidate settings: every combination of a ``{key: [values]}`` grid (the last key varies
    fastest), or a list of settings as given."""
    if isinstance(grid, dict):
        if not grid:
            raise ConfigError("grid is empty: give at least one key with values")
        for key, values in grid.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
                raise ConfigError(f"grid {key!r} must be a non-empty list of values, got {values!r}")
        return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    candidates = list(grid)
    if not candidates or not all(isinstance(c, dict) for c in candidates):
        raise ConfigError(f"grid must be a dict of value lists or a non-empty list of dicts, got {grid!r}")
    return [dict(c) for c in candidates]


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["gamma=0,500", "hidden=[16,16],[32,32]"]`` -> ``{"gamma": [0, 500], "hidden": [[16, 16], [32, 32]]}``;
    each value is read as YAML, and commas inside brackets do not split values."""
    import yaml

    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2,..., e.g. gamma=0,500,5000")
        if key in grid:
            raise ConfigError(f"--grid {key!r} given twice; list all its values in one --grid {key}=V1,V2")
        parts = _split_top_level(text)
        if not any(parts):
            raise ConfigError(f"--grid {item!r}: no values for {key!r}")
        if not all(parts):
            raise ConfigError(f"--grid {item!r}: an empty value for {key!r}")
        try:
            grid[key] = [yaml.safe_load(p) for p in parts]
        except yaml.YAMLError as exc:
            raise ConfigError(f"--grid {item!r}: a value is not valid YAML ({str(exc).splitlines()[0]})") from None
    return grid


def _split_top_level(text: str) -> list[str]:
    """``text`` split at commas outside brackets and braces, each part stripped."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return parts + [text[start:].strip()]


# ----------------------------------------------------------------------------- scores


def domain_classifier_error(source_features: np.ndarray, target_features: np.ndarray, *, seed: int = 0,
                            n_splits: int = 5) -> float:
    """Error (%) of a linear domain classifier (logistic regression on standardised features,
    stratified k-fold) telling source rows from target rows, the larger domain subsampled to the
    smaller's size; 50 means indistinguishable (Venkateswara et al., CVPR 2017, Sec. 5.2)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Fs, Ft = _matrix(source_features), _matrix(target_features)
    n = min(len(Fs), len(Ft))
    if n < 2:
        raise DataError(f"the domain classifier needs at least 2 rows per domain, got {len(Fs)} source and "
                        f"{len(Ft)} target")
    rng = np.random.default_rng(seed)
    Fs = Fs[np.sort(rng.choice(len(Fs), n, replace=False))]
    Ft = Ft[np.sort(rng.choice(len(Ft), n, replace=False))]
    X = np.concatenate([Fs, Ft])
    d = np.r_[np.ones(n, int), np.zeros(n, int)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    cv = StratifiedKFold(n_splits=min(n_splits, n), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        accuracy = cross_val_score(clf, X, d, cv=cv)
    return float((1.0 - accuracy.mean()) * 100)


def _scorers(seed: int) -> dict[str, Any]:
    """skada's label-free scorers with their default settings (DEV's split seeded)."""
    from skada.metrics import (
        DeepEmbeddedValidation,
        ImportanceWeightedScorer,
        MaNoScorer,
        MixValScorer,
        PredictionEntropyScorer,
        SoftNeighborhoodDensity,
    )

    return {"iw": ImportanceWeightedScorer(), "dev": DeepEmbeddedValidation(random_state=seed),
            "snd": SoftNeighborhoodDensity(), "entropy": PredictionEntropyScorer(),
            "mixval": MixValScorer(random_state=seed), "mano": MaNoScorer()}


def _features(estimator: Estimator, X: np.ndarray, sample_domain: np.ndarray) -> np.ndarray:
    """The representation the domain classifier sees: ``predict_features`` (DAH: fc7), else the last
    transform of a Pipeline, else the input (as skada's DeepEmbeddedValidation chooses)."""
    from sklearn.pipeline import Pipeline

    if hasattr(estimator, "predict_features"):
        return _matrix(estimator.predict_features(X))
    if isinstance(estimator, Pipeline):
        steps = list(estimator.named_steps.values())
        for i in reversed(range(len(steps))):
            if hasattr(steps[i], "transform"):
                return _matrix(_call(estimator[:i + 1].transform, X, sample_domain))
    return _matrix(X)


def _call(method: Callable[..., Any], X: np.ndarray, sample_domain: np.ndarray) -> Any:
    """``method(X, sample_domain=..., allow_source=True)``; ``method(X)`` outside skada's convention."""
    try:
        return method(X, sample_domain=sample_domain, allow_source=True)
    except TypeError as exc:
        if "sample_domain" not in str(exc) and "allow_source" not in str(exc):
            raise
        return method(X)


def _score(estimator: Estimator, Xv: np.ndarray, yv: np.ndarray, Xt: np.ndarray, seed: int,
           errors: dict[str, str], notes: dict[str, str]) -> dict[str, Any]:
    """Every score of one fitted candidate; a score that fails is NaN, its reason in ``errors``. Beside them,
    ``source_val_correct``: which held-out rows it classified right, as a string of 0s and 1s (what the
    training stage's paired rule compares), when it classified them."""
    sd_v, sd_t = np.full(len(Xv), SOURCE_DOMAIN), np.full(len(Xt), TARGET_DOMAIN)
    X_eval, y_eval = np.concatenate([Xv, Xt]), np.r_[yv, np.full(len(Xt), MASKED)]
    sd_eval = np.r_[sd_v, sd_t]
    correct: list[str] = []

    def source_val_accuracy() -> float:
        right = np.asarray(_call(estimator.predict, Xv, sd_v)) == yv
        correct.append("".join("1" if r else "0" for r in right))
        return float(np.mean(right) * 100)

    jobs: dict[str, Callable[[], float]] = {
        "source_val_accuracy": source_val_accuracy,
        "domain_error": lambda: domain_classifier_error(_features(estimator, Xv, sd_v),
                                                        _features(estimator, Xt, sd_t), seed=seed)}
    for name, scorer in _scorers(seed).items():
        jobs[name] = lambda scorer=scorer: float(scorer(estimator, X_eval, y_eval, sample_domain=sd_eval))
    scores = {}
    for name, job in jobs.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                scores[name] = job()
            except Exception as exc:  # noqa: BLE001 - one scorer's failure is recorded, not fatal
                scores[name] = math.nan
                errors[name] = _reason(exc)
        messages = list(dict.fromkeys(_reason(w.message) for w in caught
                                      if not issubclass(w.category, _LIBRARY_NOISE)))
        if messages:
            notes[name] = " | ".join(messages)
    return {**scores, "source_val_correct": correct[0]} if correct else scores


# ----------------------------------------------------------------------------- rules


def choose(candidates: Sequence[dict[str, Any]], criterion: str = "paper", *,
           n_val: int | None = None) -> tuple[int, str]:
    """Index (into ``candidates``) of the chosen one and the rule in words; ties go to the first.

    ``"paper"``: among candidates whose ``source_val_accuracy`` is within :data:`ACCURACY_GUARD`
    points of the best, the domain classifier closest to chance: the largest
    ``min(domain_error, 100 - domain_error)``. The paper says "the largest error"; an error above
    50 % is no better alignment but a classifier that is wrong out of fold, which happens when
    the training objective pushes each domain's items closer to the other domain's than to their
    own (a linear MMD estimate driven below zero), so it counts by its distance from chance, as the
    proxy A-distance 2|1 - 2 err| does. ``"domain"``: the same among every candidate (no guard).
    ``"schedule"`` (the training stage, :data:`dahash.selection_grids.SCHEDULE_GRID`): the first candidate
    (the paper's) unless another's ``source_val_accuracy`` exceeds it by more than one point and more than
    :data:`~dahash.selection_grids.SCHEDULE_MARGIN_SE` standard errors of the paired difference (both were
    scored on the same held-out rows, ``source_val_correct``); then the most accurate of those. Records
    without ``source_val_correct`` (saved before it was kept) count the first's binomial standard error on
    the ``n_val`` rows instead, a wider margin.
    Otherwise the largest value of the criterion's score (:data:`CRITERION_SCORE`; greater is better).
    """
    check_choice("criterion", criterion, RULES)
    if criterion == "schedule":
        return _choose_schedule(candidates, n_val)
    if criterion not in ("paper", "domain"):
        score = CRITERION_SCORE[criterion]
        best = _argmax([c.get(score, math.nan) for c in candidates])
        if best is None:
            raise DahashError(f"criterion {criterion!r}: no candidate has a finite {score} score")
        return best, f"{criterion}: the largest {score} ({candidates[best][score]:.4g})"
    accuracy = [c["source_val_accuracy"] for c in candidates]
    top = _argmax(accuracy)
    if top is None:
        raise DahashError(f"criterion {criterion!r}: no candidate has a finite source_val_accuracy")
    guard = ACCURACY_GUARD if criterion == "paper" else math.inf
    eligible = [i for i, a in enumerate(accuracy) if math.isfinite(a) and a >= accuracy[top] - guard - 1e-9]
    confusion = [min(candidates[i]["domain_error"], 100.0 - candidates[i]["domain_error"]) for i in eligible]
    best_local = _argmax(confusion)
    among = (f"the {len(eligible)} candidate(s) whose source_val_accuracy is within {ACCURACY_GUARD:g} point of the "
             f"best ({accuracy[top]:.2f})" if criterion == "paper" else "every candidate")
    if best_local is None:
        return top, f"{criterion}: no candidate among {among} has a domain_error; the best source_val_accuracy"
    best = eligible[best_local]
    return best, f"{criterion}: the domain_error closest to chance ({candidates[best]['domain_error']:.2f} %) among {among}"


def _choose_schedule(candidates: Sequence[dict[str, Any]], n_val: int | None) -> tuple[int, str]:
    """The ``"schedule"`` rule of :func:`choose`: a noise margin around the first (the paper's) candidate."""
    if not n_val:
        raise DahashError("the schedule rule needs the number of held-out source rows")
    accuracy = [c.get("source_val_accuracy", math.nan) for c in candidates]
    top = _argmax(accuracy)
    if top is None:
        raise DahashError("criterion 'schedule': no candidate has a finite source_val_accuracy")
    first = accuracy[0]
    if not math.isfinite(first):
        return top, f"schedule: the first candidate failed; the best source_val_accuracy ({accuracy[top]:.2f})"
    margins = [_paired_margin(candidates[0], c, n_val) for c in candidates]
    beyond = [i for i in range(1, len(candidates))
              if math.isfinite(accuracy[i]) and accuracy[i] > first + margins[i]]
    if beyond:
        best = max(beyond, key=lambda i: (accuracy[i], -i))
        return best, (f"schedule: source_val_accuracy {accuracy[best]:.2f} beats the first candidate's {first:.2f} by "
                      f"more than {margins[best]:.2f} points ({SCHEDULE_MARGIN_SE:g} standard errors of the "
                      f"difference on {n_val} rows; {len(beyond)} of {len(candidates) - 1} beat it)")
    return 0, (f"schedule: no source_val_accuracy beats the first candidate's {first:.2f} beyond "
               f"{SCHEDULE_MARGIN_SE:g} standard errors of the difference on {n_val} rows (the best: "
               f"{accuracy[top]:.2f}, margin {margins[top]:.2f})")


def _paired_margin(first: dict[str, Any], other: dict[str, Any], n_val: int) -> float:
    """Points by which ``other`` must beat ``first``: :data:`SCHEDULE_MARGIN_SE` standard errors of the mean
    paired difference of their held-out rows' correctness (the first's binomial one where a record has none),
    and at least one point."""
    a, b = first.get("source_val_correct"), other.get("source_val_correct")
    if isinstance(a, str) and isinstance(b, str) and len(a) == len(b) == n_val:
        diff = np.frombuffer(b.encode(), np.uint8).astype(float) - np.frombuffer(a.encode(), np.uint8)
        se = math.sqrt(float(np.mean(diff ** 2) - np.mean(diff) ** 2) / n_val)
    else:
        p = first.get("source_val_accuracy", math.nan) / 100.0
        se = math.sqrt(p * (1.0 - p) / n_val) if math.isfinite(p) else math.inf
    return max(1.0, SCHEDULE_MARGIN_SE * 100.0 * se)


def _argmax(values: Sequence[float]) -> int | None:
    """Index of the first largest finite value; None when none is finite."""
    best = None
    for i, v in enumerate(values):
        if v is not None and math.isfinite(v) and (best is None or v > values[best]):
            best = i
    return best


# ----------------------------------------------------------------------------- selection


def select_setting(make_estimator: Callable[[dict[str, Any]], Estimator],
                   grid: dict[str, Sequence[Any]] | Sequence[dict[str, Any]], Xs: Any, ys: Any, Xt: Any, *,
                   criterion: str = "paper", val_fraction: float = 0.2, seed: int = 0,
                   out: str | os.PathLike | None = None, progress: bool = True) -> Selection:
    """Fit ``make_estimator(setting)`` for every setting of ``grid`` on source-train + target, score it
    without target labels and choose one by ``criterion`` (one of :data:`CRITERIA`).

    The source (``Xs``, labels ``ys`` of any values) is split once, stratified by class and seeded,
    into train and ``val_fraction`` validation rows; every candidate sees the same split. The
    estimator is fitted on ``X = [source-train; Xt]``, ``y = [labels; -1]``, ``sample_domain =
    [1; -2]``, with labels encoded as ``0..C-1`` (what DEV needs), and scored as the module doc
    says. A candidate whose fit fails is kept with NaN scores and the reason. With ``out``,
    ``selection.json``, ``.csv`` and ``.md`` are written there, and each candidate's record in
    ``out/candidates/`` as it finishes (one that :func:`fit_candidates` saved is reused).
    """
    check_choice("criterion", criterion, RULES)
    candidates = expand_grid(grid)
    data = _SelectionData.of(Xs, ys, Xt, val_fraction, seed)
    bar = tqdm(candidates, desc="select", unit="candidate", disable=not progress, dynamic_ncols=True)
    records = []
    for index, params in enumerate(bar):
        bar.set_postfix_str(setting_text(params), refresh=False)
        records.append(_candidate(make_estimator, index, params, data, out))
    bar.close()
    if all("fit" in r["errors"] for r in records):
        raise DahashError(f"every candidate failed to fit; the first: {records[0]['errors']['fit']}")
    best, rule = choose(records, criterion, n_val=data.split["n_source_val"])
    selection = Selection(criterion, rule, best, dict(candidates[best]), records, data.split)
    if out is not None:
        selection.save(out)
    return selection


def fit_candidates(make_estimator: Callable[[dict[str, Any]], Estimator],
                   grid: dict[str, Sequence[Any]] | Sequence[dict[str, Any]], indices: Sequence[int], Xs: Any,
                   ys: Any, Xt: Any, *, out: str | os.PathLike, val_fraction: float = 0.2, seed: int = 0) -> None:
    """Fit and score the candidates ``indices`` of ``grid`` as :func:`select_setting` does, saving each in
    ``out/candidates/`` for it to reuse; each under a lock, so that two processes never fit one at once."""
    candidates = expand_grid(grid)
    data = _SelectionData.of(Xs, ys, Xt, val_fraction, seed)
    for index in indices:
        saved = Path(out) / CANDIDATES / f"{index:03d}.json"
        saved.parent.mkdir(parents=True, exist_ok=True)
        with DirectoryLock(saved.with_suffix(".lock")).held(stop_waiting=saved.exists) as mine:
            if mine:
                _candidate(make_estimator, index, candidates[index], data, out)


@dataclass
class _SelectionData:
    """The rows every candidate is fitted and scored on: the seeded stratified source split, and the target."""

    X_fit: np.ndarray
    y_fit: np.ndarray
    sd_fit: np.ndarray
    Xv: np.ndarray
    yv: np.ndarray
    Xt: np.ndarray
    classes: np.ndarray
    seed: int
    split: dict[str, Any]

    @classmethod
    def of(cls, Xs: Any, ys: Any, Xt: Any, val_fraction: float, seed: int) -> "_SelectionData":
        check_val_fraction(val_fraction)
        Xs, Xt = _matrix(Xs, "Xs"), _matrix(Xt, "Xt")
        if Xs.shape[1] != Xt.shape[1]:
            raise DataError(f"Xs has {Xs.shape[1]} features but Xt has {Xt.shape[1]}")
        ys = np.asarray(ys)
        if ys.shape != (len(Xs),):
            raise DataError(f"ys must hold one label per row of Xs ({len(Xs)}), got shape {ys.shape}")
        classes, y = np.unique(ys, return_inverse=True)
        train, val = _stratified_split(y, classes, val_fraction, seed)
        split = {"n_source_train": len(train), "n_source_val": len(val), "n_target": len(Xt),
                 "n_classes": len(classes), "val_fraction": val_fraction, "seed": seed}
        return cls(np.concatenate([Xs[train], Xt]), np.r_[y[train], np.full(len(Xt), MASKED)],
                   np.r_[np.full(len(train), SOURCE_DOMAIN), np.full(len(Xt), TARGET_DOMAIN)],
                   Xs[val], y[val], Xt, classes, seed, split)


def _candidate(make_estimator: Callable[[dict[str, Any]], Estimator], index: int, params: dict[str, Any],
               data: _SelectionData, out: str | os.PathLike | None) -> dict[str, Any]:
    """One candidate's record: fitted and scored, or as an interrupted selection saved it
    (``out/candidates/<index>.json``, written last)."""
    saved = Path(out) / CANDIDATES / f"{index:03d}.json" if out is not None else None
    if saved is not None and saved.exists():
        record = json.loads(saved.read_text())
        if record.get("params") == _plain(params) and record.get("split") == _plain(data.split):
            return {k: (math.nan if v is None and k in SCORES else v) for k, v in record.items() if k != "split"}
    estimator = make_estimator(dict(params))
    errors: dict[str, str] = {}
    notes: dict[str, str] = {}
    t0 = time.perf_counter()
    # scikit-learn's settings are per thread: skada's routing switch, made on import, is not on in a
    # thread that did not import it (a Dask worker's task threads).
    with config_context(enable_metadata_routing=True):
        try:
            estimator.fit(data.X_fit, data.y_fit, sample_domain=data.sd_fit)
        except Exception as exc:  # noqa: BLE001 - a diverging candidate is a result, not a crash
            seconds = time.perf_counter() - t0
            errors["fit"] = _reason(exc)
            scores = {name: math.nan for name in SCORES}
        else:
            seconds = time.perf_counter() - t0
            scores = _score(estimator, data.Xv, data.yv, data.Xt, data.seed, errors, notes)
            if saved is not None:  # before the record, whose presence marks the candidate finished
                _save_predictions(saved.parent / PREDICTIONS.format(index=index), estimator, data.Xt, data.classes,
                                  errors)
    record = {"index": index, "params": dict(params), **scores, "fit_seconds": seconds, "errors": errors,
              "warnings": notes}
    if saved is not None:
        write_json(saved, _plain({**record, "split": data.split}))
    return record


def _save_predictions(path: Path, estimator: Estimator, Xt: np.ndarray, classes: np.ndarray,
                      errors: dict[str, str]) -> None:
    """The candidate's predicted class of every target row, as values of ``classes``, written atomically
    to ``path`` (no label is read: what a validator study later holds against the target's labels)."""
    try:
        predicted = np.asarray(_call(estimator.predict, Xt, np.full(len(Xt), TARGET_DOMAIN)))
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, classes[predicted.astype(np.int64)], allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - the scores stand without it
        errors["predictions"] = _reason(exc)


def check_val_fraction(val_fraction: Any) -> None:
    """ConfigError unless ``val_fraction`` is a number in (0, 1)."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be a number strictly between 0 and 1, got {val_fraction!r}")


def _stratified_split(y: np.ndarray, classes: np.ndarray, val_fraction: float,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and validation row indices, stratified by class and seeded."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y, minlength=len(classes))
    if counts.min() < 2:
        small = int(counts.argmin())
        raise DataError(f"source class {classes[small]!r} has {counts[small]} sample(s); the stratified "
                        "validation split needs at least 2 per class")
    try:
        train, val = train_test_split(np.arange(len(y)), test_size=val_fraction, stratify=y, random_state=seed)
    except ValueError as exc:
        raise DataError(f"val_fraction {val_fraction!r} cannot split {len(y)} source rows of {len(classes)} "
                        f"classes ({_reason(exc)})") from None
    return np.sort(train), np.sort(val)


# ----------------------------------------------------------------------------- helpers


def _matrix(X: Any, name: str = "features") -> np.ndarray:
    """A 2-D float array (torch tensors detached, more dimensions flattened); DataError otherwise."""
    if hasattr(X, "detach"):
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    if X.ndim > 2:
        X = X.reshape(len(X), -1)
    if X.ndim != 2:
        raise DataError(f"{name} must be a 2-D array (n_samples, n_features), got shape {X.shape}")
    return X


def _reason(exc: BaseException | Warning | str) -> str:
    """One short line describing an exception or warning."""
    text = " ".join(str(exc).split())
    if isinstance(exc, BaseException):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[:_MAX_REASON - 3] + "..."


def setting_text(params: dict[str, Any]) -> str:
    """``gamma=500, epochs=100``."""
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "(defaults)"


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars as Python ones, tuples as lists and non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _cell(value: Any) -> str:
    """A parameter value in the Markdown table."""
    return json.dumps(_plain(value)) if isinstance(value, (list, tuple, dict)) else str(value)


def _csv_value(value: Any) -> Any:
    """A parameter value in the CSV (lists as JSON)."""
    return json.dumps(_plain(value)) if isinstance(value, (list, tuple, dict)) else ("" if value is None else value)


def _number(value: float, spec: str) -> str:
    """A score in the Markdown table; NaN as "-"."""
    return "-" if not math.isfinite(value) else format(value, spec)
