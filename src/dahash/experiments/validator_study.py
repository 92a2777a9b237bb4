"""The validator study (docs/selection.md): how well each label-free rule picks a setting, measured against target labels.

Musgrave, Belongie and Lim (arXiv 2022) judge a validator by its rank correlation with target accuracy
and by the accuracy of the model it picks; so does this module. Its input is finished selections, each
candidate's scores and its saved target predictions (:mod:`dahash.runs.selection`), made without target
labels; only here, after every score is written, are the target's labels read, to score the candidates
and then the rules that chose among them.

Per validator and (method, task): Spearman's rank correlation between its score and the candidates'
target accuracy, and its **regret**, the best candidate's accuracy minus the chosen one's. The rule that
may change the default criterion was written in docs/selection.md before the study ran; :func:`decide`
applies it.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.stats import spearmanr

from dahash.errors import DataError
from dahash.executors import ExecutorConfig
from dahash.experiments.demo import demo_config, prepare_data
from dahash.experiments.reproduce import SELECTIONS, TABLE_ENGINE, ReproduceConfig, resolve_tasks
from dahash.experiments.tables import markdown_table
from dahash.images.datasets import domain_code
from dahash.images.features import image_feature_sets
from dahash.io import write_csv, write_text
from dahash.runs.selection import CANDIDATES, PREDICTIONS, SCORES, Selection, choose
from dahash.runs.tuning import select_config
from dahash.selection_grids import CRITERIA, CRITERION_SCORE, SELECTION_GRIDS, VAL_FRACTION
from dahash.training.methods import DEEP_METHODS, method_config

#: The halves of the 12 Office-Caltech-10 tasks, named before the study ran (docs/selection.md): the
#: challenger is chosen on S, and must also beat the default on H.
SELECTION_HALF: tuple[str, ...] = ("A_C", "A_D", "C_W", "D_A", "D_W", "W_C")
HELD_OUT_HALF: tuple[str, ...] = ("A_W", "C_A", "C_D", "D_C", "W_A", "W_D")
DEFAULT_CRITERION = "paper"
#: A uniformly random candidate: the regret no validator should exceed.
RANDOM = "random"
#: A pick within this many points of the best counts as the best: a mean of equal accuracies, or one read back
#: from candidates.csv's 4 decimals, is off by rounding only (the smallest real difference is 100/n points).
BEST_TOLERANCE = 1e-6


@dataclass
class Group:
    """The candidates of one (method, task) selection, scored against the target's labels."""

    method: str
    task: str  # "A_C": the selection's folder name
    candidates: list[dict[str, Any]]  # the selection's records (params, every score), fitted ones only
    accuracy: np.ndarray  # each candidate's target accuracy (%)

    def chosen(self, criterion: str) -> int | None:
        """The candidate ``criterion`` picks (None when it cannot pick: every score NaN)."""
        try:
            return choose(self.candidates, criterion)[0]
        except Exception:  # noqa: BLE001 - a rule without finite scores picks nothing here
            return None

    def regret(self, criterion: str) -> float:
        """Best accuracy minus the chosen candidate's; for :data:`RANDOM`, the expected regret of a uniform pick."""
        if criterion == RANDOM:
            return float(self.accuracy.max() - self.accuracy.mean())
        index = self.chosen(criterion)
        return math.nan if index is None else float(self.accuracy.max() - self.accuracy[index])

    def correlation(self, criterion: str) -> float:
        """Spearman's rho between the criterion's score and target accuracy (NaN when undefined)."""
        if criterion == RANDOM:
            return math.nan
        score = np.array([validator_score(c, criterion) for c in self.candidates], dtype=float)
        keep = np.isfinite(score)
        if keep.sum() < 3 or np.ptp(score[keep]) == 0 or np.ptp(self.accuracy[keep]) == 0:
            return math.nan
        return float(spearmanr(score[keep], self.accuracy[keep]).statistic)


def validator_score(candidate: Mapping[str, Any], criterion: str) -> float:
    """The number ``criterion`` ranks by, greater is better: minus the domain error's distance from chance for
    the paper's rule (with or without its guard), else the criterion's score."""
    if criterion in ("paper", "domain"):
        error = candidate.get("domain_error", math.nan)
        return -abs(float(error) - 50.0) if error is not None else math.nan
    value = candidate.get(CRITERION_SCORE[criterion], math.nan)
    return math.nan if value is None else float(value)


def load_group(directory: str | os.PathLike, method: str, task: str, target_classes: np.ndarray) -> Group:
    """The finished selection in ``directory`` with each candidate's target accuracy; ``target_classes`` holds
    the true class name of every target row, in the order the selection read them."""
    directory = Path(directory)
    if not (directory / "selection.json").exists():
        raise DataError(f"{directory}: no finished selection (selection.json)")
    selection = Selection.load(directory)
    kept, accuracy = [], []
    for c in selection.candidates:
        path = directory / CANDIDATES / PREDICTIONS.format(index=c["index"])
        if c["errors"].get("fit") or not path.exists():
            continue  # a failed fit has no model to score
        predicted = np.load(path, allow_pickle=False)
        if predicted.shape != target_classes.shape:
            raise DataError(f"{path}: {len(predicted)} predictions for {len(target_classes)} target rows")
        kept.append(c)
        accuracy.append(float((predicted.astype(str) == target_classes.astype(str)).mean() * 100))
    if not kept:
        raise DataError(f"{directory}: no candidate has saved target predictions")
    return Group(method, task, kept, np.array(accuracy))


