"""Unpacking a downloaded zip or tar archive safely: members with absolute paths, ``..`` or links
are refused, and archiver junk (``__MACOSX``, ``.DS_Store``...) is left out."""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from dahash.errors import DownloadError, one_line

# Archive junk that must not become a class folder or an image.
JUNK_PARTS = frozenset({"__macosx", "@eadir"})
JUNK_FILES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
_COPY_CHUNK = 1 << 20


def _member_parts(name: str, archive: Path) -> list[str] | None:
    """A member's path components, ``None`` for archiver junk; absolute paths and ``..`` are refused."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"[A-Za-z]:", posix):
        raise DownloadError(f"{archive}: refusing to unpack member '{one_line(name)}' (absolute path)")
    parts = [p for p in posix.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DownloadError(f"{archive}: refusing to unpack member '{one_line(name)}' ('..' in its path)")
    if not parts or any(p.casefold() in JUNK_PARTS for p in parts):
        return None
    if parts[-1].startswith("._") or parts[-1].casefold() in JUNK_FILES:
        return None
    return parts


def _target(dest: Path, parts: list[str]) -> Path:
    """Where a member goes under ``dest``, double-checked to stay inside it."""
    path = dest.joinpath(*parts)
    if os.path.commonpath([os.path.realpath(path.parent), os.path.realpath(dest)]) != os.path.realpath(dest):
        raise DownloadError(f"{dest}: refusing to write outside the unpack folder: {'/'.join(parts)}")
    return path


def _write_member(src: IO[bytes], path: Path) -> None:
    """Write one member's bytes, creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        shutil.copyfileobj(src, out, _COPY_CHUNK)


def _members_bar(total: int | None, desc: str, enabled: bool) -> Any:
    """A per-file progress bar for unpacking."""
    return tqdm(total=total, unit="file", desc=desc, disable=not enabled, dynamic_ncols=True)


def _unzip(archive: Path, dest: Path, progress: bool) -> int:
    """Extract a zip member by member after checking each path; return the number of files written."""
    written = 0
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        with _members_bar(len(infos), f"unpacking {archive.name}", progress) as bar:
            for info in infos:
                bar.update(1)
                parts = _member_parts(info.filename, archive)
                if parts is None:
                    continue
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise DownloadError(f"{archive}: refusing to unpack member '{info.filename}' (symbolic link)")
                path = _target(dest, parts)
                if info.is_dir():
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                with zf.open(info) as src:
                    _write_member(src, path)
                written += 1
    return written


def _untar(archive: Path, dest: Path, progress: bool) -> int:
    """Extract a (compressed) tar member by member after checking each path; return the number of files written."""
    written = 0
    with tarfile.open(archive, "r:*") as tar, _members_bar(None, f"unpacking {archive.name}", progress) as bar:
        for member in tar:
            bar.update(1)
            parts = _member_parts(member.name, archive)
            if parts is None:
                continue
            if member.issym() or member.islnk():
                raise DownloadError(f"{archive}: refusing to unpack member '{member.name}' (link to "
                                    f"'{member.linkname}')")
            if not (member.isdir() or member.isreg()):
                raise DownloadError(f"{archive}: refusing to unpack member '{member.name}' (device or fifo)")
            path = _target(dest, parts)
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            src = tar.extractfile(member)
            if src is None:
                continue
            with src:
                _write_member(src, path)
            written += 1
    return written


def safe_extract(archive: Path, dest: Path, progress: bool = False) -> int:
    """Unpack a zip or tar(.gz/.bz2/.xz) archive into ``dest``, refusing unsafe members; return files written."""
    try:
        if zipfile.is_zipfile(archive):
            return _unzip(archive, dest, progress)
        if tarfile.is_tarfile(archive):
            return _untar(archive, dest, progress)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise DownloadError(f"{archive}: cannot unpack ({one_line(exc)}); delete it and rerun") from None
    with open(archive, "rb") as f:
        head = f.read(16)
    raise DownloadError(f"{archive}: not a zip or tar archive (starts with {head!r}); delete it and rerun")
