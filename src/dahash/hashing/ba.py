"""Binary Autoencoder hashing (Carreira-Perpinan & Raziperchikolaei, "Hashing with Binary Autoencoders", CVPR 2015).

The paper (Sec. 3-4) learns a linear hash function ``h(x) = step(W x + b)`` in {0, 1}^L
and a linear decoder ``f(z) = A z + c`` by minimising the binary autoencoder error
``sum_n ||x_n - f(h(x_n))||^2``.  Since ``h`` is a step function, it uses the method of
auxiliary coordinates (MAC): introduce binary codes ``Z`` and minimise the quadratic-penalty
objective (paper eq. 3)::

    E_Q(h, f, Z; mu) = sum_n ||x_n - f(z_n)||^2 + mu ||z_n - h(x_n)||^2,   z_n in {0, 1}^L

for an increasing schedule of ``mu``, alternating

* W-step: fit each bit's linear classifier to (X, Z[:, l]) (paper: a linear SVM per bit);
* f-step: least-squares decoder from Z to X;
* Z-step: per point, minimise ``||x - f(z)||^2 + mu ||z - h(x)||^2`` over binary z
  (paper: exact enumeration for small L, alternating optimisation over bits otherwise).

What is faithful and what is not:

* faithful: the objective E_Q, the three MAC steps, linear SVMs in the W-step
  (``classifier="svm"``: one ``sklearn.svm.LinearSVC`` per bit), the least-squares decoder,
  the Z-step by alternating optimisation over bits (each bit's update is the exact minimiser
  given the others, vectorised over points), initialisation from a binary code (here PCA-sign),
  a geometric ``mu`` schedule, and the paper's stopping rule (stop once ``Z == h(X)``).
* simplified / this package's choices: the Z-step always uses alternating bits (no exact
  enumeration for small L) started from the current Z; the W-step keeps, per bit, the previous
  classifier when the new one would mismatch more bits of Z (the SVM hinge loss is only a
  surrogate of ``||z - h(x)||^2``; with this safeguard E_Q is non-increasing at fixed mu);
  ``classifier="lsq"`` offers a least-squares classifier (one linear solve for all bits);
  X is centred and divided by its root mean squared norm before training so that ``mu`` has
  the same meaning on every data set; the initial code is PCA-sign, not ITQ; the objective is
  reported per point (divided by n).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from dahash.errors import ConfigError
from dahash.hashing._base import BaseHasher, centre_and_scale
from dahash.validation import check_choice, check_int, check_positive, check_seed

__all__ = ["BinaryAutoencoderHasher"]

BA_CLASSIFIERS = ("svm", "lsq")


def pca_sign_codes(X: np.ndarray, n_bits: int) -> np.ndarray:
    """{0, 1} codes ``step(P^T x)`` from the ``n_bits`` leading principal directions of centred ``X``."""
    # Missing directions (n_bits > rank) get zero projections, i.e. a constant bit.
    _, _, vt = np.linalg.svd(X, full_matrices=False)
    proj = np.zeros((X.shape[1], n_bits))
    k = min(n_bits, vt.shape[0])
    proj[:, :k] = vt[:k].T
    return (X @ proj >= 0).astype(np.float64)


def _with_intercept(X: np.ndarray) -> np.ndarray:
    return np.hstack([X, np.ones((X.shape[0], 1))])


def decoder_step(X: np.ndarray, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f-step: least-squares ``(A, c)`` minimising ``||X - Z A^T - c||^2`` (min-norm if Z is rank-deficient)."""
    coef, *_ = np.linalg.lstsq(_with_intercept(Z), X, rcond=None)
    return coef[:-1].T, coef[-1]


