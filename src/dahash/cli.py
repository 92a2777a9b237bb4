"""The ``dahash`` command: a thin layer over :mod:`dahash.evaluate` and :mod:`dahash.demo`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .config import add_config_arguments, resolve_config
from .errors import DahashError

SUMMARY_KEYS = ("target_accuracy", "target_accuracy_codes", "map", "map_target_within", "source_accuracy",
                "train_seconds")


def _print_summary(metrics: dict) -> None:
    for key in SUMMARY_KEYS:
        if key in metrics:
            print(f"{key:>24}: {metrics[key]:.4f}")


def _train(args: argparse.Namespace) -> int:
    from .evaluate import run

    config = resolve_config(args, args.config)
    if not config.out:
        raise DahashError("--out DIR is required (where checkpoints and results go)")
    metrics = run(config, resume=args.resume, progress=not args.quiet)
    _print_summary(metrics)
    print(f"results written to {config.out}/results.json")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_run

    metrics = evaluate_run(args.run)
    if args.json:
        print(json.dumps({k: v for k, v in metrics.items() if k != "pr_curve"}, indent=2))
    else:
        _print_summary(metrics)
    return 0


def _encode(args: argparse.Namespace) -> int:
    from .images.pipeline import encode_images

    n = encode_images(args.run, args.images, args.out, cache_dir=args.cache_dir, progress=not args.quiet)
    print(f"{n} codes written to {args.out}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo.run import run_demo

    run_demo(out=args.out, seeds=args.seeds, epochs=args.epochs, progress=not args.quiet)
    return 0


def _download(args: argparse.Namespace) -> int:
    from .download import download_dataset

    try:
        download_dataset(args.dataset, args.to, url=args.url, sha256=args.sha256, progress=not args.quiet,
                         keep_archive=not args.remove_archive)
    except KeyboardInterrupt:
        # main()'s message is about training checkpoints; a download resumes from its .part file instead.
        print("dahash: interrupted; rerun the same command to resume the download", file=sys.stderr)
        return 130
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="dahash", description="Domain Adaptive Hashing (CVPR 2017).")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train DAH on source and target feature files",
                           description="Train DAH; settings come from defaults, then --config YAML, then flags.")
    train.add_argument("--config", help="YAML file of settings (flags given here override it)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(train)
    train.set_defaults(func=_train)

    evaluate = sub.add_parser("evaluate", help="recompute a finished run's metrics from its saved model")
    evaluate.add_argument("--run", required=True, help="run directory written by 'dahash train'")
    evaluate.add_argument("--json", action="store_true", help="print all scalar metrics as JSON")
    evaluate.set_defaults(func=_evaluate)

    encode = sub.add_parser("encode", help="hash codes for new images with a trained run (image-trained runs)")
    encode.add_argument("--run", required=True, help="run directory trained with --data-root")
    encode.add_argument("--images", required=True, nargs="+", help="image files and/or folders (searched recursively)")
    encode.add_argument("--out", required=True, help="output .npz: packed codes, n_bits, ids (paths), classes")
    encode.add_argument("--cache-dir", default=None, help="feature cache (default: the run's, else $DAHASH_CACHE)")
    encode.add_argument("--quiet", action="store_true", help="no progress bar")
    encode.set_defaults(func=_encode)

    demo = sub.add_parser("demo", help="offline demo: printed-font digits -> handwritten digits, NoDA vs DAH")
    demo.add_argument("--out", default="dahash-demo", help="output directory (default: dahash-demo)")
    demo.add_argument("--seeds", type=int, default=3, help="seeds per method (default 3)")
    demo.add_argument("--epochs", type=int, default=None, help="override the demo's epochs")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)

    from .download import DATASET_NAMES

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
    download.set_defaults(func=_download)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; errors dahash raises on purpose are one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DahashError as exc:
        print(f"dahash: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dahash: interrupted; rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130
