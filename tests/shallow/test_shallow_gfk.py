import numpy as np
import pytest
import scipy.linalg
from shallow_synthetic import accuracy, merged, rotated_subspace

from dahash.shallow import GFKAdapter, fit_predict_shallow
from dahash.shallow.gfk import geodesic_flow_factors


def _integrated_geodesic(Ps: np.ndarray, Pt: np.ndarray, nodes: int = 40) -> np.ndarray:
    """``int_0^1 Phi(t) Phi(t)^T dt`` by Gauss-Legendre quadrature along the Grassmann geodesic,
    built independently of the closed form: the projector path ``P(t) = e^{tX} P_S e^{-tX}`` with
    ``X = log((I - 2 P_T)(I - 2 P_S)) / 2``."""
    D = Ps.shape[0]
    P0, P1 = Ps @ Ps.T, Pt @ Pt.T
    X = np.real(scipy.linalg.logm((np.eye(D) - 2 * P1) @ (np.eye(D) - 2 * P0))) / 2
    end = scipy.linalg.expm(X)
    np.testing.assert_allclose(end @ P0 @ end.T, P1, atol=1e-10)   # the path does reach P_T
    t, w = np.polynomial.legendre.leggauss(nodes)
    G = np.zeros((D, D))
    for ti, wi in zip((t + 1) / 2, w / 2):
        E = scipy.linalg.expm(ti * X)
        G += wi * E @ P0 @ E.T
    return G


def _bases(seed: int, D: int, d: int, shared: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    Ps, _ = np.linalg.qr(rng.normal(size=(D, d)))
    Pt, _ = np.linalg.qr(rng.normal(size=(D, d)))
    if shared:
        Pt, _ = np.linalg.qr(np.concatenate([Ps[:, :shared], Pt[:, shared:]], axis=1))
    return Ps, Pt


@pytest.mark.parametrize("D, d, shared", [(9, 3, 0), (12, 4, 1), (7, 4, 0)])
def test_closed_form_kernel_equals_integrated_geodesic_flow(D, d, shared):
    Ps, Pt = _bases(D + d, D, d, shared)
    B, C, theta = geodesic_flow_factors(Ps, Pt)
    np.testing.assert_allclose(B.T @ B, np.eye(B.shape[1]), atol=1e-12)
    np.testing.assert_allclose(B @ C @ B.T, _integrated_geodesic(Ps, Pt), atol=1e-10)
    np.testing.assert_allclose(np.sort(theta), np.sort(scipy.linalg.subspace_angles(Ps, Pt)),
                               atol=1e-7)   # scipy's own zero angle comes out as ~2e-8


def test_identical_subspaces_give_the_projector():
    Ps, _ = _bases(0, 8, 3)
    B, C, theta = geodesic_flow_factors(Ps, Ps)
    np.testing.assert_allclose(theta, 0.0, atol=1e-7)
    np.testing.assert_allclose(B @ C @ B.T, Ps @ Ps.T, atol=1e-12)


def test_fitted_adapter_uses_pca_bases_and_gfk_distances():
    Xs, ys, Xt, _ = rotated_subspace(0, n=20)
    X, y, sd = merged(Xs, ys, Xt)
    adapter = GFKAdapter(n_components=5).fit(X, y, sample_domain=sd)
    # P_S spans the top principal directions of the centred source.
    _, _, Vt = np.linalg.svd(Xs - Xs.mean(axis=0), full_matrices=False)
    np.testing.assert_allclose(scipy.linalg.subspace_angles(adapter.source_basis_, Vt[:5].T), 0.0,
                               atol=1e-7)
    G = adapter.geodesic_flow_kernel()
    np.testing.assert_allclose(G, _integrated_geodesic(adapter.source_basis_, adapter.target_basis_),
                               atol=1e-9)
    Z = adapter.transform(X, sample_domain=sd, allow_source=True)
    i, j = np.arange(0, 120, 7), np.arange(120, 240, 7)   # source rows vs target rows
    diff = X[i] - X[j]
    np.testing.assert_allclose(np.linalg.norm(Z[i] - Z[j], axis=1),
                               np.sqrt(np.einsum("nd,de,ne->n", diff, G, diff)), rtol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_a_rotated_subspace(seed):
    Xs, ys, Xt, yt = rotated_subspace(seed)
    plain = accuracy(fit_predict_shallow("none", Xs, ys, Xt, preprocess="none"), yt)
    gfk = accuracy(fit_predict_shallow("gfk", Xs, ys, Xt, preprocess="none", n_components=5), yt)
    assert plain < 0.5
    assert gfk > 0.88


@pytest.mark.parametrize("value, message", [
    (0, r"n_components must be an integer >= 1, got 0"),
    (2.5, r"n_components must be an integer >= 1, got 2.5"),
    (9, r"n_components must be <= 7, the rank of the centred target features, got 9"),
])
def test_bad_n_components_is_rejected_by_name(value, message):
    rng = np.random.default_rng(0)
    X, _, sd = merged(rng.normal(size=(10, 12)), np.zeros(10, int), rng.normal(size=(8, 12)))
    with pytest.raises(ValueError, match=message):
        GFKAdapter(n_components=value).fit(X, sample_domain=sd)