def code_step(X: np.ndarray, Z: np.ndarray, A: np.ndarray, c: np.ndarray, H: np.ndarray,
              mu: float, max_sweeps: int = 10) -> np.ndarray:
    """Z-step by alternating over bits: each bit of every point set to its exact minimiser given the other bits.

    For bit l with the others fixed, ``||r - a_l z_l||^2 + mu (z_l - h_l)^2`` (``r`` the residual
    without bit l) is lower at ``z_l = 1`` iff ``||a_l||^2 - 2 a_l.r + mu (1 - 2 h_l) < 0``.
    Starting from the current Z, no update can raise the objective.
    """
    Z = Z.copy()
    R = X - c - Z @ A.T  # residual of every point, kept in sync with Z
    norms = np.einsum("dl,dl->l", A, A)
    for _ in range(max_sweeps):
        changed = False
        for bit in range(Z.shape[1]):
            a = A[:, bit]
            old = Z[:, bit].copy()
            dot = R @ a + old * norms[bit]  # a_l . r with bit l removed from the residual
            gain = norms[bit] - 2.0 * dot + mu * (1.0 - 2.0 * H[:, bit])
            new = (gain < 0).astype(np.float64)
            flip = new != old
            if flip.any():
                changed = True
                Z[:, bit] = new
                R[flip] -= np.outer(new[flip] - old[flip], a)
        if not changed:
            break
    return Z


def mac_objective(X: np.ndarray, Z: np.ndarray, A: np.ndarray, c: np.ndarray, H: np.ndarray,
                  mu: float) -> float:
    """E_Q / n: mean of ``||x - A z - c||^2 + mu ||z - h(x)||^2`` over the points."""
    recon = np.sum((X - c - Z @ A.T) ** 2)
    return float((recon + mu * np.sum(Z != H)) / X.shape[0])


