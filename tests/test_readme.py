"""The README's Python quick start runs as printed, and the package exports what it promises."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dahash

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quick_start_runs_verbatim(capsys) -> None:
    blocks = re.findall(r"```python\n(# quick start\n.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "README.md must hold one ```python block starting with '# quick start'"
    assert len(blocks[0].strip().splitlines()) <= 16  # the "under 15 lines" of code, plus its marker
    scope: dict = {}
    exec(compile(blocks[0], str(README), "exec"), scope)
    accuracy = float(np.mean(scope["labels"] == scope["yt"]))
    # Three well-separated classes, the target shifted by +1 in every dimension: well above chance (1/3).
    assert accuracy > 0.9
    assert scope["codes"].shape == (300, 4) and scope["codes"].dtype == np.uint8
    assert scope["hits"].ids.shape == (5, 10) and (scope["hits"].ids[:, 0] >= 0).all()
    printed = capsys.readouterr().out.split()
    assert float(printed[0]) == accuracy and 0.5 < float(printed[1]) <= 1.0


def test_public_names_resolve() -> None:
    for name in dahash.__all__:
        assert getattr(dahash, name) is not None, name
    assert dahash.encode.__module__ == "dahash.models.predict"
    assert dahash.load_run.__module__ == "dahash.runs.loading"
    assert "DAH" in dir(dahash)


def test_ci_runs_the_readme_test_command() -> None:
    command = re.search(r"## Tests\n\n```bash\n(.+?)\n```", README.read_text(encoding="utf-8"))
    assert command, "README.md's '## Tests' section must open with a ```bash block holding the test command"
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci.endswith("&& " + command.group(1)), (ci, command.group(1))


def _quick_start_commands() -> list[list[str]]:
    """The ``dahash`` commands of the README's command-line quick start, continuation lines joined."""
    import shlex

    block = re.search(r"## Quick start: command line\n\n```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert block, "README.md must hold the command-line quick start"
    text = re.sub(r"\\\n\s*", " ", block.group(1))
    return [shlex.split(line, comments=True) for line in text.splitlines() if line.strip()]


def test_readme_command_line_quick_start_can_be_followed() -> None:
    """Every quick-start line is a valid command whose inputs exist in a checkout (beside ../shared) or come
    from an earlier line: what a new user following them in order needs. (Running them all takes minutes of
    training each; the integration tests run the same commands on small data.)"""
    from dahash.cli import build_parser

    repo = README.parent
    made: set[str] = set()
    commands = _quick_start_commands()
    assert [c[:2] for c in commands] == [["dahash", "demo"], ["dahash", "extract"], ["dahash", "extract"],
                                         ["dahash", "train"], ["dahash", "train"], ["dahash", "evaluate"],
                                         ["dahash", "encode"]]
    for argv in commands:
        args = build_parser().parse_args(argv[1:])  # a flag that does not exist fails here
        for name in ("data_root", "source_features", "target_features", "run"):
            value = getattr(args, name, None)
            if value:  # made by an earlier line, or the shared data beside the checkout (as CI has it)
                assert value in made or (value.startswith("../shared") and (repo / value).exists()), (argv, value)
        for image in getattr(args, "images", None) or []:
            assert image.startswith("../shared") and (repo / image).exists(), image
        made.add(getattr(args, "out", None))


@pytest.mark.integration
@pytest.mark.skipif(os.environ.get("DAHASH_README_LINES") != "1",
                    reason="about 4 CPU-minutes of training: set DAHASH_README_LINES=1 (docs/tests.md)")
def test_readme_command_line_quick_start_runs_in_order(tmp_path: Path) -> None:
    """Every command-line quick-start line after the demo, run verbatim and in order in a fresh folder beside
    ../shared, as a new user would: each exits 0 and leaves what the next one reads. The demo line is left
    out only for time (27 trainings, 14 minutes); tests/experiments/test_demo.py runs it with fewer seeds.
    Opt-in, because its two DAH trainings (8 fits each) alone would take the suite past 10 minutes."""
    shared = (README.parent.parent / "shared").resolve()
    if not (shared / "data" / "office_caltech_10").is_dir():
        pytest.skip(f"the shared data is not at {shared}")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (tmp_path / "shared").symlink_to(shared, target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(README.parent / "src")}
    commands = _quick_start_commands()
    assert commands[0][:2] == ["dahash", "demo"]
    for argv in commands[1:]:
        done = subprocess.run([sys.executable, "-m", "dahash", *argv[1:]], cwd=checkout, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, (argv, done.stderr[-2000:])
    for made in ("dslr.npz", "webcam.npz", "codes.npz", "runs/d2w-files/results.json", "runs/d2w/results.json",
                 "runs/d2w/selection"):
        assert (checkout / made).exists(), made
    with np.load(checkout / "dslr.npz") as dslr:
        assert dslr["X"].shape[0] == 157 and set(dslr["y"].tolist()) == set(range(10))
    for run in ("runs/d2w-files", "runs/d2w"):
        metrics = json.loads((checkout / run / "results.json").read_text(encoding="utf-8"))["metrics"]
        # D->W on EfficientNet-Lite0 features: every method of the 12-task table is above 90 % here; chance is 10 %.
        assert metrics["target_accuracy"] > 80, (run, metrics["target_accuracy"])
    with np.load(checkout / "codes.npz") as codes:
        assert codes["codes"].shape[1] == 8  # 64 bits, packed
