"""The ``dahash`` command: argument parsing over the Python API (:mod:`dahash.runs`,
:mod:`dahash.experiments`, :mod:`dahash.retrieval`).

Each command imports the module it runs when it runs: ``serve`` needs FastAPI, ``select`` and
``reproduce`` scikit-learn and skada, and every other command starts without them."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.metadata
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:  # imported when a command runs: dahash.cores loads numba
    from dahash.executors import ExecutorConfig

from dahash.errors import ConfigError, DahashError
from dahash.images.engines import ENGINES
from dahash.images.preprocess import DECODE_MODES, DEFAULT_DECODE
from dahash.selection_grids import (
    CRITERIA,
    SCHEDULE_MODES,
    SCHEDULED_METHODS,
    SELECTION_GRIDS,
    TUNED_SETTING,
    auto_grid,
    auto_schedule,
)
from dahash.training.config import (
    SETTINGS_BEFORE_THEY_EXISTED,
    TrainConfig,
    add_config_arguments,
    load_yaml,
    resolve_config,
)
from dahash.training.methods import DEEP_METHODS

RUNTIME_ERROR, USAGE_ERROR = 1, 2  # exit codes (2 is also argparse's)
SUMMARY_KEYS = ("target_accuracy", "target_accuracy_codes", "map", "map_target_within", "source_accuracy",
                "train_seconds")


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars on a terminal: never with --quiet, and in a redirected log only with --progress (their
    carriage-return updates are noise in a file)."""
    return not args.quiet and (args.progress or sys.stderr.isatty())


def _scalars(metrics: dict) -> dict:
    """A run's metrics without the per-radius PR curve."""
    return {k: v for k, v in metrics.items() if k != "pr_curve"}


def _print_json(data: dict) -> None:
    """``data`` as strict JSON on stdout (NaN as null), for scripts."""
    print(json.dumps(_strict(data), indent=2))


