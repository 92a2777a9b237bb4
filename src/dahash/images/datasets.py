"""Find one domain's images and labels in class-folder trees or image-list files, and align classes.

Conventions
-----------
* A domain is a folder under a data root whose immediate subfolders are its classes, sorted by
  name; images are found recursively under each class folder, by extension only
  (:func:`dahash.images.loading.is_image_file`), and listed in sorted order of their path
  relative to the domain folder, so the same tree always gives the same rows. Hidden entries,
  OS junk and the ``__MACOSX`` / ``@eaDir`` folders left by archivers and NAS boxes are skipped.
* Supported layouts::

      Office-Home         ROOT/{Art,Clipart,Product,Real World}/<class>/*.jpg
      Office-31           ROOT/{amazon,dslr,webcam}/images/<class>/*.jpg
      Office-Caltech-10   ROOT/{amazon,caltech10,dslr,webcam}/<class>/*.jpg
      generic             ROOT/<domain>/<class>/*

* A domain is named by its folder, in any case, or by the paper's short codes (Venkateswara et
  al., Sec. 5.1): ``Ar Cl Pr Rw`` for Office-Home and ``A C D W`` for Office(-Caltech)
  (``C`` = ``caltech10`` or ``caltech``). Spaces, ``_`` and ``-`` are ignored when matching, so
  ``Real World``, ``Real_World``, ``RealWorld``, ``real-world`` and ``Rw`` all find whichever
  of those folders exists. A domain folder whose only subfolder is ``images`` (Office-31) is
  descended into.
* :class:`ImageDomain` ``labels`` are int64 indices into ``classes``; ``ids`` are the image
  paths relative to ``root`` in posix form (absolute where an image list points outside it),
  which makes them stable keys for feature caches.
* Image lists hold ``<path> <label>`` per line, split on the last run of whitespace so that
  paths may contain spaces. Integer labels without class names become classes ``"0"``, ``"1"``...
  (sorted numerically, labels re-indexed to ``0..C-1``); name labels become sorted classes.
* Every problem raises :class:`dahash.errors.DataError` with one line that starts with the
  folder or file at fault.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dahash.errors import DataError
from dahash.images.loading import (
    IMAGE_EXTENSIONS,
    ImageLoadError,
    is_image_file,
    open_image,
)

__all__ = [
    "ImageDomain",
    "resolve_domain_dir",
    "load_domain",
    "load_image_list",
    "align_image_domains",
    "scan_readable",
    "DOMAIN_CODES",
    "domain_code",
]

# Paper short code -> normalised folder names it may stand for (Venkateswara et al., Sec. 5.1).
DOMAIN_CODES: dict[str, tuple[str, ...]] = {
    "ar": ("art",),
    "cl": ("clipart",),
    "pr": ("product",),
    "rw": ("realworld",),
    "a": ("amazon",),
    "c": ("caltech10", "caltech"),
    "d": ("dslr",),
    "w": ("webcam",),
}
# Names that mean the same folder, so either spelling finds the other.
_SYNONYMS: tuple[frozenset[str], ...] = (frozenset({"caltech10", "caltech"}),)
_JUNK_DIR_NAMES = frozenset({"__macosx", "@eadir"})
_OFFICE31_IMAGES = "images"
# Lists in messages stay short so that a 1000-file problem still fits on one readable line.
_MAX_LISTED = 5
_INT_LABEL = re.compile(r"[+-]?\d+")


def _listed(items: Sequence[object], limit: int = _MAX_LISTED) -> str:
    """Join the first ``limit`` items for a one-line message, saying how many were left out."""
    shown = ", ".join(str(item) for item in items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


@dataclass(eq=False)
class ImageDomain:
    """One domain's image paths, int64 labels indexing ``classes``, and the ``root`` its ids are relative to."""

    name: str
    root: Path
    paths: list[Path]
    labels: np.ndarray
    classes: list[str]

    def __post_init__(self) -> None:
        """Coerce types and check that labels index into classes, so domains built by hand are valid too."""
        self.root = Path(self.root)
        self.paths = [Path(p) for p in self.paths]
        self.labels = np.asarray(self.labels).astype(np.int64, copy=False).reshape(-1)
        self.classes = [str(c) for c in self.classes]
        if len(self.paths) != len(self.labels):
            raise DataError(f"{self.root}: domain '{self.name}' has {len(self.paths)} paths "
                            f"but {len(self.labels)} labels")
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DataError(f"{self.root}: domain '{self.name}' has labels outside 0..{len(self.classes) - 1}")
        duplicates = sorted(c for c, n in Counter(self.classes).items() if n > 1)
        if duplicates:
            raise DataError(f"{self.root}: domain '{self.name}' repeats class names {_listed(duplicates)}")

    def __len__(self) -> int:
        """Number of images."""
        return len(self.paths)

    @property
    def ids(self) -> list[str]:
        """Image paths relative to ``root`` as posix strings (absolute for images outside it)."""
        out = []
        for path in self.paths:
            try:
                out.append(path.relative_to(self.root).as_posix())
            except ValueError:
                out.append(path.as_posix())
        return out

    def class_counts(self) -> np.ndarray:
        """Images per class, in the order of ``classes``."""
        return np.bincount(self.labels, minlength=len(self.classes))

    def subset(self, keep: Iterable[int] | np.ndarray) -> ImageDomain:
        """The same domain and classes restricted to the rows ``keep``."""
        rows = np.asarray(list(keep) if not isinstance(keep, np.ndarray) else keep, dtype=np.int64)
        return ImageDomain(self.name, self.root, [self.paths[i] for i in rows], self.labels[rows],
                           list(self.classes))


