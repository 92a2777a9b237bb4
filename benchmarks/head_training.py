"""Head training on cached features: steps/s and wall time of one Office-Caltech-10 task (A -> W).

Runs ``dahash.training.trainer.train_model`` (what ``dahash train`` runs after loading the
features) on the cached efficientnet_lite0 features of Amazon (958 images, source) and Webcam
(295, target), DAH defaults: K=5 per class (batch 50 + 50 rows), 64 bits, fc6/fc7 256, 20 steps
per epoch. Reported:

* steps/s and wall time of ``--epochs`` epochs for torch's default thread count and for 1 thread,
  with a checkpoint per epoch (as ``dahash train --out``) and without (``out=None``), on the
  machine as it is and with one core kept busy by a competing process (``while True: pass``,
  what other jobs on a shared machine do); the projected wall time of the paper's 300 epochs,
  and one measured full 300-epoch run with 1 thread;
* the split of one step into head forward, loss forward, backward and SGD update (minimum of
  repeats on one real batch), and the loss's share of the step;
* the exponent of the step time when the batch doubles (K = 5, 10, 20: 100, 200, 400 rows).

Usage: python benchmarks/head_training.py [--quick] [--out benchmarks/results]
       [--data-root ../shared/data/office_caltech_10] [--cache-dir /tmp/dahash_cache] [--epochs 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import best_of, exponent, machine, write_results  # noqa: E402

from dahash.training.config import TrainConfig  # noqa: E402
from dahash.data.sampler import KPerClassSampler  # noqa: E402
from dahash.training.optim import make_sgd  # noqa: E402
from dahash.training.trainer import build_loss, build_model, train_model  # noqa: E402
from dahash.runs.data import load_domains  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run_training(config: TrainConfig, domains, threads: int) -> tuple[float, int]:
    """(seconds, steps) of train_model under ``threads`` torch threads (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        steps = config.epochs * len(KPerClassSampler(domains.source.y, len(domains.target), k=config.k,
                                                     n_classes=domains.source.n_classes))
        with tempfile.TemporaryDirectory(prefix="dahash-bench-") as tmp:
            cfg = replace(config, out=tmp if config.out else None)
            t0 = time.perf_counter()
            train_model(cfg, domains, progress=False)
            return time.perf_counter() - t0, steps
    finally:
        torch.set_num_threads(before)


class BusyCore:
    """A competing process spinning on one core for the duration of a ``with`` block: what the
    other jobs of a shared 2-core machine do to a training run."""

    def __enter__(self) -> "BusyCore":
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def phase_split(config: TrainConfig, domains, threads: int, repeats: int) -> dict[str, float]:
    """Seconds of forward / loss / backward / update of one step on a real batch (minimum of repeats)."""
    torch.set_num_threads(threads)
    s, t = domains.source, domains.target
    torch.manual_seed(0)
    model = build_model(config, s.X.shape[1])
    loss_fn = build_loss(config, s.n_classes, model.fc7.out_features)
    optimizer = make_sgd(torch.nn.ModuleList([model, loss_fn]), 1e-4, config.momentum, config.weight_decay,
                         config.bias_lr_factor)
    batch = KPerClassSampler(s.y, len(t), k=config.k, n_classes=s.n_classes).epoch(0)[0]
    x = torch.cat([torch.from_numpy(s.X[batch.source]), torch.from_numpy(t.X[batch.target])])
    labels = torch.from_numpy(s.y[batch.source])
    ns = len(batch.source)
    gen = torch.Generator().manual_seed(0)
    model.train()
    state: dict = {}

    def fwd() -> None:
        state["out"] = model(x)

    def loss() -> None:
        out = state["out"]
        state["terms"] = loss_fn(out.u, out.taps, labels, ns, generator=gen)
        state["values"] = {k: float(v.detach()) for k, v in state["terms"].items()}

    def bwd() -> None:
        optimizer.zero_grad(set_to_none=True)
        (state["terms"]["total"] / len(x)).backward()

    def upd() -> None:
        optimizer.step()

    def step() -> None:
        fwd(), loss(), bwd(), upd()

    times = {"step": best_of(step, repeats, warmup=5)}
    times["forward"] = best_of(fwd, repeats)
    times["loss forward"] = best_of(lambda: (fwd(), loss()), repeats) - times["forward"]
    times["backward"] = best_of(lambda: (fwd(), loss(), bwd()), repeats) - times["forward"] - times["loss forward"]
    fwd(), loss(), bwd()
    times["SGD update"] = best_of(upd, repeats)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs per run, fewer repeats (seconds)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "office_caltech_10"))
    parser.add_argument("--cache-dir", default=os.environ.get("DAHASH_CACHE", "/tmp/dahash_cache"))
    parser.add_argument("--source", default="A")
    parser.add_argument("--target", default="W")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per timed run (default 20; quick 2)")
    args = parser.parse_args()
    epochs = args.epochs or (2 if args.quick else 20)
    repeats = 5 if args.quick else 30
    default_threads = torch.get_num_threads()
    line = machine(torch=torch.__version__, default_threads=str(default_threads))
    print(f"machine: {line}")
    t_start = time.perf_counter()
    base = TrainConfig(data_root=args.data_root, source=args.source, target=args.target, cache_dir=args.cache_dir,
                       epochs=epochs, out="checkpoints")
    domains = load_domains(base, progress=False)
    rows: list[dict] = []
    run_training(replace(base, epochs=1, out=None), domains, default_threads)  # warm-up, not reported
    table = ["| torch threads | other load | checkpoints | epochs | steps | wall s | steps/s | projected 300 epochs (s) | step speed vs default |",
             "|---|---|---|---|---|---|---|---|---|"]
    results = {}
    for threads in dict.fromkeys((default_threads, 1)):
        for ckpt in (True, False):
            seconds, steps = run_training(replace(base, out="x" if ckpt else None), domains, threads)
            results[(threads, ckpt, epochs, "")] = (seconds, steps)
    for threads in dict.fromkeys((default_threads, 1)):
        with BusyCore():
            seconds, steps = run_training(replace(base, out="x"), domains, threads)
        results[(threads, True, epochs, "one core busy")] = (seconds, steps)
    if not args.quick:
        # The whole task as `dahash train` runs it (paper's 300 epochs), with the faster setting only.
        results[(1, True, 300, "")] = run_training(replace(base, out="x", epochs=300), domains, 1)
    ref = results[(default_threads, True, epochs, "")]
    for (threads, ckpt, n_epochs, load), (seconds, steps) in results.items():
        table.append(f"| {threads} | {load or 'idle'} | {'every epoch' if ckpt else 'none'} | {n_epochs} | {steps} | {seconds:.1f} | "
                     f"{steps / seconds:.0f} | {seconds * 300 / n_epochs:.0f} | "
                     f"{(ref[0] / ref[1]) / (seconds / steps):.1f}x |")
        rows.append({"what": "train_model", "threads": threads, "competing_load": load or "none", "checkpoints": ckpt, "epochs": n_epochs,
                     "steps": steps, "seconds": seconds, "steps_per_s": steps / seconds})
        print(table[-1], flush=True)

    split_md = ["| threads | step ms | forward | loss forward | backward | SGD update | loss forward / step |",
                "|---|---|---|---|---|---|---|"]
    for threads in dict.fromkeys((default_threads, 1)):
        t = phase_split(base, domains, threads, repeats)
        split_md.append(f"| {threads} | {t['step'] * 1e3:.2f} | {t['forward'] * 1e3:.2f} | {t['loss forward'] * 1e3:.2f} | "
                        f"{t['backward'] * 1e3:.2f} | {t['SGD update'] * 1e3:.2f} | "
                        f"{t['loss forward'] / t['step']:.0%} |")
        rows.append({"what": "step split", "threads": threads, **{f"{k}_ms": v * 1e3 for k, v in t.items()}})
        print(split_md[-1], flush=True)
    torch.set_num_threads(default_threads)

    ks, per_step = (5, 10, 20), {}
    scale_md = ["| torch threads | K | batch rows | ms/step | exponent |", "|---|---|---|---|---|"]
    for threads in dict.fromkeys((default_threads, 1)):
        per_step[threads] = []
        for k in ks:
            steps_per_epoch = -(-len(domains.source.y) // (domains.source.n_classes * k))
            cfg = replace(base, k=k, out=None, epochs=max(1, round((20 if args.quick else 100) / steps_per_epoch)))
            seconds, steps = run_training(cfg, domains, threads)
            per_step[threads].append(seconds / steps)
            rows.append({"what": "scaling batch", "threads": threads, "k": k, "rows": 2 * k * domains.source.n_classes,
                         "ms_per_step": seconds / steps * 1e3})
        e = exponent([2 * k * domains.source.n_classes for k in ks], per_step[threads])
        rows.append({"what": "exponent step vs batch", "threads": threads, "exponent": e})
        for k, v in zip(ks, per_step[threads]):
            scale_md.append(f"| {threads} | {k} | {2 * k * domains.source.n_classes} | {v * 1e3:.2f} | "
                            f"{e:.2f} |" if k == ks[-1] else f"| {threads} | {k} | {2 * k * domains.source.n_classes} | {v * 1e3:.2f} | |")
        print("\n".join(scale_md[-3:]), flush=True)
    wall = time.perf_counter() - t_start
    md = "\n".join([
        "# Head training on cached features",
        "",
        f"Task {args.source} -> {args.target} (Office-Caltech-10, cached efficientnet_lite0 features, "
        f"{len(domains.source.y)} source / {len(domains.target.y)} target), DAH defaults (K=5, 64 bits, "
        f"fc6/fc7 256, lr schedule over {epochs} epochs).",
        "",
        f"Machine: {line}",
        "",
        *table,
        "",
        f"One step (minimum of {repeats}, one real batch of {2 * base.k * domains.source.n_classes} rows):",
        "",
        *split_md,
        "",
        "Batch doubling (no checkpoints):",
        "",
        *scale_md,
        "",
        f"Wall time {wall:.0f} s; load average at end {os.getloadavg()[0]:.2f}.",
        "",
    ])
    print(md)
    write_results(args.out, "head_training_quick" if args.quick else "head_training", md, rows)


if __name__ == "__main__":
    main()