def _strict(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def _print_summary(metrics: dict) -> None:
    for key in SUMMARY_KEYS:
        if key in metrics:
            print(f"{key:>24}: {metrics[key]:.4f}")


def _explicit_settings(args: argparse.Namespace, yaml_path: str | Path | None) -> dict:
    """The training settings the user gave, in the YAML file or as flags (flags win)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in (load_yaml(yaml_path) if yaml_path else {}).items() if k in names}
    return given | {k: v for k, v in vars(args).items() if k in names}


def _train(args: argparse.Namespace) -> int:
    from dahash.cores import free_cores
    from dahash.runs.run import finished_metrics, run
    from dahash.images.backbones import PRETRAINED_FC_BACKBONES
    from dahash.runs.tuning import SCHEDULE_DIR, SELECTION_DIR, train_selected
    from dahash.training.trainer import CHECKPOINT, checkpoint_epoch, refuse_existing_run

    saved = Path(args.out) / "config.yaml" if getattr(args, "out", None) else None
    # --resume alone continues a run with the settings it saved; flags given still override them.
    run_config = args.resume and not args.config and saved is not None and saved.is_file()
    yaml_path = args.config or (saved if run_config else None)
    # A run's own config.yaml, written before a setting existed, resumes with what that version did.
    preset = {**DEEP_METHODS[args.method], **(SETTINGS_BEFORE_THEY_EXISTED if run_config else {})}
    config = resolve_config(args, yaml_path, preset)
    if not config.out:
        raise ConfigError("--out DIR is required (where checkpoints and results go)")
    if config.num_threads is None:  # the cores other jobs leave free, recorded in config.yaml (docs/usage.md)
        config = dataclasses.replace(config, num_threads=free_cores())
    given = _explicit_settings(args, yaml_path)
    # The paper's procedure (Sec. 5.2): a method's tuned setting, unless given, is chosen per task
    # without target labels among its grid; a run's saved config.yaml already holds the choice.
    tuned = TUNED_SETTING.get(args.method)
    grid = auto_grid(args.method, given) if tuned and tuned not in given else []
    # Issue 31: the schedule and hidden-layer regularisation of a head on fixed features, unless given, chosen on
    # held-out source (OUT/schedule/); fine-tuning and a head that starts from a pretrained fc6/fc7 keep the
    # paper's. A run resumed from its own config.yaml trains what it saved (written before a setting existed,
    # that version's value).
    pretrained_head = config.finetune or (config.backbone in PRETRAINED_FC_BACKBONES and bool(config.data_root))
    schedule = [] if pretrained_head or run_config else auto_schedule(args.method, given, args.schedule)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if schedule and distributed:
        raise ConfigError("under torchrun, the training stage (schedule and hidden layers) cannot run: give "
                          "--schedule paper, or the values 'dahash train' on one process chose (OUT/schedule/)")
    if grid and distributed:
        raise ConfigError(f"under torchrun, choose {tuned} first: 'dahash select --method {args.method} ...' on one "
                          f"process, then 'torchrun ... dahash train --config SELECT_OUT/config.yaml' (or give "
                          f"--{tuned.replace('_', '-')})")
    refuse_existing_run(Path(config.out) / CHECKPOINT, args.resume)  # before any selection writes into it
    finished = args.resume and not (grid or schedule) and finished_metrics(config) is not None
    if finished:
        print(f"{config.out} has finished (results.json): nothing to train, nothing rewritten", file=sys.stderr)
    resuming = args.resume and not (grid or schedule) and not finished
    epoch = checkpoint_epoch(Path(config.out) / CHECKPOINT, config) if resuming else None
    if epoch is not None:
        print(f"resumed at epoch {epoch} of {config.epochs} ({Path(config.out) / CHECKPOINT})", file=sys.stderr)
    selection = chosen_schedule = None
    if grid or schedule:
        chosen_schedule, selection, metrics = train_selected(
            config, grid, method=args.method, criterion=args.criterion, schedule=schedule, resume=args.resume,
            progress=_progress(args))
    else:
        metrics = run(config, resume=args.resume, progress=_progress(args))
    if metrics is None:  # a rank other than 0 of a torchrun job: rank 0 reports
        return 0
    if args.json:
        chosen = None if selection is None else {"params": selection.best_params, "rule": selection.rule,
                                                 "folder": str(Path(config.out) / SELECTION_DIR)}
        steps = None if chosen_schedule is None else {"params": chosen_schedule.best_params,
                                                      "rule": chosen_schedule.rule,
                                                      "folder": str(Path(config.out) / SCHEDULE_DIR)}
        _print_json({"out": config.out, "metrics": _scalars(metrics), "selection": chosen, "schedule": steps})
        return 0
    if chosen_schedule is not None:
        chosen = ", ".join(f"{k}={v}" for k, v in chosen_schedule.best_params.items())
        print(f"schedule chosen on held-out source among {len(schedule)} candidates: {chosen} ({chosen_schedule.rule}); "
              f"every candidate: {Path(config.out) / SCHEDULE_DIR}/selection.md (--schedule paper trains the "
              "paper's)")
    if selection is not None:
        chosen = ", ".join(f"{k}={v}" for k, v in selection.best_params.items())
        print(f"{tuned} chosen without target labels among {len(grid)} candidates: {chosen} ({selection.rule}); "
              f"every candidate: {Path(config.out) / SELECTION_DIR}/selection.md (give --{tuned.replace('_', '-')} "
              "to train one value)")
    _print_summary(metrics)
    print(f"results written to {config.out}/results.json")
    return 0


def _select(args: argparse.Namespace) -> int:
    from dahash.runs.selection import parse_grid
    from dahash.runs.tuning import select_config

    if not args.out:
        raise ConfigError("--out DIR is required (where selection.json, .csv, .md and config.yaml go)")
    config = resolve_config(args, args.config, DEEP_METHODS[args.method])
    grid = parse_grid(args.grid) if args.grid else SELECTION_GRIDS.get(args.method) or auto_grid(args.method)
    if not grid:
        raise ConfigError(f"method {args.method} has no default grid; give at least one --grid KEY=V1,V2,..., "
                          "e.g. --grid epochs=50,100,300")
    # Each candidate a cell of the executor; in this process, one after the other, by default.
    executor = _executor(args) if args.executor != "local" or args.workers > 1 else None
    selection, _ = select_config(config, grid, method=args.method, criterion=args.criterion,
                                 val_fraction=args.val_fraction, out=args.out, progress=_progress(args),
                                 executor=executor)
    if args.json:
        _print_json({"out": args.out, **selection.to_dict()})
        return 0
    print(selection.table())
    chosen = ", ".join(f"{k}={v}" for k, v in selection.best_params.items())
    print(f"chosen: candidate {selection.best_index} ({chosen})\nrule: {selection.rule}")
    print(f"written to {args.out}: selection.json, selection.csv, selection.md and config.yaml "
          "(train it with: dahash train --config config.yaml --out RUN)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from dahash.runs.run import evaluate_run

    metrics = evaluate_run(args.run)
    if args.json:
        _print_json(_scalars(metrics))
    else:
        _print_summary(metrics)
    return 0


def _encode(args: argparse.Namespace) -> int:
    from dahash.runs.loading import encode_images

    n = encode_images(args.run, args.images, args.out, cache_dir=args.cache_dir, progress=_progress(args),
                      engine=args.engine)
    print(f"{n} codes written to {args.out}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from dahash.images.features import extract_domain

    features = extract_domain(args.data_root, args.domain, args.out, backbone=args.backbone, weights=args.weights,
                              decode=args.decode, cache_dir=args.cache_dir, progress=_progress(args),
                              engine=args.engine)
    skipped = f"; {len(features.skipped)} unreadable image(s) skipped" if features.skipped else ""
    print(f"{len(features)} images x {features.n_features} features ({len(features.classes)} classes) written to "
          f"{args.out}{skipped}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from dahash.experiments.demo import run_demo

    run_demo(out=args.out, seeds=args.seeds, epochs=args.epochs, progress=_progress(args))
    print(Path(args.out, "demo_results.md").read_text())
    return 0


def _download(args: argparse.Namespace) -> int:
    from dahash.images.download import download_dataset

    try:
        download_dataset(args.dataset, args.to, url=args.url, sha256=args.sha256, progress=_progress(args),
                         keep_archive=not args.remove_archive)
    except KeyboardInterrupt:
        # main()'s message is about training checkpoints; a download resumes from its .part file instead.
        print("dahash: interrupted; rerun the same command to resume the download", file=sys.stderr)
        return 130
    return 0


def _yaml_value(flag: str, item: str, value: str) -> object:
    """The YAML value of ``flag item``, or a one-line error naming it (YAML refuses control characters)."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{flag} {item!r}: the value is not valid YAML ({reason})") from None


def _reproduce_file(path: str) -> dict:
    """The settings of a reproduce.yaml / retrieval.yaml, as reproduce's flags name them (the parsed forms of
    --set, --shallow-set and --select-grid under ``overrides``, ``params`` and ``grids``)."""
    saved = load_yaml(path)
    retrieval = "hasher_params" in saved
    values = {k: v for k, v in saved.items() if k in ("data_root", "out", "dataset", "methods", "tasks", "seeds",
                                                     "backbone", "weights", "decode", "cache_dir", "workers",
                                                     "classifier", "criterion", "holdout", "precision_k")}
    if "bits" in saved:
        values["bits"] = saved["bits"] if isinstance(saved["bits"], list) else [saved["bits"]]
    values |= {"tables": "retrieval" if retrieval else "accuracy", "overrides": saved.get("overrides") or {},
               "params": saved.get("hasher_params" if retrieval else "shallow_params") or {},
               "grids": saved.get("selection_grids") or {}}
    return values