def summary(groups: Sequence[Group], criteria: Sequence[str] = (*CRITERIA, RANDOM)) -> dict[str, dict[str, float]]:
    """Per criterion: mean regret, mean rank correlation, and in how many groups it picked the best candidate."""
    out = {}
    for criterion in criteria:
        regrets = np.array([g.regret(criterion) for g in groups])
        rhos = np.array([g.correlation(criterion) for g in groups])
        out[criterion] = {"regret": _nanmean(regrets), "rho": _nanmean(rhos),
                          "best_picked": int(np.sum(regrets <= BEST_TOLERANCE)), "groups": int(np.isfinite(regrets).sum())}
    return out


def decide(selection_half: Mapping[str, Mapping[str, float]],
           held_out: Mapping[str, Mapping[str, float]]) -> tuple[str, str]:
    """The declared rule (docs/selection.md): the challenger has the lowest mean regret on S (ties: the higher
    mean rank correlation); it replaces the default only if its mean regret on H is lower too. Returns the
    criterion to use by default and the reason in words."""
    ranked = sorted((c for c in selection_half if c != RANDOM and math.isfinite(selection_half[c]["regret"])),
                    key=lambda c: (selection_half[c]["regret"], -_finite(selection_half[c]["rho"])))
    challenger = ranked[0]
    s, h = selection_half, held_out
    if challenger == DEFAULT_CRITERION:
        return DEFAULT_CRITERION, (f"the default '{DEFAULT_CRITERION}' has the lowest mean regret on S "
                                   f"({s[challenger]['regret']:.2f}); it stays")
    if h[challenger]["regret"] < h[DEFAULT_CRITERION]["regret"]:
        return challenger, (f"'{challenger}' has the lowest mean regret on S ({s[challenger]['regret']:.2f} against "
                            f"{s[DEFAULT_CRITERION]['regret']:.2f} for '{DEFAULT_CRITERION}') and a lower one on H "
                            f"({h[challenger]['regret']:.2f} against {h[DEFAULT_CRITERION]['regret']:.2f}): it becomes "
                            "the default")
    return DEFAULT_CRITERION, (f"'{challenger}' has the lowest mean regret on S ({s[challenger]['regret']:.2f} against "
                               f"{s[DEFAULT_CRITERION]['regret']:.2f}) but not on H ({h[challenger]['regret']:.2f} "
                               f"against {h[DEFAULT_CRITERION]['regret']:.2f}): '{DEFAULT_CRITERION}' stays")


def write_study(out: str | os.PathLike, parts: Mapping[str, Sequence[Group]]) -> dict[str, Any]:
    """``study.md`` (per part and criterion: mean regret, mean rank correlation, best picked; per method the
    regret; the rule's decision when S and H are both given) and ``candidates.csv`` (every candidate's
    scores and target accuracy) in ``out``; returns the summaries and the decision."""
    out = Path(out)
    criteria = (*CRITERIA, RANDOM)
    summaries = {name: summary(groups, criteria) for name, groups in parts.items() if groups}
    header = ["criterion"] + [f"{name}: {what}" for name in summaries for what in ("regret", "rho", "best")]
    rows = []
    for criterion in criteria:
        row = [criterion]
        for name in summaries:
            s = summaries[name][criterion]
            row += [_fmt(s["regret"], ".2f"), _fmt(s["rho"], ".2f"), f"{s['best_picked']}/{s['groups']}"]
        rows.append(row)
    text = ("# Validator study\n\nPer part: mean regret (best candidate's target accuracy minus the chosen one's, "
            "points), mean Spearman rank correlation between the validator's score and target accuracy within "
            "each (method, task), and in how many (method, task) groups the validator picked the best candidate. "
            f"`{RANDOM}`: the expected regret of a uniformly random candidate.\n\n" + markdown_table(header, rows))
    for name, groups in parts.items():
        if not groups:
            continue
        methods = list(dict.fromkeys(g.method for g in groups))
        per_method = [[m] + [_fmt(summary([g for g in groups if g.method == m], (c,))[c]["regret"], ".2f")
                             for c in criteria] for m in methods]
        text += (f"\n## {name}: mean regret per method (points)\n\n"
                 + markdown_table(["method", *criteria], per_method))
    decision = None
    if "S" in summaries and "H" in summaries:
        decision = decide(summaries["S"], summaries["H"])
        text += f"\n## The declared rule\n\nDefault criterion: **{decision[0]}**: {decision[1]}.\n"
    write_text(out / "study.md", text)
    names = list(dict.fromkeys(k for groups in parts.values() for g in groups for c in g.candidates
                               for k in c["params"]))
    csv_rows = []
    for name, groups in parts.items():
        for g in groups:
            chosen = {c: g.chosen(c) for c in CRITERIA}
            for i, (c, acc) in enumerate(zip(g.candidates, g.accuracy)):
                csv_rows.append([name, g.method, g.task, c["index"], *(_param(c["params"].get(n)) for n in names),
                                 *(_csv(c.get(s)) for s in SCORES), f"{acc:.4f}",
                                 " ".join(k for k, v in chosen.items() if v == i)])
    write_csv(out / "candidates.csv", ["part", "method", "task", "index", *names, *SCORES, "target_accuracy",
                                       "chosen_by"], csv_rows)
    return {"summaries": summaries, "decision": decision}


