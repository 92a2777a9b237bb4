"""Download Office-Home, Office-31 and Office-Caltech-10, verify them, and unpack them into datasets.py layouts.

This module holds the registry and the steps in ROOT; the resumable transfer is :mod:`.transfer`
and the safe unpacking :mod:`.archives`.

Conventions
-----------
* :data:`DATASETS` is the registry: one public archive per dataset, its file name and the digests
  other open-source projects publish for it (``None`` where nobody does). Each entry says where
  its URL and digest were found.
* Everything that is not a domain folder lives in ``ROOT/.dahash-downloads/``: the archive, the
  partial download ``<file>.part``, ``<file>.source`` (the URL the bytes came from, so that a
  partial file is only ever continued from the same URL), and ``<dataset>.json``, written once the
  domains are in place. The leading dot keeps the folder out of ``load_domain``'s domain list.
* A broken download is continued: HTTP(S) with a ``Range`` request appended to the ``.part``
  file, ``file://`` URLs (and plain paths) by seeking to the same offset. The archive is renamed
  from ``.part`` only after its checksum passed; a mismatching file is renamed aside, never
  deleted.
* Google Drive answers large files with a "can't scan for viruses" page; its confirmation form
  (or, on older pages, the ``confirm`` token in a link or a ``download_warning`` cookie) is
  followed. Any other web page where an archive was expected is an error.
* Unpacking goes to a temporary folder under ``ROOT``; members with absolute paths, ``..`` or
  links are refused. The domains are then found wherever the archive put them (under a top-level
  folder, with or without Office-31's ``images/`` level, ``Real_World`` for ``Real World``,
  ``caltech`` for ``caltech10``) and renamed into place, so an interrupted run leaves no
  half-filled domain folder behind.
* Every failure is a one-line :class:`DownloadError` (or ``ConfigError`` for bad arguments) that
  names the URL or file at fault.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dahash.errors import ConfigError, DownloadError
from dahash.images.archives import JUNK_PARTS, safe_extract
from dahash.images.datasets import load_domain, resolve_domain_dir
from dahash.images.transfer import (
    CHUNK,
    copy_local,
    http_download,
    local_path,
    say,
    warn,
)
from dahash.io import write_json

__all__ = [
    "Archive",
    "DATASETS",
    "DATASET_NAMES",
    "DatasetSpec",
    "Domain",
    "DownloadError",
    "download_dataset",
    "fetch_archive",
    "get_spec",
    "safe_extract",
]


@dataclass(frozen=True)
class Archive:
    """One public archive: where to get it, what to call it, and the digests that identify it."""

    url: str
    filename: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None


@dataclass(frozen=True)
class Domain:
    """A domain's folder name in the unpacked layout, the other spellings archives use for it, and its image count."""

    folder: str
    aliases: tuple[str, ...] = ()
    images: int | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's archive, domains and layout (``images_subdir``: Office-31's ``<domain>/images/<class>``)."""

    key: str
    title: str
    archive: Archive
    domains: tuple[Domain, ...]
    n_classes: int
    images_subdir: bool = False
    homepage: str = ""
    names: tuple[str, ...] = ()


# Sources (URLs and digests only; no code was taken from them):
# * Office-Home: the zip is the authors' OfficeHomeDataset_10072016.zip. The Drive id is DomainBed's
#   mirror (facebookresearch/DomainBed, domainbed/scripts/download.py); its MD5 is published for that
#   same id by LarsKue/context-aware-domain-generalization
#   (src/adaptive_dg/datasets/domain_bed/office_home.py) and, for the authors' original Drive file
#   0B81rNlvomiwed0V1YUxQdC1uOTg, by other dataset scripts: both ids appear to serve the same bytes.
#   Image counts: KevinMusgrave/pytorch-adapt, src/pytorch_adapt/datasets/officehome.py.
# * Office-31: domain_adaptation_images.tar.gz on the Drive id nearly every project links to; URL and
#   MD5 from google-deepmind/dm_nevis, dm_nevis/datasets_storage/handlers/office31.py (dm_nevis
#   checks MD5, see its download_util.py). Image counts are the published 2817/498/795.
# * Office-Caltech-10: officecaltech.tgz from thuml/Transfer-Learning-Library,
#   tllib/vision/datasets/officecaltech.py. No checksum is published for it. Image counts are those
#   of Gong et al. (CVPR 2012, GFK).
DATASETS: dict[str, DatasetSpec] = {
    "office-home": DatasetSpec(
        key="office-home",
        title="Office-Home",
        archive=Archive(
            url="https://drive.google.com/uc?export=download&id=1uY0pj7oFsjMxRwaD3Sxy0jgel0fsYXLC",
            filename="OfficeHomeDataset_10072016.zip",
            md5="b1c14819770c4448fd5b6d931031c91c",
        ),
        domains=(Domain("Art", images=2427), Domain("Clipart", images=4365), Domain("Product", images=4439),
                 Domain("Real World", aliases=("Real_World", "RealWorld", "Real"), images=4357)),
        n_classes=65,
        homepage="https://www.hemanthdv.org/officeHomeDataset.html",
        names=("officehome", "office_home"),
    ),
    "office31": DatasetSpec(
        key="office31",
        title="Office-31",
        archive=Archive(
            url="https://drive.google.com/uc?export=download&id=0B4IapRTv9pJ1WGZVd1VDMmhwdlE",
            filename="domain_adaptation_images.tar.gz",
            md5="1b536d114869a5a8aa4580b89e9758fb",
        ),
        domains=(Domain("amazon", images=2817), Domain("dslr", images=498), Domain("webcam", images=795)),
        n_classes=31,
        images_subdir=True,
        homepage="https://faculty.cc.gatech.edu/~judy/domainadapt/",
        names=("office-31", "office_31"),
    ),
    "office-caltech": DatasetSpec(
        key="office-caltech",
        title="Office-Caltech-10",
        archive=Archive(
            url="https://cloud.tsinghua.edu.cn/f/e93f2e07d93243d6b57e/?dl=1",
            filename="officecaltech.tgz",
        ),
        domains=(Domain("amazon", images=958), Domain("caltech10", aliases=("caltech",), images=1123),
                 Domain("dslr", images=157), Domain("webcam", images=295)),
        n_classes=10,
        homepage="https://github.com/thuml/Transfer-Learning-Library",
        names=("office-caltech-10", "officecaltech", "office_caltech_10", "office-caltech10"),
    ),
}
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)

DOWNLOAD_DIR = ".dahash-downloads"
_UNPACK_PREFIX = ".dahash-unpack-"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_ALGO_NAMES = {"sha256": "SHA-256", "md5": "MD5"}
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def _fold(name: str) -> str:
    """Fold case and drop spaces, ``_`` and ``-``, the way datasets.py compares domain names."""
    return re.sub(r"[\s_\-]+", "", name).casefold()


def get_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name`` (``office-home``, ``office31``, ``office-caltech`` or a spelling of one)."""
    wanted = _fold(name)
    for spec in DATASETS.values():
        if wanted in {_fold(spec.key), *(_fold(n) for n in spec.names)}:
            return spec
    raise ConfigError(f"unknown dataset '{name}'; choose one of {', '.join(DATASET_NAMES)}")