def _reproduce(args: argparse.Namespace, defaults: dict) -> int:

    from dahash.experiments.reproduce import (
        METHODS,
        SELECTION_GRIDS,
        SHALLOW,
        ReproduceConfig,
        reproduce,
        with_selected,
    )
    from dahash.experiments.retrieval_tables import RETRIEVAL_METHODS, RetrievalConfig, reproduce_retrieval
    from dahash.runs.selection import expand_grid, parse_grid

    saved = _reproduce_file(args.config) if getattr(args, "config", None) else {}
    args = argparse.Namespace(**{**defaults, "overrides": {}, "params": {}, "grids": {}, **saved, **vars(args)})
    for flag in ("data_root", "out"):
        if not getattr(args, flag):
            raise ConfigError(f"--{flag.replace('_', '-')} is required (or --config with a reproduce.yaml)")
    retrieval = args.tables == "retrieval"
    overrides = dict(args.overrides)
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. epochs=50")
        key, value = item.split("=", 1)
        overrides[key] = _yaml_value("--set", item, value)
    known = {m.casefold(): m for m in (RETRIEVAL_METHODS if retrieval else SHALLOW)}
    params: dict[str, dict] = {method: dict(values) for method, values in args.params.items()}
    for item in args.shallow_set:
        key, _, value = item.partition("=")
        method, _, name = key.partition(".")
        if not value or not name:
            raise ConfigError(f"--shallow-set {item!r}: expected METHOD.KEY=VALUE, e.g. GFK.n_components=10")
        params.setdefault(known.get(method.casefold(), method), {})[name] = _yaml_value("--shallow-set", item, value)
    common = dict(data_root=args.data_root, out=args.out, dataset=args.dataset, tasks=args.tasks, seeds=args.seeds,
                  backbone=args.backbone, weights=args.weights, decode=args.decode, cache_dir=args.cache_dir,
                  workers=args.workers,
                  overrides=overrides)
    if retrieval:
        if args.select_all or args.select_grid:
            raise ConfigError("--select-all and --select-grid are for the accuracy tables, not --tables retrieval")
        config = RetrievalConfig(**common, methods=args.methods or list(RETRIEVAL_METHODS),
                                 bits=args.bits or [16, 64, 128], holdout=args.holdout,
                                 precision_k=args.precision_k, hasher_params=params)
        summary = reproduce_retrieval(config, progress=_progress(args), executor=_executor(args))
        files = "map.md, map.csv, retrieval.csv and pr_*.png"
    else:
        if args.bits and len(args.bits) > 1:
            raise ConfigError(f"--bits: the accuracy tables take one code length, got {args.bits}; "
                              "several are for --tables retrieval")
        # METHOD.KEY=V1,V2 gives METHOD's grid (METHOD or METHOD-sel); a bare KEY=V1,V2 is DAH's, as before.
        known_grids = {m.casefold(): m for m in SELECTION_GRIDS}
        items: dict[str, list[str]] = {}
        for item in args.select_grid or []:
            key, sep, values = item.partition("=")
            method, dot, name = key.rpartition(".")
            method = method.casefold().removesuffix("-sel") if dot else "dah"
            items.setdefault(known_grids.get(method, method), []).append(f"{name}{sep}{values}" if dot else item)
        grids = {**args.grids, **{method: expand_grid(parse_grid(given)) for method, given in items.items()}}
        methods = args.methods or list(METHODS)
        config = ReproduceConfig(**common, methods=with_selected(methods) if args.select_all else methods,
                                 bits=(args.bits or [64])[0], classifier=args.classifier, shallow_params=params,
                                 selection_grids=grids, criterion=args.criterion)
        summary = reproduce(config, progress=_progress(args), executor=_executor(args))
        files = "accuracy.md, .csv and .png"
    if args.json:
        _print_json({"out": args.out, **{k: v for k, v in summary.items() if k != "table"}})
        return 0
    print(summary["table"])
    print(f"{summary['cells']} runs ({summary['computed']} computed now) in {summary['seconds']:.0f} s; "
          f"tables in {args.out}: {files}")
    return 0


def _index(args: argparse.Namespace) -> int:
    from dahash.retrieval.search import add_images, build_index

    if args.index_command == "build":
        n = build_index(args.run, args.images, args.index, backend=args.backend, kind=args.type,
                        milvus_uri=args.milvus_uri, collection=args.collection, cache_dir=args.cache_dir,
                        progress=_progress(args), rebuild=args.rebuild, milvus_db=args.milvus_db,
                        milvus_tls_ca=args.milvus_tls_ca, milvus_token=_first_line(args.milvus_token_file),
                        engine=args.engine)
        if args.json:
            _print_json({"index": args.index, "indexed": n, "backend": args.backend, "type": args.type})
        else:
            print(f"{n} images indexed in {args.index} ({args.backend}, {args.type})")
    else:
        added, skipped = add_images(args.index, args.images, run_dir=args.run, cache_dir=args.cache_dir,
                                    progress=_progress(args), engine=args.engine)
        print(f"{added} images added to {args.index}; {skipped} were already indexed")
    return 0


def _first_line(path: str | None) -> str | None:
    """The first line of a secret's file (None without one); an error names the file, never its content."""
    if path is None:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the token file ({type(exc).__name__})") from None
    if not lines or not lines[0].strip():
        raise ConfigError(f"{path}: the token file is empty")
    return lines[0].strip()


def _search(args: argparse.Namespace) -> int:
    from dahash.experiments.tables import markdown_table
    from dahash.retrieval.search import search_images

    queries, predicted, result = search_images(args.index, args.image, args.top_k, run_dir=args.run,
                                               cache_dir=args.cache_dir, engine=args.engine)
    hits = [[{"rank": r + 1, "id": int(i), "distance": int(d), **(m or {})}
             for r, (i, d, m) in enumerate(zip(ids, dists, meta)) if i >= 0]
            for ids, dists, meta in zip(result.ids, result.distances, result.metadata)]
    if args.json:
        print(json.dumps([{"query": q, "predicted": p, "hits": h} for q, p, h in zip(queries, predicted, hits)],
                         indent=2))
        return 0
    for query, pred, rows in zip(queries, predicted, hits):
        print(f"\n{query}" + (f" (predicted class: {pred})" if pred else ""))
        print(markdown_table(["rank", "path", "Hamming distance", "label"],
                             [[str(h["rank"]), h.get("path", str(h["id"])), str(h["distance"]), h.get("label") or ""]
                              for h in rows]))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from dahash.retrieval.settings import require_server_packages

    require_server_packages()  # one line naming what to install, before anything is loaded
    from dahash.retrieval.serve import serve

    if not 0 < args.max_upload_mb < 2 ** 20:  # also refuses nan and inf
        raise ConfigError(f"--max-upload-mb must be a positive number of MiB, got {args.max_upload_mb:g}")
    if args.max_batch < 1:
        raise ConfigError(f"--max-batch must be a positive integer, got {args.max_batch}")
    if not 0 <= args.max_wait_ms < 60_000:  # also refuses nan and inf
        raise ConfigError(f"--max-wait-ms must be from 0 to 60000 milliseconds, got {args.max_wait_ms:g}")
    if args.lanes is not None and args.lanes < 1:
        raise ConfigError(f"--lanes must be a positive integer, got {args.lanes}")
    from dahash.retrieval.access import read_key

    serve(args.index, args.run, host=args.host, port=args.port, max_upload_bytes=int(args.max_upload_mb * 2 ** 20),
          max_concurrent=args.max_concurrent, queue_timeout=args.queue_timeout, cache_dir=args.cache_dir,
          threads=args.threads, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, lanes=args.lanes,
          api_key=read_key(args.api_key_file), allow_no_key=args.allow_no_key, engine=args.engine)
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from dahash.experiments.report import analyze

    result = analyze(args.run, args.out, tasks=args.tasks, seed=args.seed, tsne_task=args.tsne_task,
                     max_classes=args.max_classes, progress=_progress(args))
    print(Path(args.out, "a_distance.md").read_text())
    print(f"A-distance plot: {Path(args.out, 'a_distance.png')}; t-SNE: {', '.join(result['tsne'])}")
    return 0