def _nanmean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else math.nan


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def _fmt(value: float, spec: str) -> str:
    return "-" if not math.isfinite(value) else format(value, spec)


def _csv(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else repr(float(value))


def _param(value: Any) -> Any:
    return "" if value is None else json.dumps(value) if isinstance(value, (list, dict)) else value


def reproduce_groups(run_dir: str | os.PathLike, *, progress: bool = False) -> dict[str, list[Group]]:
    """Every finished selection of a ``dahash reproduce --select-all`` in ``run_dir``, scored against the
    target's labels; on Office-Caltech-10's 12 tasks split into the halves S and H, else one part."""
    run_dir = Path(run_dir)
    settings = run_dir / "reproduce.yaml"
    if not settings.exists():
        raise DataError(f"{run_dir}: no reproduce.yaml; give the --out of a 'dahash reproduce --select-all'")
    config = ReproduceConfig(**yaml.safe_load(settings.read_text()))
    tasks = {f"{domain_code(s)}_{domain_code(t)}": (s, t) for s, t in resolve_tasks(config)}
    split = config.dataset == "office-caltech"
    parts: dict[str, list[Group]] = {"S": [], "H": []} if split else {"all": []}
    labels: dict[str, np.ndarray] = {}
    for method_dir in sorted((run_dir / SELECTIONS).iterdir()) if (run_dir / SELECTIONS).is_dir() else []:
        for task_dir in sorted(method_dir.iterdir()):
            if task_dir.name not in tasks or not (task_dir / "selection.json").exists():
                continue
            if task_dir.name not in labels:  # read only now, after every score was written
                source, target = image_feature_sets(config.data_root, *tasks[task_dir.name], backbone=config.backbone,
                                                    weights=config.weights, cache_dir=config.cache_dir,
                                                    decode=config.decode, progress=progress, engine=TABLE_ENGINE)
                labels[task_dir.name] = np.asarray(source.classes)[target.y]
            part = ("S" if task_dir.name in SELECTION_HALF else "H") if split else "all"
            method = method_dir.name.removesuffix("-sel")
            parts[part].append(load_group(task_dir, method, task_dir.name, labels[task_dir.name]))
    return parts


def demo_groups(out: str | os.PathLike, *, epochs: int | None = None, progress: bool = False,
                executor: ExecutorConfig | None = None) -> list[Group]:
    """The demo's data (printed -> handwritten digits) with NoDA's and DAH's candidates selected on it in
    ``out/selection/<method>`` (resumable; no target label read; each candidate a cell of ``executor`` when
    given), then scored against its labels."""
    out = Path(out).absolute()  # the feature files' paths, as a worker elsewhere must read them
    source, target = prepare_data(out)
    base = demo_config(out, epochs)
    groups = []
    for method in ("NoDA", "DAH"):
        config = method_config(method, {k: v for k, v in base.to_dict().items() if k not in DEEP_METHODS[method]})
        directory = out / SELECTIONS / method
        select_config(config, SELECTION_GRIDS[method], method=method, val_fraction=VAL_FRACTION, out=directory,
                      progress=progress, executor=executor)
        groups.append(load_group(directory, method, "printed_handwritten", np.asarray(source.classes)[target.y]))
    return groups


def read_candidates(path: str | os.PathLike) -> dict[str, list[Group]]:
    """The groups of a ``candidates.csv`` that :func:`write_study` wrote, by part: the study remade from the
    committed file alone (docs/results), without the runs."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        needed = {"part", "method", "task", "index", "target_accuracy", *SCORES}
        if not needed <= set(reader.fieldnames or []):
            raise DataError(f"{path}: not a study's candidates.csv (no column {', '.join(sorted(needed - set(reader.fieldnames or [])))})")
        params = [c for c in reader.fieldnames or [] if c not in needed | {"chosen_by"}]
        grouped: dict[tuple[str, str, str], list[dict[str, str]]] = {}
        for row in reader:
            grouped.setdefault((row["part"], row["method"], row["task"]), []).append(row)
    parts: dict[str, list[Group]] = {}
    for (part, method, task), rows in grouped.items():
        candidates = [{"index": int(r["index"]), "errors": {}, "params": {p: r[p] for p in params if r[p] != ""},
                       **{s: float(r[s]) if r[s] != "" else math.nan for s in SCORES}} for r in rows]
        parts.setdefault(part, []).append(Group(method, task, candidates,
                                                np.array([float(r["target_accuracy"]) for r in rows])))
    return parts
