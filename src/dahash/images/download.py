"""Download Office-Home, Office-31 and Office-Caltech-10, verify them, and unpack them into datasets.py layouts.

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
import http.client
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path
from typing import IO, Any

from dahash.errors import ConfigError, DahashError
from dahash.images.datasets import load_domain, resolve_domain_dir
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


class DownloadError(DahashError):
    """A download, checksum or unpack step failed; the message names the URL or file at fault."""


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
# Generous: Drive and Seafile can take tens of seconds to start streaming a multi-GB file.
TIMEOUT_S = 60.0
# Automatic Range resumes within one run, only after an attempt that made progress (a dead host fails at once).
MAX_RESUMES = 5
_CHUNK = 1 << 20
_MAX_PAGE_BYTES = 2 << 20
_MAX_CONFIRM_HOPS = 3
_USER_AGENT = "dahash-download/0.1 (Python urllib)"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_ALGO_NAMES = {"sha256": "SHA-256", "md5": "MD5"}
# Archive junk that must not become a class folder or an image.
_JUNK_PARTS = frozenset({"__macosx", "@eadir"})
_JUNK_FILES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def _one_line(text: object) -> str:
    """``text`` with all whitespace runs collapsed, so that a message stays on one line."""
    return " ".join(str(text).split())


def _fold(name: str) -> str:
    """Fold case and drop spaces, ``_`` and ``-``, the way datasets.py compares domain names."""
    return re.sub(r"[\s_\-]+", "", name).casefold()


def _say(message: str) -> None:
    """Progress and summary lines go to stdout."""
    print(message, flush=True)


def _warn(message: str) -> None:
    """Warnings go to stderr, prefixed like the CLI's errors."""
    print(f"dahash: warning: {_one_line(message)}", file=sys.stderr, flush=True)


def get_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name`` (``office-home``, ``office31``, ``office-caltech`` or a spelling of one)."""
    wanted = _fold(name)
    for spec in DATASETS.values():
        if wanted in {_fold(spec.key), *(_fold(n) for n in spec.names)}:
            return spec
    raise ConfigError(f"unknown dataset '{name}'; choose one of {', '.join(DATASET_NAMES)}")


# ----------------------------------------------------------------------------------------------
# Downloading
# ----------------------------------------------------------------------------------------------


class _Interrupted(Exception):
    """The transfer stopped early; ``progressed`` says whether this attempt wrote anything."""

    def __init__(self, progressed: bool, reason: str) -> None:
        """Keep what the retry loop needs to decide whether another attempt is worth it."""
        super().__init__(reason)
        self.progressed = progressed
        self.reason = reason


class _RangeNotSatisfiable(Exception):
    """HTTP 416 on a resume: the ``.part`` file is as long as, or longer than, the file."""

    def __init__(self, total: int | None) -> None:
        """``total`` is the size the server reported in ``Content-Range: bytes */N``, if any."""
        super().__init__(total)
        self.total = total


def _bar(total: int | None, initial: int, desc: str, enabled: bool) -> Any:
    """A byte progress bar (size, rate, ETA) that starts at ``initial`` so a resume shows the true position."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=not enabled, dynamic_ncols=True)