def _study(args: argparse.Namespace) -> int:
    from dahash.experiments.validator_study import demo_groups, read_candidates, reproduce_groups, write_study

    if not args.runs and not args.demo and not args.candidates:
        raise ConfigError("give --runs (a 'dahash reproduce --select-all' output), --demo, or --candidates")
    if args.candidates and (args.runs or args.demo):
        raise ConfigError("--candidates remakes a study from its file alone; give it without --runs and --demo")
    parts = read_candidates(args.candidates) if args.candidates else {}
    if args.runs:
        parts = reproduce_groups(args.runs, progress=_progress(args))
    if args.demo:
        # The demo's candidates as cells of the executor; in this process, one after the other, by default.
        executor = _executor(args) if args.executor != "local" or args.workers > 1 else None
        parts["demo"] = demo_groups(Path(args.out) / "demo", progress=_progress(args), executor=executor)
    result = write_study(args.out, parts)
    print(Path(args.out, "study.md").read_text())
    if result["decision"]:
        print(f"default criterion by the declared rule: {result['decision'][0]}")
    return 0


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default, unless the help already names one or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        no_default = action.default in (None, argparse.SUPPRESS, False, []) or not action.option_strings
        if no_default or "default" in text or "%(default)" in text:
            return text
        return text + " (default: %(default)s)"


def _add_engine_argument(parser: argparse.ArgumentParser, default: str | None) -> None:
    """``--engine``: what runs the frozen backbone (docs/usage.md, "Inference engines")."""
    shown = default or "the engine the run extracted its features with"
    parser.add_argument("--engine", choices=ENGINES, default=default,
                        help="what runs the frozen backbone on the CPU: torch, onnxruntime (an ONNX export "
                             "made once under the feature cache; pip install 'dahash[onnx]') "
                             f"or auto (the fastest installed within tolerance, else torch) (default: {shown})")


def _add_train_command(sub: argparse._SubParsersAction) -> None:
    """``dahash train``."""
    train = sub.add_parser("train", help="train DAH on source and target feature files or image folders",
                           description="Train DAH; settings come from defaults, then --config YAML, then flags.")
    train.add_argument("--config", help="YAML file of settings (flags given here override it)")
    train.add_argument("--method", choices=list(DEEP_METHODS), default="DAH",
                       help="start from this method's settings (default DAH; Deep, DAN and DANN are the softmax "
                            "baselines, NoDA and DAH-e DAH without some terms); YAML and flags override them")
    train.add_argument("--json", action="store_true", help="print a JSON summary for scripts instead of tables")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--criterion", choices=CRITERIA, default="paper",
                       help="label-free rule that chooses the method's tuned setting when it is not given (default "
                            "paper, Sec. 5.2; docs/selection.md)")
    train.add_argument("--schedule", choices=SCHEDULE_MODES, default="auto",
                       help="auto (default): for "
                            f"{', '.join(SCHEDULED_METHODS)} on fixed features, the learning rates and epochs "
                            "(unless --epochs, --lr-start or --lr-end is given) and the hidden layers' BatchNorm and "
                            "dropout (unless --hidden-bn or --hidden-dropout is) are chosen first among 6 candidates "
                            "by held-out source accuracy, keeping the paper's unless another beats it beyond noise "
                            "(recorded in OUT/schedule/; docs/own-features.md); paper: the method's own values")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--progress", action="store_true",
                          help="progress bars even when stderr is not a terminal (a redirected log)")
    tuned = ", ".join(f"{m}: {k}" for m, k in TUNED_SETTING.items())
    add_config_arguments(train, help_overrides={
        "gamma": "MK-MMD weight (0 disables domain alignment). Not given: chosen per task without target labels "
                 "among the method's candidates, by --criterion, then trained on the whole source (the paper's "
                 "procedure; recorded in OUT/selection/); the method's preset value for methods that tune "
                 "another setting or none",
        "adversarial_weight": "with adversarial: weight of DANN's domain loss (its lambda, Ganin et al., JMLR 2016), "
                              "on top of the reversal coefficient's 0-to-1 schedule. Not given, with --method DANN: "
                              "chosen per task without target labels, as --gamma is"})
    train.epilog = (f"Settings chosen per task unless given (method: setting): {tuned}. Give the setting (e.g. "
                    "--gamma 5000) to train that value alone.")
    train.set_defaults(func=_train)


