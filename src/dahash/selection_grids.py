"""What the label-free selection searches: each method's candidate settings, the budget, the source split
and the rules that pick a candidate (docs/selection.md).

Plain data, importing nothing heavier than the standard library: the command line builds its help from
it, and the run layer's default ``gamma="auto"`` reads the same grids as ``dahash reproduce``'s ``-sel`` rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: Candidates of the label-free selection per task (docs/selection.md), at most this many per method.
SELECTION_BUDGET = 7
#: Fraction of the source held out to score candidates, and the seed of that split: the same for every method.
VAL_FRACTION, SELECTION_SEED = 0.2, 0
#: Selection rules (docs/selection.md): the paper's domain-classifier rule with its source-accuracy guard,
#: the same without the guard, the best held-out source accuracy, or the best value of one skada scorer.
CRITERIA: tuple[str, ...] = ("paper", "domain", "source", "dev", "iw", "snd", "entropy", "mixval", "mano")
#: Every rule :func:`dahash.runs.selection.choose` applies: the criteria, and ``schedule``, the rule of the
#: training-schedule stage (:data:`SCHEDULE_GRID`), which only that stage uses.
RULES: tuple[str, ...] = (*CRITERIA, "schedule")
#: The score each criterion other than the domain-classifier rules maximises.
CRITERION_SCORE: dict[str, str] = {"source": "source_val_accuracy", "dev": "dev", "iw": "iw", "snd": "snd",
                                   "entropy": "entropy", "mixval": "mixval", "mano": "mano"}
#: The value of a tuned setting that asks for the label-free selection.
AUTO = "auto"


def _one_at_a_time(default: dict[str, Any], **values: Sequence[Any]) -> list[dict[str, Any]]:
    """``default``, then each key's other ``values`` with the rest at ``default`` (how the papers'
    sensitivity studies vary their parameters)."""
    grid = [dict(default)]
    for key, options in values.items():
        grid += [{**default, key: v} for v in options if v != default[key]]
    return grid


#: DAH's MMD weights: three decades around the authors' 5000 (Venkateswara et al., CVPR 2017, Sec. 5.2).
DAH_GAMMAS: tuple[float, ...] = (500.0, 5000.0, 50000.0)
#: DAH's MMD estimates the DAH grid tries when nothing fixes one (docs/adaptation.md).
DAH_ESTIMATORS: tuple[str, ...] = ("authors", "balanced")


def dah_grid(estimators: Sequence[str] = DAH_ESTIMATORS) -> list[dict[str, Any]]:
    """gamma = 0 (no MMD, so no estimator), then every gamma of :data:`DAH_GAMMAS` with each of ``estimators``."""
    return [{"gamma": 0.0}] + [{"gamma": gamma, "mmd_estimator": estimator} for estimator in estimators
                               for gamma in DAH_GAMMAS]


#: Per method, the settings its own paper tunes, written down before any result of a selected method
#: was seen (NoDA's training lengths: before the digits experiment of docs/selection.md ran); every
#: grid holds the fixed method's setting. CORAL has none: Sun et al. (AAAI 2016) fix its one parameter
#: (C + I) and tune nothing.
SELECTION_GRIDS: dict[str, list[dict[str, Any]]] = {
    # Gong et al. (CVPR 2012) pick the subspace dimension d per task (their subspace disagreement
    # measure; Ex_GFK.m lists 10 or 20 per pair): values around those, up to 100.
    "GFK": [{"n_components": d} for d in (10, 20, 30, 40, 50, 70, 100)],
    # Pan et al. (TNN 2011) tune mu and the number of components m per task; Long et al. (ICCV 2013)
    # study JDA's lambda over decades and k over tens to hundreds, one at a time around their
    # run_surf.m setting (k = 100, lambda = 1). TCA gets the same candidates: it is JDA's first solve.
    "TCA": _one_at_a_time({"n_components": 100, "mu": 1.0}, mu=(0.01, 0.1, 10.0), n_components=(20, 50, 200)),
    "JDA": _one_at_a_time({"n_components": 100, "lam": 1.0}, lam=(0.01, 0.1, 10.0), n_components=(20, 50, 200)),
    # Fernando et al. (ICCV 2013) choose d with a stability bound whose two constants they set by
    # hand; the same candidates as GFK, the other PCA-subspace method.
    "SA": [{"n_components": d} for d in (10, 20, 30, 40, 50, 70, 100)],
    # Courty et al. (TPAMI 2017) validate the entropic weight per task. Half-decades of the
    # median cost (POT's cost normalisation), so that one grid fits any feature scale, besides the
    # fixed setting (reg_e = 1 on the raw cost, close to exact OT on z-scored backbone features).
    "OT": [{"norm": None, "reg_e": 1.0}] + [{"norm": "median", "reg_e": r} for r in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)],
    # Long et al. (ICML 2015) study DAN's MMD trade-off lambda over {0.1, 0.2, 0.5, 1, 2}.
    "DAN": [{"gamma": g} for g in (0.1, 0.2, 0.5, 1.0, 2.0)],
    # Ganin et al. (JMLR 2016) choose the adaptation weight lambda among log-spaced values from 0.01
    # to 1 by reverse validation in their shallow experiments; 1 is their Office setting.
    "DANN": [{"adversarial_weight": w} for w in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)],
    # NoDA has no weight to tune; its one free setting is how long it fits the source (the paper's
    # 300 epochs were set for fine-tuning; on weak features a head fits the source much sooner).
    "NoDA": [{"epochs": e} for e in (10, 20, 30, 50, 100, 300)],
    # DAH (Venkateswara et al., CVPR 2017, Sec. 5.2) chose gamma with a domain classifier: gamma over
    # three decades (gamma = 0 leaves the MMD out, so the estimator is moot there) with the
    # authors' and the class-balanced MMD estimate.
    "DAH": dah_grid(),
}

#: Deep methods whose ``gamma="auto"`` (the default of ``dahash train`` and :class:`dahash.DAH`) is chosen
#: per task: the method -> its candidates. DAH-e is DAH without the entropy term and searches DAH's
#: grid; DAH-paper and DAH-cw fix their MMD estimate, so they search its gammas with that estimate.
GAMMA_GRIDS: dict[str, list[dict[str, Any]]] = {
    "DAH": SELECTION_GRIDS["DAH"],
    "DAH-e": SELECTION_GRIDS["DAH"],
    "DAH-paper": dah_grid(("authors",)),
    "DAH-cw": dah_grid(("class-weighted",)),
    "DAN": SELECTION_GRIDS["DAN"],
}
#: The setting each deep method's ``dahash train`` chooses without target labels unless it is given
#: (DANN's weight multiplies its domain loss; NoDA's training length is chosen only on request).
TUNED_SETTING: dict[str, str] = {**{m: "gamma" for m in GAMMA_GRIDS}, "DANN": "adversarial_weight"}


def auto_grid(method: str, fixed: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The candidates ``dahash train --method METHOD`` searches when its tuned setting is not given:
    ``METHOD``'s grid, keeping the candidates that agree with every setting in ``fixed`` (the ones a
    user gave); an empty list when the method tunes nothing."""
    grid = GAMMA_GRIDS.get(method) or (SELECTION_GRIDS.get(method, []) if method in TUNED_SETTING else [])
    fixed = dict(fixed or {})
    return [dict(c) for c in grid if all(c.get(k, v) == v for k, v in fixed.items())]


