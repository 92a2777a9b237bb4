"""K-means Hashing (He, Wen & Sun, CVPR 2013): affinity-preserving k-means in a product space.

What follows the paper
----------------------
* Codes are codeword *indices*: with ``b`` bits a (sub)space has ``k = 2^b`` codewords, and the
  code of a point is the ``b``-bit binary index of its nearest codeword (Sec. 3).
* Hamming distance stands in for Euclidean distance between codewords through
  ``d_h(i, j) = s * h(i, j)^(1/2)`` (Sec. 3.1): ``h`` is the Hamming distance between indices and
  the square root is what makes hypercube vertices match exactly.
* Objective (Sec. 3.1-3.2, Eqs. 4-5): ``E = E_quan + lambda * E_aff`` with
  ``E_quan = 1/n sum_x ||x - c_i(x)||^2`` and
  ``E_aff = sum_{i,j} w_ij (||c_i - c_j|| - d_h(i, j))^2``, ``w_ij = n_i n_j / n^2``,
  ``lambda = 10``.
* Optimisation (Sec. 3.3): alternate an assignment step (each point to its nearest codeword)
  and an update step (codewords with the assignment fixed), until the assignment stops changing.
* Initialisation (Sec. 3.3): the codewords start as the ``2^b`` vertices of a hypercube in the
  ``b``-dimensional PCA subspace, rotated and scaled as in ITQ, so index bits = vertex signs.
* Product space (Sec. 4): the PCA-projected data are split into ``M = n_bits / b`` subspaces, each
  quantised independently with ``b`` bits; the codes are concatenated and ranked by plain Hamming
  distance (``sum_m s^2 h_m`` approximates squared Euclidean distance when the ``s`` agree).

What is simplified or our reconstruction (the paper was not at hand, only memory of it)
--------------------------------------------------------------------------------------
* Update step: the paper updates one codeword at a time with the others fixed (quasi-Newton);
  here all ``k`` codewords of a subspace are updated jointly by L-BFGS on the same objective
  ``E`` with the assignment fixed -- same fixed points, fewer optimiser calls.
* The scale ``s`` is fixed per subspace at initialisation, to the weighted least-squares fit of
  the initial codeword distances to ``h^(1/2)`` (it equals the hypercube edge length there).
* Subspace decomposition: principal directions are dealt to subspaces by the greedy balanced
  "eigenvalue allocation" of OPQ (Ge et al., CVPR 2013, Sec. 4.2), keeping
  ``M * floor(min(D, n - 1) / M)`` directions; the paper's exact choice of dimensions may differ.
* ``E_aff`` sums over ordered pairs (each unordered pair twice); a factor of 2 on ``lambda``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.optimize

from dahash.errors import ConfigError
from dahash.hashing._base import BaseHasher, check_int, check_nonnegative, make_rng
from dahash.hashing.itq import random_rotation

__all__ = ["KMeansHasher"]

# Added under the square root of codeword distances: ||c_i - c_j|| is not differentiable at 0.
_DIST_EPS = 1e-12
# Iterations of the ITQ rotation used only to initialise each subspace's hypercube.
_INIT_ITQ_ITERS = 50


def _index_bits(b: int) -> np.ndarray:
    """(2^b, b) array of +-1: row i is the binary expansion of i, most significant bit first."""
    idx = np.arange(2**b)[:, None]
    return np.where((idx >> np.arange(b - 1, -1, -1)) & 1, 1.0, -1.0)


def _allocate_eigenvalues(variances: np.ndarray, n_sub: int, sub_dim: int) -> np.ndarray:
    """(n_sub, sub_dim) indices of principal directions, balancing the product of variances.

    Greedy as in OPQ's eigenvalue allocation: largest variance first, each to the non-full
    subspace whose log-variance sum is currently smallest, so every subspace gets a similar
    share of the data's spread (an unbalanced split wastes bits on flat subspaces).
    """
    log_var = np.log(np.maximum(variances, np.finfo(float).tiny))
    groups: list[list[int]] = [[] for _ in range(n_sub)]
    totals = np.zeros(n_sub)
    for j in np.argsort(-variances)[: n_sub * sub_dim]:
        open_subs = [m for m in range(n_sub) if len(groups[m]) < sub_dim]
        m = min(open_subs, key=lambda q: totals[q])
        groups[m].append(int(j))
        totals[m] += log_var[j]
    # Within a subspace keep decreasing variance, so its top-b directions come first.
    return np.array([sorted(g, key=lambda j: -variances[j]) for g in groups])


def _sq_dists(Z: np.ndarray, C: np.ndarray) -> np.ndarray:
    """(n, k) squared Euclidean distances between rows of Z and codewords C."""
    return (Z**2).sum(1)[:, None] - 2.0 * Z @ C.T + (C**2).sum(1)[None, :]


def _objective(flat: np.ndarray, k: int, d: int, frac: np.ndarray, means: np.ndarray,
               w: np.ndarray, target: np.ndarray, lam: float) -> tuple[float, np.ndarray]:
    """``E`` (up to the constant within-cluster scatter) and its gradient in the codewords.

    ``1/n sum_x ||x - c_i(x)||^2 = sum_i (n_i/n) ||c_i - mean_i||^2 + const``, so the assignment
    enters only through the counts and cluster means.
    """
    C = flat.reshape(k, d)
    r = C - means
    e_quan = float(np.sum(frac[:, None] * r**2))
    g = 2.0 * frac[:, None] * r
    diff = C[:, None, :] - C[None, :, :]
    dist = np.sqrt((diff**2).sum(-1) + _DIST_EPS)
    resid = dist - target
    e_aff = float(np.sum(w * resid**2))
    # Each codeword appears as both i and j of the ordered pairs: factor 2 (square) * 2.
    g += 4.0 * lam * np.einsum("ij,ijd->id", w * resid / dist, diff)
    return e_quan + lam * e_aff, g.ravel()


class KMeansHasher(BaseHasher):
    """K-means Hashing with product space (He, Wen & Sun, CVPR 2013, Eqs. 4-5, Secs. 3.3 and 4).

    Parameters
    ----------
    n_bits : int, default=32
        Total code length; a multiple of ``bits_per_subspace``.
    bits_per_subspace : int, default=4
        ``b`` bits (``2^b`` codewords) per subspace, 1..8 (the paper keeps ``b <= 8``).
    lam : float, default=10.0
        Weight ``lambda`` of the affinity error (10 in the paper).
    n_iter : int, default=50
        Maximum assignment/update rounds per subspace (stops earlier once assignments are stable).
    random_state : None, int or numpy Generator
        Seed of the random initial rotation of the ITQ initialisation.

    Attributes
    ----------
    mean_ : ndarray (D,)
    components_ : ndarray (M, d, D)
        Principal directions of each subspace.
    codebooks_ : ndarray (M, 2^b, d)
        Codeword ``i`` of subspace ``m`` has code = ``b``-bit binary expansion of ``i``.
    scale_ : ndarray (M,)
        The constant ``s`` of ``d_h = s * sqrt(h)`` per subspace.
    n_iter_ : ndarray (M,)
        Rounds run per subspace.
    objective_ : list of list of float
        ``E`` (without its constant part) after each update step, per subspace.
    """

    def __init__(self, n_bits: int = 32, bits_per_subspace: int = 4, lam: float = 10.0,
                 n_iter: int = 50, random_state: Any = None) -> None:
        self.n_bits = n_bits
        self.bits_per_subspace = bits_per_subspace
        self.lam = lam
        self.n_iter = n_iter
        self.random_state = random_state

    def _check_params(self) -> tuple[int, int, float, int]:
        n_bits = check_int("n_bits", self.n_bits, low=1)
        b = check_int("bits_per_subspace", self.bits_per_subspace, low=1, high=8)
        lam = check_nonnegative("lam", self.lam)
        n_iter = check_int("n_iter", self.n_iter, low=1)
        if n_bits % b:
            raise ConfigError(f"n_bits must be a multiple of bits_per_subspace={b}, got {n_bits}")
        return n_bits, b, lam, n_iter

    def fit(self, X: Any, y: Any = None) -> "KMeansHasher":
        """Learn the subspaces and their codebooks from ``X`` (labels, if given, are ignored)."""
        n_bits, b, lam, n_iter = self._check_params()
        rng = make_rng(self.random_state)
        X = self._validate_fit_X(X)
        n, D = X.shape
        n_sub = n_bits // b
        sub_dim = min(D, n - 1) // n_sub
        if sub_dim < b:
            raise ConfigError(
                f"n_bits must be <= {b * (min(D, n - 1) // b)} for these data: each of the "
                f"n_bits/bits_per_subspace subspaces needs >= bits_per_subspace={b} of the "
                f"min(n_features, n_samples - 1)={min(D, n - 1)} principal directions, "
                f"got {n_bits}")
        self.mean_ = X.mean(axis=0)
        Xc = X - self.mean_
        _, sv, Vt = np.linalg.svd(Xc, full_matrices=False)
        groups = _allocate_eigenvalues(sv**2 / (n - 1), n_sub, sub_dim)
        self.components_ = Vt[groups]                       # (M, d, D)
        bits = _index_bits(b)                               # (k, b)
        codebooks, scales, iters, objectives = [], [], [], []
        for m in range(n_sub):
            C, s, it, obj = self._fit_subspace(Xc @ self.components_[m].T, bits, lam, n_iter, rng)
            codebooks.append(C)
            scales.append(s)
            iters.append(it)
            objectives.append(obj)
        self.codebooks_ = np.stack(codebooks)
        self.scale_ = np.array(scales)
        self.n_iter_ = np.array(iters)
        self.objective_ = objectives
        return self

    @staticmethod
    def _fit_subspace(Z: np.ndarray, bits: np.ndarray, lam: float, n_iter: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, float, int, list[float]]:
        """Affinity-preserving k-means on one subspace's coordinates Z (n, d)."""
        n, d = Z.shape
        k, b = bits.shape
        # Init: ITQ rotation R on the top-b PCA coordinates, V R ~ a B, so the hypercube vertices
        # a * beta_i R^T (beta_i = index bits) sit on the data and index bits = vertex signs.
        V = Z[:, :b]
        R = random_rotation(b, rng)
        for _ in range(_INIT_ITQ_ITERS):
            B = np.where(V @ R >= 0, 1.0, -1.0)
            S, _, S_hat_t = np.linalg.svd(B.T @ V)
            R = S_hat_t.T @ S.T
        a = float(np.mean(np.abs(V @ R)))
        C = np.zeros((k, d))
        C[:, :b] = a * bits @ R.T
        hamming = np.sum(bits[:, None, :] != bits[None, :, :], axis=-1).astype(float)
        root_h = np.sqrt(hamming)
        # s fixed by weighted least squares of initial codeword distances on sqrt(h).
        labels = np.argmin(_sq_dists(Z, C), axis=1)
        counts = np.bincount(labels, minlength=k).astype(float)
        w = np.outer(counts, counts) / n**2
        dist0 = np.sqrt(((C[:, None] - C[None]) ** 2).sum(-1))
        denom = float(np.sum(w * hamming))
        s = float(np.sum(w * dist0 * root_h) / denom) if denom > 0 else 2.0 * a
        target = s * root_h
        objective: list[float] = []
        it = 0
        for it in range(1, n_iter + 1):
            counts = np.bincount(labels, minlength=k).astype(float)
            sums = np.zeros((k, d))
            np.add.at(sums, labels, Z)
            # An empty cluster has no quantisation term and zero affinity weight: keep it put.
            means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], C)
            w = np.outer(counts, counts) / n**2
            res = scipy.optimize.minimize(
                _objective, C.ravel(), jac=True, method="L-BFGS-B",
                args=(k, d, counts / n, means, w, target, lam), options={"maxiter": 100})
            C = res.x.reshape(k, d)
            objective.append(float(res.fun))
            new_labels = np.argmin(_sq_dists(Z, C), axis=1)
            if np.array_equal(new_labels, labels):
                break
            labels = new_labels
        return C, s, it, objective

    def assign(self, X: Any) -> np.ndarray:
        """(n, M) nearest-codeword index per subspace; index bits are the code bits."""
        X = self._validate_X(X)
        return self._assign(X)

    def _assign(self, X: np.ndarray) -> np.ndarray:
        Xc = X - self.mean_
        return np.stack([np.argmin(_sq_dists(Xc @ P.T, C), axis=1)
                         for P, C in zip(self.components_, self.codebooks_)], axis=1)

    def _signed_codes(self, X: np.ndarray) -> np.ndarray:
        # +-1 bits of each index, subspaces concatenated: there is no real projection before a
        # sign here, so this (rather than a decision_function) is what transform packs.
        bits = _index_bits(int(self.bits_per_subspace))
        idx = self._assign(X)
        return bits[idx].reshape(X.shape[0], -1)