def _filename_for(url: str | None, archive: Archive) -> str:
    """The archive's file name: the registry's, or the ``--url``'s own name when it looks like an archive."""
    if url is None:
        return archive.filename
    name = urllib.parse.unquote(Path(urllib.parse.urlsplit(url).path).name)
    return name if name.lower().endswith(_ARCHIVE_SUFFIXES) else archive.filename


def _digests(path: Path) -> dict[str, str]:
    """SHA-256 and MD5 of ``path`` in one read (MD5 is what the dataset mirrors publish)."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            sha256.update(block)
            md5.update(block)
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest()}


def _verify(path: Path, shown: Path, url: str, archive: Archive, pinned_sha256: str | None,
            url_overridden: bool) -> str:
    """Check ``path`` against the pinned or published digest; rename it aside on a mismatch; return its SHA-256."""
    got = _digests(path)
    expected: list[tuple[str, str]] = []
    if pinned_sha256:
        expected = [("sha256", pinned_sha256.lower())]
    elif not url_overridden:
        expected = [(algo, value.lower()) for algo, value in (("sha256", archive.sha256), ("md5", archive.md5))
                    if value]
    for algo, value in expected:
        if got[algo] != value:
            bad = shown.with_name(f"{shown.name}.bad-{got['sha256'][:12]}")
            os.replace(path, bad)
            raise DownloadError(f"{shown}: {_ALGO_NAMES[algo]} mismatch: expected {value}, got {got[algo]} "
                                f"(from {url}); the file was kept as {bad}; delete it and rerun to download again")
    if expected:
        return got["sha256"]
    published = [algo for algo, value in (("sha256", archive.sha256), ("md5", archive.md5))
                 if value and got[algo] == value.lower()]
    if published:
        say(f"{shown.name}: matches the published {_ALGO_NAMES[published[0]]} of the official archive")
        return got["sha256"]
    why = ("it is not byte-identical to the official archive, whose checksum is published"
           if archive.sha256 or archive.md5 else "no checksum is published for it")
    warn(f"{shown.name}: could not verify the download ({why}); its SHA-256 is {got['sha256']}; "
          f"pass --sha256 {got['sha256']} to pin it")
    return got["sha256"]


def fetch_archive(spec: DatasetSpec, work: Path, *, url: str | None = None, sha256: str | None = None,
                  progress: bool = True) -> tuple[Path, str]:
    """Download (or resume, or reuse) ``spec``'s archive into ``work``; return its path and SHA-256."""
    archive = spec.archive
    source = url or archive.url
    final = work / _filename_for(url, archive)
    part = final.with_name(final.name + ".part")
    origin = final.with_name(final.name + ".source")
    recorded = origin.read_text(encoding="utf-8").strip() if origin.is_file() else None
    checkable = bool(sha256 or (url is None and (archive.sha256 or archive.md5)))
    if final.is_file():
        # An archive put there by hand (no record) or one a digest can vouch for is reused; an unverifiable
        # one from another URL may be another file.
        if recorded in (None, source) or checkable:
            say(f"{final}: already downloaded")
            return final, _verify(final, final, source, archive, sha256, url is not None)
        say(f"{final}: came from {recorded}, not {source}; downloading again")
        final.unlink()
    if part.exists() and recorded != source:
        # Never splice bytes from two URLs into one file.
        part.unlink()
    work.mkdir(parents=True, exist_ok=True)
    origin.write_text(source + "\n", encoding="utf-8")
    say(f"downloading {spec.title} from {source}")
    if part.exists():
        say(f"{final.name}: resuming at {part.stat().st_size} bytes")
    local = local_path(source)
    if local is not None:
        copy_local(local, source, part, progress, final.name)
    elif urllib.parse.urlsplit(source).scheme in ("http", "https"):
        http_download(source, part, archive.size if url is None else None, progress, final.name)
    else:
        raise ConfigError(f"{source}: unsupported URL scheme (use http://, https:// or file://)")
    digest = _verify(part, final, source, archive, sha256, url is not None)
    os.replace(part, final)
    return final, digest


