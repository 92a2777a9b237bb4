"""The names of the experiments, apart from the code that runs them: datasets and their domains,
the methods of the accuracy and retrieval tables, and each method's label-free selection grid.

The command line builds its help from these, so they import nothing heavier than the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The paper's domain codes per dataset (Sec. 5.1): tasks are all ordered pairs.
DATASET_DOMAINS: dict[str, tuple[str, ...]] = {
    "office-home": ("Ar", "Cl", "Pr", "Rw"),
    "office31": ("A", "D", "W"),
    "office-caltech": ("A", "C", "D", "W"),
}
SHALLOW = ("GFK", "TCA", "CORAL", "JDA", "SA", "OT")
DEEP = ("Deep", "DAN", "DANN", "NoDA", "DAH-e", "DAH-paper", "DAH", "DAH-cw")
#: Candidates of the label-free selection per task (docs/selection.md), at most this many per method.
SELECTION_BUDGET = 7
#: Fraction of the source held out to score candidates, and the seed of that split: the same for every method.
VAL_FRACTION, SELECTION_SEED = 0.2, 0


def _one_at_a_time(default: dict[str, Any], **values: Sequence[Any]) -> list[dict[str, Any]]:
    """``default``, then each key's other ``values`` with the rest at ``default`` (how the papers'
    sensitivity studies vary their parameters)."""
    grid = [dict(default)]
    for key, options in values.items():
        grid += [{**default, key: v} for v in options if v != default[key]]
    return grid


#: Per method, the settings its own paper tunes, written down before any result of a selected method
#: was seen; every grid holds the fixed method's setting. CORAL has none: Sun et al. (AAAI 2016)
#: fix its one parameter (C + I) and tune nothing.
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
    # DAH (Venkateswara et al., CVPR 2017, Sec. 5.2) chose gamma with a domain classifier: gamma over
    # three decades (gamma = 0 leaves the MMD out, so the estimator is moot there) with the
    # authors' and the class-balanced MMD estimate.
    "DAH": [{"gamma": 0.0}] + [{"gamma": gamma, "mmd_estimator": estimator} for estimator in ("authors", "balanced")
                               for gamma in (500.0, 5000.0, 50000.0)],
}
#: Methods whose setting is chosen per task without target labels (:mod:`dahash.experiments.selection`) before
#: their cells run: the name in the tables -> the method whose grid it searches.
SELECTED: dict[str, str] = {f"{m}-sel": m for m in SELECTION_GRIDS}
#: Every method ``--methods`` takes: the paper's rows (Tables 2 and 3, in order; Deep and NoDA are
#: the source-only references), each followed by its selected twin.
ALL_METHODS: tuple[str, ...] = tuple(name for m in SHALLOW + DEEP
                                     for name in (m, f"{m}-sel") if name == m or name in SELECTED)
#: The default rows: every fixed method and DAH-sel (the other twins double the cost; ``with_selected``).
METHODS: tuple[str, ...] = SHALLOW + DEEP + ("DAH-sel",)

#: The hashing methods of the retrieval tables (Tables 4, 6, 7), in the paper's column order.
RETRIEVAL_METHODS = ("NoDA", "ITQ", "KMeans", "BA", "BDNN", "DAH", "SuH")
#: Selection rules: the paper's domain-classifier rule, or the best value of one skada scorer.
CRITERIA: tuple[str, ...] = ("paper", "dev", "iw", "snd", "entropy")