def _copy_stream(src: IO[bytes], out: IO[bytes], bar: Any) -> int:
    """Copy ``src`` to ``out`` in chunks; a read error becomes :class:`_Interrupted` with the progress made."""
    written = 0
    while True:
        try:
            chunk = src.read(_CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            raise _Interrupted(written > 0, _one_line(exc) or type(exc).__name__) from None
        if not chunk:
            return written
        out.write(chunk)
        written += len(chunk)
        bar.update(len(chunk))


def _local_path(url: str) -> Path | None:
    """The file a ``file://`` URL or plain path names, or ``None`` for a network URL."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    # A bare path (or a Windows drive letter, which urlsplit reads as a one-letter scheme).
    if parsed.scheme == "" or len(parsed.scheme) == 1:
        return Path(url).expanduser()
    return None


def _copy_local(src_path: Path, url: str, part: Path, progress: bool, desc: str) -> None:
    """Copy a local archive into ``part``, continuing from its current length (resume by offset)."""
    if not src_path.is_file():
        what = "not a file" if src_path.exists() else "no such file"
        raise DownloadError(f"{src_path}: {what} (from --url {url})")
    total = src_path.stat().st_size
    offset = part.stat().st_size if part.exists() else 0
    if offset > total:
        offset = 0
    with open(src_path, "rb") as src, open(part, "ab" if offset else "wb") as out, \
            _bar(total, offset, desc, progress) as bar:
        src.seek(offset)
        try:
            _copy_stream(src, out, bar)
        except _Interrupted as exc:
            raise DownloadError(f"{src_path}: read failed after {part.stat().st_size} bytes ({exc.reason}); "
                                f"rerun to resume") from None


def _http_error_message(url: str, exc: urllib.error.HTTPError) -> str:
    """One line for an HTTP error status, with what the user can do about it."""
    hint = ""
    if exc.code in (404, 410):
        hint = "; the file is no longer there, download it elsewhere and pass --url with a local copy"
    elif exc.code in (401, 403, 429):
        hint = "; access refused or rate-limited, try later or pass --url with a local copy"
    elif exc.code >= 500:
        hint = "; server error, try again later"
    return f"{url}: HTTP {exc.code} {_one_line(exc.reason)}{hint}"


def _unreachable_message(url: str, reason: object) -> str:
    """One line for a connection that never got an HTTP answer (DNS, refused, timeout, TLS)."""
    host = urllib.parse.urlsplit(url).hostname or url
    return (f"{url}: cannot reach {host} ({_one_line(reason) or type(reason).__name__}); "
            f"no network? use --url with a local copy (file:///path/to/archive)")


class _ConfirmPageParser(HTMLParser):
    """Collect the forms (action and fields) and links of a Google Drive warning page."""

    def __init__(self) -> None:
        """Start with no forms and no links."""
        super().__init__(convert_charrefs=True)
        self.forms: list[tuple[str, str, dict[str, str]]] = []
        self.links: list[str] = []
        self._form: tuple[str, str, dict[str, str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Record form starts, their named inputs, and hrefs."""
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._form = (a.get("id", ""), a.get("action", ""), {})
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and a.get("name"):
            self._form[2][a["name"]] = a.get("value", "")
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])

    def handle_endtag(self, tag: str) -> None:
        """Inputs after ``</form>`` belong to no form."""
        if tag == "form":
            self._form = None


