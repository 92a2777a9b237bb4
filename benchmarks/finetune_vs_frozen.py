"""End-to-end fine-tuning against a head on frozen features of the same backbone, on one small task.

Two parts (docs/finetuning.md):

1. Diagnostics (pretrained efficientnet_lite0, no training of the backbone, no target labels): for
   every source image and as many target images, inside mixed batches of ``K C`` source and ``K C``
   target images as the trainer builds them, the backbone's features in eval mode (what evaluation
   extracts) and in the train modes the fine-tuning loop used before the fix (BatchNorm on the batch's
   statistics, EfficientNet's drop-connect on), and in eval mode with running statistics drifted to
   the mixed, augmented batches (where BatchNorm momentum 0.01 takes them within a few hundred steps:
   a 100-epoch A->W run has 2,000). Reported: the relative difference of each to the eval-mode
   features (with, for scale, the distance to another image of the same class or of another class),
   the drift of the running statistics, and the source-validation accuracy (eq. 6 on one half of the
   source, the other half the bank) of NoDA and DAH heads trained on one mode's features and
   evaluated on another's. Target accuracy is printed for information only; nothing here is chosen
   by it.
2. Comparison: NoDA and DAH, (a) the head on frozen cached features, (b) fine-tuned end to end with
   the fix (``backbone_bn=frozen``, no stochastic depth; the defaults) and (c) without it
   (``backbone_bn=train stochastic_depth=true``, the earlier behaviour), all with the same epochs and
   seed. Table: source accuracy (eq. 6 on the source, results.json ``source_accuracy``), target
   accuracy (continuous outputs and codes), mAP and wall time per run.

Usage: python benchmarks/finetune_vs_frozen.py [--task D:W] [--epochs 3] [--device cpu]
       [--out runs/finetune_vs_frozen] [--num-threads 1] [--per-class N] [--methods NoDA DAH]
       [--variants frozen-features finetune-fixed finetune-old] [--no-diagnostics | --diagnostics-only]
       [--set KEY=VALUE ...]

``--set`` overrides apply to every run (e.g. ``--set lr_start=1e-3 lr_end=1e-4``). ``--per-class N``
keeps the first N images of every class of each domain (image lists written under ``--out``), for a
quick check. Runs already finished under ``--out`` are resumed (re-evaluated), not retrained.

Cost on one CPU thread (AMD EPYC, 2 cores shared with other jobs): a fine-tuning step of 100 images
(forward and backward) takes about 17 s of CPU; D->W has 4 steps per epoch, plus decoding and, after
training, 452 images to extract: a fine-tuned run costs about 1.5 min x epochs + 0.5 min, the
diagnostics about 3 min, the frozen-feature heads seconds (features cached). The default 3 epochs:
about 25 minutes of CPU in all (more wall time on a loaded machine).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
METHODS: dict[str, dict[str, Any]] = {"NoDA": {"gamma": 0.0, "eta": 0.0}, "DAH": {}}
VARIANTS: dict[str, dict[str, Any]] = {
    "frozen-features": {"finetune": False},
    "finetune-fixed": {"finetune": True, "backbone_bn": "frozen", "stochastic_depth": False},
    "finetune-old": {"finetune": True, "backbone_bn": "train", "stochastic_depth": True},
}


# ------------------------------------------------------------------------------------ data


def subset_lists(data_root: str, source: str, target: str, per_class: int, folder: Path) -> tuple[str, str]:
    """Image lists of the first ``per_class`` images of every class of both domains."""
    from dahash.images.features import open_domain

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for spec in (source, target):
        domain = open_domain(data_root, spec)
        lines, taken = [], {}
        for path, label in zip(domain.paths, domain.labels):
            if taken.get(int(label), 0) < per_class:
                taken[int(label)] = taken.get(int(label), 0) + 1
                lines.append(f"{os.path.abspath(path)} {domain.classes[int(label)]}")
        out = folder / f"{domain.name}-{per_class}.txt"
        out.write_text("\n".join(lines) + "\n")
        names.append(str(out))
    return names[0], names[1]


# ------------------------------------------------------------------------------ diagnostics


def _stack(paths: list[Path], prep: Any, seed: int | None) -> torch.Tensor:
    """Eval-transformed images (``seed`` None) or train-augmented ones, as one batch tensor."""
    from dahash.images.loading import open_image
    from dahash.images.preprocess import eval_transform, train_transform

    if seed is None:
        return torch.stack([eval_transform(open_image(p), prep) for p in paths])
    return torch.stack([train_transform(open_image(p), prep, np.random.default_rng((seed, i)))
                        for i, p in enumerate(paths)])


def _mixed_batches(n_source: int, n_target: int, half: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Batches of ``half`` source and ``half`` target rows (as the trainer's), covering every source
    image once (the last batch cycles back) and as many target images (all of them if fewer)."""
    rng = np.random.default_rng(seed)
    n = -(-n_source // half)
    s = np.resize(rng.permutation(n_source), n * half)
    t = np.resize(rng.permutation(n_target), n * half)
    return [(s[b * half:(b + 1) * half], t[b * half:(b + 1) * half]) for b in range(n)]


def _features(model: Any, xs: torch.Tensor, xt: torch.Tensor, batches: list, mode: Any,
              limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features of every source and target image, each computed inside its mixed batch with the
    backbone put in ``mode`` (a function of the model); an image seen twice keeps its first."""
    fs = np.full((len(xs), 1280), np.nan, np.float32)
    ft = np.full((len(xt), 1280), np.nan, np.float32)
    with torch.no_grad():
        for b, (s, t) in enumerate(batches[:limit]):
            mode(model)
            f = model(torch.cat([xs[s], xt[t]])).numpy()
            for rows, out, part in ((s, fs, f[:len(s)]), (t, ft, f[len(s):])):
                fresh = np.isnan(out[rows, 0])
                out[rows[fresh]] = part[fresh]
    return fs, ft


def _relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row ||a - b|| / ||b|| over the rows both hold."""
    ok = ~np.isnan(a[:, 0]) & ~np.isnan(b[:, 0])
    return np.linalg.norm(a[ok] - b[ok], axis=1) / np.maximum(np.linalg.norm(b[ok], axis=1), 1e-12)


def _split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Source rows split in two halves per class (source labels only)."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        first.extend(rows[: (len(rows) + 1) // 2])
        second.extend(rows[(len(rows) + 1) // 2:])
    return np.sort(first), np.sort(second)


def diagnose(args: argparse.Namespace, source: str, target: str) -> tuple[str, list[dict]]:
    """Part 1: the train/eval feature mismatch of the pretrained backbone and what it does to a head."""
    from torch import nn

    from dahash.training.config import TrainConfig
    from dahash.data.features import FeatureSet
    from dahash.data.normalize import FeatureNormalizer
    from dahash.models.predict import encode
    from dahash.images.backbones import load_backbone
    from dahash.images.datasets import align_image_domains
    from dahash.images.features import open_domain
    from dahash.models.predict import class_probabilities
    from dahash.training.finetune import set_backbone_modes
    from dahash.training.trainer import Domains, train_model

    torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    src, tgt = align_image_domains(open_domain(args.data_root, source), open_domain(args.data_root, target))
    backbone = load_backbone("efficientnet_lite0")
    model, prep = backbone.model, backbone.preprocessing
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.momentum = 0.0  # batch statistics used, running statistics kept, in the measuring passes
    xs, xt = _stack(src.paths, prep, None), _stack(tgt.paths, prep, None)
    half = args.k * len(src.classes)
    batches = _mixed_batches(len(src), len(tgt), half, args.seed)
    if args.diagnostic_batches:
        batches = batches[:args.diagnostic_batches]

    modes = {
        "eval": lambda m: set_backbone_modes(m, False),
        "batch statistics": lambda m: set_backbone_modes(m, True, batchnorm=True, stochastic_depth=False),
        "batch statistics + drop-connect": lambda m: set_backbone_modes(m, True, batchnorm=True,
                                                                       stochastic_depth=True),
        "drop-connect": lambda m: set_backbone_modes(m, True, batchnorm=False, stochastic_depth=True),
        "frozen BN, no drop-connect (the fix)": lambda m: set_backbone_modes(m, True, batchnorm=False,
                                                                             stochastic_depth=False),
    }
    feats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, mode in modes.items():
        # The two modes used only for the mismatch table run on the first two batches.
        limit = 2 if name in ("drop-connect", "frozen BN, no drop-connect (the fix)") else None
        feats[name] = _features(model, xs, xt, batches, mode, limit)
    second = _features(model, xs, xt, batches, modes["batch statistics + drop-connect"], 2)

    # Running statistics where fine-tuning with backbone_bn=train takes them: the mean of the
    # batch statistics of mixed, augmented batches (momentum 0.01 forgets the pretrained ones
    # with a time constant of 100 steps).
    drifted = copy.deepcopy(model)
    pre = {id(b): (b.running_mean.clone(), b.running_var.clone()) for b in bns}
    for bn in drifted.modules():
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            continue
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    xs_aug, xt_aug = _stack(src.paths, prep, args.seed), _stack(tgt.paths, prep, args.seed + 1)
    _features(drifted, xs_aug, xt_aug, batches, modes["batch statistics"])
    # What the frozen-BN fine-tuning's head sees instead: eval-mode features of augmented images.
    feats["eval, augmented images"] = _features(model, xs_aug, xt_aug, batches, modes["eval"])
    del xs_aug, xt_aug
    dbns = [m for m in drifted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    # What the normalisation sees: the mean's shift in pretrained standard deviations, and the
    # factor by which the drifted variance rescales a channel (both per channel, all BatchNorms).
    shift = torch.cat([((d.running_mean - pre[id(b)][0]).abs() / (pre[id(b)][1] + b.eps).sqrt())
                       for d, b in zip(dbns, bns)])
    scale = torch.cat([((pre[id(b)][1] + b.eps) / (d.running_var + b.eps)).sqrt() for d, b in zip(dbns, bns)])
    factor = scale.log().abs().exp()
    quantiles = (0.5, 0.9, 0.99)
    mean_shift = [float(shift.quantile(q)) for q in quantiles]
    var_ratio = [float(factor.quantile(q)) for q in quantiles]
    feats["eval, drifted running statistics"] = _features(drifted, xs, xt, batches, modes["eval"])
    extract_seconds = time.perf_counter() - t0

    # 1. Mismatch: relative difference to the eval-mode features.
    rows: list[dict] = []
    lines = [f"### Diagnostics: {args.label}, pretrained efficientnet_lite0, batches of {half} source + "
             f"{half} target images\n",
             "| features | median rel. difference to eval mode | 90th percentile | images |", "|---|---|---|---|"]
    ev = np.concatenate(feats["eval"])
    for name, (fs, ft) in feats.items():
        if name == "eval":
            continue
        rel = _relative(np.concatenate([fs, ft]), ev)
        lines.append(f"| {name} | {np.median(rel):.3f} | {np.quantile(rel, 0.9):.3f} | {len(rel)} |")
        rows.append({"part": "mismatch", "features": name, "median_rel_diff": float(np.median(rel)),
                     "p90_rel_diff": float(np.quantile(rel, 0.9)), "images": len(rel)})
    # Scale references: how far apart two images are in eval mode, one of them a random other source
    # image of the same class, a target image of the same class, or a source image of another class.
    (fs_eval, ft_eval), rng = feats["eval"], np.random.default_rng(args.seed)
    ok = np.flatnonzero(~np.isnan(fs_eval[:, 0]))
    ok_t = np.flatnonzero(~np.isnan(ft_eval[:, 0]))
    references = {
        "source image of the same class": (fs_eval, lambda i: [j for j in ok if src.labels[j] == src.labels[i] and j != i]),
        "target image of the same class": (ft_eval, lambda i: [j for j in ok_t if tgt.labels[j] == src.labels[i]]),
        "source image of another class": (fs_eval, lambda i: [j for j in ok if src.labels[j] != src.labels[i]]),
    }
    for name, (pool, candidates) in references.items():
        pairs = [(i, rng.choice(c)) for i in ok if (c := candidates(i))]
        rel = _relative(pool[[j for _, j in pairs]], fs_eval[[i for i, _ in pairs]])
        lines.append(f"| (reference) eval mode, another {name} | {np.median(rel):.3f} | "
                     f"{np.quantile(rel, 0.9):.3f} | {len(rel)} |")
        rows.append({"part": "mismatch", "features": f"reference: {name}", "median_rel_diff": float(np.median(rel)),
                     "p90_rel_diff": float(np.quantile(rel, 0.9)), "images": len(rel)})
    rel = _relative(np.concatenate(second), np.concatenate(feats["batch statistics + drop-connect"]))
    lines.append(f"| batch statistics + drop-connect, two draws against each other | {np.median(rel):.3f} | "
                 f"{np.quantile(rel, 0.9):.3f} | {len(rel)} |")
    rows.append({"part": "mismatch", "features": "drop-connect draw vs draw", "median_rel_diff": float(np.median(rel)),
                 "p90_rel_diff": float(np.quantile(rel, 0.9)), "images": len(rel)})
    lines.append(f"\nRunning statistics drifted to the mixed augmented batches ({len(shift)} channels of {len(bns)} "
                 f"BatchNorms; 50th/90th/99th percentiles): shift of the mean "
                 f"{'/'.join(f'{v:.2f}' for v in mean_shift)} pretrained standard deviations; factor by which the "
                 f"new variance rescales a channel (either way) {'/'.join(f'{v:.2f}' for v in var_ratio)}.\n")
    rows.append({"part": "drift", **{f"mean_shift_in_sd_q{int(q * 100)}": v for q, v in zip(quantiles, mean_shift)},
                 **{f"scale_factor_q{int(q * 100)}": v for q, v in zip(quantiles, var_ratio)}})

    # 2. Heads trained on one mode's features, evaluated (source validation) on another's.
    covered_s = np.flatnonzero(~np.isnan(feats["batch statistics + drop-connect"][0][:, 0]))
    covered_t = np.flatnonzero(~np.isnan(feats["batch statistics + drop-connect"][1][:, 0]))
    fit_rows, val_rows = (covered_s[rows] for rows in _split(src.labels[covered_s], args.seed))
    trained_on = ["eval", "eval, augmented images", "batch statistics", "batch statistics + drop-connect"]
    evaluated_on = ["same", "eval", "eval, drifted running statistics"]
    lines += [f"Heads ({args.head_epochs} epochs on the features of half the source, {len(fit_rows)} images; "
              f"eq. 6 accuracy on the other half, {len(val_rows)} images, bank: the first half):\n",
              "| method | head trained on | source-val acc., same features | on eval-mode features | "
              "on eval mode, drifted statistics | target acc. (eval mode, batches' target images; information only) |",
              "|---|---|---|---|---|---|"]
    for method in args.methods:
        for mode in trained_on:
            fs, ft = feats[mode]
            values = {"k": args.k, **{k: v for k, v in _overrides(args).items() if k in _HEAD_KEYS},
                      **METHODS[method], "epochs": args.head_epochs, "seed": args.seed,
                      "num_threads": args.num_threads, "device": "cpu"}
            config = TrainConfig.from_dict(values, source="diagnostics")
            fit_set = FeatureSet(fs[fit_rows], src.labels[fit_rows], classes=list(src.classes))
            domains = Domains(fit_set, FeatureSet(ft[covered_t], tgt.labels[covered_t], classes=list(src.classes)),
                              FeatureNormalizer("none").fit(fs, ft))
            head = train_model(config, domains, progress=False)
            accs = []
            for use in evaluated_on:
                use = mode if use == "same" else use
                u_bank = encode(head, feats[use][0][fit_rows])
                u_val = encode(head, feats[use][0][val_rows])
                pred = class_probabilities(u_val, u_bank, src.labels[fit_rows], len(src.classes)).argmax(1)
                accs.append(float((pred == src.labels[val_rows]).mean() * 100))
            u_t = encode(head, feats["eval"][1][covered_t])
            pred_t = class_probabilities(u_t, encode(head, feats["eval"][0][fit_rows]), src.labels[fit_rows],
                                         len(src.classes)).argmax(1)
            target_acc = float((pred_t == tgt.labels[covered_t]).mean() * 100)
            lines.append(f"| {method} | {mode} | {accs[0]:.1f} | {accs[1]:.1f} | {accs[2]:.1f} | {target_acc:.1f} |")
            rows.append({"part": "head", "method": method, "trained_on": mode, "source_val_same": accs[0],
                         "source_val_eval": accs[1], "source_val_drifted": accs[2], "target_eval": target_acc})
    lines.append(f"\nDiagnostics took {time.perf_counter() - t0:.0f} s ({extract_seconds:.0f} s of it images "
                 f"and forward passes), {args.num_threads} thread(s).\n")
    return "\n".join(lines), rows


_HEAD_KEYS = ("bits", "hidden", "k", "lr_start", "lr_end", "lr_schedule", "momentum", "weight_decay", "gamma", "eta",
              "beta", "new_lr_mult", "like_weight", "inner_product_scale", "mmd_estimator", "reference_batch")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}


# ------------------------------------------------------------------------------ comparison


def compare(args: argparse.Namespace, source: str, target: str) -> tuple[str, list[dict]]:
    """Part 2: every method x variant trained and evaluated with the same epochs and seed."""
    from dahash.training.config import TrainConfig
    from dahash.runs.run import run

    base = {"data_root": os.path.abspath(args.data_root), "source": source, "target": target, "epochs": args.epochs,
            "seed": args.seed, "device": args.device, "num_threads": args.num_threads, "k": args.k,
            "num_workers": args.num_workers, **_overrides(args)}
    rows: list[dict] = []
    for method in args.methods:
        for variant in args.variants:
            values = {**base, **METHODS[method], **VARIANTS[variant]}
            if not values["finetune"]:
                values.pop("augment", None)
            config = TrainConfig.from_dict(values, source="finetune_vs_frozen")
            config = replace(config, out=str(Path(args.out) / f"{method}-{variant}"))
            t0 = time.perf_counter()
            metrics = run(config, resume=True, progress=False)
            wall = time.perf_counter() - t0
            assert metrics is not None
            row = {"method": method, "variant": variant, "epochs": config.epochs,
                   "source_accuracy": metrics["source_accuracy"], "target_accuracy": metrics.get("target_accuracy"),
                   "target_accuracy_codes": metrics.get("target_accuracy_codes"), "map": metrics.get("map"),
                   "train_seconds": metrics.get("train_seconds"), "wall_seconds": wall}
            rows.append(row)
            print(json.dumps(row), flush=True)
    lines = [f"### {args.label}: frozen-feature heads against end-to-end fine-tuning, {args.epochs} epochs, "
             f"seed {args.seed}, device {args.device}\n",
             "| method | training | source acc. (%) | target acc. (%) | acc., codes (%) | mAP | wall (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['variant']} | {r['source_accuracy']:.1f} | {r['target_accuracy']:.1f} | "
                     f"{r['target_accuracy_codes']:.1f} | {r['map']:.3f} | {r['wall_seconds']:.0f} |")
    return "\n".join(lines) + "\n", rows


# glibc returns every freed activation-sized buffer (> 32 MiB) to the kernel and faults it in again
# on the next batch: on one thread that doubled the CPU time of a 100-image forward pass (13 s, 8 of
# them in the kernel, against 5.6 s with these settings). They must be set before the process starts.
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


def main() -> int:
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()) and not os.environ.get("DAHASH_KEEP_MALLOC"):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "office_caltech_10"))
    parser.add_argument("--task", default="D:W", help="SOURCE:TARGET domain names or codes")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every run (one epoch: one pass over the source)")
    parser.add_argument("--head-epochs", type=int, default=300, help="epochs of the diagnostics' heads")
    parser.add_argument("--diagnostic-batches", type=int, default=0,
                        help="mixed batches the diagnostics run through (0: enough to cover the source)")
    parser.add_argument("--k", type=int, default=5, help="source images per class in a batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--num-workers", type=int, default=0, help="image decoding processes (0: in the training process)")
    parser.add_argument("--per-class", type=int, default=0, help="keep the first N images per class (0: all)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default=str(REPO / "runs" / "finetune_vs_frozen"))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides (YAML values)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--no-diagnostics", action="store_true", help="only the comparison")
    which.add_argument("--diagnostics-only", action="store_true", help="only the diagnostics")
    args = parser.parse_args()

    source, target = args.task.split(":")
    out = Path(args.out)
    if args.per_class:
        source, target = subset_lists(args.data_root, source, target, args.per_class, out / "lists")
    args.label = args.task.replace(":", " -> ") + (f" (first {args.per_class} images per class)" if args.per_class else "")
    parts = [f"Machine: {machine(torch=torch.__version__)}; {args.num_threads} torch thread(s).\n"]
    rows: list[dict] = []
    if not args.no_diagnostics:
        text, found = diagnose(args, source, target)
        print(text, flush=True)
        parts.append(text)
        rows += found
    if not args.diagnostics_only:
        text, found = compare(args, source, target)
        print(text, flush=True)
        parts.append(text)
        rows += found
    write_results(out, "finetune_vs_frozen", "\n".join(parts), rows)
    print(f"written: {out / 'finetune_vs_frozen.md'} and .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
