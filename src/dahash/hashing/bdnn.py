"""Unsupervised Binary Deep Neural Network hashing, UH-BDNN (Do, Doan & Cheung, "Learning to Hash with Binary Deep Neural Network", ECCV 2016).

The paper (Sec. 3.1) trains an n-layer network whose layer n-1 has L units and outputs the
codes, and whose last layer reconstructs the input from binary codes ``B`` in {-1, +1}^{L x m}
(columns are the m training points).  As recalled here, its objective (eq. 2) is::

    J = 1/(2m) ||X - W_n B - c_n 1^T||^2                  (reconstruction from the codes)
        + lam1/2 sum_l ||W_l||^2                           (weight decay)
        + lam2/(2m) ||H_{n-1} - B||^2                      (codes close to the layer output)
        + lam3/2 ||(1/m) H_{n-1} H_{n-1}^T - I||^2        (independence / decorrelation)
        + lam4/(2m) ||H_{n-1} 1||^2                        (balance: each bit half +1)

with ``H_{n-1}`` the (L x m) output of layer n-1 (identity activation, sigmoid hidden layers),
minimised by alternating (i) the network parameters with B fixed, by L-BFGS, and (ii) B with the
network fixed, which for the terms that involve B is a binary quadratic problem solved bit by bit
(discrete cyclic coordinate descent, each bit row set to the sign of its closed-form target).
New points are coded as ``sgn(H_{n-1}(x))``.

What is faithful and what is not:

* faithful: the five terms above and their form, identity code layer with sigmoid hidden
  layers, a linear reconstruction layer fed by B, the alternation network-step / B-step, full-batch
  L-BFGS for the network step (the paper's optimiser; also the natural choice for a few thousand
  points: deterministic, no learning rate to tune), B-step by exact per-bit sign updates, codes
  ``sgn(H_{n-1})`` for new points.
* simplified / this package's choices: one hidden layer (``hidden_size``; the paper stacks
  several, with per-data-set widths); ``lam1=1e-5, lam2=5e-2`` are the values recalled from the
  paper's UH-BDNN experiments (not checked against the text), but ``lam3=1.0, lam4=1e-2`` are
  not: with the recalled ``lam3=1e-2, lam4=1e-6`` the balance term ``lam4/(2m)||H 1||^2`` is
  negligible at a few thousand points and a bit collapsed to a constant on clustered test data;
  the B-step uses the reconstruction and lam2 terms only (the others do not involve B); B is
  initialised as the sign of the randomly initialised network's output; X is centred and divided
  by its root mean squared norm first; fixed numbers of alternations (``n_iter``) and of L-BFGS
  iterations per network step (``lbfgs_iter``), the L-BFGS memory being reset after each B-step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dahash.hashing._base import BaseHasher, centre_and_scale
from dahash.validation import check_int, check_positive, check_seed

__all__ = ["BDNNHasher"]


def _encode(Xt: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """Layer n-1 output (m x L rows-as-points): sigmoid hidden layer, identity code layer."""
    W1, b1, W2, b2 = params[:4]
    return torch.sigmoid(Xt @ W1 + b1) @ W2 + b2


def bdnn_objective(Xt: torch.Tensor, B: torch.Tensor, params: list[torch.Tensor],
                   lam: tuple[float, float, float, float]) -> torch.Tensor:
    """UH-BDNN objective J (module docstring) for points as rows: X (m, D), B (m, L) in {-1, +1}."""
    lam1, lam2, lam3, lam4 = lam
    W1, _, W2, _, W3, c3 = params
    m, n_bits = B.shape
    H = _encode(Xt, params)
    recon = 0.5 / m * torch.sum((Xt - B @ W3 - c3) ** 2)
    decay = 0.5 * lam1 * (torch.sum(W1 ** 2) + torch.sum(W2 ** 2) + torch.sum(W3 ** 2))
    binary = 0.5 * lam2 / m * torch.sum((H - B) ** 2)
    eye = torch.eye(n_bits, dtype=H.dtype)
    independence = 0.5 * lam3 * torch.sum((H.T @ H / m - eye) ** 2)
    balance = 0.5 * lam4 / m * torch.sum(H.sum(dim=0) ** 2)
    return recon + decay + binary + independence + balance


def code_step(Xt: torch.Tensor, B: torch.Tensor, H: torch.Tensor, W3: torch.Tensor, c3: torch.Tensor,
              lam2: float, max_sweeps: int = 10) -> torch.Tensor:
    """B-step: minimise ||X - B W3 - c3||^2 + lam2 ||H - B||^2 over B in {-1, +1} by cyclic per-bit signs.

    With the other bits fixed, bit l of every point is ``sgn(q_l - sum_{k != l} b_k w_k.w_l)``,
    ``q = (X - c3) W3^T + lam2 H``; each update is the exact minimiser, so J never increases.
    """
    B = B.clone()
    Q = (Xt - c3) @ W3.T + lam2 * H
    G = W3 @ W3.T  # (L, L) Gram matrix of the decoder rows
    for _ in range(max_sweeps):
        changed = False
        for bit in range(B.shape[1]):
            target = Q[:, bit] - B @ G[:, bit] + B[:, bit] * G[bit, bit]
            new = torch.where(target >= 0, 1.0, -1.0).to(B.dtype)
            if not torch.equal(new, B[:, bit]):
                changed = True
                B[:, bit] = new
        if not changed:
            break
    return B


class BDNNHasher(BaseHasher):
    """UH-BDNN hashing (Do, Doan & Cheung, ECCV 2016, Sec. 3.1, eq. 2): network layer n-1 gives sgn codes, B alternated with L-BFGS.

    Parameters
    ----------
    n_bits : int, default=32
        Code length L (width of layer n-1).
    hidden_size : int, default=64
        Width of the sigmoid hidden layer.
    lam1, lam2, lam3, lam4 : float, defaults 1e-5, 5e-2, 1.0, 1e-2
        Weights of weight decay, ||H - B||^2, independence and balance (module docstring).
    n_iter : int, default=10
        Alternations of network step and B-step.
    lbfgs_iter : int, default=20
        L-BFGS iterations per network step (strong-Wolfe line search).
    random_state : int or None, default=None
        Seed of the weight initialisation (a local numpy Generator; no global seed is touched).

    Attributes
    ----------
    mean_, scale_ : centring vector and scalar scale applied to X first.
    weights_ : list of ndarray
        ``[W1, b1, W2, b2, W3, c3]``: encoder (D->hidden->L) and decoder (L->D).
    loss_history_ : list of float
        J after each alternation (after its B-step); ``loss_history_[0]`` is J at initialisation.
    n_features_in_ : int
    """

    def __init__(self, n_bits: int = 32, *, hidden_size: int = 64, lam1: float = 1e-5,
                 lam2: float = 5e-2, lam3: float = 1.0, lam4: float = 1e-2, n_iter: int = 10,
                 lbfgs_iter: int = 20, random_state: int | None = None) -> None:
        self.n_bits = n_bits
        self.hidden_size = hidden_size
        self.lam1 = lam1
        self.lam2 = lam2
        self.lam3 = lam3
        self.lam4 = lam4
        self.n_iter = n_iter
        self.lbfgs_iter = lbfgs_iter
        self.random_state = random_state

    def _validate_params(self) -> tuple[float, float, float, float]:
        check_int("n_bits", self.n_bits, low=1)
        check_int("hidden_size", self.hidden_size, low=1)
        check_int("n_iter", self.n_iter, low=1)
        check_int("lbfgs_iter", self.lbfgs_iter, low=1)
        check_seed(self.random_state)
        return tuple(check_positive(name, getattr(self, name), allow_zero=True)
                     for name in ("lam1", "lam2", "lam3", "lam4"))  # type: ignore[return-value]

    def fit(self, X: Any, y: Any = None) -> "BDNNHasher":
        """Train UH-BDNN on the (n, D) features X; ``y`` is ignored (unsupervised)."""
        lam = self._validate_params()
        X = self._validate_fit_X(X)
        # torch's thread pool is shared with other work on small machines; one thread is fastest
        # here. The caller's setting is put back afterwards: no global state leaks out of fit.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._fit(X, lam)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, X: np.ndarray, lam: tuple[float, float, float, float]) -> "BDNNHasher":
        self.mean_, self.scale_ = centre_and_scale(X)
        Xt = torch.from_numpy((X - self.mean_) / self.scale_)
        m, dim = Xt.shape
        rng = np.random.default_rng(self.random_state)

        def init(fan_in: int, fan_out: int) -> torch.Tensor:
            # Glorot-uniform, drawn from the estimator's own generator for reproducibility.
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            return torch.from_numpy(rng.uniform(-bound, bound, size=(fan_in, fan_out)))

        params = [init(dim, self.hidden_size), torch.zeros(self.hidden_size, dtype=torch.float64),
                  init(self.hidden_size, self.n_bits), torch.zeros(self.n_bits, dtype=torch.float64),
                  init(self.n_bits, dim), torch.zeros(dim, dtype=torch.float64)]
        for p in params:
            p.requires_grad_(True)
        with torch.no_grad():
            B = torch.where(_encode(Xt, params) >= 0, 1.0, -1.0).to(torch.float64)
            history = [float(bdnn_objective(Xt, B, params, lam))]
        optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=self.lbfgs_iter,
                                      line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = bdnn_objective(Xt, B, params, lam)
            loss.backward()
            return loss

        for _ in range(self.n_iter):
            optimizer.step(closure)  # network step, B fixed
            with torch.no_grad():
                B = code_step(Xt, B, _encode(Xt, params), params[4], params[5], lam[1])
                history.append(float(bdnn_objective(Xt, B, params, lam)))
            # L-BFGS curvature pairs belong to the old B's objective; start afresh.
            optimizer.state.clear()
        self.weights_ = [p.detach().numpy().copy() for p in params]
        self.loss_history_ = history
        return self

    def _signed_codes(self, X: np.ndarray) -> np.ndarray:
        """The code layer ``H_{n-1}(x)``; its sign is the code."""
        W1, b1, W2, b2 = self.weights_[:4]
        Xs = (X - self.mean_) / self.scale_
        return (1.0 / (1.0 + np.exp(-(Xs @ W1 + b1)))) @ W2 + b2

