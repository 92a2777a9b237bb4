"""Label-free evidence on the linear MMD estimators: their expectation on the features of trained runs.

Usage: python benchmarks/mmd_bias.py --runs RUN_DIR [RUN_DIR ...] [--batches 400] [--out results/mmd_bias]

For each finished run (a ``dahash train`` or ``dahash reproduce`` cell), the fc6, fc7 and fc8
representations of every source and target item are computed once; then many batches are drawn
and the summed three-layer linear MK-MMD per quadruple is averaged over them, in three ways:

* ``stratified, authors``: exactly K source items per class (the trainer's batches), the authors'
  estimator: what the training objective sees;
* ``stratified, balanced``: the same batches, the class-balanced estimator;
* ``independent, authors``: source items drawn independently and uniformly from the class-balanced
  source (a class uniformly, then an item), the authors' estimator: the estimate under
  independent draws, which the balanced estimator must match.

Only source labels are read (the sampler needs them); no target label is. Prints a table and
writes ``mmd_bias.md`` and ``mmd_bias.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import machine, write_results  # noqa: E402

from dahash.experiments.demo import markdown_table  # noqa: E402
from dahash.models.predict import encode  # noqa: E402
from dahash.runs.loading import load_run  # noqa: E402
from dahash.losses import LinearMKMMD  # noqa: E402

LAYERS = ("fc6", "fc7", "fc8")


def estimates(run: Path, n_batches: int, seed: int) -> dict[str, tuple[float, float]]:
    """Mean and standard error, per quadruple, of the three estimates (see the module doc)."""
    model, config, domains = load_run(run)
    source, target = domains.source, domains.target
    feats_s = {layer: torch.from_numpy(encode(model, source.X, layer=layer)).double() for layer in LAYERS}
    feats_t = {layer: torch.from_numpy(encode(model, target.X, layer=layer)).double() for layer in LAYERS}
    C, K = source.n_classes, config.k
    by_class = [np.flatnonzero(source.y == c) for c in range(C)]
    labels = torch.arange(C).repeat_interleave(K)
    rng = np.random.default_rng(seed)
    mmds = {"authors": LinearMKMMD(reduction="mean"), "balanced": LinearMKMMD(reduction="mean", estimator="balanced")}
    values: dict[str, list[float]] = {"stratified, authors": [], "stratified, balanced": [],
                                      "independent, authors": []}
    for b in range(n_batches):
        strat = np.concatenate([rng.choice(idx, K, replace=len(idx) < K) for idx in by_class])
        indep = np.array([rng.choice(by_class[c]) for c in rng.integers(0, C, C * K)])
        tgt = rng.choice(len(target), C * K, replace=len(target) < C * K)
        for key, rows, estimator in (("stratified, authors", strat, "authors"),
                                     ("stratified, balanced", strat, "balanced"),
                                     ("independent, authors", indep, "authors")):
            generator = torch.Generator().manual_seed(b)
            total = sum(mmds[estimator](feats_s[layer][rows], feats_t[layer][tgt], generator=generator,
                                        labels=labels).item() for layer in LAYERS)
            values[key].append(total)
    return {k: (float(np.mean(v)), float(np.std(v, ddof=1) / np.sqrt(len(v)))) for k, v in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="finished run directories")
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "mmd_bias"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(machine(torch=torch.__version__))
    header = ["run", "stratified, authors", "stratified, balanced", "independent, authors"]
    rows, records = [], []
    for run in args.runs:
        est = estimates(Path(run), args.batches, args.seed)
        rows.append([run, *(f"{m:+.4f} ± {se:.4f}" for m, se in est.values())])
        records.append({"run": run, **{f"{k} mean": m for k, (m, _) in est.items()},
                        **{f"{k} se": se for k, (_, se) in est.items()}})
        print(" | ".join(rows[-1]), flush=True)
    table = markdown_table(header, rows)
    print(table)
    write_results(args.out, "mmd_bias", f"Per quadruple, summed over fc6, fc7, fc8; mean ± standard error over "
                                        f"{args.batches} batches.\n\n{table}", records)


if __name__ == "__main__":
    main()
