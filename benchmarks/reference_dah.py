"""Independent reference trainer for NoDA and DAH (Venkateswara et al., CVPR 2017) on features.

This is a deliberately separate, second implementation: it does not import `dahash` and was written
from the paper and the notes on the authors' MatConvNet code only, so that issue 31 can check that
the library's defaults never score below it. It trains the fc6-fc7-hash-fc8 head on precomputed
features (no backbone fine-tuning) and classifies the target with the paper's rule.

Losses (paper numbering; scalings from the authors' implementation):
  * supervised hash loss, eq. 4-5: sum over all ordered source pairs of
    w_ij * (log(1 + exp(theta_ij)) - s_ij * theta_ij), theta_ij = <u_i, u_j> / 2, w_ij = 10 for
    like pairs and 1 otherwise (the paper's S in {0, 10}); plus the quantisation term of eq. 5,
    ||u - sgn(u)||^2 with sgn(0) = +1 held constant, on every output in the batch;
  * unsupervised entropy loss, eq. 6-7: p_ij from exp(<v_i, u_k>) summed over the batch's source
    outputs of class j, entropy summed (not averaged) over target samples, weight eta = 1;
  * linear-time MK-MMD, eq. 1 and 9-11, on F = {fc6, fc7, fc8} (ReLU outputs of fc6 and fc7,
    fc8 before its BatchNorm; `--mmd-layers`): quadruples k(s1,s2) + k(t1,t2) - k(s1,t2) -
    k(s2,t1) after a shuffle, 17 Gaussian kernels exp(-q d^2 / m), q = 2^-8..2^8, equal weights,
    m the (constant) median of the batch's d^2; summed over quadruples and layers, gamma = 5000.
NoDA trains on source-only batches with the hash loss (eq. 5); DAH minimises eq. 8 on batches of
K images per source class plus as many random target images. Prediction (Sec. 5.2): eq. 6 between
each target code and the codes of (up to 200 per class of) the source, argmax over classes. The
paper's rule uses the binary codes sgn(u) ("accuracy"); the authors' code reported the continuous
outputs u, given as "accuracy_u".
Where the sources differ, the paper's explicit text wins (BatchNorm before tanh, MMD on three
layers), then this reference's fixed choices for an unpretrained head (dropout 0.5, one learning
rate for all layers, 600 steps from 1e-3 to 1e-4), then the implementation (all loss scalings
above, quantisation of target outputs too, 200 source codes per class for prediction).

Input rule (fixed before any result was seen): with `--l1 auto` every row is divided by its sum
when all values of both domains are non-negative integers and at least half of them are zero
(bag-of-words counts); rows summing to 0 stay 0. Then every dimension is standardised with the
mean and standard deviation of source and target pooled (a constant dimension is only centred).

    python benchmarks/reference_dah.py --source S.npz --target T.npz --method NoDA DAH --seed 0
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

KERNEL_SCALES = tuple(2.0**e for e in range(-8, 9))


def load(path: str) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    with np.load(path, allow_pickle=False) as z:
        classes = [str(c) for c in z["classes"]] if "classes" in z.files else None
        return z["X"].astype(np.float32), z["y"].astype(np.int64), classes


def use_l1(mode: str, *domains: np.ndarray) -> bool:
    if mode != "auto":
        return mode == "on"
    X = np.concatenate(domains)
    return bool((X >= 0).all() and (X == np.round(X)).all() and (X == 0).mean() >= 0.5)


def normalise(Xs: np.ndarray, Xt: np.ndarray, l1: bool) -> tuple[np.ndarray, np.ndarray]:
    if l1:
        sums = [X.sum(1, keepdims=True) for X in (Xs, Xt)]
        Xs, Xt = (X / np.where(t == 0, 1, t) for X, t in zip((Xs, Xt), sums))  # 0 rows stay 0
    both = np.concatenate([Xs, Xt])
    mean, std = both.mean(0), both.std(0)
    std[std == 0] = 1  # a constant dimension carries nothing; avoid 0/0
    return ((Xs - mean) / std).astype(np.float32), ((Xt - mean) / std).astype(np.float32)


class Head(nn.Module):
    """fc6-fc7 (BN, ReLU, dropout) and hash-fc8 = Linear -> BatchNorm -> tanh (paper Sec. 3.4)."""

    def __init__(self, dim: int, hidden: list[int], bits: int, dropout: float) -> None:
        super().__init__()
        widths = [dim, *hidden]
        self.fcs = nn.ModuleList(nn.Sequential(nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU())
                                 for a, b in itertools.pairwise(widths))
        self.drop = nn.Dropout(dropout)
        self.fc8, self.bn8 = nn.Linear(widths[-1], bits), nn.BatchNorm1d(bits)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        layers = {}
        for i, fc in enumerate(self.fcs):
            layers[f"fc{6 + i}"] = h = fc(x)  # MK-MMD sees the ReLU output, before dropout
            x = self.drop(h)
        layers["hash"] = z = self.fc8(x)  # and hash-fc8 before its BatchNorm
        return torch.tanh(self.bn8(z)), layers


def pairwise_hash_loss(u: torch.Tensor, y: torch.Tensor, like_weight: float = 10.0) -> torch.Tensor:
    """Eq. 4/5 first term: weighted pairwise likelihood, theta = <u_i,u_j>/2, summed over pairs."""
    theta = 0.5 * u @ u.T
    s = (y[:, None] == y[None, :]).float()
    return ((1 + (like_weight - 1) * s) * (F.softplus(theta) - s * theta)).sum()


def sign(u: torch.Tensor) -> torch.Tensor:
    return torch.where(u >= 0, 1.0, -1.0)  # sgn(0) = +1; a constant for autograd


def quantisation_loss(u: torch.Tensor) -> torch.Tensor:
    """Eq. 5 second term: ||u - sgn(u)||^2 summed over outputs, no gradient through sgn."""
    return ((u - sign(u)) ** 2).sum()


def class_log_probs(v: torch.Tensor, u: torch.Tensor, y: torch.Tensor,
                    classes: int) -> torch.Tensor:
    """log p_ij of eq. 6: log-sum-exp of <v_i, u_k> over source k of class j, normalised over j."""
    sim = v @ u.T
    per_class = torch.stack([sim[:, y == j].logsumexp(1) for j in range(classes)], 1)
    return per_class - per_class.logsumexp(1, keepdim=True)


def entropy_loss(v: torch.Tensor, u: torch.Tensor, y: torch.Tensor, classes: int) -> torch.Tensor:
    """Eq. 7: entropy of p_i (eq. 6), summed over target samples as the implementation does."""
    logp = class_log_probs(v, u, y, classes)
    return -(logp.exp() * logp).sum()


def mk_mmd(xs: torch.Tensor, xt: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """Eq. 9-11: linear-time MK-MMD, 17 median-scaled Gaussian kernels, summed over quadruples."""
    n = min(len(xs), len(xt)) // 2 * 2
    if gen is not None:  # the source part is ordered class by class; pair random partners instead
        xs = xs[torch.randperm(len(xs), generator=gen)]
        xt = xt[torch.randperm(len(xt), generator=gen)]
    s1, s2, t1, t2 = xs[: n // 2], xs[n // 2 : n], xt[: n // 2], xt[n // 2 : n]
    d2 = torch.stack([(a - b).pow(2).sum(1) for a, b in ((s1, s2), (t1, t2), (s1, t2), (s2, t1))])
    m = d2.detach().median().clamp_min(1e-12)  # bandwidth is a heuristic, not a parameter
    k = torch.stack([torch.exp(-q * d2 / m) for q in KERNEL_SCALES]).mean(0)
    return (k[0] + k[1] - k[2] - k[3]).sum()


def train(Xs: np.ndarray, ys: np.ndarray, Xt: np.ndarray, method: str, seed: int,
          a: argparse.Namespace) -> Head:
    torch.manual_seed(seed)
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    classes = int(ys.max()) + 1
    model = Head(Xs.shape[1], a.hidden, a.bits, a.dropout)
    weights = [p for p in model.parameters() if p.ndim > 1]  # decay on weights only, not bias/BN
    others = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": weights, "weight_decay": a.weight_decay},
                           {"params": others, "weight_decay": 0.0}], lr=a.lr, momentum=0.9)
    by_class = [np.flatnonzero(ys == j) for j in range(classes)]
    Xs_t, ys_t, Xt_t = torch.from_numpy(Xs), torch.from_numpy(ys), torch.from_numpy(Xt)
    for step in range(a.steps):
        for group in opt.param_groups:
            group["lr"] = a.lr * (a.lr_end / a.lr) ** (step / max(a.steps - 1, 1))
        src = np.concatenate([rng.choice(ix, a.k, replace=len(ix) < a.k) for ix in by_class])
        x, yb, ns = Xs_t[src], ys_t[src], len(src)
        if method == "DAH":
            x = torch.cat([x, Xt_t[rng.choice(len(Xt), ns, replace=len(Xt) < ns)]])
        model.train()
        u, layers = model(x)
        loss = pairwise_hash_loss(u[:ns], yb, a.like_weight) + a.beta * quantisation_loss(u)
        if method == "DAH":
            loss = loss + a.eta * entropy_loss(u[ns:], u[:ns], yb, classes)
            names = a.mmd_layers or list(layers)  # default: every layer, F of eq. 1
            mmd = [mk_mmd(layers[n][:ns], layers[n][ns:], gen) for n in names]
            loss = loss + a.gamma * sum(mmd)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@torch.no_grad()
def predict(model: Head, Xs: np.ndarray, ys: np.ndarray, Xt: np.ndarray, per_class: int,
            seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 6 against a bank of source outputs; returns (binary-code, continuous) predictions."""
    model.eval()
    rng, classes = np.random.default_rng(seed), int(ys.max()) + 1
    bank = np.concatenate([rng.permutation(np.flatnonzero(ys == j))[:per_class]
                           for j in range(classes)])
    us, ut = model(torch.from_numpy(Xs[bank]))[0], model(torch.from_numpy(Xt))[0]
    yb = torch.from_numpy(ys[bank])
    binary = class_log_probs(sign(ut), sign(us), yb, classes).argmax(1).numpy()
    return binary, class_log_probs(ut, us, yb, classes).argmax(1).numpy()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--method", nargs="+", choices=["NoDA", "DAH"], default=["DAH"])
    p.add_argument("--seed", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-end", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--k", type=int, default=5, help="source images per class in a batch")
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--hidden", type=int, nargs="+", default=[1024, 1024])
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--like-weight", type=float, default=10.0)
    p.add_argument("--beta", type=float, default=1.0, help="quantisation weight")
    p.add_argument("--eta", type=float, default=1.0, help="entropy weight (0: DAH-e)")
    p.add_argument("--gamma", type=float, default=5000.0, help="MK-MMD weight")
    p.add_argument("--mmd-layers", nargs="+", help="default: all of fc6, fc7, ... (hidden ReLU "
                   "outputs) and hash (fc8 before BatchNorm)")
    p.add_argument("--bank-per-class", type=int, default=200)
    p.add_argument("--l1", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write results and config here")
    return p


def main(argv: list[str] | None = None) -> list[dict]:
    a = build_parser().parse_args(argv)
    known = [f"fc{6 + i}" for i in range(len(a.hidden))] + ["hash"]
    a.mmd_layers = a.mmd_layers or known
    if not set(a.mmd_layers) <= set(known):
        raise SystemExit(f"--mmd-layers must be among {known}")
    torch.set_num_threads(a.threads)
    (Xs, ys_raw, cs), (Xt, yt_raw, ct) = load(a.source), load(a.target)
    if cs is not None and ct is not None and cs != ct:
        raise ValueError(f"source and target classes differ: {cs} vs {ct}")
    labels = np.unique(ys_raw)  # target labels absent from the source can never be predicted
    ys = np.searchsorted(labels, ys_raw)
    index = {label: i for i, label in enumerate(labels.tolist())}
    yt = np.array([index.get(label, -1) for label in yt_raw.tolist()])
    l1 = use_l1(a.l1, Xs, Xt)
    Xs, Xt = normalise(Xs, Xt, l1)
    task, results = f"{Path(a.source).stem}->{Path(a.target).stem}", []
    for method in a.method:
        for seed in a.seed:
            start = time.perf_counter()
            model = train(Xs, ys, Xt, method, seed, a)
            binary, continuous = predict(model, Xs, ys, Xt, a.bank_per_class, seed)
            row = {"task": task, "method": method, "seed": seed,
                   "accuracy": float((binary == yt).mean()),
                   "accuracy_u": float((continuous == yt).mean()),
                   "seconds": round(time.perf_counter() - start, 1)}
            print(f"{task} {method} {seed} {row['accuracy']:.4f}", flush=True)
            results.append(row)
    if a.json:
        config = {**vars(a), "l1_applied": l1, "classes": cs,
                  "n_source": len(Xs), "n_target": len(Xt)}
        Path(a.json).write_text(json.dumps({"config": config, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