def _visible_dirs(folder: Path) -> list[Path]:
    """Subfolders that are data, not hidden or archiver junk, sorted by name."""
    return sorted((p for p in folder.iterdir()
                   if p.is_dir() and not p.name.startswith(".") and p.name.casefold() not in JUNK_PARTS),
                  key=lambda p: p.name)


def _spellings(domain: Domain) -> set[str]:
    """Folded names that stand for ``domain``."""
    return {_fold(domain.folder), *(_fold(a) for a in domain.aliases)}


def _find_domain(extracted: Path, domain: Domain, archive: Path, max_depth: int = 4) -> Path | None:
    """The shallowest folder in the unpacked tree named like ``domain``; two at one depth is an error."""
    level = [extracted]
    wanted = _spellings(domain)
    for _ in range(max_depth):
        children = [c for folder in level for c in _visible_dirs(folder)]
        matches = [c for c in children if _fold(c.name) in wanted]
        if len(matches) == 1:
            return matches[0]
        if matches:
            shown = ", ".join(str(m.relative_to(extracted)) for m in matches)
            raise DownloadError(f"{archive}: domain '{domain.folder}' is ambiguous in the archive ({shown})")
        level = children
    return None


def _arrange(spec: DatasetSpec, extracted: Path, staged: Path, archive: Path) -> None:
    """Move each domain's class folders to ``staged/<domain>`` (``/images`` for Office-31), whatever the layout."""
    found = {d.folder: _find_domain(extracted, d, archive) for d in spec.domains}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        top = ", ".join(p.name for p in _visible_dirs(extracted)) or "nothing"
        raise DownloadError(f"{archive}: no folder for domain(s) {', '.join(missing)} of {spec.title} in the archive "
                            f"(top level: {top}); is this the right archive?")
    for domain in spec.domains:
        folder = found[domain.folder]
        assert folder is not None
        class_dir = resolve_domain_dir(folder.parent, folder.name)
        target = staged / domain.folder / "images" if spec.images_subdir else staged / domain.folder
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(class_dir, target)


