"""BDNNHasher (UH-BDNN, Do, Doan & Cheung, ECCV 2016) on clustered Gaussian data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from dahash.codes import unpack_codes
from dahash.errors import ConfigError
from dahash.hashing.bdnn import BDNNHasher
from dahash.hashing.lsh import LSHHasher
import hashing_data  # same directory (pytest prepends it to sys.path)
from hashing_data import held_out_map

N_BITS = 16
SEEDS = (0, 1, 2)
MARGIN = 0.15  # BDNN must beat LSH by this much mAP on every seed (observed 0.30-0.40)


def clustered(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """1,500 points; noise large enough that random projections suffer."""
    return hashing_data.clustered(seed, n=1500, centre_scale=1.0, noise=1.5)


def retrieval_map(hasher, seed: int) -> float:
    return held_out_map(hasher, *clustered(seed))


@pytest.fixture(scope="module")
def fitted() -> dict[int, tuple[BDNNHasher, float]]:
    out = {}
    for seed in SEEDS:
        hasher = BDNNHasher(N_BITS, random_state=seed)
        out[seed] = (hasher, retrieval_map(hasher, seed))
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_beats_lsh(fitted, seed: int) -> None:
    bdnn_map = fitted[seed][1]
    lsh_map = retrieval_map(LSHHasher(N_BITS, random_state=seed), seed)
    print(f"seed {seed}: BDNN mAP {bdnn_map:.3f}, LSH mAP {lsh_map:.3f}")
    assert bdnn_map > lsh_map + MARGIN


@pytest.mark.parametrize("seed", SEEDS)
def test_loss_decreases(fitted, seed: int) -> None:
    history = np.array(fitted[seed][0].loss_history_)
    assert len(history) == 11
    # Each alternation is a descent step (L-BFGS with line search, exact per-bit B updates).
    assert np.all(np.diff(history) <= 1e-9 * np.abs(history[:-1]) + 1e-12)
    assert history[-1] < 0.5 * history[0]


@pytest.mark.parametrize("seed", SEEDS)
def test_bits_balanced(fitted, seed: int) -> None:
    X, _ = clustered(seed)
    signs = unpack_codes(fitted[seed][0].transform(X[200:]), N_BITS).astype(np.float64)
    assert np.abs(signs.mean(axis=0)).max() <= 0.2


def test_codes_shape_dtype_and_determinism() -> None:
    X, _ = clustered(3)
    kw = dict(hidden_size=16, n_iter=2, lbfgs_iter=5, random_state=5)
    a = BDNNHasher(12, **kw).fit_transform(X[:300])
    b = BDNNHasher(12, **kw).fit(X[:300]).transform(X[:300])
    assert a.dtype == np.uint8 and a.shape == (300, 2)
    np.testing.assert_array_equal(a, b)
    c = BDNNHasher(12, **{**kw, "random_state": 6}).fit_transform(X[:300])
    assert not np.array_equal(a, c)


def test_transform_before_fit_raises() -> None:
    with pytest.raises(NotFittedError, match="fit"):
        BDNNHasher(8).transform(np.zeros((3, 4)))


@pytest.mark.parametrize("param, value", [
    ("n_bits", 0), ("hidden_size", 0), ("lam1", -1.0), ("lam2", float("nan")), ("lam3", "a"),
    ("lam4", -0.1), ("n_iter", 0), ("lbfgs_iter", 1.5), ("random_state", "x"),
])
def test_bad_params_raise_config_error(param: str, value) -> None:
    X, _ = clustered(0)
    with pytest.raises(ConfigError, match=param):
        BDNNHasher(**{param: value}).fit(X[:50])


def test_fit_leaves_torch_thread_count_as_it_was() -> None:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        BDNNHasher(8, n_iter=1, lbfgs_iter=2, random_state=0).fit(clustered(0)[0][:200])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