class BinaryAutoencoderHasher(BaseHasher):
    """Binary autoencoder hashing (Carreira-Perpinan & Raziperchikolaei, CVPR 2015, eq. 3, MAC of Sec. 4): h(x) = step(Wx + b).

    Parameters
    ----------
    n_bits : int, default=32
        Code length L.
    mu0 : float, default=0.01
        First penalty weight of the schedule ``mu_k = mu0 * mu_factor**k`` (on X scaled to unit
        root mean squared norm, see the module notes).
    mu_factor : float, default=2.0
        Geometric growth of mu; must be > 1.
    n_mu : int, default=12
        Number of mu values in the schedule.
    max_inner : int, default=5
        Most (W, f, Z) rounds per mu; a mu ends earlier once Z stops changing.
    classifier : {"svm", "lsq"}, default="svm"
        W-step: one linear SVM per bit (the paper's) or a least-squares classifier of +-1 targets.
    C : float, default=1.0
        LinearSVC regularisation (``classifier="svm"`` only).
    random_state : int or None, default=None
        Seed of the LinearSVC solvers.

    Attributes
    ----------
    mean_, scale_ : centring vector and scalar scale applied to X before everything else.
    coef_ : ndarray (D, n_bits), intercept_ : ndarray (n_bits,)
        Hash function ``h(x) = step(((x - mean_) / scale_) @ coef_ + intercept_)``.
    decoder_coef_ : ndarray (D, n_bits), decoder_intercept_ : ndarray (D,)
        Decoder ``f(z) = decoder_coef_ @ z + decoder_intercept_`` (scaled space).
    objective_ : list of dict
        Per MAC round: ``mu``, and E_Q / n after its W-step (``"w"``), f-step (``"f"``) and
        Z-step (``"z"``).
    n_features_in_ : int
    """

    def __init__(self, n_bits: int = 32, *, mu0: float = 0.01, mu_factor: float = 2.0, n_mu: int = 12,
                 max_inner: int = 5, classifier: str = "svm", C: float = 1.0,
                 random_state: int | None = None) -> None:
        self.n_bits = n_bits
        self.mu0 = mu0
        self.mu_factor = mu_factor
        self.n_mu = n_mu
        self.max_inner = max_inner
        self.classifier = classifier
        self.C = C
        self.random_state = random_state

    def _validate_params(self) -> None:
        check_int("n_bits", self.n_bits, low=1)
        check_positive("mu0", self.mu0)
        if check_positive("mu_factor", self.mu_factor) <= 1.0:
            raise ConfigError(f"mu_factor must be a finite number > 1, got {self.mu_factor!r}")
        check_int("n_mu", self.n_mu, low=1)
        check_int("max_inner", self.max_inner, low=1)
        check_choice("classifier", self.classifier, BA_CLASSIFIERS)
        check_positive("C", self.C)
        check_seed(self.random_state)

    def _hash(self, Xs: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
        return (Xs @ coef + intercept >= 0).astype(np.float64)

    def _fit_classifiers(self, Xs: np.ndarray, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """W-step without the safeguard: a linear classifier per bit of Z."""
        n_features = Xs.shape[1]
        if self.classifier == "lsq":
            coef, *_ = np.linalg.lstsq(_with_intercept(Xs), 2.0 * Z - 1.0, rcond=None)
            return coef[:-1], coef[-1]
        coef = np.zeros((n_features, Z.shape[1]))
        intercept = np.zeros(Z.shape[1])
        for bit in range(Z.shape[1]):
            target = Z[:, bit]
            if target.min() == target.max():
                # One class only (LinearSVC refuses it): the constant classifier is exact.
                intercept[bit] = 1.0 if target[0] > 0 else -1.0
                continue
            svm = LinearSVC(C=self.C, dual="auto", random_state=self.random_state)
            svm.fit(Xs, target)
            coef[:, bit] = svm.coef_[0]
            intercept[bit] = svm.intercept_[0]
        return coef, intercept

    def fit(self, X: Any, y: Any = None) -> "BinaryAutoencoderHasher":
        """Learn h and f by MAC on the (n, D) features X; ``y`` is ignored (unsupervised)."""
        self._validate_params()
        # Small dense solves: BLAS threads only contend (10x slower on a busy 2-core box).
        # threadpool_limits restores the previous limits on exit, so no global state leaks.
        with threadpool_limits(limits=1):
            return self._fit(X)

    def _fit(self, X: Any) -> "BinaryAutoencoderHasher":
        X = self._validate_fit_X(X)
        self.mean_, self.scale_ = centre_and_scale(X)
        Xs = (X - self.mean_) / self.scale_

        Z = pca_sign_codes(Xs, self.n_bits)
        coef, intercept = self._fit_classifiers(Xs, Z)
        H = self._hash(Xs, coef, intercept)
        A, c = decoder_step(Xs, Z)
        history: list[dict[str, float]] = []
        for k in range(self.n_mu):
            mu = self.mu0 * self.mu_factor ** k
            for _ in range(self.max_inner):
                # W-step, keeping a bit's old classifier when the new one fits Z worse.
                new_coef, new_intercept = self._fit_classifiers(Xs, Z)
                new_H = self._hash(Xs, new_coef, new_intercept)
                better = np.sum(new_H != Z, axis=0) <= np.sum(H != Z, axis=0)
                coef = np.where(better, new_coef, coef)
                intercept = np.where(better, new_intercept, intercept)
                H = np.where(better, new_H, H)
                e_w = mac_objective(Xs, Z, A, c, H, mu)
                A, c = decoder_step(Xs, Z)
                e_f = mac_objective(Xs, Z, A, c, H, mu)
                new_Z = code_step(Xs, Z, A, c, H, mu)
                e_z = mac_objective(Xs, new_Z, A, c, H, mu)
                history.append({"mu": mu, "w": e_w, "f": e_f, "z": e_z})
                unchanged = np.array_equal(new_Z, Z)
                Z = new_Z
                if unchanged:
                    break
            if np.array_equal(Z, H):
                break  # the paper's stopping rule: the codes are realisable by h
        self.coef_ = coef
        self.intercept_ = intercept
        self.decoder_coef_ = A
        self.decoder_intercept_ = c
        self.objective_ = history
        return self

    def _signed_codes(self, X: np.ndarray) -> np.ndarray:
        """``W x + b`` on the training scaling: its sign is ``h(x)``, training points get exactly their codes."""
        return (X - self.mean_) / self.scale_ @ self.coef_ + self.intercept_
