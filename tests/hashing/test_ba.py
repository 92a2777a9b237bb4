"""BinaryAutoencoderHasher (Carreira-Perpinan & Raziperchikolaei, CVPR 2015) on clustered Gaussian data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from dahash.errors import ConfigError
from dahash.hashing.ba import BinaryAutoencoderHasher
from dahash.hashing.lsh import LSHHasher
import hashing_data  # same directory (pytest prepends it to sys.path)
from hashing_data import held_out_map

N_BITS = 16
SEEDS = (0, 1, 2)
MARGIN = 0.15  # BA must beat LSH by this much mAP on every seed (observed ~0.3)


def clustered(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """1,500 points; noise large enough that random projections suffer."""
    return hashing_data.clustered(seed, n=1500, centre_scale=1.0, noise=1.5)


def retrieval_map(hasher, seed: int) -> float:
    return held_out_map(hasher, *clustered(seed))


@pytest.fixture(scope="module")
def fitted() -> dict[int, tuple[BinaryAutoencoderHasher, float]]:
    out = {}
    for seed in SEEDS:
        hasher = BinaryAutoencoderHasher(N_BITS, random_state=seed)
        out[seed] = (hasher, retrieval_map(hasher, seed))
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_beats_lsh(fitted, seed: int) -> None:
    ba_map = fitted[seed][1]
    lsh_map = retrieval_map(LSHHasher(N_BITS, random_state=seed), seed)
    print(f"seed {seed}: BA mAP {ba_map:.3f}, LSH mAP {lsh_map:.3f}")
    assert ba_map > lsh_map + MARGIN


@pytest.mark.parametrize("seed", SEEDS)
def test_objective_non_increasing_at_fixed_mu(fitted, seed: int) -> None:
    history = fitted[seed][0].objective_
    assert len(history) >= 2
    seq = [(r["mu"], r[step]) for r in history for step in ("w", "f", "z")]
    for (mu_a, e_a), (mu_b, e_b) in zip(seq, seq[1:]):
        if mu_a == mu_b:
            assert e_b <= e_a + 1e-10, (mu_a, e_a, e_b)
    # the schedule is geometric and MAC actually ran several mu values
    mus = sorted({r["mu"] for r in history})
    assert len(mus) >= 2 and np.allclose(np.diff(np.log(mus)), np.log(2.0))


def test_codes_shape_dtype_and_determinism() -> None:
    X, _ = clustered(3)
    a = BinaryAutoencoderHasher(12, random_state=7, n_mu=3).fit_transform(X[:400])
    b = BinaryAutoencoderHasher(12, random_state=7, n_mu=3).fit(X[:400]).transform(X[:400])
    assert a.dtype == np.uint8 and a.shape == (400, 2)
    np.testing.assert_array_equal(a, b)


def test_lsq_classifier_runs_and_beats_lsh() -> None:
    X, y = clustered(0)
    hasher = BinaryAutoencoderHasher(N_BITS, classifier="lsq", random_state=0)
    assert retrieval_map(hasher, 0) > retrieval_map(LSHHasher(N_BITS, random_state=0), 0) + MARGIN


def test_transform_before_fit_raises() -> None:
    with pytest.raises(NotFittedError, match="fit"):
        BinaryAutoencoderHasher(8).transform(np.zeros((3, 4)))


@pytest.mark.parametrize("param, value", [
    ("n_bits", 0), ("n_bits", 2.5), ("mu0", -1.0), ("mu_factor", 1.0), ("n_mu", 0),
    ("max_inner", 0), ("classifier", "rbf"), ("C", 0.0), ("random_state", -3),
])
def test_bad_params_raise_config_error(param: str, value) -> None:
    X, _ = clustered(0)
    with pytest.raises(ConfigError, match=param):
        BinaryAutoencoderHasher(**{param: value}).fit(X[:50])
