"""benchmarks/reference_dah.py, the independent NoDA/DAH reference of issue 31: its losses against
hand-computed values, its input rule, and a tiny two-domain problem it must learn."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reference_dah.py"
spec = importlib.util.spec_from_file_location("reference_dah", SCRIPT)
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_the_reference_is_independent_of_the_library() -> None:
    text = SCRIPT.read_text()
    assert "import dahash" not in text and "from dahash" not in text


def test_pairwise_hash_loss_matches_a_hand_computation() -> None:
    u = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    y = torch.tensor([0, 0, 1])
    # theta = <u_i,u_j>/2: 1 on the diagonal, 0 for (1,2) and (2,3), -1 for (1,3). Like pairs
    # (diagonal, (1,2), (2,1)) cost 10*log(1+exp(-theta)), unlike ones log(1+exp(theta)).
    expected = 30 * math.log1p(math.exp(-1)) + 20 * math.log(2)
    expected += 2 * math.log1p(math.exp(-1)) + 2 * math.log(2)
    assert ref.pairwise_hash_loss(u, y).item() == pytest.approx(expected, rel=1e-6)
    assert ref.pairwise_hash_loss(u, y, like_weight=1.0).item() == pytest.approx(
        5 * math.log1p(math.exp(-1)) + 4 * math.log(2), rel=1e-6)


def test_quantisation_loss_holds_sgn_constant_with_sgn_0_positive() -> None:
    u = torch.tensor([[0.5, -0.25, 0.0]], requires_grad=True)
    loss = ref.quantisation_loss(u)
    assert loss.item() == pytest.approx(0.25 + 0.5625 + 1.0)
    loss.backward()
    assert u.grad.tolist() == [[-1.0, 1.5, -2.0]]  # 2 (u - sgn(u)), sgn(0) = +1


def test_entropy_loss_sums_exp_over_a_class_and_entropy_over_targets() -> None:
    e = math.e
    u = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])  # two sources of class 0, one of 1
    y = torch.tensor([0, 0, 1])
    v = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    # target 1: similarities (1, 0 | 0) -> p = ((e+1)/(e+2), 1/(e+2)); target 2: (0, 0 | 0) -> (2/3, 1/3)
    p1 = np.array([(e + 1) / (e + 2), 1 / (e + 2)])
    p2 = np.array([2 / 3, 1 / 3])
    logp = ref.class_log_probs(v, u, y, 2)
    np.testing.assert_allclose(logp.exp().numpy(), np.stack([p1, p2]), rtol=1e-6)
    expected = -(p1 * np.log(p1)).sum() - (p2 * np.log(p2)).sum()
    assert ref.entropy_loss(v, u, y, 2).item() == pytest.approx(expected, rel=1e-6)


def test_mk_mmd_is_zero_for_identical_batches_and_positive_for_shifted_ones() -> None:
    # One 1-D quadruple s = (0, 2), t = (1, 1): d^2 = 4, 0, 1, 1 and median m = 1.
    s, t = torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [1.0]])
    scales = [2.0**e for e in range(-8, 9)]
    expected = sum(math.exp(-4 * q) + 1 - 2 * math.exp(-q) for q in scales) / 17
    assert ref.mk_mmd(s, t).item() == pytest.approx(expected, rel=1e-6)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 8, generator=gen)
    assert abs(ref.mk_mmd(x, x).item()) < 1e-6  # same pairing on both sides cancels exactly
    same = ref.mk_mmd(x, torch.randn(2000, 8, generator=gen), gen).item()
    shifted = ref.mk_mmd(x, torch.randn(2000, 8, generator=gen) + 1.0, gen).item()
    assert shifted > 50 and abs(same) < 0.2 * shifted


def test_histograms_are_divided_by_their_sums_then_standardised_over_both_domains() -> None:
    Xs = np.array([[1, 3, 0], [0, 0, 0]], np.float32)
    Xt = np.array([[2, 2, 0]], np.float32)
    assert ref.use_l1("auto", Xs, Xt)  # non-negative integer counts, 5 of 9 values zero
    assert not ref.use_l1("auto", Xs - 1, Xt)  # negative values
    assert not ref.use_l1("auto", Xs + 0.5, Xt)  # not counts
    assert not ref.use_l1("auto", Xs + 1, Xt + 1)  # dense
    assert ref.use_l1("on", Xs - 1, Xt) and not ref.use_l1("off", Xs, Xt)

    Zs, Zt = ref.normalise(Xs, Xt, l1=True)
    rows = np.array([[0.25, 0.75, 0], [0, 0, 0], [0.5, 0.5, 0]])  # the empty row stays 0
    mean, std = rows.mean(0), rows.std(0)
    std[2] = 1.0  # the constant column is only centred
    np.testing.assert_allclose(np.vstack([Zs, Zt]), (rows - mean) / std, rtol=1e-5, atol=1e-6)
    Zs, Zt = ref.normalise(Xs, Xt, l1=False)
    both = np.vstack([Zs, Zt])
    np.testing.assert_allclose(both.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(both[:, :2].std(0), 1, rtol=1e-5)


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = 1.5 * rng.normal(size=(3, 20))
    shift = rng.normal(0, 0.5, 20)  # the target domain is the same blobs moved a little
    y = np.repeat(np.arange(3), 30)
    Xs = centres[y] + rng.normal(size=(90, 20))
    Xt = centres[y] + rng.normal(size=(90, 20)) + shift
    return Xs.astype(np.float32), y, Xt.astype(np.float32), y.copy()


@pytest.mark.parametrize("method", ["NoDA", "DAH"])
def test_a_tiny_shifted_problem_is_learned_well_above_chance(method: str) -> None:
    Xs, ys, Xt, yt = _blobs()
    Xs, Xt = ref.normalise(Xs, Xt, l1=False)
    args = ref.build_parser().parse_args(
        ["--source", "s", "--target", "t", "--steps", "100", "--hidden", "64", "64", "--bits", "16"])
    model = ref.train(Xs, ys, Xt, method, 0, args)
    binary, continuous = ref.predict(model, Xs, ys, Xt, per_class=200, seed=0)
    assert (binary == yt).mean() > 0.85 and (continuous == yt).mean() > 0.85  # chance is 1/3


def test_the_command_line_prints_one_line_per_run_and_writes_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Xs, ys, Xt, yt = _blobs(1)
    np.savez(tmp_path / "src.npz", X=Xs, y=ys, classes=np.array(["a", "b", "c"]))
    np.savez(tmp_path / "tgt.npz", X=Xt, y=yt, classes=np.array(["a", "b", "c"]))
    out = tmp_path / "out.json"
    ref.main(["--source", str(tmp_path / "src.npz"), "--target", str(tmp_path / "tgt.npz"),
              "--method", "NoDA", "DAH", "--steps", "3", "--hidden", "16", "--bits", "8",
              "--json", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines] == [["src->tgt", "NoDA", "0"], ["src->tgt", "DAH", "0"]]
    saved = json.loads(out.read_text())
    for row, line in zip(saved["results"], lines, strict=True):
        assert row["accuracy"] == pytest.approx(float(line.split()[3]), abs=5e-5)
    assert saved["config"]["l1_applied"] is False and saved["config"]["gamma"] == 5000.0
    with pytest.raises(SystemExit, match="--mmd-layers must be among"):
        ref.main(["--source", "s", "--target", "t", "--mmd-layers", "fc9"])
