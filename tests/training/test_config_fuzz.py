"""Property-based fuzzing of settings: YAML config files, ``--set`` and ``--grid`` values. Each is
accepted or refused with one line naming the file or value; never a traceback."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import yaml
from cli_errors import one_line_error  # tests/ is on sys.path (no __init__.py)
from hypothesis import example, given
from hypothesis import strategies as st

from dahash.cli import main
from dahash.errors import ConfigError
from dahash.training.config import TrainConfig, load_yaml
from fuzzing import fuzz_settings  # tests/ is on sys.path (no __init__.py)

FUZZ = fuzz_settings(60)

FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
SCALARS = (st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.sampled_from([0.0, -0.5, 1e-9, 1e308])
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                            max_size=2), max_leaves=5)
# Values a YAML file or a flag can spell, many of them valid.
KEYS = st.sampled_from(FIELDS) | st.text(min_size=1, max_size=8)


@FUZZ
@given(values=st.dictionaries(KEYS, VALUES, max_size=4))
def test_a_settings_mapping_builds_a_config_or_names_the_problem(values: dict) -> None:
    try:
        config = TrainConfig.from_dict(values, source="fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml: ") or "fuzz.yaml" in str(exc) or str(exc), str(exc)
        assert "\n" not in str(exc)
        return
    # Accepted: it survives its own round trip through config.yaml.
    assert TrainConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in config.to_dict().values())


@FUZZ
@given(text=st.text(max_size=80) | st.builds(yaml.safe_dump, st.dictionaries(KEYS, VALUES, max_size=4)))
def test_a_config_file_is_read_or_refused_in_one_line(tmp_path: Path, text: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        TrainConfig.from_dict(load_yaml(path), source=str(path))
    except ConfigError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    # The CLI: no data is given, so whatever the file holds this ends in one error line.
    one_line_error(capsys, main(["train", "--config", str(path), "--out", str(tmp_path / "run")]))


@FUZZ
@given(item=st.text(max_size=30))
@example(item="=\x1f")  # found by the long run: YAML refuses control characters with its own error
def test_set_and_grid_values(tmp_path: Path, item: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``reproduce --set`` / ``--shallow-set`` and ``select --grid`` on an empty data root: whatever the
    value, one line."""
    if item.startswith("-"):
        item = "x" + item  # argparse would read it as an option
    one_line_error(capsys, main(["reproduce", "--data-root", str(tmp_path), "--out", str(tmp_path / "out"),
                                 "--methods", "NoDA", "--tasks", "A:W", "--set", item, "--quiet"]))
    one_line_error(capsys, main(["reproduce", "--data-root", str(tmp_path), "--out", str(tmp_path / "out"),
                                 "--methods", "GFK", "--tasks", "A:W", "--shallow-set", f"GFK.{item}", "--quiet"]))
    one_line_error(capsys, main(["select", "--source-features", str(tmp_path / "missing.npz"),
                                 "--target-features", str(tmp_path / "missing.npz"), "--grid", item,
                                 "--out", str(tmp_path / "sel"), "--quiet"]))
