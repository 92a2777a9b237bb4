"""Cost of the full DAH objective (eq. 8) on the paper's Office-Home batch, and its share of a head training step.

The batch is the paper's: 65 classes x K=5 source rows + 325 target rows = 650 rows, 64-bit codes,
fc6/fc7 of width 4096 (VGG-F's). The head's inputs are random 9216-d vectors, the width of
VGG-F/AlexNet pool5 (the head then has VGG-F's fc6/fc7 shapes). Reported, each the minimum of
``--repeats`` timed calls:

* loss: forward + backward of DAHLoss alone (hash + quantization + MK-MMD on fc6/fc7/fc8 +
  entropy), on the outputs and taps of one head forward pass (leaf tensors), and each term alone;
* step: one training step as ``dahash.training.trainer.fit`` runs it (head forward, loss,
  backward of the batch-mean objective, fused SGD update);
* loss / step, the fraction of a step the objective costs;
* exponents: log-log slope of the loss time when the batch (K = 5, 10, 20 per class) or the code
  length (32, 64, 128 bits) doubles, and of the step time when the batch doubles.

The pairwise (eq. 4-5) and entropy (eq. 6-7) terms are matrix products (``u @ u.T``,
``v @ u.T`` with a scatter/index_add over classes); the "naive loop" row times a per-sample
Python loop of the same pairwise + entropy value, for contrast.

Usage: python benchmarks/loss_cost.py [--quick] [--out benchmarks/results] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import best_of, exponent, machine, write_results  # noqa: E402

from dahash.training.config import TrainConfig  # noqa: E402
from dahash.losses.entropy import EntropyLoss  # noqa: E402
from dahash.losses.pairwise_hash import PairwiseHashLoss  # noqa: E402
from dahash.training.optim import make_sgd  # noqa: E402
from dahash.training.trainer import build_loss, build_model  # noqa: E402

CLASSES = 65
POOL5 = 9216


def make_batch(k: int, bits: int, hidden: int, seed: int = 0):
    """Model, loss, inputs and labels of one ``CLASSES x k`` source + as many target batch."""
    torch.manual_seed(seed)
    config = TrainConfig(bits=bits, hidden=[hidden, hidden], k=k)
    model = build_model(config, POOL5)
    loss_fn = build_loss(config, CLASSES, hidden)
    n_source = CLASSES * k
    x = torch.randn(2 * n_source, POOL5)
    labels = torch.arange(CLASSES).repeat_interleave(k)
    return config, model, loss_fn, x, labels, n_source


def loss_timer(model, loss_fn, x, labels, n_source, term: str | None = None):
    """A callable running forward + backward of the loss (or one term) on detached head outputs."""
    model.train()
    with torch.no_grad():
        out = model(x)
    u = out.u.detach().requires_grad_(True)
    taps = {k: v.detach().requires_grad_(True) for k, v in out.taps.items()}
    gen = torch.Generator().manual_seed(0)

    def run() -> None:
        u.grad = None
        for t in taps.values():
            t.grad = None
        if term is None:
            value = loss_fn(u, taps, labels, n_source, generator=gen)["total"]
        elif term == "hash":
            value = loss_fn.hash_loss(u[:n_source], labels)
        elif term == "quantization":
            value = loss_fn.quantization(u)
        elif term == "mmd":
            value = loss_fn.mmd([taps[k][:n_source] for k in loss_fn.mmd_layers],
                                [taps[k][n_source:] for k in loss_fn.mmd_layers], generator=gen)
        elif term == "entropy":
            value = loss_fn.entropy(u[n_source:], u[:n_source], labels)
        else:
            raise ValueError(term)
        value.backward()

    return run


def naive_loop_timer(model, x, labels, n_source, loss_fn):
    """Pairwise + entropy terms with a Python loop over samples (what the library does NOT do)."""
    with torch.no_grad():
        u_all = model(x).u
    u = u_all.detach().requires_grad_(True)
    like, scale = loss_fn.hash_loss.like_weight, loss_fn.hash_loss.scale
    n_classes = loss_fn.entropy.n_classes

    def run() -> None:
        u.grad = None
        us, ut = u[:n_source], u[n_source:]
        total = u.new_zeros(())
        for i in range(n_source):  # pairwise, one source row at a time
            theta = scale * (us @ us[i])
            s = (labels == labels[i]).to(u.dtype)
            total = total + ((1 + (like - 1) * s) * (torch.nn.functional.softplus(theta) - s * theta)).sum()
        for i in range(len(ut)):  # entropy, one target row at a time
            logits = us @ ut[i]
            lse = torch.stack([torch.logsumexp(logits[labels == c], 0) for c in range(n_classes)])
            logp = lse - torch.logsumexp(lse, 0)
            total = total - (logp.exp() * logp).sum()
        total.backward()

    return run


def check_vectorized_matches_loop(model, x, labels, n_source, loss_fn) -> float:
    """|vectorized - loop| / |loop| of pairwise + entropy, on a slice of the batch."""
    with torch.no_grad():
        u = model(x).u
        us, ut = u[:n_source], u[n_source:]
        vec = PairwiseHashLoss(loss_fn.hash_loss.like_weight, loss_fn.hash_loss.scale)(us, labels) + \
            EntropyLoss(loss_fn.entropy.n_classes)(ut, us, labels)
        like, scale = loss_fn.hash_loss.like_weight, loss_fn.hash_loss.scale
        ref = 0.0
        for i in range(n_source):
            theta = scale * (us @ us[i])
            s = (labels == labels[i]).to(u.dtype)
            ref += float(((1 + (like - 1) * s) * (torch.nn.functional.softplus(theta) - s * theta)).sum())
        for i in range(len(ut)):
            logits = us @ ut[i]
            lse = torch.stack([torch.logsumexp(logits[labels == c], 0) for c in range(loss_fn.entropy.n_classes)])
            logp = lse - torch.logsumexp(lse, 0)
            ref -= float((logp.exp() * logp).sum())
    return abs(float(vec) - ref) / abs(ref)


def step_timer(config, model, loss_fn, x, labels, n_source):
    """One step of trainer.fit: forward, loss, float() of the terms, zero_grad, backward, SGD."""
    model.train()
    optimizer = make_sgd(torch.nn.ModuleList([model, loss_fn]), 1e-4, config.momentum, config.weight_decay,
                         config.bias_lr_factor)
    gen = torch.Generator().manual_seed(0)

    def run() -> None:
        out = model(x)
        terms = loss_fn(out.u, out.taps, labels, n_source, generator=gen)
        {k: float(v.detach()) for k, v in terms.items()}
        optimizer.zero_grad(set_to_none=True)
        (terms["total"] / len(x)).backward()
        optimizer.step()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller head and fewer repeats (seconds)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hidden = 1024 if args.quick else 4096
    repeats = args.repeats or (2 if args.quick else 5)
    step_repeats = 1 if args.quick else 3
    line = machine(torch=torch.__version__, threads=str(torch.get_num_threads()))
    print(f"machine: {line}")
    t_start = time.perf_counter()
    rows: list[dict] = []

    config, model, loss_fn, x, labels, n_source = make_batch(5, 64, hidden)
    n_rows = len(x)
    loss_s = best_of(loss_timer(model, loss_fn, x, labels, n_source), repeats)
    terms = {t: best_of(loss_timer(model, loss_fn, x, labels, n_source, t), repeats)
             for t in ("hash", "quantization", "mmd", "entropy")}
    step_s = best_of(step_timer(config, model, loss_fn, x, labels, n_source), step_repeats)
    loop_s = best_of(naive_loop_timer(model, x, labels, n_source, loss_fn), 1, warmup=0)
    rel_err = check_vectorized_matches_loop(model, x, labels, n_source, loss_fn)
    print(f"loss {loss_s * 1e3:.1f} ms, step {step_s * 1e3:.1f} ms, fraction {loss_s / step_s:.1%}")

    table = ["| what | ms | share of loss | share of step |", "|---|---|---|---|",
             f"| full DAH loss, forward + backward | {loss_s * 1e3:.1f} | 100% | {loss_s / step_s:.1%} |"]
    rows.append({"what": "loss", "rows": n_rows, "bits": 64, "hidden": hidden, "ms": loss_s * 1e3})
    for t, s in terms.items():
        table.append(f"| &nbsp; {t} term alone | {s * 1e3:.2f} | {s / loss_s:.1%} | {s / step_s:.1%} |")
        rows.append({"what": f"term {t}", "rows": n_rows, "bits": 64, "hidden": hidden, "ms": s * 1e3})
    table.append(f"| training step (forward, loss, backward, fused SGD) | {step_s * 1e3:.1f} | – | 100% |")
    rows.append({"what": "step", "rows": n_rows, "bits": 64, "hidden": hidden, "ms": step_s * 1e3})
    pe = terms["hash"] + terms["entropy"]
    table.append(f"| pairwise + entropy as a per-sample Python loop (not used; contrast) | {loop_s * 1e3:.0f} "
                 f"| {loop_s / pe:.0f}x the matrix-product terms | – |")
    rows.append({"what": "pairwise+entropy python loop", "rows": n_rows, "bits": 64, "hidden": hidden,
                 "ms": loop_s * 1e3, "relative_difference": rel_err})

    # Scaling: batch (K per class) and code length.
    ks = (5, 10, 20)
    bits_list = (32, 64, 128)
    batch_loss, batch_step, bits_loss = [], [], []
    for k in ks:
        c, m, lf, xx, yy, ns = make_batch(k, 64, hidden)
        batch_loss.append(best_of(loss_timer(m, lf, xx, yy, ns), repeats))
        batch_step.append(best_of(step_timer(c, m, lf, xx, yy, ns), step_repeats))
        rows.append({"what": "scaling batch", "rows": len(xx), "bits": 64, "hidden": hidden,
                     "loss_ms": batch_loss[-1] * 1e3, "step_ms": batch_step[-1] * 1e3})
    for b in bits_list:
        c, m, lf, xx, yy, ns = make_batch(5, b, hidden)
        bits_loss.append(best_of(loss_timer(m, lf, xx, yy, ns), repeats))
        rows.append({"what": "scaling bits", "rows": len(xx), "bits": b, "hidden": hidden,
                     "loss_ms": bits_loss[-1] * 1e3})
    sizes = [2 * CLASSES * k for k in ks]
    e_batch, e_step, e_bits = exponent(sizes, batch_loss), exponent(sizes, batch_step), exponent(bits_list, bits_loss)
    scaling = ["| doubling | sizes | loss ms | step ms | exponent |", "|---|---|---|---|---|",
               f"| batch rows (K = {', '.join(map(str, ks))}) | {', '.join(map(str, sizes))} | "
               f"{', '.join(f'{v * 1e3:.1f}' for v in batch_loss)} | {', '.join(f'{v * 1e3:.0f}' for v in batch_step)} | "
               f"loss {e_batch:.2f}, step {e_step:.2f} |",
               f"| code length (bits) | {', '.join(map(str, bits_list))} | "
               f"{', '.join(f'{v * 1e3:.1f}' for v in bits_loss)} | – | loss {e_bits:.2f} |"]
    rows.append({"what": "exponents", "loss_vs_batch": e_batch, "step_vs_batch": e_step, "loss_vs_bits": e_bits})
    wall = time.perf_counter() - t_start

    md = "\n".join([
        "# DAH loss cost",
        "",
        f"Batch: {CLASSES} classes x K=5 source + {CLASSES * 5} target = {n_rows} rows, 64 bits, fc6/fc7 width "
        f"{hidden}, inputs random {POOL5}-d (VGG-F pool5 width); DAH defaults (gamma 5000, MMD on fc6/fc7/fc8, "
        f"eta 1). Minimum of {repeats} timed calls (steps: {step_repeats}).",
        "",
        f"Machine: {line}",
        "",
        *table,
        "",
        f"Pairwise + entropy, vectorized vs the loop: relative difference {rel_err:.1e}.",
        "",
        *scaling,
        "",
        f"Wall time {wall:.0f} s; load average at end {__import__('os').getloadavg()[0]:.2f}.",
        "",
    ])
    print(md)
    write_results(args.out, "loss_cost_quick" if args.quick else "loss_cost", md, rows)


if __name__ == "__main__":
    main()
