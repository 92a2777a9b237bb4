"""DPSHHasher and dpsh_loss (DPSH, Li, Wang & Kang, IJCAI 2016): the loss against the paper's
closed-form gradient, retrieval on clustered Gaussian data against LSH, determinism and input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from dahash.codes import pack_codes, unpack_codes
from dahash.errors import ConfigError, DataError
from dahash.hashing import LSHHasher
from dahash.hashing.dpsh import DPSHHasher, dpsh_loss
from dahash.metrics.retrieval import mean_average_precision
from hashing_data import clustered, held_out_map  # same directory (pytest prepends it to sys.path)

N_BITS = 32
EPOCHS = 20
SEEDS = (0, 1, 2)
# Observed with clustered(seed, n=1000), 32 bits, 20 epochs: DPSH 0.909 / 0.938 / 0.807 against
# LSH 0.228 / 0.193 / 0.234 on seeds 0 / 1 / 2 (DPSH 0.81-0.97, LSH 0.19-0.23 over seeds 0-9).
MIN_MAP = 0.65
MARGIN = 0.4


def data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    return clustered(seed, n=1000)


def supervised_map(hasher: DPSHHasher, X: np.ndarray, y: np.ndarray, n_queries: int = 200) -> float:
    """mAP of the first ``n_queries`` points against the rest, DPSH trained on the (labeled) rest."""
    hasher.fit(X[n_queries:], y[n_queries:])
    return mean_average_precision(hasher.transform(X[:n_queries]), y[:n_queries],
                                  hasher.transform(X[n_queries:]), y[n_queries:])


@pytest.fixture(scope="module")
def fitted() -> dict[int, tuple[DPSHHasher, float]]:
    out = {}
    for seed in SEEDS:
        hasher = DPSHHasher(N_BITS, epochs=EPOCHS, random_state=seed)
        out[seed] = (hasher, supervised_map(hasher, *data(seed)))
    return out


# ----------------------------------------------------------------------------- the loss


def closed_form(u: np.ndarray, labels: np.ndarray, eta: float) -> tuple[float, np.ndarray]:
    """J and dJ/du of DPSH's eq. 4 in numpy, loops over pairs written out as in the paper."""
    n = len(u)
    b = np.where(u >= 0, 1.0, -1.0)
    s = (labels[:, None] == labels[None, :]).astype(np.float64)
    theta = 0.5 * u @ u.T
    a = 1.0 / (1.0 + np.exp(-theta))
    loss = np.sum(np.log1p(np.exp(theta)) - s * theta) + eta * np.sum((u - b) ** 2)
    grad = np.zeros_like(u)
    for i in range(n):
        for j in range(n):
            grad[i] += 0.5 * (a[i, j] - s[i, j]) * u[j] + 0.5 * (a[j, i] - s[j, i]) * u[j]
        grad[i] += 2.0 * eta * (u[i] - b[i])
    return float(loss), grad


@pytest.mark.parametrize("eta", [0.0, 0.3, 2.0])
def test_loss_and_gradient_match_the_paper(eta: float) -> None:
    rng = np.random.default_rng(7)
    u = rng.normal(0.0, 1.5, size=(9, 6))
    u[0, 0] = u[3, 2] = u[5, 5] = 0.0  # sgn(0) = +1: the quantization gradient there is -2 eta
    labels = np.array([0, 1, 0, 2, 1, 1, 0, 2, 3])
    expected_loss, expected_grad = closed_form(u, labels, eta)

    ut = torch.tensor(u, dtype=torch.float64, requires_grad=True)
    loss = dpsh_loss(ut, torch.from_numpy(labels), eta)
    loss.backward()

    assert loss.dtype == torch.float64 and loss.ndim == 0
    assert loss.item() == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(ut.grad.numpy(), expected_grad, rtol=1e-10, atol=1e-12)
    if eta > 0:
        assert ut.grad[0, 0].item() == pytest.approx(expected_grad[0, 0])
        # At u = 0 only the quantization term survives in that coordinate's own contribution:
        # a sign(0) = 0 convention would drop the -2 eta.
        assert expected_grad[0, 0] != pytest.approx(closed_form(u, labels, 0.0)[1][0, 0])


