"""LSHHasher: the sign-random-projection floor baseline."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from dahash.codes import pack_codes
from dahash.errors import ConfigError, DataError
from dahash.hashing import LSHHasher


def _data(seed: int = 0, n: int = 300, dim: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)) + 3.0


@pytest.mark.parametrize("n_bits", [1, 8, 13, 40])
def test_code_shape_and_determinism(n_bits: int) -> None:
    X = _data()
    codes = LSHHasher(n_bits, random_state=3).fit_transform(X)
    assert codes.dtype == np.uint8 and codes.shape == (300, (n_bits + 7) // 8)
    np.testing.assert_array_equal(codes, LSHHasher(n_bits, random_state=3).fit(X).transform(X))
    assert not np.array_equal(LSHHasher(40, random_state=4).fit_transform(X),
                              LSHHasher(40, random_state=3).fit_transform(X))


def test_transform_packs_project_and_centres() -> None:
    X = _data()
    h = LSHHasher(24, random_state=0).fit(X)
    np.testing.assert_array_equal(h.transform(X), pack_codes(h.project(X)))
    # Centred: each bit is on for a sizeable fraction of the data despite the +3 offset.
    on = (h.project(X) >= 0).mean(axis=0)
    assert np.all((on > 0.1) & (on < 0.9))


def test_transform_before_fit() -> None:
    with pytest.raises(NotFittedError):
        LSHHasher(8).transform(_data())


@pytest.mark.parametrize("kwargs, name", [({"n_bits": 0}, "n_bits"), ({"n_bits": 2.5}, "n_bits"),
                                          ({"n_bits": True}, "n_bits"),
                                          ({"random_state": -1}, "random_state"),
                                          ({"random_state": "a"}, "random_state")])
def test_bad_params(kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        LSHHasher(**kwargs).fit(_data())


def test_feature_mismatch() -> None:
    h = LSHHasher(8, random_state=0).fit(_data())
    with pytest.raises(DataError, match="features"):
        h.transform(np.zeros((2, 5)))
