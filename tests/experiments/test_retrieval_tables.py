"""``dahash reproduce --tables retrieval`` on a tiny generated image dataset: the files and tables,
tables recomputed from the saved codes, the held-out split, which hashers see labels, resume,
pairing and validation, the published rows and the CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

import dahash.experiments.retrieval_tables as rr
from tiny_runs import build_backbone_once  # tests/ is on sys.path (no __init__.py)
from dahash.selection_grids import auto_grid
from dahash.cli import main
from dahash.errors import ConfigError, DahashError
from dahash.hashing import BDNNHasher, BinaryAutoencoderHasher, DPSHHasher, ITQHasher, KMeansHasher
from dahash.images.features import image_feature_sets
from dahash.metrics.retrieval import (mean_average_precision, precision_at_k, precision_recall_curve,
                                      precision_within_radius)
from dahash.experiments.published import published_rows
from dahash.experiments.reproduce import TABLE_ENGINE
from dahash.experiments.retrieval_tables import (RETRIEVAL_METHODS, RetrievalConfig, heldout_split, reproduce_retrieval,
                                        resolve_pairing)

ROWS = {"A": "A (W→A)", "W": "W (A→W)"}  # office31's default pairing: W:A and A:W
BITS = (8, 16)



class Interrupted(Exception):
    """Stands for the user's Ctrl-C (a real KeyboardInterrupt would also stop pytest)."""


def _config(root: Path, out: Path, **extra: Any) -> RetrievalConfig:
    values: dict[str, Any] = dict(
        data_root=str(root), out=str(out), dataset="office31", bits=list(BITS), seeds=1,
        cache_dir=str(root.parent / "cache"), overrides={"epochs": 3, "hidden": [16, 16], "k": 2},
        hasher_params={"ITQ": {"n_iter": 5}, "KMeans": {"n_iter": 5}, "BA": {"n_mu": 2}, "BDNN": {"n_iter": 2},
                       "NoDA": {"epochs": 5}, "SuH": {"epochs": 5}})
    values.update(extra)
    return RetrievalConfig(**values)


