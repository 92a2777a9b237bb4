"""Resumable transfers of one archive into a ``.part`` file: HTTP(S) with ``Range`` requests after a
dropped connection (Google Drive's confirmation page followed), ``file://`` URLs and plain paths by
seeking to the same offset. Every failure is a one-line :class:`DownloadError` naming the URL."""

from __future__ import annotations

import logging
import http.client
import re
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from dahash.errors import DownloadError, one_line

log = logging.getLogger(__name__)

# Generous: Drive and Seafile can take tens of seconds to start streaming a multi-GB file.
TIMEOUT_S = 60.0
# Automatic Range resumes within one run, only after an attempt that made progress (a dead host fails at once).
MAX_RESUMES = 5
CHUNK = 1 << 20
_MAX_PAGE_BYTES = 2 << 20
_MAX_CONFIRM_HOPS = 3
_USER_AGENT = "dahash-download/0.1 (Python urllib)"


def say(message: str) -> None:
    """Progress and summary lines: the ``dahash`` logger at INFO (the CLI shows them on stderr)."""
    log.info(message)


def warn(message: str) -> None:
    """Warnings: one line at WARNING, starting "warning:" as the CLI shows it."""
    log.warning(f"warning: {one_line(message)}")


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
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=not enabled, dynamic_ncols=True)


def _copy_stream(src: IO[bytes], out: IO[bytes], bar: Any) -> int:
    """Copy ``src`` to ``out`` in chunks; a read error becomes :class:`_Interrupted` with the progress made."""
    written = 0
    while True:
        try:
            chunk = src.read(CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            raise _Interrupted(written > 0, one_line(exc) or type(exc).__name__) from None
        if not chunk:
            return written
        out.write(chunk)
        written += len(chunk)
        bar.update(len(chunk))


def local_path(url: str) -> Path | None:
    """The file a ``file://`` URL or plain path names, or ``None`` for a network URL."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    # A bare path (or a Windows drive letter, which urlsplit reads as a one-letter scheme).
    if parsed.scheme == "" or len(parsed.scheme) == 1:
        return Path(url).expanduser()
    return None


def copy_local(src_path: Path, url: str, part: Path, progress: bool, desc: str) -> None:
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
    return f"{url}: HTTP {exc.code} {one_line(exc.reason)}{hint}"


def _unreachable_message(url: str, reason: object) -> str:
    """One line for a connection that never got an HTTP answer (DNS, refused, timeout, TLS)."""
    host = urllib.parse.urlsplit(url).hostname or url
    return (f"{url}: cannot reach {host} ({one_line(reason) or type(reason).__name__}); "
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
                say(f"{url}: the server does not resume downloads; starting over")
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


def http_download(url: str, part: Path, expected_size: int | None, progress: bool, desc: str) -> None:
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
            say(f"{part}: partial file does not fit the server's file ({size} bytes vs {exc.total}); starting over")
            part.unlink()
        except _Interrupted as exc:
            size = part.stat().st_size if part.exists() else 0
            if exc.progressed and resumes < MAX_RESUMES:
                resumes += 1
                say(f"{url}: connection lost at {size} bytes ({exc.reason}); resuming")
                continue
            raise DownloadError(f"{url}: download interrupted at {size} bytes ({exc.reason}); rerun the same "
                                f"command to resume from {part}") from None