def _add_select_command(sub: argparse._SubParsersAction) -> None:
    """``dahash select``."""
    select = sub.add_parser("select", help="choose settings (e.g. gamma) without target labels",
                            description="Train every setting of a grid on source-train + target and choose one "
                                        "without target labels: by default the paper's rule (Sec. 5.2), the "
                                        "domain-classifier error closest to chance among settings within 1 point of "
                                        "the best held-out source accuracy; or that rule without the guard "
                                        "(domain), the best held-out source accuracy (source), or a skada scorer "
                                        "(dev, iw, snd, entropy, mixval, mano). Without --grid, the method's own "
                                        "candidates (docs/selection.md).")
    select.add_argument("--config", help="YAML file of the settings every candidate starts from")
    select.add_argument("--method", choices=list(DEEP_METHODS), default="DAH", help="start from this method's settings")
    select.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="a setting's candidate values, read as YAML (repeatable: every combination is "
                             "tried), e.g. --grid gamma=0,500,5000 --grid epochs=100,300; default: the method's grid")
    select.add_argument("--criterion", default="paper",
                        help=f"the label-free rule: {', '.join(CRITERIA)} (default paper; docs/selection.md)")
    select.add_argument("--val-fraction", type=float, default=0.2,
                        help="fraction of each source class held out for scoring (default 0.2)")
    select.add_argument("--json", action="store_true", help="print a JSON summary for scripts instead of tables")
    select.add_argument("--out", default=None, help="output directory: selection.json, .csv, .md and the chosen "
                                                    "config.yaml")
    select.add_argument("--quiet", action="store_true", help="no progress bar")
    select.add_argument("--progress", action="store_true",
                           help="progress bars even when stderr is not a terminal (a redirected log)")
    _add_executor_arguments(select, cells="candidates", workers=True)
    add_config_arguments(select, skip=("out",))
    select.set_defaults(func=_select)


def _add_evaluate_command(sub: argparse._SubParsersAction) -> None:
    """``dahash evaluate``."""
    evaluate = sub.add_parser("evaluate", help="recompute a finished run's metrics from its saved model")
    evaluate.add_argument("--run", required=True, help="run directory written by 'dahash train'")
    evaluate.add_argument("--json", action="store_true", help="print all scalar metrics as JSON")
    evaluate.set_defaults(func=_evaluate)


def _add_encode_command(sub: argparse._SubParsersAction) -> None:
    """``dahash encode``."""
    encode = sub.add_parser("encode", help="hash codes for new images with a trained run (image-trained runs)")
    encode.add_argument("--run", required=True, help="run directory trained with --data-root")
    encode.add_argument("--images", required=True, nargs="+", help="image files and/or folders (searched recursively)")
    encode.add_argument("--out", required=True, help="output .npz: packed codes, n_bits, ids (paths), classes")
    encode.add_argument("--cache-dir", default=None, help="feature cache (default: the run's, else $DAHASH_CACHE)")
    _add_engine_argument(encode, None)
    encode.add_argument("--quiet", action="store_true", help="no progress bar")
    encode.add_argument("--progress", action="store_true",
                           help="progress bars even when stderr is not a terminal (a redirected log)")
    encode.set_defaults(func=_encode)


def _add_extract_command(sub: argparse._SubParsersAction) -> None:
    """``dahash extract``."""
    ext = sub.add_parser("extract", help="write an image domain's backbone features to a .npz that train reads",
                         description="Run the frozen backbone over one domain's images (ROOT/<domain>/<class>/*.jpg, "
                                     "or an image-list file) and write X, y, classes and ids to a .npz for "
                                     "'dahash train --source-features/--target-features'. Features are cached.")
    ext.add_argument("--data-root", default=None, metavar="ROOT", help="folder holding the domain folders")
    ext.add_argument("--domain", required=True, help="domain folder name, short code (A, C, D, W, Ar, ...) or an "
                                                    "image-list .txt")
    ext.add_argument("--out", required=True, help="output .npz")
    ext.add_argument("--backbone", default="efficientnet_lite0", help="feature extractor (default efficientnet_lite0)")
    ext.add_argument("--weights", default=None, help="local weights file for the backbone")
    ext.add_argument("--decode", choices=DECODE_MODES, default=DEFAULT_DECODE, help="JPEG decoding (docs/usage.md)")
    ext.add_argument("--cache-dir", default=None, help="feature cache (default $DAHASH_CACHE or ~/.cache/dahash)")
    _add_engine_argument(ext, "auto")
    ext.add_argument("--quiet", action="store_true", help="no progress bar")
    ext.add_argument("--progress", action="store_true",
                     help="progress bars even when stderr is not a terminal (a redirected log)")
    ext.set_defaults(func=_extract)


def _add_demo_command(sub: argparse._SubParsersAction) -> None:
    """``dahash demo``."""
    demo = sub.add_parser("demo", help="offline demo: printed-font digits -> handwritten digits, NoDA vs DAH")
    demo.add_argument("--out", default="dahash-demo", help="output directory (default: dahash-demo)")
    demo.add_argument("--seeds", type=int, default=10, help="seeds per method (default 10)")
    demo.add_argument("--epochs", type=int, default=None, help="override the demo's epochs")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument("--progress", action="store_true",
                         help="progress bars even when stderr is not a terminal (a redirected log)")
    demo.set_defaults(func=_demo)


def _add_executor_arguments(parser: argparse.ArgumentParser, cells: str = "cells", workers: bool = False) -> None:
    """Where ``cells`` run (docs/cluster.md): this machine's process pool, or a Dask, Ray or Slurm cluster."""
    group = parser.add_argument_group(f"where {cells} run (docs/cluster.md)")
    if workers:
        group.add_argument("--workers", type=int, default=1,
                           help=f"{cells} in parallel on this machine (the local pool, a local Dask or Ray cluster), "
                                "each on free cores / workers threads (default 1)")
    group.add_argument("--executor", choices=("local", "dask", "ray", "slurm"), default="local",
                       help="local: --workers processes here (default); dask: tasks of a Dask cluster; ray: tasks of a "
                            "Ray cluster; slurm: one job array through submitit (needs sbatch). Extras: "
                            "pip install 'dahash[dask]' / 'dahash[ray]' / 'dahash[slurm]'")
    group.add_argument("--executor-address", default=None, metavar="ADDRESS",
                       help="dask: the scheduler, e.g. tcp://head:8786; ray: e.g. ray://head:10001 or auto (default: "
                            "a cluster of --workers processes on this machine)")
    group.add_argument("--cpus-per-cell", "--slurm-cpus", dest="cpus_per_cell", type=int, default=None, metavar="N",
                       help="cores each cell asks for and runs its threads on: Ray's num_cpus, Slurm's "
                            "--cpus-per-task (default: the free cores shared by --workers here; 1 on a Ray "
                            "cluster; on Dask a worker's cores shared among its threads)")
    group.add_argument("--gpus-per-cell", "--slurm-gpus", dest="gpus_per_cell", type=int, default=0, metavar="N",
                       help="GPUs each cell asks for: Ray's num_gpus, Slurm's --gpus-per-node (default 0)")
    group.add_argument("--slurm-partition", default=None, help="Slurm partition (sbatch --partition)")
    group.add_argument("--slurm-time", type=int, default=60, metavar="MINUTES",
                       help="time limit of each cell's job in minutes (sbatch --time; default 60); a job cut off "
                            "is requeued and resumes from its last checkpoint")
    group.add_argument("--slurm-mem", default=None, help="memory per job, e.g. 16G (sbatch --mem)")
    group.add_argument("--slurm-account", default=None, help="account to charge (sbatch --account)")
    group.add_argument("--slurm-qos", default=None, help="quality of service (sbatch --qos)")