def test_loss_is_stable_for_large_inner_products() -> None:
    u = torch.full((4, 8), 30.0, dtype=torch.float64)  # theta = 3600: exp overflows naively
    labels = torch.tensor([0, 0, 1, 1])
    loss = dpsh_loss(u, labels, 1.0)
    # Like pairs: softplus(3600) - 3600 ~ 0; unlike pairs (8 of 16): 3600 each; quantization: 16 * 29^2 * 2.
    assert torch.isfinite(loss)
    assert float(loss) == pytest.approx(8 * 3600.0 + 32 * 29.0**2, rel=1e-12)


# ----------------------------------------------------------------------------- retrieval


@pytest.mark.parametrize("seed", SEEDS)
def test_beats_lsh(fitted, seed: int) -> None:
    dpsh_map = fitted[seed][1]
    lsh_map = held_out_map(LSHHasher(N_BITS, random_state=seed), *data(seed))
    print(f"seed {seed}: DPSH mAP {dpsh_map:.3f}, LSH mAP {lsh_map:.3f}")
    assert dpsh_map > MIN_MAP
    assert dpsh_map > lsh_map + MARGIN


@pytest.mark.parametrize("seed", SEEDS)
def test_loss_history_decreases(fitted, seed: int) -> None:
    history = np.array(fitted[seed][0].loss_history_)
    assert history.shape == (EPOCHS,)
    assert np.all(np.isfinite(history))
    # Observed: 108.5 -> 39.4 / 48.3 / 55.8 (ratio <= 0.52).
    assert history[-1] < 0.7 * history[0]
    assert history[-5:].mean() < history[:5].mean()


# ----------------------------------------------------------------------------- codes


def test_codes_are_packed_signs_of_the_linear_hash_layer() -> None:
    X, y = data(3)
    hasher = DPSHHasher(12, hidden=(32, 16), epochs=2, random_state=0).fit(X[:300], y[:300])
    codes = hasher.transform(X[:50])
    assert codes.dtype == np.uint8 and codes.shape == (50, 2)
    assert np.all(codes[:, 1] & 0x0F == 0)  # the 4 pad bits of the last byte are zero

    # Recompute u = fc8(relu(fc7(relu(fc6(standardised x))))) by hand from the weights.
    w = {name: p.detach().double().numpy() for name, p in hasher.model_.named_parameters()}
    h = (X[:50] - hasher.mean_) / hasher.scale_
    h = np.maximum(h @ w["fc6.weight"].T + w["fc6.bias"], 0.0)
    h = np.maximum(h @ w["fc7.weight"].T + w["fc7.bias"], 0.0)
    u = h @ w["fc8.weight"].T + w["fc8.bias"]
    assert u.shape == (50, 12)
    np.testing.assert_allclose(hasher._signed_codes(X[:50]), u, rtol=1e-4, atol=1e-4)
    near_zero = np.abs(u) < 1e-4  # float32 rounding may flip those
    signs = unpack_codes(codes, 12)  # +-1
    assert np.array_equal(signs[~near_zero], np.where(u >= 0, 1, -1)[~near_zero])
    np.testing.assert_array_equal(codes, pack_codes(hasher._signed_codes(X[:50])))
    assert not hasher.model_.training


def test_determinism_and_global_torch_state() -> None:
    X, y = data(4)
    X, y = X[:300], y[:300]
    kw = dict(hidden=(32, 32), epochs=3, batch_size=64)
    torch.manual_seed(1234)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        state = torch.random.get_rng_state()
        a = DPSHHasher(16, random_state=5, **kw).fit(X, y)
        assert torch.equal(torch.random.get_rng_state(), state)
        assert torch.get_num_threads() == 2
        b = DPSHHasher(16, random_state=5, **kw).fit(X, y)
        c = DPSHHasher(16, random_state=6, **kw).fit(X, y)
        assert torch.equal(torch.random.get_rng_state(), state)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    codes_a = a.transform(X)
    np.testing.assert_array_equal(codes_a, b.transform(X))
    assert a.loss_history_ == b.loss_history_
    codes_c = c.transform(X)
    assert not np.array_equal(codes_a, codes_c)
    # Not merely a few flipped bits: different initialisations give different codes.
    assert (unpack_codes(codes_a, 16) != unpack_codes(codes_c, 16)).mean() > 0.2