def _clip(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters for quoting in a one-line message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _norm(name: str) -> str:
    """Fold case and drop spaces, ``_`` and ``-`` so that spellings of one domain compare equal."""
    return re.sub(r"[\s_\-]+", "", name).casefold()


def domain_code(name: str) -> str:
    """The paper's short code of a domain name ("Real World" -> "Rw", "caltech10" -> "C"), else the name."""
    key = _norm(name)
    for code, names in DOMAIN_CODES.items():
        if key in names or key == code:
            return code.capitalize() if len(code) == 2 else code.upper()
    return name


def _visible(name: str) -> bool:
    """Whether a directory entry is data rather than hidden, archiver or NAS junk."""
    return not name.startswith(".") and name.casefold() not in _JUNK_DIR_NAMES


def _subdirs(folder: Path) -> list[Path]:
    """Visible subfolders of ``folder``, sorted by name."""
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise DataError(f"{folder}: cannot list folder ({exc.strerror or exc})") from exc
    return sorted((Path(e.path) for e in entries if _visible(e.name) and e.is_dir()), key=lambda p: p.name)


def _check_root(root: str | os.PathLike[str]) -> Path:
    """``root`` as an absolute path that exists and is a folder."""
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    if not path.exists():
        raise DataError(f"{path}: data root does not exist")
    if not path.is_dir():
        raise DataError(f"{path}: data root is not a folder")
    return path


def _descend_images(domain_dir: Path) -> Path:
    """The Office-31 ``<domain>/images`` folder when it is the domain's only subfolder, else ``domain_dir``."""
    subdirs = _subdirs(domain_dir)
    if len(subdirs) != 1 or subdirs[0].name.casefold() != _OFFICE31_IMAGES:
        return domain_dir
    # A lone class literally named "images" holds image files, not class folders; keep it a class.
    with os.scandir(domain_dir) as entries:
        if any(is_image_file(e.name) for e in entries if e.is_file()):
            return domain_dir
    return subdirs[0] if _subdirs(subdirs[0]) else domain_dir


def _domain_folder(root: str | os.PathLike[str], name: str) -> Path:
    """The folder under ``root`` that domain ``name`` names, before any ``images/`` descent."""
    base = _check_root(root)
    name = str(name)
    domains = _subdirs(base)
    # A nested name ("office31/amazon") is taken as the path it spells.
    if name and _visible(name) and Path(name).name != name and (base / name).is_dir():
        return base / name
    wanted = {_norm(name)}
    for group in _SYNONYMS:
        if wanted & group:
            wanted |= group
    # Names are tried before short codes, so that a folder literally named "A" wins over the code.
    for candidates in ([d for d in domains if d.name == name],
                       [d for d in domains if d.name.casefold() == name.casefold()],
                       [d for d in domains if _norm(d.name) in wanted],
                       [d for d in domains if _norm(d.name) in DOMAIN_CODES.get(_norm(name), ())]):
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise DataError(f"{base}: domain '{name}' is ambiguous, it matches folders "
                            f"{_listed([d.name for d in candidates])}")
    found = _listed([d.name for d in domains], limit=20) if domains else "none"
    raise DataError(f"{base}: no domain '{name}'; domains found: {found}")


def resolve_domain_dir(root: str | os.PathLike[str], name: str) -> Path:
    """The folder holding domain ``name``'s class folders: by exact, case- or spelling-blind name, or paper code."""
    return _descend_images(_domain_folder(root, name))


def find_images(folder: Path) -> list[Path]:
    """Image files anywhere under ``folder``, skipping hidden and junk folders, sorted by relative path."""
    found = []
    for current, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if _visible(d)]
        found.extend(Path(current, f) for f in filenames if is_image_file(f))
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def load_domain(root: str | os.PathLike[str], name: str) -> ImageDomain:
    """The images of domain ``name`` under ``root``, labelled by their class folder (sorted class names)."""
    folder = _domain_folder(root, name)
    domain_dir = _descend_images(folder)
    class_dirs = _subdirs(domain_dir)
    if not class_dirs:
        raise DataError(f"{domain_dir}: domain '{name}' has no class folders (expected <domain>/<class>/<image>)")
    with os.scandir(domain_dir) as entries:
        loose = [e.name for e in entries if e.is_file() and is_image_file(e.name)]
    if loose:
        warnings.warn(f"{domain_dir}: {len(loose)} images outside any class folder are ignored "
                      f"({_listed(sorted(loose))})", stacklevel=2)
    paths: list[Path] = []
    labels: list[int] = []
    empty: list[str] = []
    for label, class_dir in enumerate(class_dirs):
        images = find_images(class_dir)
        if not images:
            empty.append(class_dir.name)
        paths.extend(images)
        labels.extend([label] * len(images))
    if not paths:
        extensions = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
        raise DataError(f"{domain_dir}: domain '{name}' has no images in its {len(class_dirs)} class folders "
                        f"(extensions looked for: {extensions})")
    if empty:
        # Kept as classes so that label indices match the other domain's tree; align_image_domains
        # refuses them on the source side, where DAH needs K samples of every class.
        warnings.warn(f"{domain_dir}: {len(empty)} class folders have no images: {_listed(empty)}", stacklevel=2)
    return ImageDomain(folder.name, domain_dir, paths, np.asarray(labels, dtype=np.int64),
                       [d.name for d in class_dirs])


