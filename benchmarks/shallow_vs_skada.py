"""Shallow baselines vs skada 0.6 on Office-Caltech-10 features: the 12-task target-accuracy table.

Usage: python benchmarks/shallow_vs_skada.py [--data-root ../shared/data/office_caltech_10]
       [--backbone efficientnet_lite0] [--tasks A:W D:C ...] [--classifiers 1nn logreg]
       [--out benchmarks/results]
       python benchmarks/shallow_vs_skada.py --features runs/bow --name shallow_vs_skada_bow
       (feature files DIR/<domain>.npz in place of the backbone's, e.g. benchmarks/bow_features.py's)

Every domain is z-scored on its own first (the GFK/JDA/SA/CORAL authors' protocol), once, and the
same arrays go to every column: source-only 1-NN and logistic regression, dahash's GFK, TCA,
CORAL, JDA, SA and OT with their default settings, and skada's adapter for the same method where
skada has one (TCA, CORAL, SA, entropic OT mapping; plus its exact OT mapping, the reg -> 0
limit), each followed by the same classifier.  skada gets the same nominal settings as ours
(TCA: linear kernel, 100 components, mu = 1; SA: d = 20) or its defaults where the parameters
mean different things (CORAL: Ledoit-Wolf shrinkage; OT: reg_e = 1).  Nothing is tuned; target
labels are read only to score.  A column that fails (skada's entropic OT returns NaN on these
features) shows "NaN".  Finished cells are kept in OUT/shallow_vs_skada.json, so a rerun resumes.
Writes OUT/shallow_vs_skada.md and .csv.  Run with OMP_NUM_THREADS=1 on a shared machine.

--diagnostics writes OUT/shallow_vs_skada_diagnostics.md instead: per task, the measurements that
explain where a method falls below source-only 1-NN (target labels read only to report them):
1-NN after projecting both domains on a 20-d PCA basis without any alignment (what d = 20 alone
costs GFK and SA), the class-proportion gap between the domains and the share of the OT plan's
mass that stays within a class (what OT's barycentric mapping can at best transfer), and the
relative gap ||cov(source) - cov(target)||_F / ||cov(target)||_F before and after CORAL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from itertools import permutations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DOMAINS = {"A": "amazon", "C": "caltech10", "D": "dslr", "W": "webcam"}
#: Table columns: "<METHOD> ours" is dahash.shallow, "<METHOD> skada" skada's adapter.
COLUMNS = ("source-only 1-NN", "source-only LR", "GFK ours", "TCA ours", "TCA skada", "CORAL ours",
           "CORAL skada", "JDA ours", "SA ours", "SA skada", "OT ours", "OT skada", "OT-EMD skada")


def skada_adapters() -> dict[str, Callable[[], object]]:
    """skada's adapter for each method it implements, with the settings stated in the module notes."""
    from skada import (CORALAdapter, EntropicOTMappingAdapter, OTMappingAdapter,
                       SubspaceAlignmentAdapter, TransferComponentAnalysisAdapter)

    return {"tca": lambda: TransferComponentAnalysisAdapter(kernel="linear", n_components=100, mu=1.0),
            "coral": lambda: CORALAdapter(),
            "sa": lambda: SubspaceAlignmentAdapter(n_components=20),
            "ot": lambda: EntropicOTMappingAdapter(),
            "ot-emd": lambda: OTMappingAdapter()}


def run_cell(column: str, classifier: str, Xs: np.ndarray, ys: np.ndarray, Xt: np.ndarray) -> np.ndarray:
    """Predicted target labels of one column (features already z-scored)."""
    from skada import make_da_pipeline

    from dahash.shallow import fit_predict_shallow, make_classifier

    if column.startswith("source-only"):
        clf = "1nn" if column.endswith("1-NN") else "logreg"
        return fit_predict_shallow("none", Xs, ys, Xt, classifier=clf, preprocess="none")
    method, who = column.split()
    if who == "ours":
        return fit_predict_shallow(method.lower(), Xs, ys, Xt, classifier=classifier, preprocess="none")
    adapter = skada_adapters()[method.lower()]()
    X = np.concatenate([Xs, Xt])
    y = np.concatenate([ys, np.full(len(Xt), -1)])
    sd = np.concatenate([np.ones(len(Xs), int), np.full(len(Xt), -2)])
    pipe = make_da_pipeline(adapter, make_classifier(classifier, seed=0))
    pipe.fit(X, y, sample_domain=sd)
    return pipe.predict(Xt, sample_domain=np.full(len(Xt), -2))