def test_threads_restored_when_training_diverges() -> None:
    X, y = data(5)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(DataError, match="diverged"):
            DPSHHasher(8, hidden=(16, 16), epochs=5, lr=10.0, random_state=0).fit(X[:300], y[:300])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_batch_of_one_left_over_joins_the_previous_batch() -> None:
    X, y = data(6)
    # 129 points with batches of 128 would leave a pairless batch of 1: one batch per epoch instead.
    hasher = DPSHHasher(8, hidden=(16, 16), epochs=2, batch_size=128, random_state=0).fit(X[:129], y[:129])
    assert len(hasher.loss_history_) == 2 and np.all(np.isfinite(hasher.loss_history_))
    assert hasher.transform(X[:129]).shape == (129, 1)


# ----------------------------------------------------------------------------- constant features


def test_zero_constant_feature_gives_finite_codes() -> None:
    X, y = data(7)
    X = X[:400].copy()
    X[:, 3] = 0.0
    X[:, 10] = 5.0  # exactly representable in float32: std is exactly 0
    hasher = DPSHHasher(16, hidden=(32, 32), epochs=3, random_state=0).fit(X, y[:400])
    assert np.all(np.isfinite(hasher.loss_history_))
    assert hasher.scale_[3] == 1.0 and hasher.scale_[10] == 1.0
    u = hasher._signed_codes(X)
    assert np.all(np.isfinite(u))
    assert hasher.transform(X).shape == (400, 2)


def test_constant_feature_not_representable_in_float32_is_kept_at_zero() -> None:
    X, y = data(0)
    X = X.copy()
    X[:, 3] = 0.1
    hasher = DPSHHasher(32, epochs=EPOCHS, random_state=0).fit(X[200:], y[200:])
    assert np.all(np.isfinite(hasher._signed_codes(X[:200])))
    # float32 statistics made this scale rounding noise (8.1e-07), flipping 14 of 32 bits below.
    assert hasher.scale_[3] == 1.0
    # A change of 0.1 in a feature that was constant in training should barely move the codes.
    moved = X[:200].copy()
    moved[:, 3] = 0.2
    flipped = unpack_codes(hasher.transform(X[:200]), 32) != unpack_codes(hasher.transform(moved), 32)
    assert flipped.sum(axis=1).mean() < 1.0


# ----------------------------------------------------------------------------- bad input


def test_single_class_raises_data_error() -> None:
    X, _ = data(0)
    with pytest.raises(DataError, match="two classes"):
        DPSHHasher(8).fit(X[:50], np.full(50, 3))


def test_mismatched_lengths_raise_value_error() -> None:
    X, y = data(0)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        DPSHHasher(8).fit(X[:50], y[:49])


@pytest.mark.parametrize("param, value", [
    ("n_bits", 0), ("n_bits", 2.5), ("epochs", 0), ("batch_size", 1), ("hidden", (0, 8)),
    ("eta", -1.0), ("lr", 0.0), ("momentum", float("nan")), ("weight_decay", -1e-4), ("random_state", -1),
])
def test_bad_params_raise_config_error(param: str, value) -> None:
    X, y = data(0)
    name = "hidden\\[0\\]" if param == "hidden" else param
    with pytest.raises(ConfigError, match=name):
        DPSHHasher(**{param: value}).fit(X[:50], y[:50])


@pytest.mark.parametrize("hidden", [(256,), (8, 8, 8), 256])
def test_hidden_of_wrong_length_raises(hidden) -> None:
    X, y = data(0)
    with pytest.raises(ConfigError, match="hidden must be two widths"):
        DPSHHasher(8, hidden=hidden).fit(X[:50], y[:50])


def test_transform_before_fit_raises() -> None:
    with pytest.raises(NotFittedError, match="fit"):
        DPSHHasher(8).transform(np.zeros((3, 4)))


def test_transform_with_wrong_feature_count_raises_data_error() -> None:
    X, y = data(0)
    hasher = DPSHHasher(8, hidden=(16, 16), epochs=1, random_state=0).fit(X[:100], y[:100])
    with pytest.raises(DataError, match="X has 10 features, but DPSHHasher is expecting 64 features"):
        hasher.transform(X[:5, :10])
