"""Image search with a trained run's hash codes: build or grow a Hamming index of an image collection
(:mod:`dahash.index`) and query it with images (``dahash index build|add``, ``dahash search``).

Every indexed image carries its path, its label when the folder layout gives one (ROOT/<class>/...
with a class the run knows) and the class DAH predicts for it (eq. 6 with binary codes, against the
run's labeled source codes). Ids are derived from the resolved path, so adding an image that is
already indexed is recognised and skipped rather than duplicated.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dahash.codes import pack_codes
from dahash.errors import ConfigError, DataError
from dahash.index import FaissIndex, HammingIndex, SearchResult, open_index
from dahash.index.milvus_index import MilvusIndex
from dahash.runs.loading import LoadedRun, image_outputs, load_image_run, predict_classes, source_code_bank
from dahash.training.trainer import MODEL, model_digest

BACKENDS = ("faiss", "milvus")
FAISS_KINDS = ("flat", "ivf", "hnsw")


def model_id(run_dir: str | os.PathLike) -> str:
    """What an index records as its model: the digest of the run's trained parameters
    (:func:`dahash.training.trainer.model_digest`), the same however often the model is saved."""
    return model_digest(Path(run_dir) / MODEL)


def _file_id(run_dir: str | os.PathLike) -> str:
    """``sha256:<hex>`` of the model file's bytes: what indexes built before :func:`model_id` recorded."""
    digest = hashlib.sha256()
    with open(Path(run_dir) / MODEL, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def path_ids(paths: list[str]) -> np.ndarray:
    """Stable int64 ids (63 bits of sha256 of the resolved path; never -1, the padding id)."""
    return np.array([int.from_bytes(hashlib.sha256(str(Path(p).resolve()).encode()).digest()[:8], "big") >> 1
                     for p in paths], dtype=np.int64)


def folder_label(path: str, classes: list[str]) -> str | None:
    """The class named by the image's parent folder, if the run knows it (any letter case)."""
    known = {c.casefold(): c for c in classes}
    return known.get(Path(path).parent.name.casefold())


@dataclass
class Encoder:
    """A run's image -> code function (model and backbone loaded once), plus eq. 6 class
    prediction against its source codes."""

    run: LoadedRun
    bank: np.ndarray | None  # (n, n_bits) +-1 source codes of the run, or None if it saved none
    bank_labels: np.ndarray | None

    @property
    def n_bits(self) -> int:
        return int(self.run.config.bits)

    @property
    def classes(self) -> list[str]:
        return self.run.classes

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, *, engine: str | None = None,
                 cache_dir: str | os.PathLike | None = None) -> "Encoder":
        """The run's encoder, its backbone on ``engine`` (default: the run's; exports under ``cache_dir``)."""
        bank = source_code_bank(run_dir)
        return cls(load_image_run(run_dir, engine=engine, cache_dir=cache_dir), *(bank if bank else (None, None)))

    def predict(self, u: np.ndarray) -> list[str | None]:
        """The class of each output row by eq. 6 with binary codes (None without source codes)."""
        return predict_classes(u, None if self.bank is None else (self.bank, self.bank_labels), self.classes)

    def encode(self, inputs: list[str], *, cache_dir: str | None = None, progress: bool = True,
               num_workers: int | None = None, write_cache: bool = True, report: bool = True,
               ) -> tuple[np.ndarray, list[str], list[str | None]]:
        """``(packed codes, paths kept, predicted class per image)`` of image files and folders
        (unreadable ones reported and skipped as :func:`~dahash.runs.loading.image_outputs` says)."""
        u, paths, _ = image_outputs(self.run, inputs, cache_dir=cache_dir, progress=progress,
                                    num_workers=num_workers, write_cache=write_cache, report=report)
        return pack_codes(u), paths, self.predict(u)


def _metadata(paths: list[str], predicted: list[str | None], classes: list[str]) -> list[dict[str, Any]]:
    return [{"path": str(Path(p).resolve()), "label": folder_label(p, classes), "predicted": q}
            for p, q in zip(paths, predicted)]