@pytest.fixture(scope="module")
def finished(tiny_office31: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of all 7 methods at 8 and 16 bits, with spies on every hasher's ``fit``."""
    out = tmp_path_factory.mktemp("retrieval") / "out"
    current: list[Any] = [None]
    fits: list[dict[str, Any]] = []
    real_run_cell = rr.run_cell

    def tagging(cell, threads: int = 1):
        current[0] = cell
        try:
            return real_run_cell(cell, threads)
        finally:
            current[0] = None

    def spy(cls):
        original = cls.fit

        def fit(self, *args, **kwargs):
            X = args[0] if args else kwargs.get("X")
            y = args[1] if len(args) > 1 else kwargs.get("y")
            cell = current[0]
            fits.append({"cls": cls.__name__, "method": None if cell is None else cell.method,
                         "bits": None if cell is None else cell.settings["bits"],
                         "source": None if cell is None else cell.source,
                         "target": None if cell is None else cell.target,
                         "X": np.array(X, copy=True), "y": None if y is None else np.array(y, copy=True)})
            return original(self, *args, **kwargs)

        return fit

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        build_backbone_once(mp)
        mp.setattr(rr, "run_cell", tagging)
        for cls in (ITQHasher, KMeansHasher, BinaryAutoencoderHasher, BDNNHasher, DPSHHasher):
            mp.setattr(cls, "fit", spy(cls))
        config = _config(tiny_office31, out)
        summary = reproduce_retrieval(config, progress=False)
    torch.set_num_threads(threads)
    return {"out": out, "config": config, "summary": summary, "fits": fits, "root": tiny_office31}


def _tables(text: str, bits: int) -> list[dict[str, dict[str, str]]]:
    """The Markdown tables of the ``## mAP @<bits> bits`` section, each {row label: {column: cell}}."""
    start = text.index(f"## mAP @{bits} bits\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end >= 0 else len(text)]
    tables, lines = [], section.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows = {}
            i += 2
            while i < len(lines) and lines[i].startswith("| "):
                cells = [c.strip() for c in lines[i].strip("|").split("|")]
                rows[cells[0]] = dict(zip(header[1:], cells[1:]))
                rows[cells[0]]["__order__"] = header[1:]  # type: ignore[assignment]
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def _close(a: float | None, b: float | None, tol: float = 1e-12) -> bool:
    a_nan = a is None or (isinstance(a, float) and math.isnan(a))
    b_nan = b is None or (isinstance(b, float) and math.isnan(b))
    if a_nan or b_nan:
        return a_nan and b_nan
    return abs(float(a) - float(b)) <= tol


def _tables_only(text: str) -> str:
    """map.md without the timing paragraph (its wall time and reuse count change between runs)."""
    return text.split("\n\nTraining time per run")[0]


# 1 ---------------------------------------------------------------------------------------------

def test_one_run_writes_every_file_and_the_papers_layout(finished: dict[str, Any]) -> None:
    out: Path = finished["out"]
    summary = finished["summary"]
    assert summary["cells"] == summary["computed"] == 7 * 2 * 2  # methods x bits x targets, one seed
    for name in ("map.md", "map.csv", "retrieval.csv", "retrieval.yaml"):
        assert (out / name).is_file(), name
    figures = ["pr_A_8bits.png", "pr_W_8bits.png", "pr_A_16bits.png", "pr_W_16bits.png"]
    assert sorted(summary["figures"]) == sorted(figures)
    for name in figures:
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name

    saved = yaml.safe_load((out / "retrieval.yaml").read_text())
    assert saved["bits"] == [8, 16] and saved["methods"] == list(RETRIEVAL_METHODS) and saved["holdout"] == 0.3
    assert saved["hasher_params"]["NoDA"] == {"epochs": 5} and saved["overrides"]["epochs"] == 3

    text = (out / "map.md").read_text()
    assert "## mAP @8 bits" in text and "## mAP @16 bits" in text
    assert text.index("## mAP @8 bits") < text.index("## mAP @16 bits")
    # The protocol: queries = target codes, database = source codes, relevant = same class.
    assert "Queries: the target domain's codes" in text
    assert "Database: the source domain's codes" in text
    assert "Relevant: same class" in text
    header = "| Target (task) | NoDA | ITQ | KMeans | BA | BDNN | DAH | SuH |"
    for bits in BITS:
        tables = _tables(text, bits)
        # mAP (paper protocol), mAP on the held-out queries, precision@k, precision within radius 2.
        assert len(tables) == 4
        for table in tables:
            assert list(table) == [ROWS["A"], ROWS["W"], "Avg"]
            assert table["Avg"]["__order__"] == list(RETRIEVAL_METHODS)
            for label, row in table.items():
                for method in RETRIEVAL_METHODS:
                    value = float(row[method])
                    assert 0.0 <= value <= 1.0
                    if label == "Avg":  # mean of the target rows, up to their rounding
                        targets = [float(table[ROWS[t]][method]) for t in "AW"]
                        assert value == pytest.approx(np.mean(targets), abs=0.0011)
    assert text.count(header) == 8

    rows = list(csv.reader(open(out / "map.csv", encoding="utf-8")))
    assert rows[0] == ["bits", "numbers", "queries", "target", *RETRIEVAL_METHODS]
    # office31 has published mAP only at 64 bits: no "published" rows here.
    assert [(r[0], r[1], r[2], r[3]) for r in rows[1:]] == [
        (str(b), "ours", q, t) for b in BITS for q in ("paper protocol", "held-out queries")
        for t in (ROWS["A"], ROWS["W"], "Avg")]
    md = _tables(text, 8)[0]
    assert rows[1][4:] == [md[ROWS["A"]][m] for m in RETRIEVAL_METHODS]

    long_rows = list(csv.DictReader(open(out / "retrieval.csv", encoding="utf-8")))
    # Every method has "all" and "heldout" rows except SuH (held-out only).
    assert len(long_rows) == 2 * 2 * (6 * 2 + 1)
    assert {r["queries"] for r in long_rows if r["method"] == "SuH"} == {"heldout"}
    assert sum(r["queries"] == "all" and r["n_queries"] == "18" for r in long_rows) == 2 * 2 * 6
    assert all(r["n_queries"] == "6" for r in long_rows if r["queries"] == "heldout")  # 3 classes x round(1.8)


# 2 ---------------------------------------------------------------------------------------------

def test_every_table_entry_is_recomputed_from_the_saved_codes(finished: dict[str, Any]) -> None:
    out: Path = finished["out"]
    text = (out / "map.md").read_text()
    long_rows = {(int(r["bits"]), r["task"], r["method"], int(r["seed"]), r["queries"]): r
                 for r in csv.DictReader(open(out / "retrieval.csv", encoding="utf-8"))}
    cells = sorted((out / "retrieval-cells").glob("*/*bits/*_*/seed0"))
    assert len(cells) == 28
    heldouts: dict[tuple[int, str], np.ndarray] = {}
    for directory in cells:
        method = directory.parts[-4]
        bits = int(directory.parts[-3].removesuffix("bits"))
        source, target = directory.parts[-2].split("_")
        task = f"{source}→{target}"
        assert method in RETRIEVAL_METHODS and bits in BITS and (source, target) in (("W", "A"), ("A", "W"))
        with np.load(directory / "codes.npz") as f:
            assert set(f.files) == {"source_codes", "source_labels", "target_codes", "target_labels", "heldout",
                                    "n_bits"}
            codes = {k: f[k] for k in f.files}
        assert int(codes["n_bits"]) == bits
        assert codes["source_codes"].shape == (18, bits // 8) and codes["target_codes"].shape == (18, bits // 8)
        assert codes["source_codes"].dtype == np.uint8
        # The held-out queries: the seed-0 split of the target labels, the same for every method.
        heldout = codes["heldout"]
        np.testing.assert_array_equal(heldout, heldout_split(codes["target_labels"], 0.3, 0)[1])
        if (bits, task) in heldouts:
            np.testing.assert_array_equal(heldout, heldouts[(bits, task)])
        heldouts[(bits, task)] = heldout
        if method == "DAH":  # DAH's own export: the same samples in the same order
            with np.load(directory / "run" / "codes_source.npz") as fs:
                np.testing.assert_array_equal(fs["labels"], codes["source_labels"])
                np.testing.assert_array_equal(fs["codes"], codes["source_codes"])

        results = json.loads((directory / "results.json").read_text())
        assert results["config"]["method"] == method and results["config"]["bits"] == bits
        metrics = results["metrics"]
        query_sets = {"heldout": heldout} if method == "SuH" else {"all": np.arange(18), "heldout": heldout}
        assert set(metrics) & {"all", "heldout"} == set(query_sets)
        recomputed = {}
        for name, rows in query_sets.items():
            args = (codes["target_codes"][rows], codes["target_labels"][rows], codes["source_codes"],
                    codes["source_labels"])
            expected = {"map": mean_average_precision(*args), "precision_at_k": precision_at_k(*args, 100),
                        "precision_radius_2": precision_within_radius(*args, radius=2)}
            precision, recall, radii = precision_recall_curve(*args, n_bits=bits)
            got = metrics[name]
            assert got["n_queries"] == len(rows)
            for key, value in expected.items():
                assert _close(got[key], value), (directory, name, key, got[key], value)
            assert len(got["pr_precision"]) == len(got["pr_recall"]) == bits + 1 == len(radii)
            assert all(_close(a, float(b)) for a, b in zip(got["pr_precision"], precision)), (directory, name)
            assert all(_close(a, float(b)) for a, b in zip(got["pr_recall"], recall)), (directory, name)
            row = long_rows[(bits, task, method, 0, name)]
            assert row["map"] == f"{expected['map']:.6f}" and int(row["n_queries"]) == len(rows)
            assert row["precision_at_100"] == f"{expected['precision_at_k']:.6f}"
            assert row["precision_radius_2"] == f"{expected['precision_radius_2']:.6f}"
            recomputed[name] = expected
        assert (bits, task, method, 0, "all") in long_rows or method == "SuH"
        # map.md, one seed: the entry is the recomputed value to 3 decimals.
        tables = _tables(text, bits)
        main_set = "heldout" if method == "SuH" else "all"
        assert tables[0][ROWS[target]][method] == f"{recomputed[main_set]['map']:.3f}"
        assert tables[1][ROWS[target]][method] == f"{recomputed['heldout']['map']:.3f}"
        assert tables[2][ROWS[target]][method] == f"{recomputed[main_set]['precision_at_k']:.3f}"
        assert tables[3][ROWS[target]][method] == f"{recomputed[main_set]['precision_radius_2']:.3f}"


# 3 ---------------------------------------------------------------------------------------------

def test_heldout_split_per_class() -> None:
    sizes = {0: 1, 1: 2, 2: 3, 3: 4, 4: 7, 5: 10, 6: 20}
    expected = {0: 0, 1: 1, 2: 1, 3: 1, 4: 2, 5: 3, 6: 6}  # round(0.3 n), >= 1, <= n - 1; a singleton stays
    labels = np.random.default_rng(5).permutation(np.repeat(list(sizes), list(sizes.values())))
    train, held = heldout_split(labels, 0.3, seed=0)
    assert np.issubdtype(held.dtype, np.integer) and np.issubdtype(train.dtype, np.integer)
    assert not set(train.tolist()) & set(held.tolist())
    assert sorted(train.tolist() + held.tolist()) == list(range(len(labels)))
    for c, n in sizes.items():
        assert int((labels[held] == c).sum()) == expected[c], c
        assert int((labels[train] == c).sum()) == n - expected[c], c
    # The bounds: at least one held out, at most n_c - 1.
    few = np.repeat([0, 1, 2], [4, 10, 1])
    _, held = heldout_split(few, 0.95, seed=1)
    assert [int((few[held] == c).sum()) for c in range(3)] == [3, 9, 0]
    _, held = heldout_split(few, 0.01, seed=1)
    assert [int((few[held] == c).sum()) for c in range(3)] == [1, 1, 0]
    # Drawn with the seed.
    big = np.random.default_rng(0).integers(0, 5, size=500)
    a, b, c = (heldout_split(big, 0.3, s)[1] for s in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert len(a) == len(c) and not np.array_equal(a, c)


# 4 ---------------------------------------------------------------------------------------------

def test_unsupervised_hashers_never_see_labels(finished: dict[str, Any]) -> None:
    fits = finished["fits"]
    root: Path = finished["root"]
    by_method: dict[str, list[dict[str, Any]]] = {}
    for call in fits:
        assert call["method"] is not None, "a hasher was fitted outside a cell"
        by_method.setdefault(call["method"], []).append(call)
    own = {"ITQ": "ITQHasher", "KMeans": "KMeansHasher", "BA": "BinaryAutoencoderHasher", "BDNN": "BDNNHasher"}
    for method, cls in own.items():
        calls = by_method[method]
        assert sum(c["cls"] == cls for c in calls) == 4  # 2 bits x 2 targets
        assert all(c["y"] is None for c in calls), f"{method} was given labels"
        assert all(c["cls"] != "DPSHHasher" for c in calls)
    assert "DAH" not in by_method or all(c["y"] is None for c in by_method["DAH"])
    for method in ("NoDA", "SuH"):
        calls = by_method[method]
        assert [c["cls"] for c in calls] == ["DPSHHasher"] * 4
        assert all(c["y"] is not None for c in calls), f"{method}'s DPSH got no labels"

    features = {}
    for call in fits:
        pair = (call["source"], call["target"])
        if pair not in features:
            features[pair] = image_feature_sets(str(root), *pair, backbone="efficientnet_lite0",
                                                cache_dir=str(root.parent / "cache"), progress=False,
                                                engine=TABLE_ENGINE)
        source, target = features[pair]
        if call["method"] in own:  # fitted on the target features
            np.testing.assert_allclose(call["X"], target.X)
        elif call["method"] == "NoDA":  # DPSH on the labeled source
            np.testing.assert_allclose(call["X"], source.X)
            np.testing.assert_array_equal(call["y"], source.y)
        elif call["method"] == "SuH":  # DPSH on the target rows outside the held-out set
            train, heldout = heldout_split(target.y, 0.3, 0)
            assert call["X"].shape[0] == len(train) == len(target) - len(heldout) == 12
            np.testing.assert_allclose(call["X"], target.X[train])
            np.testing.assert_array_equal(call["y"], target.y[train])


# 5 ---------------------------------------------------------------------------------------------

def test_a_rerun_reuses_every_cell(finished: dict[str, Any]) -> None:
    out: Path = finished["out"]
    before = (out / "map.md").read_text()
    summary = reproduce_retrieval(_config(finished["root"], out), progress=False)
    assert summary["computed"] == 0 and summary["cells"] == 28
    after = (out / "map.md").read_text()
    assert _tables_only(after) == _tables_only(before)
    assert "## mAP @16 bits" in _tables_only(after)
    assert "0 runs (28 reused)" in after


def test_interrupted_run_resumes_and_other_settings_are_refused(tiny_office31: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    computed: list[tuple[str, int, str]] = []
    real, stop = rr.run_cell, [True]

    def counting(cell, threads: int = 1):
        computed.append((cell.method, cell.settings["bits"], cell.target))
        if len(computed) == 4 and stop and stop.pop():
            raise Interrupted  # the user stops it midway, once
        return real(cell, threads)

    monkeypatch.setattr(rr, "run_cell", counting)
    build_backbone_once(monkeypatch)
    out = tmp_path / "out"
    # A tuple parameter (DPSH's own default type for hidden) is saved as a list in results.json;
    # the rerun must still recognise its finished cells.
    small = dict(methods=["NoDA", "ITQ", "BA"], bits=[8],
                 hasher_params={"ITQ": {"n_iter": 5}, "BA": {"n_mu": 2}, "NoDA": {"epochs": 5, "hidden": (16, 16)}})
    with pytest.raises(Interrupted):
        reproduce_retrieval(_config(tiny_office31, out, **small), progress=False)
    assert len(computed) == 4
    first = list(computed)
    computed.clear()
    summary = reproduce_retrieval(_config(tiny_office31, out, **small), progress=False)
    # 3 methods x 2 targets = 6 cells; the 3 finished ones are not redone, the interrupted one is.
    assert summary["cells"] == 6 and summary["computed"] == 3 == len(computed)
    assert not set(first[:3]) & set(computed) and first[3] in computed
    assert len(set(first[:3]) | set(computed)) == 6
    table = _tables((out / "map.md").read_text(), 8)[0]
    assert table["Avg"]["__order__"] == ["NoDA", "ITQ", "BA"]

    computed.clear()
    with pytest.raises(DahashError, match="other settings") as info:
        reproduce_retrieval(_config(tiny_office31, out, holdout=0.5, **small), progress=False)
    assert "holdout" in str(info.value)
    assert computed == []
    # The refused rerun leaves the saved settings those cells were computed with.
    assert yaml.safe_load((out / "retrieval.yaml").read_text())["holdout"] == 0.3


# 6 ---------------------------------------------------------------------------------------------

def test_pairing_and_validation(tiny_office31: Path, tmp_path: Path) -> None:
    def pairing(**kw: Any) -> list[tuple[str, str]]:
        return [tuple(p) for p in resolve_pairing(RetrievalConfig(**{"data_root": str(tiny_office31),
                                                                     "out": "x", **kw}))]

    assert pairing(dataset="office-home") == [("Ar", "Cl"), ("Ar", "Pr"), ("Ar", "Rw"), ("Cl", "Ar")]
    assert pairing(dataset="office31") == [("W", "A"), ("A", "W")]
    # A folder of domains: the second is the first's source, the first the source of every other.
    assert pairing() == [("dslr", "amazon"), ("amazon", "dslr"), ("amazon", "webcam")]
    # Tasks are spelled as the default pairing spells domains (here the folders), however typed.
    assert pairing(tasks=["D:W", "W:A"]) == [("dslr", "webcam"), ("webcam", "amazon")]
    assert pairing(dataset="office31", tasks=["dslr:webcam", "w:Amazon"]) == [("D", "W"), ("W", "A")]
    for tasks in (["A:W", "D:W"], ["amazon:webcam", "D:W"]):
        with pytest.raises(ConfigError, match="more than one task"):
            pairing(tasks=tasks)
    one = tmp_path / "one"
    (one / "amazon").mkdir(parents=True)
    with pytest.raises(ConfigError, match="two"):
        resolve_pairing(RetrievalConfig(data_root=str(one), out="x"))

    def bad(**kw: Any) -> RetrievalConfig:
        return RetrievalConfig(**{"data_root": str(tiny_office31), "out": "x", "dataset": "office31", **kw})

    for kw, field in ((dict(methods=["DAH", "LSH"]), "unknown method"), (dict(methods=[]), "method"),
                      (dict(bits=[0]), "bits"), (dict(bits=[]), "bits"), (dict(bits=[True]), "bits"),
                      (dict(holdout=1.0), "holdout"), (dict(holdout=0.0), "holdout"), (dict(seeds=0), "seeds"),
                      (dict(precision_k=0), "precision_k"), (dict(workers=0), "workers"),
                      (dict(hasher_params={"DAH": {"epochs": 3}}), "DAH"),
                      (dict(hasher_params={"GFK": {"n_components": 3}}), "GFK"),
                      (dict(tasks=["amazon"]), "SOURCE:TARGET"), (dict(dataset="office-31"), "dataset")):
        with pytest.raises(ConfigError, match=field):
            bad(**kw).validate()
    # Method names: any case, put in the paper's order, once each; bits once each.
    config = bad(methods=["suh", "ITQ", "noda", "itq"], bits=[16, 8, 16]).validate()
    assert config.methods == ["NoDA", "ITQ", "SuH"] and config.bits == [16, 8]


# 7 ---------------------------------------------------------------------------------------------

def test_published_rows_beside_ours() -> None:
    config = RetrievalConfig(data_root=".", out=".", dataset="office-home")
    pairs = resolve_pairing(config)
    md, rows = rr._published(config, pairs, 64)
    names = ["Clipart", "Product", "Real-World", "Art"]  # the targets, in the pairing's order
    assert [r[0] for r in rows] == [f"{n} (published)" for n in names] + ["Avg of these (published)"]
    table = published_rows("office-home", "map")
    for row, name in zip(rows, names):
        assert row[1:] == [f"{table.value(m, name):.3f}" for m in RETRIEVAL_METHODS]
    art = dict(zip(RETRIEVAL_METHODS, rows[3][1:]))
    assert art["DAH"] == "0.302"
    assert rows[-1][1:] == [f"{np.mean([table.value(m, n) for n in names]):.3f}" for m in RETRIEVAL_METHODS]
    assert "Published" in md and "(published)" in md
    _, rows16 = rr._published(config, pairs, 16)
    assert dict(zip(RETRIEVAL_METHODS, rows16[3][1:]))["DAH"] == "0.207"
    assert rows16[3][0] == "Art (published)"
    # Only the methods run are shown.
    two = RetrievalConfig(data_root=".", out=".", dataset="office-home", methods=["DAH", "NoDA"]).validate()
    _, few = rr._published(two, pairs, 64)
    assert few[3] == ["Art (published)", f"{table.value('NoDA', 'Art'):.3f}", "0.302"]
    caltech = RetrievalConfig(data_root=".", out=".", dataset="office-caltech")
    assert rr._published(caltech, resolve_pairing(caltech), 64) == ("", [])
    assert rr._published(config, pairs, 32) == ("", [])
    assert rr._published(RetrievalConfig(data_root=".", out="."), pairs, 64) == ("", [])


# 8 ---------------------------------------------------------------------------------------------

def test_cli(tiny_office31: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch) -> None:
    build_backbone_once(monkeypatch)
    out = tmp_path / "cli"
    code = main(["reproduce", "--tables", "retrieval", "--data-root", str(tiny_office31), "--dataset", "office31",
                 "--tasks", "A:W", "--bits", "8", "--seeds", "1", "--methods", "ITQ", "NoDA",
                 "--shallow-set", "noda.epochs=3", "--cache-dir", str(tiny_office31.parent / "cache"),
                 "--out", str(out), "--quiet"])
    assert code == 0
    text = (out / "map.md").read_text()
    assert "| Target (task) | NoDA | ITQ |" in text
    for absent in ("KMeans", "| BA", "BDNN", "DAH |", "SuH |"):
        assert absent not in text.split("\n\nTraining time per run")[0].split("## mAP", 1)[1], absent
    table = _tables(text, 8)[0]
    assert list(table) == ["W (A→W)", "Avg"]
    assert sorted(p.name for p in (out / "retrieval-cells").iterdir()) == ["ITQ", "NoDA"]
    saved = json.loads((out / "retrieval-cells" / "NoDA" / "8bits" / "A_W" / "seed0" / "results.json").read_text())
    assert saved["config"]["params"] == {"epochs": 3}  # "noda" matched NoDA
    assert yaml.safe_load((out / "retrieval.yaml").read_text())["hasher_params"] == {"NoDA": {"epochs": 3}}
    assert "2 runs (2 computed now)" in capsys.readouterr().out

    code = main(["reproduce", "--data-root", str(tiny_office31), "--bits", "16", "64", "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--bits" in err and "dahash: error" in err
    assert not (tmp_path / "x").exists()


def test_dah_is_trained_as_dahash_train_trains_it(finished: dict[str, Any]) -> None:
    """Without a gamma in --set, DAH's setting is chosen per (bits, task) without target labels, once, and
    every seed's cell trains the choice."""
    out: Path = finished["out"]
    for bits in BITS:
        for task in ("W_A", "A_W"):
            selection = json.loads((out / "retrieval-selection" / f"{bits}bits" / task / "selection.json").read_text())
            assert [c["params"] for c in selection["candidates"]] == auto_grid("DAH")
            for cell in (out / "retrieval-cells" / "DAH" / f"{bits}bits" / task).glob("seed*"):
                config = json.loads((cell / "results.json").read_text())["config"]
                assert {k: config["overrides"][k] for k in selection["best_params"]} == selection["best_params"]
