"""Metrics of a trained run: target accuracy by eq. 6 and retrieval mAP/PR (Venkateswara et al., CVPR 2017, Sec. 5.3-5.4)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dahash.codes import pack_codes
from dahash.images.backbones import load_backbone
from dahash.io import remove_stale_temporaries, write_csv, write_json
from dahash.metrics import (
    mean_average_precision,
    precision_at_k,
    precision_recall_curve,
    precision_within_radius,
)
from dahash.metrics.plots import plot_pr_curves
from dahash.models import ClassifierHead
from dahash.models.predict import class_probabilities, encode, export_codes, select_bank
from dahash.runs.data import load_domains, prepare_image_domains, report_skipped
from dahash.runs.loading import load_run
from dahash.training.config import TrainConfig
from dahash.training.distributed import (
    Distributed,
    barrier,
    init_distributed,
    local_device,
    shutdown,
)
from dahash.training.finetune import finetune_model, network_domains, save_finetuned
from dahash.training.trainer import (
    CHECKPOINT,
    Domains,
    Head,
    resolve_device,
    settings_differ,
    train_model,
)


def _evaluate_classifier(model: ClassifierHead, config: TrainConfig, domains: Domains,
                         out: Path | None) -> dict[str, Any]:
    """Softmax accuracies of a deep baseline; it has no codes, so no retrieval metrics."""
    source, target = domains.source, domains.target
    logits_s, logits_t = encode(model, source.X), encode(model, target.X)
    probs = torch.softmax(torch.from_numpy(logits_t), 1).numpy()
    pred = probs.argmax(1)
    metrics: dict[str, Any] = {"n_source": len(source), "n_target": len(target), "n_classes": source.n_classes,
                               "source_accuracy": float((logits_s.argmax(1) == source.y).mean() * 100)}
    if target.y is not None:
        metrics["target_accuracy"] = float((pred == target.y).mean() * 100)
    if out is not None:
        rows = [[target.ids[i], source.classes[pred[i]], f"{probs[i, pred[i]]:.4f}",
                 source.classes[target.y[i]] if target.y is not None else ""] for i in range(len(target))]
        write_csv(out / "predictions.csv", ["id", "predicted", "probability", "true"], rows)
    return metrics


def evaluate_model(model: Head, config: TrainConfig, domains: Domains, out: Path | None = None) -> dict[str, Any]:
    """All metrics of one run; with ``out``, also codes, predictions and the PR curve.

    ``results.json`` is not written here: the caller writes it last, with the training time, as
    the mark that the run is finished (a kill before it leaves a run that resumes, not one that
    looks done without its time or its plot).

    Accuracies are percentages of target samples whose eq. 6 class (against a bank of up
    to ``bank_per_class`` source outputs per class) is right, with continuous outputs
    and with binary codes. mAP: target codes as queries, all source codes as database,
    relevant = same class (the paper's protocol); ``map_target_within`` ranks the other
    target codes for each target query (within-domain protocol). A softmax head (the deep
    baselines) is scored by its argmax instead and has no retrieval metrics.
    """
    if isinstance(model, ClassifierHead):
        return _evaluate_classifier(model, config, domains, out)
    source, target = domains.source, domains.target
    n_classes = source.n_classes
    u_s, u_t = encode(model, source.X), encode(model, target.X)
    bank = select_bank(source.y, config.bank_per_class, seed=config.seed)
    probs = class_probabilities(u_t, u_s[bank], source.y[bank], n_classes)
    probs_codes = class_probabilities(u_t, u_s[bank], source.y[bank], n_classes, binary=True)
    pred, pred_codes = probs.argmax(1), probs_codes.argmax(1)
    metrics: dict[str, Any] = {"n_source": len(source), "n_target": len(target), "n_classes": n_classes,
                               "bits": config.bits}
    source_pred = class_probabilities(u_s, u_s[bank], source.y[bank], n_classes).argmax(1)
    metrics["source_accuracy"] = float((source_pred == source.y).mean() * 100)
    pr = None
    if target.y is not None:
        codes_s, codes_t = pack_codes(u_s), pack_codes(u_t)
        metrics["target_accuracy"] = float((pred == target.y).mean() * 100)
        metrics["target_accuracy_codes"] = float((pred_codes == target.y).mean() * 100)
        metrics["map"] = mean_average_precision(codes_t, target.y, codes_s, source.y)
        metrics["map_target_within"] = mean_average_precision(codes_t, target.y, codes_t, target.y, exclude_self=True)
        metrics[f"precision_at_{config.precision_k}"] = precision_at_k(codes_t, target.y, codes_s, source.y,
                                                                       config.precision_k)
        metrics["precision_radius_2"] = precision_within_radius(codes_t, target.y, codes_s, source.y, radius=2)
        precision, recall, _ = precision_recall_curve(codes_t, target.y, codes_s, source.y, n_bits=config.bits)
        # NaN (radii at which no query retrieves anything) becomes null: results.json stays strict JSON.
        pr = tuple([None if np.isnan(v) else float(v) for v in arr] for arr in (precision, recall))
        metrics["pr_curve"] = {"precision": pr[0], "recall": pr[1]}
    if out is not None:
        export_codes(out / "codes_source.npz", u_s, source.ids, source.y, source.classes)
        export_codes(out / "codes_target.npz", u_t, target.ids, target.y, source.classes)
        rows = []
        for i in range(len(target)):
            truth = source.classes[target.y[i]] if target.y is not None else ""
            rows.append([target.ids[i], source.classes[pred[i]], f"{probs[i, pred[i]]:.4f}",
                         source.classes[pred_codes[i]], truth])
        write_csv(out / "predictions.csv", ["id", "predicted", "probability", "predicted_codes", "true"], rows)
        if pr is not None:
            plot_pr_curves(out / "pr_curve.png", {f"DAH ({config.bits} bits)": pr},
                           title=f"Target queries vs source database, {config.bits} bits")
    return metrics


def write_results(out: Path, config: TrainConfig, metrics: dict[str, Any]) -> None:
    """``config.yaml``, ``results.csv`` (one row of scalars) and, last, ``results.json`` ({"config",
    "metrics"}): its presence is what marks the run finished (``dahash reproduce`` skips such a cell)."""
    config.save(out / "config.yaml")
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    write_csv(out / "results.csv", list(scalars), [list(scalars.values())])
    write_json(out / "results.json", {"config": config.to_dict(), "metrics": metrics})


def run(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> dict[str, Any] | None:
    """Train and evaluate one run, writing everything into ``config.out``.

    Started by torchrun with several processes, every process trains its shard of each batch
    (:mod:`dahash.training.distributed`) and rank 0 alone evaluates and writes; the other ranks
    return None.

    ``resume`` on a run that has finished (its ``results.json`` holds the same result-changing settings)
    trains and writes nothing and returns the saved metrics: a finished run is never rewritten.
    """
    done = finished_metrics(config) if resume else None
    if done is not None:
        return done
    distributed = init_distributed(resolve_device(config.device))
    try:
        return _train_and_evaluate(config, resume=resume, progress=progress, distributed=distributed)
    finally:
        shutdown(distributed)


def finished_metrics(config: TrainConfig) -> dict[str, Any] | None:
    """The metrics of the finished run in ``config.out`` when its settings are ``config``'s; None when there is
    none (or it was made with other settings, which training then refuses to resume, naming them)."""
    results = Path(config.out) / "results.json" if config.out else None
    if results is None or not results.is_file():
        return None
    saved = json.loads(results.read_text())
    return None if settings_differ(saved.get("config", {}), config.to_dict()) else saved["metrics"]


def _train_and_evaluate(config: TrainConfig, *, resume: bool, progress: bool,
                        distributed: Distributed | None) -> dict[str, Any] | None:
    main = distributed is None or distributed.is_main
    progress = progress and main
    out = Path(config.out) if config.out else None
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)  # what a killed earlier attempt was writing
        # A directory with a checkpoint keeps its config.yaml until train_model has accepted
        # this config (a refused restart or resume must not relabel the existing run).
        if not (out / CHECKPOINT).exists():
            config.save(out / "config.yaml")
    t0 = time.perf_counter()
    if config.finetune:
        trained = _finetune(config, resume=resume, progress=progress, distributed=distributed)
        if trained is None:
            return None
        model, domains = trained
    else:
        # Rank 0 extracts (and caches) the features first; the others then read them from the cache.
        if not main:
            barrier(distributed)
        domains = load_domains(config, progress=progress)
        if main:
            barrier(distributed)
            report_skipped(domains.source.skipped + domains.target.skipped, out)
        t0 = time.perf_counter()
        model = train_model(config, domains, resume=resume, progress=progress, distributed=distributed)
        if not main:
            return None
    train_seconds = time.perf_counter() - t0
    if out is not None:
        # Per-epoch times of every session of a resumed run, not only this process's.
        with open(out / "history.csv") as f:
            train_seconds = sum(float(row["seconds"]) for row in csv.DictReader(f))
    metrics = evaluate_model(model, config, domains, out=out)
    metrics["train_seconds"] = train_seconds
    if distributed is not None:
        metrics["world_size"] = distributed.world_size
    if out is not None:
        write_results(out, config, metrics)
    return metrics


def _finetune(config: TrainConfig, *, resume: bool, progress: bool,
              distributed: Distributed | None = None) -> tuple[Head, Domains] | None:
    """Fine-tune backbone and head on the images; the head and both domains' tuned features
    (None on ranks other than 0 of a distributed run)."""
    main = distributed is None or distributed.is_main
    source, target, skipped = prepare_image_domains(config, progress=progress)
    if main:
        report_skipped(skipped, Path(config.out) if config.out else None)
    backbone = load_backbone(config.backbone, config.weights, config.decode)
    net = finetune_model(config, source, target, backbone, resume=resume, progress=progress,
                         distributed=distributed)
    if not main:
        return None
    domains = network_domains(net, backbone, source, target, batch_size=config.extract_batch_size,
                              num_workers=config.num_workers, progress=progress,
                              device=local_device(resolve_device(config.device), distributed))
    if config.out:
        save_finetuned(config, net, domains)
    return net.head, domains


def evaluate_run(run_dir: str | Path) -> dict[str, Any]:
    """Recompute every metric of a finished run from its saved model and rewrite its results."""
    run_dir = Path(run_dir)
    model, config, domains = load_run(run_dir)
    previous = run_dir / "results.json"
    # Training time is a fact of the training run; keep it when only re-evaluating.
    seconds = json.loads(previous.read_text()).get("metrics", {}).get("train_seconds") if previous.exists() else None
    metrics = evaluate_model(model, config, domains, out=run_dir)
    if seconds is not None:
        metrics["train_seconds"] = seconds
    write_results(run_dir, config, metrics)
    return metrics
