"""``dahash analyze``: proxy A-distances and t-SNE of fc7 features across methods, as the paper's Figure 3 (Venkateswara et al., CVPR 2017, Sec. 5.3).

The features compared for each transfer task are the frozen backbone's ("Backbone") and the
fc7 outputs of the trained source-only softmax network ("Deep"), DAN and DAH, whichever of
those runs exist. Target labels only colour the t-SNE points.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm.auto import tqdm

from dahash.errors import DahashError
from dahash.experiments.figures import plot_a_distances, plot_tsne
from dahash.experiments.reproduce import CELLS, ReproduceConfig, resolve_tasks, task_label
from dahash.experiments.tables import markdown_table
from dahash.images.features import image_feature_sets
from dahash.io import write_csv, write_json, write_text
from dahash.metrics.a_distance import proxy_a_distance
from dahash.models.predict import encode
from dahash.runs.loading import load_run
from dahash.training.trainer import load_model

# Feature kinds in the order of Figure 3a, and the reproduce methods whose fc7 they are.
KINDS = ("Backbone", "Deep", "DAN", "DAH")


def run_label(config: Any) -> str:
    """The method name of a training run's settings (as :data:`dahash.training.methods.DEEP_METHODS`)."""
    if config.head == "softmax":
        return "DANN" if config.adversarial else ("DAN" if config.gamma > 0 else "Deep")
    if config.gamma == 0 and config.eta == 0:
        return "NoDA"
    if config.eta == 0:
        return "DAH-e"
    return {"authors": "DAH-paper", "class-weighted": "DAH-cw"}.get(config.mmd_estimator, "DAH")


def _run_fc7(run_dir: Path) -> tuple[Any, np.ndarray, np.ndarray, Any]:
    """fc7 of both domains through a finished run's head, with its config and domains."""
    model, config, domains = load_run(run_dir)
    return config, encode(model, domains.source.X, layer="fc7"), encode(model, domains.target.X, layer="fc7"), domains


def _backbone(config: Any) -> tuple[np.ndarray, np.ndarray]:
    """The frozen backbone's (cached) features of both domains of a run."""
    source, target = image_feature_sets(config.data_root, config.source, config.target, backbone=config.backbone,
                                        weights=config.weights, cache_dir=config.cache_dir, progress=False,
                                        decode=config.decode, engine=config.engine)
    return source.X, target.X


def _task_runs(run: Path, tasks: Sequence[str] | None, seed: int) -> dict[str, dict[str, Path]]:
    """``{task label: {kind: run dir}}`` for a reproduce output, or for one training run."""
    if (run / "reproduce.yaml").exists():
        config = ReproduceConfig(**yaml.safe_load((run / "reproduce.yaml").read_text()))
        if tasks:
            config.tasks = list(tasks)
        found: dict[str, dict[str, Path]] = {}
        for source, target in resolve_tasks(config):
            label = task_label(source, target)
            cells = {kind: run / CELLS / kind / label.replace("→", "_") / f"seed{seed}" for kind in KINDS[1:]}
            found[label] = {kind: d for kind, d in cells.items() if (d / "model.pt").exists()}
        return found
    if (run / "model.pt").exists():
        _, config, _, _ = load_model(run / "model.pt")
        return {task_label(config.source or "source", config.target or "target"): {run_label(config): run}}
    raise DahashError(f"{run}: neither a 'dahash reproduce' output (reproduce.yaml) nor a finished run (model.pt)")


def analyze(run: str | Path, out: str | Path, *, tasks: Sequence[str] | None = None, seed: int = 0,
            tsne_task: str | None = None, max_classes: int = 10, progress: bool = True) -> dict[str, Any]:
    """Write ``a_distance.csv/.md/.png`` and ``tsne_<kind>_<task>.png`` (one task) into ``out``.

    ``run`` is a ``dahash reproduce`` output (tasks and seed pick its cells) or a single
    ``dahash train`` run. t-SNE is drawn for ``tsne_task`` ("A→W" or "A:W"), by default the first task.
    """
    run, out = Path(run), Path(out)
    plan = _task_runs(run, tasks, seed)
    if not any(plan.values()):
        raise DahashError(f"{run}: no finished Deep, DAN or DAH run to analyse (seed {seed})")
    wanted = (tsne_task or next(iter(plan))).replace(":", "→")
    if wanted not in plan:
        raise DahashError(f"t-SNE task {tsne_task!r} is not among the analysed tasks ({', '.join(plan)})")
    out.mkdir(parents=True, exist_ok=True)
    distances: dict[str, dict[str, float]] = {}
    figures = []
    steps = sum(1 + len(kinds) for kinds in plan.values())
    with tqdm(total=steps, unit="feature set", desc="analyze", disable=not progress, dynamic_ncols=True) as bar:
        for label, kinds in plan.items():
            if not kinds:
                continue
            features: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for kind, directory in kinds.items():
                config, fs, ft, domains = _run_fc7(directory)
                features[kind] = (fs, ft)
            # Backbone first, then the runs in the order _task_runs found them (Figure 3a's).
            features = {"Backbone": _backbone(config), **features}
            distances[label] = {}
            for kind, (fs, ft) in features.items():
                bar.set_postfix_str(f"{label} {kind}")
                distances[label][kind] = proxy_a_distance(fs, ft, seed=seed)
                if label == wanted:
                    path = out / f"tsne_{kind}_{label.replace('→', '_')}.png"
                    plot_tsne(path, fs, domains.source.y, ft, domains.target.y, domains.source.classes,
                              max_classes=max_classes, seed=seed, title=f"{kind} fc7 features, {label}"
                              if kind != "Backbone" else f"backbone features, {label}",
                              domain_names=tuple(label.split("→")))
                    figures.append(str(path))
                bar.update(1)
    kinds_seen = list(dict.fromkeys(k for row in distances.values() for k in row))
    header = ["Task", *kinds_seen]
    rows = [[label, *(f"{row[k]:.3f}" if k in row else "" for k in kinds_seen)] for label, row in distances.items()]
    write_csv(out / "a_distance.csv", header, rows)

    write_text(out / "a_distance.md", "## Proxy A-distance 2(1 - 2 err), linear SVM, 5-fold CV (lower: domains "
               "closer)\n\n" + markdown_table(header, rows))
    plot_a_distances(out / "a_distance.png", distances, title="Proxy A-distance between source and target features")
    write_json(out / "a_distance.json", distances)
    return {"a_distance": distances, "tsne": figures}
