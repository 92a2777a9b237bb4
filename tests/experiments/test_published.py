"""The paper's published tables: shapes, averages, spot values, and a digit-for-digit check."""

import re
from pathlib import Path

import numpy as np
import pytest

from dahash.experiments.published import NOTE, PUBLISHED, PublishedTable, published_rows

# (key, rows, task columns before Avg, tolerance of the printed Avg)
SHAPES = [
    ("office31-accuracy", 8, 6, 0.01),
    ("office-home-accuracy", 8, 12, 0.01),
    ("office-home-accuracy-bits", 5, 12, 0.01),
    ("map-64bits", 7, 6, 0.001),
    ("office-home-map-16bits", 7, 4, 0.001),
    ("office-home-map-128bits", 7, 4, 0.001),
]


@pytest.mark.parametrize("key, n_rows, n_tasks, tol", SHAPES)
def test_avg_column_is_the_mean_of_the_task_columns(key: str, n_rows: int, n_tasks: int, tol: float) -> None:
    table = PUBLISHED[key]
    assert len(table.rows) == n_rows
    assert len(table.tasks) == n_tasks + 1 and table.tasks[-1] == "Avg"
    for method, values in table.rows.items():
        assert len(values) == n_tasks + 1, method
        # The paper rounds each entry and its Avg separately: within half a unit of the last digit.
        assert abs(np.mean(values[:-1]) - values[-1]) <= tol / 2 + 1e-9, (key, method)


def test_per_dataset_views_of_table_4_have_no_avg() -> None:
    o31, oh = PUBLISHED["office31-map"], PUBLISHED["office-home-map"]
    assert o31.tasks == ("Amazon", "Webcam") and oh.tasks == ("Art", "Clipart", "Product", "Real-World")
    full = PUBLISHED["map-64bits"]
    for method in full.rows:
        assert o31.rows[method] + oh.rows[method] == full.rows[method][:-1]


def test_spot_values_read_from_the_paper() -> None:
    assert published_rows("office31").value("DAH", "A→W") == 68.30
    assert published_rows("office31").value("DANN", "D→A") == 56.25
    assert published_rows("office31").value("GFK", "Avg") == 62.32
    assert published_rows("office-home").value("DAH", "Ar→Cl") == 31.64
    assert published_rows("office-home").value("TCA", "Rw→Pr") == 48.68
    assert published_rows("office-home").value("DAH", "Avg") == 45.54
    assert published_rows("office-home", "accuracy-bits").value("DAH-128", "Rw→Pr") == 64.97
    assert published_rows("office-home", "accuracy-bits").value("DAH-16", "Avg") == 31.36
    assert published_rows("office-home", "map").value("DAH", "Real-World") == 0.533
    assert published_rows("office31", "map").value("SuH", "Webcam") == 0.939
    assert PUBLISHED["map-64bits"].value("BDNN", "Avg") == 0.382
    assert published_rows("office-home", "map-16bits").value("BDNN", "Product") == 0.313
    assert published_rows("office-home", "map-128bits").column("Clipart")["SuH"] == 0.346


def test_supplementary_table_5_repeats_table_3() -> None:
    t3, t5 = PUBLISHED["office-home-accuracy"], PUBLISHED["office-home-accuracy-bits"]
    assert t5.tasks == t3.tasks
    assert t5.rows["DAN"] == t3.rows["DAN"] and t5.rows["DANN"] == t3.rows["DANN"]
    assert t5.rows["DAH-64"] == t3.rows["DAH"]


def test_tasks_use_the_paper_codes() -> None:
    assert published_rows("office31").tasks == ("A→D", "A→W", "D→A", "D→W", "W→A", "W→D", "Avg")
    assert published_rows("office-home").tasks[:3] == ("Ar→Cl", "Ar→Pr", "Ar→Rw")
    assert list(published_rows("office31").rows) == ["GFK", "TCA", "CORAL", "JDA", "DAN", "DANN", "DAH-e", "DAH"]
    assert list(PUBLISHED["map-64bits"].rows) == ["NoDA", "ITQ", "KMeans", "BA", "BDNN", "DAH", "SuH"]


def test_lookup_and_notes() -> None:
    assert published_rows("office-caltech") is None
    assert published_rows("office-caltech", "map") is None
    assert published_rows("office31", "accuracy-bits") is None
    for table in PUBLISHED.values():
        assert isinstance(table, PublishedTable) and table.note.startswith(NOTE)
    assert NOTE == "published by Venkateswara et al. (CVPR 2017) with VGG-F; not rerun"
    with pytest.raises(ValueError, match="unknown dataset 'office-31'"):
        published_rows("office-31")
    with pytest.raises(ValueError, match="unknown table 'mAP'"):
        published_rows("office31", "mAP")
    with pytest.raises(KeyError, match="no row 'DAH-x'"):
        published_rows("office31").value("DAH-x", "A→W")


def test_tables_are_frozen_and_own_their_rows() -> None:
    rows = {"X": (1.0, 2.0)}
    table = PublishedTable("t", "c", ("a", "Avg"), rows, NOTE)
    rows["X"] = (9.0, 9.0)
    assert table.rows["X"] == (1.0, 2.0)
    with pytest.raises(AttributeError):
        table.name = "u"  # type: ignore[misc]
    with pytest.raises(ValueError, match="row 'Y' has 1 values for 2 tasks"):
        PublishedTable("t", "c", ("a", "Avg"), {"Y": (1.0,)}, NOTE)


# --- digit for digit against the paper's text, where the checkout has it --------------------

def _paper() -> str | None:
    here = Path(__file__).resolve()
    for root in (here.parents[1], *here.parents[1].parents):
        candidate = root / "shared" / "paper" / "dah-cvpr2017.md"
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    return None


def _numeric_rows(text: str, caption_start: str) -> list[tuple[str, tuple[float, ...]]]:
    """Tab-separated rows of numbers following the line that starts with ``caption_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(caption_start))
    rows, seen_header = [], False
    for line in lines[start + 1:]:
        cells = line.split("\t")
        if len(cells) > 2 and all(re.fullmatch(r"\d+\.\d+", c.strip()) for c in cells[1:]):
            rows.append((cells[0].strip(), tuple(float(c) for c in cells[1:])))
        elif line.startswith("Expt."):
            seen_header = True
        elif seen_header and line.strip():
            break
    return rows


@pytest.mark.parametrize("caption, key, transposed", [
    ("Table 2:", "office31-accuracy", False),
    ("Table 3:", "office-home-accuracy", False),
    ("Table 4:", "map-64bits", True),
    ("Table 5:", "office-home-accuracy-bits", False),
    ("Table 6:", "office-home-map-16bits", True),
    ("Table 7:", "office-home-map-128bits", True),
])
def test_transcription_matches_the_paper(caption: str, key: str, transposed: bool) -> None:
    text = _paper()
    if text is None:
        pytest.skip("shared/paper/dah-cvpr2017.md is not in this checkout")
    printed = _numeric_rows(text, caption)
    table = PUBLISHED[key]
    if transposed:  # paper rows are domains (and "Avg."), columns are methods
        assert [name.rstrip(".") for name, _ in printed] == list(table.tasks)
        for j, method in enumerate(table.rows):
            assert table.rows[method] == tuple(values[j] for _, values in printed), method
    else:
        assert [name for name, _ in printed] == list(table.rows)
        for name, values in printed:
            assert table.rows[name] == values, name