def _with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to (or replacing keys in) its query string."""
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _confirm_url(page: str, base_url: str, jar: CookieJar, request_url: str) -> str | None:
    """The URL that confirms a Google Drive "can't scan this file" page, or ``None`` if the page has none."""
    parser = _ConfirmPageParser()
    parser.feed(page)
    # Current Drive: a GET form (id, export, confirm, uuid...) posted to drive.usercontent.google.com.
    for form_id, action, fields in parser.forms:
        if "confirm" in fields or form_id == "download-form":
            target = urllib.parse.urljoin(base_url, action or base_url)
            return _with_query(target, **fields)
    # Older Drive: a "Download anyway" link carrying the token.
    for href in parser.links:
        if "confirm=" in href:
            return urllib.parse.urljoin(base_url, href)
    # Oldest Drive: the token only in a download_warning_* cookie.
    for cookie in jar:
        if cookie.name.startswith("download_warning") and cookie.value:
            return _with_query(request_url, confirm=cookie.value)
    return None


def _html_message(url: str, page: str) -> str:
    """Why a web page came back where an archive was expected, as one line."""
    text = page.casefold()
    if "too many users have viewed or downloaded" in text or ("quota" in text and "exceeded" in text):
        return (f"{url}: Google Drive's download quota for this file is used up; try again in a day, or "
                f"download it in a browser and pass --url file:///path/to/archive")
    if "accounts.google.com" in text and ("sign in" in text or "servicelogin" in text):
        return f"{url}: the file is not public (a sign-in page came back); pass --url with a local copy"
    return (f"{url}: got a web page instead of the archive, with no download link in it; open the URL in a "
            f"browser, download the file and pass --url file:///path/to/archive")


def _open(opener: urllib.request.OpenerDirector, jar: CookieJar, url: str, offset: int) -> Any:
    """Open ``url`` from byte ``offset``, following Google Drive confirmation pages; return the response."""
    current = url
    for _ in range(_MAX_CONFIRM_HOPS + 1):
        headers = {"User-Agent": _USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = opener.open(urllib.request.Request(current, headers=headers), timeout=TIMEOUT_S)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                match = re.search(r"/(\d+)\s*$", exc.headers.get("Content-Range", "") or "")
                exc.close()
                raise _RangeNotSatisfiable(int(match.group(1)) if match else None) from None
            raise DownloadError(_http_error_message(current, exc)) from None
        except urllib.error.URLError as exc:
            raise DownloadError(_unreachable_message(current, exc.reason)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(_unreachable_message(current, exc)) from None
        if response.headers.get_content_type() != "text/html":
            return response
        with response:
            try:
                page = response.read(_MAX_PAGE_BYTES).decode("utf-8", "replace")
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError(_unreachable_message(current, exc)) from None
            base = response.geturl()
        lowered = page.casefold()
        if "too many users have viewed or downloaded" in lowered:
            raise DownloadError(_html_message(current, page))
        following = _confirm_url(page, base, jar, current)
        if following is None or following == current:
            raise DownloadError(_html_message(current, page))
        current = following
    raise DownloadError(f"{url}: still a web page after {_MAX_CONFIRM_HOPS} download confirmations; download it "
                        f"in a browser and pass --url file:///path/to/archive")


def _http_attempt(opener: urllib.request.OpenerDirector, jar: CookieJar, url: str, part: Path,
                  expected_size: int | None, progress: bool, desc: str) -> None:
    """One request: append to ``part`` from its length on a 206, start over on a 200; raise when cut short."""
    offset = part.stat().st_size if part.exists() else 0
    response = _open(opener, jar, url, offset)
    with response:
        total: int | None = None
        if offset and response.status == 206:
            match = re.match(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", "") or "")
            if match and int(match.group(1)) != offset:
                raise DownloadError(f"{url}: asked to resume at byte {offset} but the server sent bytes from "
                                    f"{match.group(1)}; delete {part} and rerun")
            if match and match.group(2) != "*":
                total = int(match.group(2))
            mode = "ab"
        else:
            if offset:
                _say(f"{url}: the server does not resume downloads; starting over")
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        if total is None and length and length.isdigit():
            total = offset + int(length)
        if total is None:
            total = expected_size
        with open(part, mode) as out, _bar(total, offset, desc, progress) as bar:
            written = _copy_stream(response, out, bar)
    if total is not None and offset + written < total:
        raise _Interrupted(written > 0, f"got {offset + written} of {total} bytes")


def _http_download(url: str, part: Path, expected_size: int | None, progress: bool, desc: str) -> None:
    """Download ``url`` into ``part``, resuming with Range requests after a dropped connection."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    resumes = 0
    while True:
        try:
            _http_attempt(opener, jar, url, part, expected_size, progress, desc)
            return
        except _RangeNotSatisfiable as exc:
            size = part.stat().st_size
            if exc.total == size:
                return
            # Longer than the file, or the server will not say: the partial file cannot be trusted. The next
            # attempt starts at 0 and sends no Range, so this cannot loop.
            _say(f"{part}: partial file does not fit the server's file ({size} bytes vs {exc.total}); starting over")
            part.unlink()
        except _Interrupted as exc:
            size = part.stat().st_size if part.exists() else 0
            if exc.progressed and resumes < MAX_RESUMES:
                resumes += 1
                _say(f"{url}: connection lost at {size} bytes ({exc.reason}); resuming")
                continue
            raise DownloadError(f"{url}: download interrupted at {size} bytes ({exc.reason}); rerun the same "
                                f"command to resume from {part}") from None


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
        for block in iter(lambda: f.read(_CHUNK), b""):
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
        _say(f"{shown.name}: matches the published {_ALGO_NAMES[published[0]]} of the official archive")
        return got["sha256"]
    why = ("it is not byte-identical to the official archive, whose checksum is published"
           if archive.sha256 or archive.md5 else "no checksum is published for it")
    _warn(f"{shown.name}: could not verify the download ({why}); its SHA-256 is {got['sha256']}; "
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
            _say(f"{final}: already downloaded")
            return final, _verify(final, final, source, archive, sha256, url is not None)
        _say(f"{final}: came from {recorded}, not {source}; downloading again")
        final.unlink()
    if part.exists() and recorded != source:
        # Never splice bytes from two URLs into one file.
        part.unlink()
    work.mkdir(parents=True, exist_ok=True)
    origin.write_text(source + "\n", encoding="utf-8")
    _say(f"downloading {spec.title} from {source}")
    if part.exists():
        _say(f"{final.name}: resuming at {part.stat().st_size} bytes")
    local = _local_path(source)
    if local is not None:
        _copy_local(local, source, part, progress, final.name)
    elif urllib.parse.urlsplit(source).scheme in ("http", "https"):
        _http_download(source, part, archive.size if url is None else None, progress, final.name)
    else:
        raise ConfigError(f"{source}: unsupported URL scheme (use http://, https:// or file://)")
    digest = _verify(part, final, source, archive, sha256, url is not None)
    os.replace(part, final)
    return final, digest


# ----------------------------------------------------------------------------------------------
# Unpacking
# ----------------------------------------------------------------------------------------------


def _member_parts(name: str, archive: Path) -> list[str] | None:
    """A member's path components, ``None`` for archiver junk; absolute paths and ``..`` are refused."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"[A-Za-z]:", posix):
        raise DownloadError(f"{archive}: refusing to unpack member '{_one_line(name)}' (absolute path)")
    parts = [p for p in posix.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DownloadError(f"{archive}: refusing to unpack member '{_one_line(name)}' ('..' in its path)")
    if not parts or any(p.casefold() in _JUNK_PARTS for p in parts):
        return None
    if parts[-1].startswith("._") or parts[-1].casefold() in _JUNK_FILES:
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
        shutil.copyfileobj(src, out, _CHUNK)


def _members_bar(total: int | None, desc: str, enabled: bool) -> Any:
    """A per-file progress bar for unpacking."""
    from tqdm import tqdm

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
        raise DownloadError(f"{archive}: cannot unpack ({_one_line(exc)}); delete it and rerun") from None
    with open(archive, "rb") as f:
        head = f.read(16)
    raise DownloadError(f"{archive}: not a zip or tar archive (starts with {head!r}); delete it and rerun")


def _visible_dirs(folder: Path) -> list[Path]:
    """Subfolders that are data, not hidden or archiver junk, sorted by name."""
    return sorted((p for p in folder.iterdir()
                   if p.is_dir() and not p.name.startswith(".") and p.name.casefold() not in _JUNK_PARTS),
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
        _say(f"{root}: removed the domain folders of an interrupted unpack")
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
        _say(f"  {domain.folder:<10} {images:>6} images  {classes:>3} classes{note}")


def _install(spec: DatasetSpec, archive: Path, root: Path, work: Path, progress: bool) -> None:
    """Unpack ``archive`` into a temporary folder under ``root`` and move the domains into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{_UNPACK_PREFIX}{spec.key}-", dir=root))
    try:
        extracted, staged = tmp / "extracted", tmp / "staged"
        extracted.mkdir()
        staged.mkdir()
        n = safe_extract(archive, extracted, progress)
        _say(f"unpacked {n} files from {archive.name}")
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
        _say(f"{spec.title}: already present in {root}")
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
    _say(f"{spec.title} is in {root}:")
    _summary(spec, counts)
    odd = [folder for folder, (_, classes) in counts.items() if classes != spec.n_classes]
    if odd:
        _warn(f"{root}: {', '.join(odd)} do not have the {spec.n_classes} classes of {spec.title}; is this the right "
              f"archive?")
    if not keep_archive:
        archive.unlink()
        archive.with_name(archive.name + ".source").unlink(missing_ok=True)
    return root