def build_index(run_dir: str | os.PathLike, images: list[str], index_path: str | os.PathLike, *,
                backend: str = "faiss", kind: str = "flat", milvus_uri: str | None = None,
                collection: str | None = None, cache_dir: str | None = None, progress: bool = True,
                rebuild: bool = False, milvus_token: str | None = None, milvus_db: str | None = None,
                milvus_tls_ca: str | None = None, engine: str | None = None) -> int:
    """Encode ``images`` with the run (its backbone on ``engine``, default the run's) and save a new index of them at ``index_path``; returns the count.

    ``rebuild`` replaces an index already there (after a model changed): the images are encoded first, then
    a FAISS index's files are replaced in one step, or a Milvus index's collection dropped and made anew.
    Milvus settings not given come from ``$DAHASH_MILVUS_URI``, ``_TOKEN``, ``_DB`` and ``_TLS_CA``; the token,
    database and TLS file are never saved (:class:`~dahash.index.milvus_index.MilvusIndex`)."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    types = {"flat": "BIN_FLAT", "ivf": "BIN_IVF_FLAT"}
    if backend == "faiss" and kind not in FAISS_KINDS:
        raise ConfigError(f"--type must be one of {', '.join(FAISS_KINDS)} for FAISS, got {kind!r}")
    if backend == "milvus" and kind not in types:
        raise ConfigError(f"--type must be flat or ivf for Milvus (BIN_FLAT, BIN_IVF_FLAT), got {kind!r}")
    target = Path(index_path)
    if target.exists() and not target.is_dir():
        raise DataError(f"{index_path} is a file; an index is a directory")
    existing = (target / "manifest.json").exists()
    if existing and not rebuild:
        raise DataError(f"{index_path} already holds an index; use 'dahash index add' to grow it, or --rebuild to "
                        "replace it")
    if not existing and target.is_dir() and any(target.iterdir()):
        raise DataError(f"{index_path} is a folder with other files in it; an index needs its own folder")
    encoder = Encoder.from_run(run_dir, engine=engine, cache_dir=cache_dir)
    info = {"run": str(Path(run_dir).resolve())}
    codes, paths, predicted = encoder.encode(images, cache_dir=cache_dir, progress=progress)
    if existing:
        old = open_index(index_path)
        if isinstance(old, MilvusIndex):
            old.drop()
    index: HammingIndex
    if backend == "faiss":
        index = FaissIndex(encoder.n_bits, kind, model=model_id(run_dir), info=info)
    else:
        index = MilvusIndex(encoder.n_bits, milvus_uri, collection or Path(index_path).name.replace("-", "_"),
                            index_type=types[kind], model=model_id(run_dir), info=info, token=milvus_token,
                            db_name=milvus_db, tls_ca=milvus_tls_ca)
    ids = path_ids(paths)
    _, first = np.unique(ids, return_index=True)  # the same file named twice is indexed once
    keep = np.sort(first)
    metadata = _metadata(paths, predicted, encoder.classes)
    index.add(codes[keep], ids[keep], [metadata[i] for i in keep])
    index.save(index_path)
    return len(keep)


def run_of(index: HammingIndex, index_path: str | os.PathLike, run_dir: str | os.PathLike | None, *,
           engine: str | None = None, cache_dir: str | os.PathLike | None = None) -> Encoder:
    """The encoder of the run that built the index (``run_dir`` overrides the recorded one; its
    backbone on ``engine``, default the run's); its model must be the index's."""
    run = run_dir or getattr(index, "info", {}).get("run")
    if not run:
        raise DataError(f"{index_path}: the index does not record its run; pass --run")
    expected = getattr(index, "model", None)
    if expected is not None and expected != model_id(run) and not (expected.startswith("sha256:")
                                                                     and expected == _file_id(run)):
        raise DataError(f"{index_path} was built with model {expected}, but {run} holds {model_id(run)}: codes "
                        f"of two models are not comparable; rebuild it with 'dahash index build --run {run} "
                        f"--images ... --index {index_path} --rebuild'")
    return Encoder.from_run(run, engine=engine, cache_dir=cache_dir)


def add_images(index_path: str | os.PathLike, images: list[str], *, run_dir: str | os.PathLike | None = None,
               cache_dir: str | None = None, progress: bool = True, engine: str | None = None) -> tuple[int, int]:
    """Encode ``images`` with the index's run (its backbone on ``engine``, default the run's) and add
    those not yet indexed; returns (added, skipped)."""
    index = open_index(index_path)
    encoder = run_of(index, index_path, run_dir, engine=engine, cache_dir=cache_dir)
    codes, paths, predicted = encoder.encode(images, cache_dir=cache_dir, progress=progress)
    ids = path_ids(paths)
    first = np.sort(np.unique(ids, return_index=True)[1])
    new = first[~index.contains(ids[first])]
    if len(new):
        metadata = _metadata(paths, predicted, encoder.classes)
        index.add(codes[new], ids[new], [metadata[i] for i in new])
        index.save(index_path)
    return len(new), len(paths) - len(new)


def search_images(index_path: str | os.PathLike, images: list[str], k: int = 10, *,
                  run_dir: str | os.PathLike | None = None, cache_dir: str | None = None,
                  progress: bool = False, engine: str | None = None
                  ) -> tuple[list[str], list[str | None], SearchResult]:
    """The top ``k`` indexed images of each query image, encoded with the backbone on ``engine``
    (default the run's): ``(query paths, predicted class, hits)``."""
    index = open_index(index_path)
    encoder = run_of(index, index_path, run_dir, engine=engine, cache_dir=cache_dir)
    codes, paths, predicted = encoder.encode(images, cache_dir=cache_dir, progress=progress)
    return paths, predicted, index.search(codes, k)