#: The training stage's candidates (issue 31): how a hash head on fixed features trains when the user gives
#: neither its schedule (learning rate from ``lr_start`` to ``lr_end``, log-spaced, over ``epochs``) nor its
#: hidden layers' regularisation. The paper's first (Sec. 5.2: its schedule, set for fine-tuning a pretrained
#: VGG-F, whose fc6/fc7 have no BatchNorm), then a tenth of its length at 10 and 100 times its step; each
#: with the plain hidden layers and with BatchNorm before each hidden ReLU and dropout 0.5 after it (what a
#: head trained from scratch usually has; docs/own-features.md). Chosen on held-out *source* accuracy alone
#: (the first grid's records on bag-of-words and EfficientNet features: the paper's length at a larger step
#: never beat the tenth of it, nor the smallest step at a tenth of the length the larger steps), and written
#: before any target accuracy was computed with it.
SCHEDULE_GRID: list[dict[str, Any]] = [
    {"lr_start": lr, "lr_end": lr / 10, "epochs": epochs, "hidden_bn": bn, "hidden_dropout": dropout}
    for bn, dropout in ((False, 0.0), (True, 0.5))
    for lr, epochs in ((1e-4, 300), (1e-3, 30), (1e-2, 30))
]
#: The settings the stage sets, in two groups, the schedule and the hidden layers' regularisation: a group
#: with any setting given by the user is not chosen (it trains as given; the other group still is).
SCHEDULE_GROUPS: tuple[tuple[str, ...], ...] = (("lr_start", "lr_end", "epochs"), ("hidden_bn", "hidden_dropout"))
#: The methods whose schedule is chosen: the hash head's (the paper's schedule). The softmax baselines
#: keep their own papers' schedules (DAN, DANN: Long et al., ICML 2015; Ganin et al., JMLR 2016).
SCHEDULED_METHODS: tuple[str, ...] = ("NoDA", "DAH", "DAH-e", "DAH-paper", "DAH-cw")
#: The stage's rule keeps the paper's candidate unless another one's held-out source accuracy is higher by
#: more than this many standard errors of the paired difference on the same held-out rows (and one point).
SCHEDULE_MARGIN_SE = 2.0
#: What ``--schedule`` takes: ``paper`` trains the method's schedule, ``auto`` chooses it (:func:`auto_schedule`).
SCHEDULE_MODES: tuple[str, ...] = ("paper", AUTO)


def auto_schedule(method: str, given: Mapping[str, Any], mode: str = AUTO) -> list[dict[str, Any]]:
    """The candidates the training stage tries for ``method``: :data:`SCHEDULE_GRID` without each group of
    :data:`SCHEDULE_GROUPS` that ``given`` (the settings the user gave) sets a setting of, duplicates dropped;
    an empty list when none is chosen: ``mode`` is not ``auto``, ``method`` keeps its own paper's schedule,
    or ``given`` sets both groups."""
    if mode != AUTO or method not in SCHEDULED_METHODS:
        return []
    fixed = {k for group in SCHEDULE_GROUPS if any(k in given for k in group) for k in group}
    kept = [{k: v for k, v in c.items() if k not in fixed} for c in SCHEDULE_GRID]
    unique = [dict(c) for i, c in enumerate(kept) if c not in kept[:i]]
    return unique if len(unique) > 1 else []