def diagnostics(Xs: np.ndarray, ys: np.ndarray, Xt: np.ndarray, yt: np.ndarray) -> dict[str, float]:
    """The measurements behind docs/baselines.md's "below source-only" section, for one task."""
    from sklearn.neighbors import KNeighborsClassifier

    from dahash.shallow import CORALAdapter, OTAdapter
    from dahash.shallow.gfk import pca_basis

    def nn(Zs: np.ndarray, Zt: np.ndarray) -> float:
        return float(np.mean(KNeighborsClassifier(n_neighbors=1).fit(Zs, ys).predict(Zt) == yt) * 100)

    out = {f"1-NN, all {Xs.shape[1]:,} dims": nn(Xs, Xt)}
    for name, X in (("source", Xs), ("target", Xt)):
        P = pca_basis(X, 20, name)
        out[f"1-NN on the {name}'s 20-d PCA basis, no alignment"] = nn(Xs @ P, Xt @ P)
    classes = np.unique(ys)
    ps = np.array([np.mean(ys == c) for c in classes])
    pt = np.array([np.mean(yt == c) for c in classes])
    out["class-proportion gap TV(p_s, p_t) %"] = float(0.5 * np.abs(ps - pt).sum() * 100)
    X = np.concatenate([Xs, Xt])
    sd = np.r_[np.ones(len(Xs), int), np.full(len(Xt), -2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapter = OTAdapter().fit(X, sample_domain=sd)
    plan = adapter.barycentric_weights(Xs) / len(Xs)           # gamma_ij (rows sum to a_i)
    out["OT plan mass within a class %"] = float(plan[ys[:, None] == yt[None, :]].sum() * 100)
    out["OT Sinkhorn target-marginal error"] = adapter.marginal_error_
    coral = CORALAdapter().fit(X, sample_domain=sd)
    Ct = np.cov(Xt, rowvar=False)
    for name, Z in (("before", Xs), ("after", coral.transform(Xs, sample_domain=np.ones(len(Xs), int),
                                                               allow_source=True))):
        gap = np.linalg.norm(np.cov(Z, rowvar=False) - Ct) / np.linalg.norm(Ct)
        out[f"CORAL covariance gap {name} %"] = float(gap * 100)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get(
        "DAHASH_OFFICE_CALTECH", str(REPO.parent / "shared" / "data" / "office_caltech_10")))
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--tasks", nargs="*", default=[f"{s}:{t}" for s, t in permutations("ACDW", 2)])
    parser.add_argument("--classifiers", nargs="*", default=["1nn", "logreg"], choices=["1nn", "logreg"])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--diagnostics", action="store_true", help="write the diagnostics table instead")
    parser.add_argument("--features", default=None,
                        help="folder of <domain>.npz feature files to use in place of the backbone's")
    parser.add_argument("--name", default="shallow_vs_skada", help="stem of the files written in --out")
    args = parser.parse_args(argv)

    import skada

    from dahash.data.features import align_domains, load_features
    from dahash.experiments.demo import markdown_table
    from dahash.images.features import image_feature_sets
    from dahash.shallow import preprocess_domains

    def task_features(s: str, t: str):
        if args.features is None:
            return image_feature_sets(args.data_root, s, t, backbone=args.backbone, progress=False)
        return align_domains(load_features(Path(args.features) / f"{s}.npz"),
                             load_features(Path(args.features) / f"{t}.npz"))

    described = (f"{args.backbone} features" if args.features is None
                 else f"the feature files of {args.features}")

    if args.diagnostics:
        table, head = [], []
        for task in args.tasks:
            s, t = (DOMAINS.get(x, x) for x in task.split(":"))
            source, target = task_features(s, t)
            Xs, Xt = preprocess_domains(np.asarray(source.X, np.float64), np.asarray(target.X, np.float64))
            found = diagnostics(Xs, source.y, Xt, target.y)
            head = ["Task", *found]
            table.append(["→".join(task.split(":")), *[f"{v:.3g}" if v < 1 else f"{v:.1f}" for v in found.values()]])
            print(table[-1], flush=True)
        text = (f"# Diagnostics: Office-Caltech-10, {described}, each domain z-scored\n\n"
                f"Command: `OMP_NUM_THREADS=1 python benchmarks/shallow_vs_skada.py --diagnostics`.  "
                f"Machine: {machine(skada=skada.__version__)}.\n\n" + markdown_table(head, table))
        write_results(args.out, f"{args.name}_diagnostics", text, [])
        print(text)
        return 0

    cache = Path(args.out) / f"{args.name}.json"
    done: dict[str, dict[str, float]] = json.loads(cache.read_text()) if cache.exists() else {}
    header = f"Machine: {machine(skada=skada.__version__)}"
    print(header, flush=True)
    t_start = time.perf_counter()
    for task in args.tasks:
        s, t = (DOMAINS.get(x, x) for x in task.split(":"))
        source, target = task_features(s, t)
        Xs, Xt = preprocess_domains(np.asarray(source.X, np.float64), np.asarray(target.X, np.float64))
        for classifier in args.classifiers:
            for column in COLUMNS:
                key = f"{task}|{classifier}|{column}"
                if key in done or (column.startswith("source-only") and classifier != args.classifiers[0]):
                    continue
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")       # Sinkhorn convergence and NaN warnings
                    try:
                        pred = run_cell(column, classifier, Xs, source.y, Xt)
                        acc = float(np.mean(np.asarray(pred) == target.y) * 100)
                    except ValueError as err:             # NaN features reach the classifier
                        acc = float("nan")
                        print(f"  {key}: {str(err).splitlines()[0]}", flush=True)
                done[key] = {"accuracy": acc, "seconds": time.perf_counter() - t0}
                print(f"{key}: {acc:.1f} % ({done[key]['seconds']:.1f} s)", flush=True)
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps(done, indent=1))

    command = " ".join(["OMP_NUM_THREADS=1 python benchmarks/shallow_vs_skada.py", *(argv or sys.argv[1:])])
    md, rows = [f"# Shallow baselines vs skada {skada.__version__}: Office-Caltech-10, {described}, "
                f"target accuracy (%)\n",
                f"Command: `{command}` "
                f"(this run: {time.perf_counter() - t_start:.0f} s of new work).  {header}.\n"], []
    names = COLUMNS
    for classifier in args.classifiers:
        shown = [c for c in names if not c.startswith("source-only")]
        head = ["Task", "src-only 1-NN", "src-only LR", *[c.replace(" ours", "").replace(" skada", " (skada)")
                                                           for c in shown]]
        body, grid = [], []
        for task in args.tasks:
            first = args.classifiers[0]
            values = [done[f"{task}|{first}|source-only 1-NN"]["accuracy"],
                      done[f"{task}|{first}|source-only LR"]["accuracy"]]
            values += [done[f"{task}|{classifier}|{c}"]["accuracy"] for c in shown]
            grid.append(values)
            label = "→".join(task.split(":"))
            body.append([label, *[f"{v:.1f}" for v in values]])
            rows.append({"task": label, "classifier": classifier,
                         **{c: v for c, v in zip(head[1:], values)}})
        avg = np.array(grid).mean(axis=0)
        body.append(["**Avg**", *[f"**{v:.1f}**" for v in avg]])
        rows.append({"task": "Avg", "classifier": classifier, **{c: v for c, v in zip(head[1:], avg)}})
        md.append(f"\n## Classifier after adaptation: {'1-NN' if classifier == '1nn' else 'logistic regression'}\n\n"
                  + markdown_table(head, body))
    seconds = {c: np.mean([v["seconds"] for k, v in done.items() if k.endswith("|" + c)]) for c in names}
    md.append("\nMean seconds per task (fit + predict, one thread): "
              + ", ".join(f"{c} {s:.1f}" for c, s in seconds.items()) + ".\n")
    text = "".join(md)
    write_results(args.out, args.name, text, rows)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
