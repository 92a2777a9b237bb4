"""The validator study: regret and rank correlation by hand, the declared rule, and accuracies from saved predictions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from dahash import DAH
from dahash.experiments.validator_study import (
    HELD_OUT_HALF,
    RANDOM,
    SELECTION_HALF,
    Group,
    decide,
    load_group,
    read_candidates,
    summary,
    validator_score,
    write_study,
)
from dahash.runs.selection import SCORES, select_setting
from shifted_task import TINY, shifted_task  # tests/ is on sys.path (no __init__.py)

NAN = math.nan


def _group(accuracy: list[float], **scores: list[float]) -> Group:
    n = len(accuracy)
    candidates = [{"index": i, "params": {"i": i}, "errors": {}, **{s: NAN for s in SCORES},
                   **{k: v[i] for k, v in scores.items()}} for i in range(n)]
    return Group("DAH", "A_C", candidates, np.array(accuracy))


def test_regret_and_rank_correlation_by_hand() -> None:
    g = _group([70.0, 90.0, 80.0], source_val_accuracy=[99.0, 95.0, 98.5], domain_error=[30.0, 45.0, 48.0],
               entropy=[-0.1, -0.3, -0.2])
    # paper: candidates within 1 point of 99 are 0 and 2; 48 % is closer to chance: candidate 2, regret 10.
    assert g.chosen("paper") == 2 and g.regret("paper") == 10.0
    # domain (no guard): 48 % again; source: candidate 0, regret 20; entropy: -0.1 is largest: candidate 0.
    assert g.regret("domain") == 10.0 and g.regret("source") == 20.0 and g.regret("entropy") == 20.0
    # Uniform pick: 90 - mean(70, 90, 80) = 10.
    assert g.regret(RANDOM) == 10.0
    # Scores -20, -5, -2 against 70, 90, 80: ranks 1 2 3 vs 1 3 2, rho = 1 - 6 * 2 / (3 * 8) = 0.5.
    assert validator_score(g.candidates[0], "paper") == -20.0
    assert g.correlation("domain") == pytest.approx(0.5)
    assert g.correlation("entropy") == pytest.approx(-1.0)  # -0.1 > -0.2 > -0.3 against 70 < 80 < 90
    assert math.isnan(g.correlation("dev")) and math.isnan(g.regret("dev"))  # no finite DEV: picks nothing
    s = summary([g, _group([50.0, 60.0], source_val_accuracy=[80.0, 70.0], domain_error=[50.0, 40.0])], ("source",))
    assert s["source"] == {"regret": 15.0, "rho": pytest.approx(-1.0), "best_picked": 0, "groups": 2}


def test_a_group_of_equal_accuracies_counts_every_pick_as_best() -> None:
    # Six candidates at 41 of 157 right: the mean of six equal floats exceeds their max by a rounding error.
    tie = [100 * 41 / 157] * 6
    g = _group(tie, source_val_accuracy=[80.0, 70.0, 60.0, 50.0, 40.0, 30.0])
    assert g.regret(RANDOM) > 0  # what made the uniform pick "never best" before the tolerance
    assert summary([g], (RANDOM, "source"))[RANDOM]["best_picked"] == 1
    assert summary([g], ("source",))["source"]["best_picked"] == 1
    # A real difference, one image in 157 (0.64 points), is never counted as best.
    near = _group([50.0, 50.0 + 100 / 157], source_val_accuracy=[80.0, 70.0])
    assert summary([near], ("source",))["source"]["best_picked"] == 0


def test_the_declared_rule() -> None:
    def part(**regrets: float) -> dict:
        return {c: {"regret": r, "rho": 0.0} for c, r in {"paper": 2.0, RANDOM: 0.1, **regrets}.items()}

    # The challenger must win on S and on H; a random pick never competes.
    assert decide(part(dev=1.0), part(dev=1.5))[0] == "dev"
    criterion, reason = decide(part(dev=1.0), part(dev=2.5))
    assert criterion == "paper" and "not on H" in reason
    assert decide(part(dev=3.0), part(dev=0.0))[0] == "paper"
    assert set(SELECTION_HALF) | set(HELD_OUT_HALF) == {f"{s}_{t}" for s in "ACDW" for t in "ACDW" if s != t}
    assert not set(SELECTION_HALF) & set(HELD_OUT_HALF)


def test_accuracies_come_from_the_saved_predictions(tmp_path: Path) -> None:
    Xs, ys, Xt, yt = shifted_task()
    fitted: list[DAH] = []

    def make(params: dict) -> DAH:
        fitted.append(DAH(**{**TINY, "epochs": 2, **params}))
        return fitted[-1]

    select_setting(make, {"gamma": [0.0, 100.0]}, Xs, ys, Xt, out=tmp_path / "sel", progress=False)
    group = load_group(tmp_path / "sel", "DAH", "A_C", yt)
    classes = np.unique(ys)  # the selection fits on labels encoded 0..C-1, and saves class names
    for model, acc in zip(fitted, group.accuracy):
        predicted = classes[model.predict(Xt)]
        assert acc == pytest.approx((predicted == yt).mean() * 100)
    assert group.accuracy.shape == (2,)
    result = write_study(tmp_path / "study", {"demo": [group]})
    assert result["decision"] is None  # no halves: nothing is decided
    text = (tmp_path / "study" / "study.md").read_text()
    assert "| paper |" in text and "## demo: mean regret per method" in text
    rows = (tmp_path / "study" / "candidates.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].endswith("target_accuracy,chosen_by")
    # Predictions of another length than the target's labels are refused, naming the file.
    with pytest.raises(Exception, match="000.target.npy: 32 predictions for 3 target rows"):
        load_group(tmp_path / "sel", "DAH", "A_C", yt[:3])


def test_the_study_remade_from_its_candidates_file(tmp_path: Path) -> None:
    groups = {"S": [_group([70.0, 90.0, 80.0], source_val_accuracy=[99.0, 95.0, 98.5], domain_error=[30.0, 45.0, 48.0],
                           dev=[-3.0, -1.0, -2.0])],
              "H": [_group([60.0, 65.0], source_val_accuracy=[90.0, 90.0], domain_error=[40.0, 49.0], dev=[-1.0, -2.0])]}
    first = write_study(tmp_path / "a", groups)
    again = write_study(tmp_path / "b", read_candidates(tmp_path / "a" / "candidates.csv"))
    assert (tmp_path / "a" / "study.md").read_text() == (tmp_path / "b" / "study.md").read_text()
    # dev picks the best on S (regret 0 against paper's 10) but not on H (5 against 0): paper stays.
    assert first["decision"][0] == "paper" and "not on H" in first["decision"][1]
    assert again["decision"] == first["decision"]