# ----------------------------------------------------------------------------------------------
# The dataset in ROOT: present, partial or absent
# ----------------------------------------------------------------------------------------------


def _marker(work: Path, spec: DatasetSpec) -> Path:
    """The file written once ``spec``'s domains are in place."""
    return work / f"{spec.key}.json"


def _journal(work: Path, spec: DatasetSpec) -> Path:
    """The file that lists domain folders being moved into place, so an interrupted move can be undone."""
    return work / f"{spec.key}.moving.json"


def _existing(spec: DatasetSpec, root: Path) -> dict[str, list[Path]]:
    """Folders under ``root`` that stand for each domain (any spelling), by canonical domain name."""
    dirs = _visible_dirs(root)
    return {d.folder: [p for p in dirs if _fold(p.name) in _spellings(d)] for d in spec.domains}


def _counts(spec: DatasetSpec, root: Path) -> dict[str, tuple[int, int]]:
    """``(images, classes)`` of every domain, read with datasets.py's loader (which is the layout check)."""
    out = {}
    for domain in spec.domains:
        loaded = load_domain(root, domain.folder)
        out[domain.folder] = (len(loaded), len(loaded.classes))
    return out


def _complete(spec: DatasetSpec, counts: dict[str, tuple[int, int]], work: Path) -> tuple[bool, str]:
    """Whether every domain is whole: as recorded at the last download, else by its number of classes."""
    marker = _marker(work, spec)
    if marker.is_file():
        recorded = json.loads(marker.read_text(encoding="utf-8")).get("domains", {})
        for folder, (images, classes) in counts.items():
            want = recorded.get(folder, {})
            if (images, classes) != (want.get("images"), want.get("classes")):
                return False, (f"'{folder}' has {images} images in {classes} classes, the download left "
                               f"{want.get('images')} in {want.get('classes')}")
        return True, ""
    for folder, (images, classes) in counts.items():
        if classes != spec.n_classes:
            return False, f"'{folder}' has {classes} classes, {spec.title} has {spec.n_classes}"
    return True, ""