def _executor(args: argparse.Namespace) -> "ExecutorConfig":
    """The :class:`dahash.executors.ExecutorConfig` of the executor flags."""
    from dahash.executors import ExecutorConfig

    return ExecutorConfig(kind=args.executor, address=args.executor_address, workers=args.workers,
                          cpus=args.cpus_per_cell, gpus=args.gpus_per_cell, slurm_partition=args.slurm_partition,
                          slurm_time=args.slurm_time, slurm_mem=args.slurm_mem, slurm_account=args.slurm_account,
                          slurm_qos=args.slurm_qos).validate()


def _add_reproduce_command(sub: argparse._SubParsersAction) -> None:
    """``dahash reproduce``."""
    from dahash.experiments.catalog import ALL_METHODS, CRITERIA, DATASET_DOMAINS, METHODS, RETRIEVAL_METHODS

    rep = sub.add_parser("reproduce", help="the paper's tables: every task x method x seed (resumable)",
                         description="Accuracy tables (default): every transfer task for every method and seed, "
                                     "methods as rows, tasks and Avg as columns (Tables 2, 3, 5). Retrieval "
                                     "tables (--tables retrieval): mAP, precision@k, precision within radius 2 "
                                     "and precision-recall figures of the hashing methods per target domain and "
                                     "code length (Tables 4, 6, 7, Figures 4-7). Finished runs are kept: rerun "
                                     "the same command to continue after an interruption.")
    rep.add_argument("--tables", choices=("accuracy", "retrieval"), default="accuracy",
                     help="which of the paper's tables (default accuracy)")
    rep.add_argument("--config", default=None, metavar="YAML",
                     help="the reproduce.yaml (or retrieval.yaml) a reproduce wrote: its settings, which flags "
                          "given here override (--set, --shallow-set and --select-grid add to its own)")
    rep.add_argument("--data-root", default=None, metavar="ROOT", help="folder holding the domain folders")
    rep.add_argument("--dataset", choices=list(DATASET_DOMAINS), default=None,
                     help="which benchmark ROOT holds: sets the domains (retrieval: the paper's source per target) "
                          "and shows the paper's published rows")
    rep.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                     help=f"methods to run (accuracy, default: {' '.join(METHODS)}; also "
                          f"{' '.join(m for m in ALL_METHODS if m not in METHODS)}, whose setting is chosen per "
                          f"task without target labels; retrieval, default: {' '.join(RETRIEVAL_METHODS)})")
    rep.add_argument("--select-all", action="store_true",
                     help="also run the selected twin METHOD-sel of every method given (or of the default ones) "
                          "that has a selection grid; the fixed-setting rows stay")
    rep.add_argument("--tasks", nargs="+", default=None, metavar="SOURCE:TARGET",
                     help="only these tasks, e.g. amazon:webcam dslr:caltech10 (default: every ordered pair; "
                          "retrieval: one source per target domain, the dataset's pairing, e.g. Ar:Cl Ar:Pr Ar:Rw "
                          "Cl:Ar for office-home)")
    rep.add_argument("--bits", nargs="+", type=int, default=None,
                     help="hash code length(s) (default: accuracy 64; retrieval 16 64 128)")
    rep.add_argument("--seeds", type=int, default=3, help="seeds per deep (retrieval: every) method (default 3)")
    rep.add_argument("--backbone", default="efficientnet_lite0", help="feature extractor (default efficientnet_lite0)")
    rep.add_argument("--weights", default=None, help="local weights file for the backbone")
    rep.add_argument("--decode", choices=DECODE_MODES, default=DEFAULT_DECODE,
                     help="JPEG decoding: reduced (large JPEGs at 1/2-1/8 size) or exact (the published tables "
                          "of docs/office-caltech.md and docs/adaptation.md)")
    rep.add_argument("--cache-dir", default=None, help="feature cache (default $DAHASH_CACHE or ~/.cache/dahash)")
    rep.add_argument("--classifier", choices=("1nn", "svm", "logreg"), default="1nn",
                     help="classifier on the shallow methods' features (default 1nn, as their papers)")
    rep.add_argument("--workers", type=int, default=1,
                     help="runs in parallel, each on free cores / workers threads (free: not kept busy by other "
                          "jobs, by the 1-minute load average)")
    _add_executor_arguments(rep)
    rep.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                     help="training settings applied to every deep method after its own, e.g. epochs=50")
    rep.add_argument("--shallow-set", nargs="*", default=[], metavar="METHOD.KEY=VALUE",
                     help="a shallow or hashing method's parameter, e.g. GFK.n_components=10 TCA.kernel=rbf "
                          "(retrieval: ITQ.n_iter=100 SuH.epochs=50)")
    rep.add_argument("--criterion", choices=CRITERIA, default="paper",
                     help="label-free rule that picks the setting of every -sel method per task (default paper: "
                          "the domain-classifier error closest to chance among settings within 1 point of the best "
                          "source validation accuracy); see docs/selection.md")
    rep.add_argument("--select-grid", nargs="+", default=None, metavar="[METHOD.]KEY=V1,V2",
                     help="a -sel method's candidate settings (every combination, at most 7), replacing its "
                          "default grid, e.g. DAN.gamma=0.5,1,2 GFK.n_components=10,20 (no METHOD: DAH)")
    rep.add_argument("--holdout", type=float, default=0.3,
                     help="retrieval: fraction of each target class held out as SuH's queries (default 0.3)")
    rep.add_argument("--precision-k", type=int, default=100, help="retrieval: k of precision@k (default 100)")
    rep.add_argument("--json", action="store_true", help="print a JSON summary for scripts instead of tables")
    rep.add_argument("--out", default=None, help="output directory (runs under OUT/cells, tables in OUT)")
    rep.add_argument("--quiet", action="store_true", help="no progress bars")
    rep.add_argument("--progress", action="store_true",
                        help="progress bars even when stderr is not a terminal (a redirected log)")
    # Flags the command line does not give stay out of the namespace, so that --config's values can fill them.
    defaults = {a.dest: a.default for a in rep._actions if a.dest != "help"}
    for action in rep._actions:
        action.default = argparse.SUPPRESS
    rep.set_defaults(func=functools.partial(_reproduce, defaults=defaults))