def _parse_list_line(list_path: Path, lineno: int, line: str) -> tuple[str, str]:
    """Split one ``<path> <label>`` line on its last whitespace run."""
    parts = line.rsplit(None, 1)
    if len(parts) != 2:
        raise DataError(f"{list_path}: line {lineno}: expected '<image path> <label>', got '{_clip(line)}'")
    path, label = parts
    # A path with a space and no label splits into two path pieces; refuse rather than invent a class.
    if "/" in label or "\\" in label or is_image_file(label):
        raise DataError(f"{list_path}: line {lineno}: no label after image path '{_clip(line)}'")
    return path, label


def load_image_list(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None, *,
                    classes: Sequence[str] | None = None) -> ImageDomain:
    """Images and labels from a ``<path> <label>`` list; relative paths resolve against ``root`` or the list's folder.

    ``classes``, when given, fixes the class list: a label equal to one of its names is that
    class, any other integer label indexes into it.
    """
    list_path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    try:
        text = list_path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise DataError(f"{list_path}: image list does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{list_path}: cannot read image list ({exc})") from exc
    base = list_path.parent if root is None else Path(os.path.abspath(os.path.expanduser(os.fspath(root))))

    entries: list[tuple[int, str, str]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            entries.append((lineno, *_parse_list_line(list_path, lineno, line)))
    if not entries:
        raise DataError(f"{list_path}: image list has no entries")

    if classes is not None:
        class_list = [str(c) for c in classes]
        index = {c: i for i, c in enumerate(class_list)}
        labels = []
        for lineno, _, label in entries:
            if label in index:
                labels.append(index[label])
            elif _INT_LABEL.fullmatch(label) and 0 <= int(label) < len(class_list):
                labels.append(int(label))
            else:
                raise DataError(f"{list_path}: line {lineno}: label '{label}' is neither a class name "
                                f"nor an index below {len(class_list)}")
    else:
        is_int = [bool(_INT_LABEL.fullmatch(label)) for _, _, label in entries]
        if all(is_int):
            values = [int(label) for _, _, label in entries]
            negative = [(lineno, v) for (lineno, _, _), v in zip(entries, values) if v < 0]
            if negative:
                raise DataError(f"{list_path}: line {negative[0][0]}: label {negative[0][1]} is negative "
                                f"(unlabelled rows are not supported; give every image its class)")
            distinct = sorted(set(values))
            class_list = [str(v) for v in distinct]
            position = {v: i for i, v in enumerate(distinct)}
            labels = [position[v] for v in values]
        elif not any(is_int):
            class_list = sorted({label for _, _, label in entries})
            index = {c: i for i, c in enumerate(class_list)}
            labels = [index[label] for _, _, label in entries]
        else:
            first_int = next(e for e, flag in zip(entries, is_int) if flag)
            first_name = next(e for e, flag in zip(entries, is_int) if not flag)
            raise DataError(f"{list_path}: line {first_name[0]}: label '{first_name[2]}' is a class name but "
                            f"line {first_int[0]} has integer label '{first_int[2]}'; use one kind, "
                            f"or pass classes=")

    paths = [Path(p) if os.path.isabs(p) else base / p for _, p, _ in entries]
    missing = [(lineno, p) for (lineno, _, _), p in zip(entries, paths) if not p.is_file()]
    if missing:
        shown = [f"line {lineno}: {p}" for lineno, p in missing]
        raise DataError(f"{list_path}: {len(missing)} of {len(paths)} listed images do not exist "
                        f"(relative paths resolved against {base}): {_listed(shown, limit=3)}")
    return ImageDomain(list_path.stem, base, paths, np.asarray(labels, dtype=np.int64), class_list)


def align_image_domains(source: ImageDomain, target: ImageDomain) -> tuple[ImageDomain, ImageDomain]:
    """Give ``target`` the source's class list, matching classes by name, re-indexing its labels."""
    counts = source.class_counts()
    empty = [c for c, n in zip(source.classes, counts) if n == 0]
    if empty:
        raise DataError(f"{source.root}: source domain '{source.name}' has no images for {len(empty)} classes "
                        f"({_listed(empty)}); DAH samples K images of every source class")
    index = {c: i for i, c in enumerate(source.classes)}
    target_counts = target.class_counts()
    unknown = [c for c, n in zip(target.classes, target_counts) if n > 0 and c not in index]
    if unknown:
        raise DataError(f"{target.root}: target domain '{target.name}' has {len(unknown)} classes missing from "
                        f"source domain '{source.name}': {_listed(unknown)}")
    # Target classes without images have nothing to re-index, so their absence from the source is harmless.
    remap = np.array([index.get(c, -1) for c in target.classes], dtype=np.int64)
    aligned = ImageDomain(target.name, target.root, list(target.paths),
                          remap[target.labels] if target.labels.size else target.labels.copy(),
                          list(source.classes))
    return source, aligned


def scan_readable(domain: ImageDomain, progress: bool = False) -> tuple[ImageDomain, list[tuple[Path, str]]]:
    """Fully decode every image; return the domain without unreadable ones, and ``(path, reason)`` for each."""
    rows: Iterable[int] = range(len(domain))
    if progress:
        from tqdm import (
            tqdm,  # only when asked: a bar is the sole output a caller gets while this runs
        )

        rows = tqdm(rows, desc=f"checking {domain.name}", unit="img")
    keep: list[int] = []
    bad: list[tuple[Path, str]] = []
    for i in rows:
        try:
            open_image(domain.paths[i])
        except ImageLoadError as exc:
            bad.append((domain.paths[i], exc.reason))
        else:
            keep.append(i)
    return domain.subset(keep), bad
