"""Weak features for issue 31's benchmark: each Office-Caltech-10 image as a bag-of-words histogram of
its SIFT descriptors, one .npz per domain, made without labels.

The classic Office-Caltech-10 features (Gong, Shi, Sha and Grauman, CVPR 2012, "Geodesic flow kernel")
are 800-bin histograms of SURF descriptors quantised by a codebook learned on a subset of Amazon
images. SURF is patented and absent from OpenCV's free build, so this script uses SIFT (Lowe, IJCV
2004; free since 2020, ``cv2.SIFT_create``) and otherwise follows that recipe:

1. every image in grey levels, its longer side scaled to at most ``--max-side`` pixels (the
   originals run from 100 to 2,000 pixels, and detectors find keypoints by scale);
2. SIFT keypoints and 128-d descriptors, at most ``--max-keypoints`` per image (the strongest by
   detector response);
3. a k-means codebook of ``--words`` words (800) fit on descriptors sampled from the
   ``--codebook-domain`` images only (default amazon), ``--sample-per-image`` per image, seeded;
4. each image's histogram: how many of its descriptors fall nearest each word. The counts are
   written raw, not divided by their sum, so that what dahash does with raw histograms is what
   is measured (the reference in issue 31 divides by the sum itself).

No label is read to build anything; ``y`` and ``classes`` are written beside ``X`` for evaluation.
An image with no keypoint gets an all-zero histogram and is counted in ``bow.json``.

Usage: python benchmarks/bow_features.py [--data-root ../shared/data/office_caltech_10]
       [--out runs/bow] [--words 800] [--max-side 300] [--seed 0]
Then, for example: dahash train --source-features runs/bow/amazon.npz --target-features runs/bow/dslr.npz ...
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import MiniBatchKMeans
from tqdm.auto import tqdm

from dahash.images.datasets import find_images
from dahash.io import atomic_path, write_json

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "office_caltech_10"
DOMAINS = ("amazon", "caltech10", "dslr", "webcam")


def _cv2():
    try:
        import cv2
    except ImportError:
        sys.exit("bow_features.py needs OpenCV: pip install opencv-python-headless")
    return cv2


def sift_descriptors(path: Path, max_side: int, max_keypoints: int) -> np.ndarray:
    """The (n, 128) float32 SIFT descriptors of the image at ``path``, grey, longer side at most ``max_side``."""
    cv2 = _cv2()
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise ValueError(f"{path}: OpenCV cannot read this image")
    scale = max_side / max(grey.shape)
    if scale < 1:
        grey = cv2.resize(grey, (round(grey.shape[1] * scale), round(grey.shape[0] * scale)),
                          interpolation=cv2.INTER_AREA)
    sift = cv2.SIFT_create()
    # SIFT's own nfeatures cap keeps extra orientations of its last keypoints: cut by response here.
    keypoints = sorted(sift.detect(grey, None), key=lambda k: -k.response)[:max_keypoints]
    _, descriptors = sift.compute(grey, keypoints) if keypoints else (None, None)
    return np.zeros((0, 128), np.float32) if descriptors is None else descriptors.astype(np.float32)


def histograms(descriptors: list[np.ndarray], codebook: MiniBatchKMeans) -> np.ndarray:
    """Per image, the count of its descriptors nearest each word (an image without descriptors: zeros)."""
    words = codebook.n_clusters
    X = np.zeros((len(descriptors), words), np.float32)
    for i, d in enumerate(descriptors):
        if len(d):
            X[i] = np.bincount(codebook.predict(d), minlength=words)
    return X


def fit_codebook(descriptors: list[np.ndarray], words: int, per_image: int, seed: int) -> MiniBatchKMeans:
    """k-means with ``words`` centres on up to ``per_image`` descriptors drawn from each image."""
    rng = np.random.default_rng(seed)
    sample = np.concatenate([d[rng.choice(len(d), min(per_image, len(d)), replace=False)]
                             for d in descriptors if len(d)])
    if len(sample) < words:
        raise ValueError(f"{len(sample)} descriptors for a codebook of {words} words")
    return MiniBatchKMeans(n_clusters=words, random_state=seed, batch_size=4096, n_init=3).fit(sample)


def domain_images(root: Path, domain: str) -> tuple[list[Path], np.ndarray, list[str]]:
    """The images of ``root/domain/<class>/``, their class indices and the sorted class names."""
    classes = sorted(p.name for p in (root / domain).iterdir() if p.is_dir())
    paths, labels = [], []
    for label, name in enumerate(classes):
        found = find_images(root / domain / name)
        paths += found
        labels += [label] * len(found)
    return paths, np.array(labels, np.int64), classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=str(DATA))
    parser.add_argument("--out", default=str(REPO / "runs" / "bow"))
    parser.add_argument("--domains", nargs="+", default=list(DOMAINS))
    parser.add_argument("--codebook-domain", default="amazon")
    parser.add_argument("--words", type=int, default=800)
    parser.add_argument("--max-side", type=int, default=300)
    parser.add_argument("--max-keypoints", type=int, default=500)
    parser.add_argument("--sample-per-image", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root, out = Path(args.data_root), Path(args.out)
    if args.codebook_domain not in args.domains:
        sys.exit(f"--codebook-domain {args.codebook_domain!r} is not one of --domains {args.domains}")
    _cv2().setNumThreads(1)
    t0 = time.perf_counter()
    found = {d: domain_images(root, d) for d in args.domains}
    descriptors = {}
    for domain, (paths, _, _) in found.items():
        descriptors[domain] = [sift_descriptors(p, args.max_side, args.max_keypoints)
                               for p in tqdm(paths, desc=f"SIFT {domain}", unit="img", disable=None)]
    codebook = fit_codebook(descriptors[args.codebook_domain], args.words, args.sample_per_image, args.seed)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"config": vars(args), "domains": {}}
    for domain, (paths, y, classes) in found.items():
        X = histograms(descriptors[domain], codebook)
        with atomic_path(out / f"{domain}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, X=X, y=y, classes=np.array(classes), ids=np.array([str(p.relative_to(root)) for p in paths]))
        counts = np.array([len(d) for d in descriptors[domain]])
        summary["domains"][domain] = {"images": len(paths), "no_keypoint": int((counts == 0).sum()),
                                      "descriptors_median": float(np.median(counts)),
                                      "nonzero_bins_median": float(np.median((X > 0).sum(1)))}
        print(f"{domain}: {len(paths)} images, median {np.median(counts):.0f} descriptors, "
              f"{int((counts == 0).sum())} without any -> {out / (domain + '.npz')}")
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(out / "bow.json", summary)
    print(f"{summary['seconds']} s; settings and counts in {out / 'bow.json'}")


if __name__ == "__main__":
    main()
