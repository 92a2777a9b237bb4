"""The names of the experiments, apart from the code that runs them: datasets and their domains,
the methods of the accuracy and retrieval tables, and each method's label-free selection grid.

The command line builds its help from these, so they import nothing heavier than the standard library;
the selection grids themselves live one layer down, in :mod:`dahash.selection_grids`.
"""

from __future__ import annotations

from dahash.selection_grids import (  # noqa: F401 - the names the command line and the experiments read
    CRITERIA,
    SELECTION_BUDGET,
    SELECTION_GRIDS,
    SELECTION_SEED,
    VAL_FRACTION,
)

# The paper's domain codes per dataset (Sec. 5.1): tasks are all ordered pairs.
DATASET_DOMAINS: dict[str, tuple[str, ...]] = {
    "office-home": ("Ar", "Cl", "Pr", "Rw"),
    "office31": ("A", "D", "W"),
    "office-caltech": ("A", "C", "D", "W"),
}
SHALLOW = ("GFK", "TCA", "CORAL", "JDA", "SA", "OT")
DEEP = ("Deep", "DAN", "DANN", "NoDA", "DAH-e", "DAH-paper", "DAH", "DAH-cw")
#: Methods whose setting is chosen per task without target labels (:mod:`dahash.runs.selection`) before
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