def _add_index_command(sub: argparse._SubParsersAction) -> None:
    """``dahash index``."""
    idx = sub.add_parser("index", help="build or grow a Hamming index of an image collection with a trained run")
    idx_sub = idx.add_subparsers(dest="index_command", required=True)
    build = idx_sub.add_parser("build", help="encode images with a run and save a new index")
    build.add_argument("--run", required=True, help="run directory trained on images ('dahash train --data-root')")
    build.add_argument("--backend", choices=("faiss", "milvus"), default="faiss",
                       help="faiss: an index directory in this process (default); milvus: a Milvus server")
    build.add_argument("--type", choices=("flat", "ivf", "hnsw"), default="flat",
                       help="flat: exact (default); ivf, hnsw: approximate, for large collections (hnsw: FAISS only)")
    build.add_argument("--milvus-uri", default=None,
                       help="Milvus server (default $DAHASH_MILVUS_URI, else http://127.0.0.1:19530; https:// for TLS)")
    build.add_argument("--milvus-token-file", default=None,
                       help="a file whose first line is the Milvus token ('user:password' or an API key); default "
                            "$DAHASH_MILVUS_TOKEN. Never saved or printed")
    build.add_argument("--milvus-db", default=None, help="Milvus database (default $DAHASH_MILVUS_DB, else 'default')")
    build.add_argument("--milvus-tls-ca", default=None,
                       help="CA certificate (PEM) of a TLS Milvus with a private CA (default $DAHASH_MILVUS_TLS_CA)")
    build.add_argument("--json", action="store_true", help="print a JSON summary for scripts instead of tables")
    build.add_argument("--collection", default=None, help="Milvus collection (default: the index folder's name)")
    build.add_argument("--rebuild", action="store_true",
                       help="replace the index already at --index (e.g. after its run's model changed)")
    add = idx_sub.add_parser("add", help="encode more images with the index's run and add the new ones")
    add.add_argument("--run", default=None, help="the run, if it moved since the index was built")
    for p in (build, add):
        p.add_argument("--images", required=True, nargs="+", help="image files, folders (recursive) or both")
        p.add_argument("--index", required=True, help="index directory")
        p.add_argument("--cache-dir", default=None, help="feature cache (default: the run's, else $DAHASH_CACHE)")
        _add_engine_argument(p, None)
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--progress", action="store_true",
                          help="progress bars even when stderr is not a terminal (a redirected log)")
    idx.set_defaults(func=_index)


def _add_search_command(sub: argparse._SubParsersAction) -> None:
    """``dahash search``."""
    find = sub.add_parser("search", help="the most similar indexed images of query images, by Hamming distance")
    find.add_argument("--index", required=True, help="index directory ('dahash index build')")
    find.add_argument("--image", required=True, nargs="+", help="query image file(s)")
    find.add_argument("--top-k", type=int, default=10, help="hits per query (default 10)")
    find.add_argument("--run", default=None, help="the run, if it moved since the index was built")
    find.add_argument("--cache-dir", default=None, help="feature cache (default: the run's, else $DAHASH_CACHE)")
    _add_engine_argument(find, None)
    find.add_argument("--json", action="store_true", help="print the hits as JSON")
    find.set_defaults(func=_search)


def _add_serve_command(sub: argparse._SubParsersAction) -> None:
    """``dahash serve``."""
    srv = sub.add_parser("serve", help="HTTP API and web page to search an index with images (needs dahash[serve])",
                         description="Serve GET /health, GET /stats, POST /search (an image upload or a code), "
                                     "GET /thumbnail/ID and a search page at /, with FastAPI and uvicorn.")
    srv.add_argument("--index", required=True, help="index directory ('dahash index build')")
    srv.add_argument("--run", default=None, help="the run, if it moved since the index was built")
    srv.add_argument("--host", default="127.0.0.1",
                     help="interface to listen on (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    srv.add_argument("--api-key-file", default=None,
                     help="a file whose first line is the API key every route but /health then needs (Authorization: "
                          "Bearer KEY or X-API-Key: KEY; the page asks for it once). Default: $DAHASH_API_KEY if set, "
                          "else no key")
    srv.add_argument("--allow-no-key", action="store_true",
                     help="serve beyond this machine (--host) without an API key; refused otherwise")
    srv.add_argument("--max-upload-mb", type=float, default=10,
                     help="largest accepted image upload in MiB (default 10)")
    srv.add_argument("--max-concurrent", type=int, default=16,
                     help="searches encoded at once; more wait for a slot (default 16)")
    srv.add_argument("--queue-timeout", type=float, default=30.0,
                     help="seconds a search waits for a free slot before a 503 (default 30)")
    srv.add_argument("--max-batch", type=int, default=16,
                     help="concurrent uploads run through the model together, at most this many (and at most "
                          "--max-concurrent) at once; 1 encodes each upload on its own (default 16)")
    srv.add_argument("--max-wait-ms", type=float, default=10.0,
                     help="milliseconds a batch waits after its first upload for uploads still being decoded "
                          "(default 10)")
    srv.add_argument("--threads", type=int, default=None,
                     help="cores the server uses: FAISS threads, and torch threads across the lanes (default: "
                          "every core with batching; with --max-batch 1, cores // --max-concurrent, at least 1)")
    srv.add_argument("--lanes", type=int, default=None,
                     help="batches run side by side, each on --threads // --lanes torch threads (default: "
                          "--threads with batching, one thread each; 1 with --max-batch 1)")
    srv.add_argument("--cache-dir", default=None, help="feature cache (default: the run's, else $DAHASH_CACHE)")
    _add_engine_argument(srv, None)
    srv.set_defaults(func=_serve)


