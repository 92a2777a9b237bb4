"""Crash consistency at random moments (issue 17): SIGKILL ``dahash train`` (feature files and
``--finetune``), ``dahash index add`` and ``dahash reproduce`` at seeded random times, resume each,
and check that every finished result equals the uninterrupted run's and that nothing is left
half-written (every file parses, no atomic-write temporary survives the resumed command).

Usage: python benchmarks/random_kills.py [--kills 52] [--seed 0] [--out runs/random_kills]
Prints one line per kill and a summary table; writes it to OUT/summary.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
DAHASH = [sys.executable, "-m", "dahash"]


def make_images(root: Path) -> None:
    """Office-31's layout, 3 classes x 8 images of 40 x 40 per domain (a class is a colour)."""
    rng = np.random.default_rng(0)
    colours = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220]], dtype=float)
    for d, domain in enumerate(("amazon", "dslr", "webcam")):
        for c, name in enumerate(("bike", "mug", "pen")):
            folder = root / domain / "images" / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(8):
                pixels = colours[c] * (1.0 - 0.25 * d) + rng.normal(0, 20, size=(40, 40, 3))
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i}.jpg")


def make_features(root: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    means = rng.normal(size=(4, 16)) * 3
    ys, yt = np.repeat(np.arange(4), 60), np.repeat(np.arange(4), 40)
    Xs = means[ys] + rng.normal(size=(len(ys), 16))
    Xt = means[yt] + rng.normal(size=(len(yt), 16)) + 0.7
    np.savez(root / "source.npz", X=Xs.astype(np.float32), y=ys)
    np.savez(root / "target.npz", X=Xt.astype(np.float32), y=yt)
    return root / "source.npz", root / "target.npz"


def parses(path: Path) -> bool:
    """Whether a result file reads back in full (a half-written one does not)."""
    try:
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                [data[k] for k in data.files]
        elif path.suffix == ".npy":
            np.load(path, allow_pickle=False)
        elif path.suffix in (".yaml", ".csv", ".md"):
            path.read_text()
        elif path.suffix == ".pt":
            import torch

            torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - any failure to read back is what this looks for
        return False
    return True


def half_written(folder: Path) -> list[str]:
    """Files that do not read back, and atomic-write temporaries left behind."""
    bad = []
    for path in folder.rglob("*"):
        if path.is_file():
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                bad.append(f"{path} (temporary left behind)")
            elif not parses(path):
                bad.append(f"{path} (does not read back)")
    return bad


def run_metrics(folder: Path) -> dict:
    """A run's results without the wall-clock fields."""
    metrics = json.loads((folder / "results.json").read_text())["metrics"]
    return {k: v for k, v in metrics.items() if k not in ("train_seconds",)}


def index_content(folder: Path) -> tuple:
    from dahash.index import open_index

    index = open_index(folder)
    hits = index.search(np.zeros((1, (index.n_bits + 7) // 8), dtype=np.uint8), k=len(index))
    return len(index), sorted(zip(hits.ids[0].tolist(), hits.distances[0].tolist()))


def reproduce_tables(folder: Path) -> dict:
    return {name: (folder / name).read_text() for name in ("accuracy.csv", "map.csv")}


class Scenario:
    def __init__(self, name: str, command: Callable[[Path], list[str]], result: Callable[[Path], object],
                 prepare: Callable[[Path], None] | None = None, resume_flag: list[str] | None = None) -> None:
        self.name, self.command, self.result, self.prepare = name, command, result, prepare
        self.resume_flag = resume_flag or []


def scenarios(work: Path) -> list[Scenario]:
    images, features = work / "images", work / "features"
    images.mkdir(parents=True, exist_ok=True)
    features.mkdir(parents=True, exist_ok=True)
    make_images(images)
    source, target = make_features(features)
    cache = work / "cache"
    tiny = ["--bits", "16", "--hidden", "32", "32", "--k", "5", "--num-threads", "1", "--quiet",
            "--checkpoint-every", "1"]
    base_run = work / "base_run"
    if not (base_run / "results.json").exists():
        subprocess.run(DAHASH + ["train", "--data-root", str(images), "--source", "amazon", "--target", "webcam",
                                 "--epochs", "2", "--hidden", "16", "16", "--k", "2", "--bits", "16", "--cache-dir",
                                 str(cache), "--out", str(base_run), "--num-threads", "1", "--quiet"],
                       env=ENV, check=True, capture_output=True)

    def prepare_index(out: Path) -> None:
        subprocess.run(DAHASH + ["index", "build", "--run", str(base_run), "--images", str(images / "dslr"),
                                 "--index", str(out), "--cache-dir", str(cache), "--quiet"],
                       env=ENV, check=True, capture_output=True)

    return [
        Scenario("train (features)", lambda out: DAHASH + ["train", "--source-features", str(source),
                                                           "--target-features", str(target), "--epochs", "40",
                                                           *tiny, "--out", str(out)],
                 run_metrics, resume_flag=["--resume"]),
        Scenario("train --finetune", lambda out: DAHASH + ["train", "--data-root", str(images), "--source", "amazon",
                                                           "--target", "webcam", "--finetune", "--epochs", "3",
                                                           "--extract-batch-size", "8", "--num-workers", "0",
                                                           "--cache-dir", str(cache), *tiny, "--out", str(out)],
                 run_metrics, resume_flag=["--resume"]),
        Scenario("index add", lambda out: DAHASH + ["index", "add", "--index", str(out), "--images",
                                                    str(images / "amazon"), str(images / "webcam"),
                                                    "--cache-dir", str(cache), "--quiet"],
                 index_content, prepare=prepare_index),
        Scenario("reproduce", lambda out: DAHASH + ["reproduce", "--data-root", str(images), "--dataset", "office31",
                                                    "--methods", "CORAL", "NoDA", "DAH", "--tasks", "A:W", "D:W",
                                                    "--seeds", "2", "--bits", "16", "--cache-dir", str(cache),
                                                    "--set", "epochs=4", "hidden=[16,16]", "k=2",
                                                    "--out", str(out), "--quiet"],
                 reproduce_tables),
    ]


def timed_run(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=52, help="kills in all, spread over the four commands")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/random_kills")
    args = parser.parse_args()
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    rows = []
    plans = scenarios(work)
    per = [args.kills // len(plans) + (i < args.kills % len(plans)) for i in range(len(plans))]
    for plan, kills in zip(plans, per):
        reference = work / f"{plan.name.replace(' ', '_').replace('-', '')}_reference"
        if reference.exists():
            shutil.rmtree(reference)
        if plan.prepare:
            plan.prepare(reference)
        seconds = timed_run(plan.command(reference))
        expected = plan.result(reference)
        mismatches = half = 0
        for k in range(kills):
            victim = work / f"{reference.name[:-len('_reference')]}_kill{k}"
            if victim.exists():
                shutil.rmtree(victim)
            if plan.prepare:
                plan.prepare(victim)
            delay = rng.uniform(0.05, 0.95) * seconds
            process = subprocess.Popen(plan.command(victim), env=ENV, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            try:
                process.wait(timeout=delay)
                killed = False
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
                killed = True
            resumed = subprocess.run(plan.command(victim) + plan.resume_flag, env=ENV, capture_output=True, text=True)
            bad = half_written(victim)
            same = resumed.returncode == 0 and plan.result(victim) == expected
            mismatches += not same
            half += bool(bad)
            print(f"{plan.name:<18} kill {k:>2} at {delay:6.2f} s of {seconds:5.1f} s ({'killed' if killed else 'had finished'}): "
                  f"{'same result' if same else 'MISMATCH ' + resumed.stderr.strip()[-200:]}"
                  f"{'; half-written: ' + ', '.join(bad[:3]) if bad else ''}", flush=True)
            if same and not bad:
                shutil.rmtree(victim)
        rows.append((plan.name, kills, seconds, mismatches, half))
    table = ["| command | kills | uninterrupted run (s) | mismatches | half-written folders |", "|---|---|---|---|---|"]
    table += [f"| {n} | {k} | {s:.1f} | {m} | {h} |" for n, k, s, m, h in rows]
    total = [sum(r[i] for r in rows) for i in (1, 3, 4)]
    table.append(f"| **all** | {total[0]} | | {total[1]} | {total[2]} |")
    text = "\n".join(table) + "\n"
    print(text)
    (work / "summary.md").write_text(text)
    return 0 if total[1] == 0 and total[2] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