def _recover(spec: DatasetSpec, root: Path, work: Path) -> None:
    """Undo what an interrupted earlier run left: half-moved domain folders and temporary unpack folders."""
    journal = _journal(work, spec)
    if journal.is_file():
        moved = json.loads(journal.read_text(encoding="utf-8")).get("domains", [])
        for folder in moved:
            path = root / folder
            if path.is_dir():
                shutil.rmtree(path)
        journal.unlink()
        say(f"{root}: removed the domain folders of an interrupted unpack")
    for stale in root.glob(f"{_UNPACK_PREFIX}{spec.key}-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _summary(spec: DatasetSpec, counts: dict[str, tuple[int, int]]) -> None:
    """One line per domain: images and classes, and how that compares with the published dataset."""
    for domain in spec.domains:
        images, classes = counts[domain.folder]
        notes = []
        if domain.images is not None and images != domain.images:
            notes.append(f"{domain.images} images")
        if classes != spec.n_classes:
            notes.append(f"{spec.n_classes} classes")
        note = f"  (published: {', '.join(notes)})" if notes else ""
        say(f"  {domain.folder:<10} {images:>6} images  {classes:>3} classes{note}")


def _install(spec: DatasetSpec, archive: Path, root: Path, work: Path, progress: bool) -> None:
    """Unpack ``archive`` into a temporary folder under ``root`` and move the domains into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{_UNPACK_PREFIX}{spec.key}-", dir=root))
    try:
        extracted, staged = tmp / "extracted", tmp / "staged"
        extracted.mkdir()
        staged.mkdir()
        n = safe_extract(archive, extracted, progress)
        say(f"unpacked {n} files from {archive.name}")
        _arrange(spec, extracted, staged, archive)
        journal = _journal(work, spec)
        write_json(journal, {"domains": [d.folder for d in spec.domains]})
        for domain in spec.domains:
            os.rename(staged / domain.folder, root / domain.folder)
        journal.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download_dataset(name: str, root: str | Path, *, url: str | None = None, sha256: str | None = None,
                     progress: bool = True, keep_archive: bool = True) -> Path:
    """Download, verify and unpack dataset ``name`` so that its domains sit directly under ``root``; return ``root``."""
    spec = get_spec(name)
    if sha256 is not None and not _HEX64.fullmatch(sha256):
        raise ConfigError(f"--sha256 '{sha256}' is not a SHA-256 digest (64 hexadecimal digits)")
    root = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: --to must be a folder, this is a file")
    root.mkdir(parents=True, exist_ok=True)
    work = root / DOWNLOAD_DIR
    work.mkdir(exist_ok=True)
    _recover(spec, root, work)

    existing = _existing(spec, root)
    present = [folder for folder, paths in existing.items() if paths]
    if present:
        absent = [folder for folder, paths in existing.items() if not paths]
        if absent:
            raise DownloadError(f"{root}: {spec.title} is only partly there ({', '.join(present)} exist, "
                                f"{', '.join(absent)} do not); move those folders away or pick another --to")
        counts = _counts(spec, root)
        complete, why = _complete(spec, counts, work)
        if not complete:
            raise DownloadError(f"{root}: the {spec.title} folders exist but look incomplete ({why}); move them "
                                f"away or pick another --to")
        say(f"{spec.title}: already present in {root}")
        _summary(spec, counts)
        return root

    try:
        archive, digest = fetch_archive(spec, work, url=url, sha256=sha256, progress=progress)
    except DownloadError as exc:
        if url is not None or not spec.homepage:
            raise
        # The registry's link failed: say where else the dataset can be found.
        raise DownloadError(f"{exc}; other copies: {spec.homepage}") from None
    _install(spec, archive, root, work, progress)
    counts = _counts(spec, root)
    write_json(_marker(work, spec), {
        "dataset": spec.key, "archive": archive.name, "url": url or spec.archive.url, "sha256": digest,
        "domains": {folder: {"images": images, "classes": classes} for folder, (images, classes) in counts.items()},
    })
    say(f"{spec.title} is in {root}:")
    _summary(spec, counts)
    odd = [folder for folder, (_, classes) in counts.items() if classes != spec.n_classes]
    if odd:
        warn(f"{root}: {', '.join(odd)} do not have the {spec.n_classes} classes of {spec.title}; is this the right "
              f"archive?")
    if not keep_archive:
        archive.unlink()
        archive.with_name(archive.name + ".source").unlink(missing_ok=True)
    return root