def _add_analyze_command(sub: argparse._SubParsersAction) -> None:
    """``dahash analyze``."""
    ana = sub.add_parser("analyze", help="Figure 3: proxy A-distance and t-SNE of backbone, Deep, DAN and DAH features",
                         description="Proxy A-distance (linear SVM, 5-fold CV) between source and target features "
                                     "of the frozen backbone and the fc7 of the trained Deep, DAN and DAH networks, "
                                     "and t-SNE plots of one task.")
    ana.add_argument("--run", required=True, help="a 'dahash reproduce' output directory, or one 'dahash train' run")
    ana.add_argument("--out", required=True, help="where the tables and PNG figures go")
    ana.add_argument("--tasks", nargs="+", default=None, metavar="SOURCE:TARGET", help="tasks to analyse (default all)")
    ana.add_argument("--seed", type=int, default=0, help="which seed's runs (default 0); also seeds the SVM folds and t-SNE")
    ana.add_argument("--tsne-task", default=None, help="task of the t-SNE plots, e.g. A:W (default the first)")
    ana.add_argument("--max-classes", type=int, default=10, help="classes shown in t-SNE (default 10, as the paper)")
    ana.add_argument("--quiet", action="store_true", help="no progress bar")
    ana.add_argument("--progress", action="store_true",
                        help="progress bars even when stderr is not a terminal (a redirected log)")
    ana.set_defaults(func=_analyze)


def _add_download_command(sub: argparse._SubParsersAction) -> None:
    """``dahash download``."""
    from dahash.images.download import DATASET_NAMES

    download = sub.add_parser("download", help="download and unpack Office-Home, Office-31 or Office-Caltech-10",
                              description="Fetch the dataset's public archive (resuming a broken download), check "
                                          "its checksum and unpack it so that its domains sit directly under --to.")
    download.add_argument("dataset", choices=DATASET_NAMES, help="which dataset")
    download.add_argument("--to", required=True, metavar="ROOT", help="data root the domain folders go into")
    download.add_argument("--url", default=None,
                          help="fetch from here instead (https://..., file:///path/to/archive or a local path)")
    download.add_argument("--sha256", default=None, metavar="HEX", help="SHA-256 the archive must have")
    download.add_argument("--remove-archive", action="store_true",
                          help="delete the archive from ROOT/.dahash-downloads once it is unpacked")
    download.add_argument("--quiet", action="store_true", help="no progress bars")
    download.add_argument("--progress", action="store_true",
                             help="progress bars even when stderr is not a terminal (a redirected log)")
    download.set_defaults(func=_download)


class _SubcommandParser(argparse.ArgumentParser):
    """A subcommand's parser, whose --help shows every option's default."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


def _add_study_command(sub: argparse._SubParsersAction) -> None:
    """``dahash study``."""
    study = sub.add_parser("study", help="the validator study: each label-free rule's regret and rank correlation",
                           description="Score every candidate of finished label-free selections against the "
                                       "target's labels (read only here, after every score was written), then each "
                                       "validator by its regret (best candidate's accuracy minus the chosen one's) "
                                       "and its rank correlation with accuracy; apply the rule declared in "
                                       "docs/selection.md to the halves of Office-Caltech-10.")
    study.add_argument("--runs", default=None, help="the --out of 'dahash reproduce --select-all'")
    study.add_argument("--demo", action="store_true",
                       help="also select NoDA's and DAH's candidates on the demo's digits (OUT/demo) and score them")
    study.add_argument("--candidates", default=None,
                       help="remake the study from a candidates.csv it wrote (e.g. docs/results/), without the runs")
    study.add_argument("--out", required=True, help="output directory: study.md and candidates.csv")
    _add_executor_arguments(study, cells="the --demo selections' candidates", workers=True)
    study.add_argument("--quiet", action="store_true", help="no progress bars")
    study.add_argument("--progress", action="store_true",
                          help="progress bars even when stderr is not a terminal (a redirected log)")
    study.set_defaults(func=_study)


def _version() -> str:
    """The installed distribution's version (the source tree's, when run uninstalled)."""
    try:
        return importlib.metadata.version("dahash")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="dahash", description="Domain Adaptive Hashing (CVPR 2017).")
    parser.add_argument("--version", action="version", version=f"dahash {_version()}")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="store_true", help="also show debug messages")
    talk.add_argument("-q", "--quiet", dest="quiet_log", action="store_true",
                      help="show only warnings and errors (progress bars: each command's --quiet)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_SubcommandParser)
    _add_train_command(sub)
    _add_select_command(sub)
    _add_evaluate_command(sub)
    _add_encode_command(sub)
    _add_extract_command(sub)
    _add_demo_command(sub)
    _add_reproduce_command(sub)
    _add_index_command(sub)
    _add_search_command(sub)
    _add_serve_command(sub)
    _add_analyze_command(sub)
    _add_study_command(sub)
    _add_download_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; errors dahash raises on purpose are one line on stderr. Exit codes: 0 done, 1 a runtime
    error (missing or bad data, a run that cannot continue), 2 a usage error (argparse's, or a setting's value:
    :class:`dahash.errors.ConfigError`), 130 interrupted."""
    args = build_parser().parse_args(argv)
    logger, handler = _log_to_stderr(logging.DEBUG if args.verbose else logging.WARNING if args.quiet_log
                                     else logging.INFO)
    try:
        return args.func(args)
    except DahashError as exc:
        # One line whatever a value in the message held (a newline in a YAML key, a path).
        print(f"dahash: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return USAGE_ERROR if isinstance(exc, ConfigError) else RUNTIME_ERROR
    except KeyboardInterrupt:
        hint = ("rerun the same command to continue; finished runs are kept" if args.command == "reproduce"
                else "rerun with --resume to continue from the last checkpoint")
        print(f"dahash: interrupted; {hint}", file=sys.stderr)
        return 130
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def _log_to_stderr(level: int) -> tuple[logging.Logger, logging.Handler]:
    """The library's ``dahash`` logger, shown as ``dahash: message`` lines on stderr at ``level`` and above
    while a command runs (a Python user configures logging as they like instead)."""
    logger = logging.getLogger("dahash")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("dahash: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # the command's lines once, not again through the root logger
    return logger, handler
