"""Tests for ``dahash download``: file:// and local-HTTP downloads, resume, checksums, safe unpacking, layouts, CLI."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

import dahash.images.download as dl
import dahash.images.transfer as transfer
from dahash.cli import main
from dahash.images.download import DOWNLOAD_DIR, DownloadError, download_dataset, safe_extract
from dahash.images.datasets import load_domain

CLASSES = ("Backpack", "Mug")
IMAGES_PER_CLASS = 2


def _jpeg() -> bytes:
    """A tiny valid JPEG."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


JPEG = _jpeg()

# Archive member layouts as the real archives lay them out (top-level folder included).
LAYOUTS: dict[str, tuple[str, tuple[str, ...], str]] = {
    # dataset: (top folder, domain folders in the archive, path between domain and class)
    "office-home": ("OfficeHomeDataset_10072016", ("Art", "Clipart", "Product", "Real World"), ""),
    "office31": ("domain_adaptation_images", ("amazon", "dslr", "webcam"), "images/"),
    "office-caltech": ("office_caltech_10", ("amazon", "caltech", "dslr", "webcam"), ""),
}
# Where datasets.py expects each domain after the download.
EXPECTED = {
    "office-home": ("Art", "Clipart", "Product", "Real World"),
    "office31": ("amazon/images", "dslr/images", "webcam/images"),
    "office-caltech": ("amazon", "caltech10", "dslr", "webcam"),
}


def _members(dataset: str) -> dict[str, bytes]:
    """Member name -> bytes of a fake archive of ``dataset``, with junk an archiver would add."""
    top, domains, middle = LAYOUTS[dataset]
    members = {f"{top}/{domain}/{middle}{cls}/{i:04d}.jpg": JPEG
               for domain in domains for cls in CLASSES for i in range(IMAGES_PER_CLASS)}
    members[f"{top}/ImageInfo.csv"] = b"image,label\n"
    members[f"__MACOSX/{top}/._ImageInfo.csv"] = b"junk"
    return members


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _targz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _archive(tmp_path: Path, dataset: str) -> Path:
    """Office-Home as a zip (like the real one), the others as tar.gz."""
    if dataset == "office-home":
        return _zip(tmp_path / "src" / "OfficeHomeDataset_10072016.zip", _members(dataset))
    return _targz(tmp_path / "src" / f"{dataset}.tar.gz", _members(dataset))


@pytest.fixture(autouse=True)
def _src(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_layout(root: Path, dataset: str) -> None:
    """Every domain is where datasets.py looks, with the archive's classes and images."""
    for rel in EXPECTED[dataset]:
        for cls in CLASSES:
            assert len(list((root / rel / cls).glob("*.jpg"))) == IMAGES_PER_CLASS, root / rel / cls
        domain = load_domain(root, rel.split("/")[0])
        assert domain.classes == sorted(CLASSES)
        assert len(domain) == len(CLASSES) * IMAGES_PER_CLASS
    visible = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    assert visible == sorted(rel.split("/")[0] for rel in EXPECTED[dataset])
    assert not list(root.glob(".dahash-unpack-*"))


# ---------------------------------------------------------------------------------------------
# A local HTTP server that honours Range, records requests, and can play Google Drive
# ---------------------------------------------------------------------------------------------


@dataclass
class FakeServer:
    """Files served on 127.0.0.1, with knobs for the failure modes a download must survive."""

    files: dict[str, bytes] = field(default_factory=dict)
    pages: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    honour_range: bool = True
    drop_after: int | None = None  # the next file response stops after this many bytes
    requests: list[tuple[str, str | None, int]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                key = self.path
                range_header = self.headers.get("Range")
                if key in server.pages:
                    html, cookies = server.pages[key]
                    body = html.encode()
                    server.requests.append((key, range_header, 0))
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    for name, value in cookies.items():
                        self.send_header("Set-Cookie", f"{name}={value}; Path=/")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if key not in server.files:
                    server.requests.append((key, range_header, 0))
                    self.send_error(404, "Not Found")
                    return
                data = server.files[key]
                start = 0
                if range_header and server.honour_range:
                    start = int(range_header.split("=")[1].split("-")[0])
                    if start >= len(data):
                        server.requests.append((key, range_header, 0))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.drop_after is not None:
                    body, server.drop_after = body[:server.drop_after], None
                server.requests.append((key, range_header, len(body)))
                self.wfile.write(body)
                self.wfile.flush()

        return Handler


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    fake.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["office-home", "office31", "office-caltech"])
def test_file_url_download_unpacks_into_the_datasets_layout(tmp_path: Path, dataset: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="dahash")
    archive = _archive(tmp_path, dataset)
    root = tmp_path / "data"
    assert download_dataset(dataset, root, url=archive.as_uri(), progress=False) == root
    _assert_layout(root, dataset)
    # Summary lines at INFO, the unverified checksum at WARNING, on the dahash logger.
    out = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "INFO")
    err = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    # No published checksum applies to a --url copy: the computed SHA-256 is shown so it can be pinned.
    assert _sha256(archive) in err and "could not verify" in err
    assert (root / DOWNLOAD_DIR / archive.name).read_bytes() == archive.read_bytes()
    assert not list((root / DOWNLOAD_DIR).glob("*.part"))
    first_domain = EXPECTED[dataset][0].split("/")[0]
    assert f"  {first_domain:<10} {len(CLASSES) * IMAGES_PER_CLASS:>6} images    2 classes" in out


@pytest.mark.parametrize("dataset, members", [
    # Transfer-Learning-Library style: no top-level folder, Real_World with an underscore.
    ("office-home", {f"{d}/{c}/{i}.jpg": JPEG for d in ("Art", "Clipart", "Product", "Real_World")
                     for c in CLASSES for i in range(IMAGES_PER_CLASS)}),
    # Office-Caltech with Office-31's images/ level and a nested top folder.
    ("office-caltech", {f"a/b/{d}/images/{c}/{i}.jpg": JPEG for d in ("amazon", "Caltech", "dslr", "webcam")
                        for c in CLASSES for i in range(IMAGES_PER_CLASS)}),
    # Office-31 without the images/ level.
    ("office31", {f"{d}/{c}/{i}.jpg": JPEG for d in ("amazon", "dslr", "webcam")
                  for c in CLASSES for i in range(IMAGES_PER_CLASS)}),
])
def test_other_archive_layouts_are_normalised(tmp_path: Path, dataset: str, members: dict[str, bytes]) -> None:
    archive = _targz(tmp_path / "src" / "other.tar.gz", members)
    download_dataset(dataset, tmp_path / "data", url=archive.as_uri(), progress=False)
    _assert_layout(tmp_path / "data", dataset)


def test_pinned_sha256_passes_and_a_plain_path_works(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    archive = _archive(tmp_path, "office31")
    download_dataset("office-31", tmp_path / "data", url=str(archive), sha256=_sha256(archive).upper(),
                     progress=False)
    _assert_layout(tmp_path / "data", "office31")
    assert "could not verify" not in caplog.text


def test_checksum_mismatch_keeps_the_file_aside(tmp_path: Path) -> None:
    archive = _archive(tmp_path, "office-caltech")
    root = tmp_path / "data"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        download_dataset("office-caltech", root, url=archive.as_uri(), sha256=wrong, progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(root / DOWNLOAD_DIR / archive.name))
    assert wrong in message and _sha256(archive) in message
    kept = list((root / DOWNLOAD_DIR).glob(f"{archive.name}.bad-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == archive.read_bytes() and str(kept[0]) in message
    assert not (root / DOWNLOAD_DIR / archive.name).exists()
    assert not [p for p in root.iterdir() if not p.name.startswith(".")]


def test_published_md5_is_checked_for_the_registry_url(tmp_path: Path, server: FakeServer,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # The registry's own URL (not --url) must match the published digest; serve a different file there.
    archive = _archive(tmp_path, "office31")
    server.files["/office31.tar.gz"] = archive.read_bytes()
    spec = dl.DATASETS["office31"]
    fake = dl.Archive(url=server.url("/office31.tar.gz"), filename=spec.archive.filename, md5=spec.archive.md5)
    monkeypatch.setitem(dl.DATASETS, "office31", dl.DatasetSpec(**{**spec.__dict__, "archive": fake}))
    with pytest.raises(DownloadError, match=r"MD5 mismatch: expected 1b536d114869a5a8aa4580b89e9758fb, got"):
        download_dataset("office31", tmp_path / "data", progress=False)


def test_file_url_resume_continues_at_the_partial_files_length(tmp_path: Path) -> None:
    # A .part whose first bytes differ from the source proves the copy seeked instead of restarting.
    archive = _archive(tmp_path, "office31")
    data = archive.read_bytes()
    root = tmp_path / "data"
    work = root / DOWNLOAD_DIR
    work.mkdir(parents=True)
    (work / f"{archive.name}.source").write_text(archive.as_uri())
    (work / f"{archive.name}.part").write_bytes(b"X" * 100)
    spliced = b"X" * 100 + data[100:]
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        download_dataset("office31", root, url=archive.as_uri(), sha256=_sha256(archive), progress=False)
    kept = list(work.glob(f"{archive.name}.bad-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == spliced


def test_http_resume_of_a_partial_file_requests_the_remaining_bytes(tmp_path: Path, server: FakeServer) -> None:
    archive = _archive(tmp_path, "office-home")
    data = archive.read_bytes()
    server.files["/oh.zip"] = data
    url = server.url("/oh.zip")
    root = tmp_path / "data"
    work = root / DOWNLOAD_DIR
    work.mkdir(parents=True)
    (work / "oh.zip.source").write_text(url)
    (work / "oh.zip.part").write_bytes(data[:1000])
    download_dataset("office-home", root, url=url, sha256=_sha256(archive), progress=False)
    assert server.requests == [("/oh.zip", "bytes=1000-", len(data) - 1000)]
    assert (work / "oh.zip").read_bytes() == data
    _assert_layout(root, "office-home")


def test_a_broken_connection_is_resumed_then_and_on_rerun(tmp_path: Path, server: FakeServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _archive(tmp_path, "office31")
    data = archive.read_bytes()
    server.files["/o31.tar.gz"] = data
    url = server.url("/o31.tar.gz")
    root = tmp_path / "data"
    # No automatic resume: the run fails, naming the URL and how to continue, and keeps the .part.
    monkeypatch.setattr(transfer, "MAX_RESUMES", 0)
    server.drop_after = 700
    with pytest.raises(DownloadError) as info:
        download_dataset("office31", root, url=url, progress=False)
    assert str(info.value).startswith(url) and "rerun the same command to resume" in str(info.value)
    assert (root / DOWNLOAD_DIR / "o31.tar.gz.part").stat().st_size == 700
    # The rerun asks only for the rest.
    download_dataset("office31", root, url=url, progress=False)
    assert server.requests[-1] == ("/o31.tar.gz", "bytes=700-", len(data) - 700)
    _assert_layout(root, "office31")
    # Within one run, a dropped connection is resumed automatically.
    monkeypatch.setattr(transfer, "MAX_RESUMES", 5)
    server.requests.clear()
    server.drop_after = 300
    download_dataset("office31", tmp_path / "data2", url=url, progress=False)
    assert [r[1] for r in server.requests] == [None, "bytes=300-"]
    _assert_layout(tmp_path / "data2", "office31")


def test_server_ignoring_range_restarts_from_zero(tmp_path: Path, server: FakeServer) -> None:
    archive = _archive(tmp_path, "office-caltech")
    data = archive.read_bytes()
    server.files["/oc.tgz"] = data
    server.honour_range = False
    url = server.url("/oc.tgz")
    root = tmp_path / "data"
    (root / DOWNLOAD_DIR).mkdir(parents=True)
    (root / DOWNLOAD_DIR / "oc.tgz.source").write_text(url)
    (root / DOWNLOAD_DIR / "oc.tgz.part").write_bytes(b"garbage")
    download_dataset("office-caltech", root, url=url, sha256=_sha256(archive), progress=False)
    assert server.requests == [("/oc.tgz", "bytes=7-", len(data))]
    _assert_layout(root, "office-caltech")


@pytest.mark.parametrize("extra, ranges", [(b"", ["bytes={n}-"]), (b"junk", ["bytes={n}-", None])])
def test_range_not_satisfiable_means_complete_or_start_over(tmp_path: Path, server: FakeServer, extra: bytes,
                                                            ranges: list[str | None]) -> None:
    # A .part as long as the file is complete (HTTP 416, nothing to fetch); a longer one is started over.
    archive = _archive(tmp_path, "office31")
    data = archive.read_bytes()
    server.files["/o31.tgz"] = data
    url = server.url("/o31.tgz")
    root = tmp_path / "data"
    (root / DOWNLOAD_DIR).mkdir(parents=True)
    (root / DOWNLOAD_DIR / "o31.tgz.source").write_text(url)
    (root / DOWNLOAD_DIR / "o31.tgz.part").write_bytes(data + extra)
    download_dataset("office31", root, url=url, sha256=_sha256(archive), progress=False)
    assert [r[1] for r in server.requests] == [r and r.format(n=len(data) + len(extra)) for r in ranges]
    _assert_layout(root, "office31")


def test_part_file_from_another_url_is_not_spliced(tmp_path: Path) -> None:
    archive = _archive(tmp_path, "office31")
    root = tmp_path / "data"
    work = root / DOWNLOAD_DIR
    work.mkdir(parents=True)
    (work / f"{archive.name}.source").write_text("https://elsewhere.example/other.tar.gz")
    (work / f"{archive.name}.part").write_bytes(b"X" * 100)
    download_dataset("office31", root, url=archive.as_uri(), sha256=_sha256(archive), progress=False)
    _assert_layout(root, "office31")


GDRIVE_FORM = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="/download" method="get">
<input type="submit" id="uc-download-link" value="Download anyway"/>
<input type="hidden" name="id" value="FAKEID"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="0f1e-uuid"></form>
</body></html>"""

GDRIVE_LINK = """<html><body><a id="uc-download-link" class="goog-inline-block jfk-button"
href="/uc?export=download&amp;confirm=Ab3_x&amp;id=FAKEID">Download anyway</a></body></html>"""

GDRIVE_COOKIE = "<html><body><p>Google Drive can't scan this file for viruses.</p></body></html>"


@pytest.mark.parametrize("style", ["form", "link", "cookie"])
def test_google_drive_confirmation_is_followed(tmp_path: Path, server: FakeServer, style: str) -> None:
    archive = _archive(tmp_path, "office-home")
    data = archive.read_bytes()
    start = "/uc?export=download&id=FAKEID"
    if style == "form":
        server.pages[start] = (GDRIVE_FORM, {})
        server.files["/download?id=FAKEID&export=download&confirm=t&uuid=0f1e-uuid"] = data
    elif style == "link":
        server.pages[start] = (GDRIVE_LINK, {})
        server.files["/uc?export=download&confirm=Ab3_x&id=FAKEID"] = data
    else:
        server.pages[start] = (GDRIVE_COOKIE, {"download_warning_13058876669334088843_FAKEID": "Tk9"})
        server.files["/uc?export=download&id=FAKEID&confirm=Tk9"] = data
    root = tmp_path / "data"
    download_dataset("office-home", root, url=server.url(start), sha256=_sha256(archive), progress=False)
    assert [r[0] for r in server.requests][0] == start
    served = server.requests[-1]
    assert served[2] == len(data)
    query = parse_qs(urlsplit(served[0]).query)
    assert query["id"] == ["FAKEID"] and query["confirm"] == [{"form": "t", "link": "Ab3_x", "cookie": "Tk9"}[style]]
    if style == "form":
        assert urlsplit(served[0]).path == "/download" and query["uuid"] == ["0f1e-uuid"]
    _assert_layout(root, "office-home")


def test_google_drive_quota_page_and_plain_web_page_are_clear_errors(tmp_path: Path, server: FakeServer) -> None:
    server.pages["/quota"] = ("<html><body>Too many users have viewed or downloaded this file recently.</body></html>",
                              {})
    server.pages["/page"] = ("<html><body><a href='/elsewhere'>hello</a></body></html>", {})
    with pytest.raises(DownloadError, match="download quota"):
        download_dataset("office-home", tmp_path / "a", url=server.url("/quota"), progress=False)
    with pytest.raises(DownloadError, match="got a web page instead of the archive") as info:
        download_dataset("office-home", tmp_path / "b", url=server.url("/page"), progress=False)
    assert str(info.value).startswith(server.url("/page"))


def test_http_404_and_unreachable_host_name_the_url(tmp_path: Path, server: FakeServer) -> None:
    with pytest.raises(DownloadError, match=r"HTTP 404") as info:
        download_dataset("office31", tmp_path / "a", url=server.url("/missing.tar.gz"), progress=False)
    assert str(info.value).startswith(server.url("/missing.tar.gz"))
    with socket.socket() as sock:  # a port nobody listens on: connection refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = f"http://127.0.0.1:{port}/office31.tar.gz"
    with pytest.raises(DownloadError, match="no network\\? use --url with a local copy") as info:
        download_dataset("office31", tmp_path / "b", url=dead, progress=False)
    assert str(info.value).startswith(dead)


@pytest.mark.parametrize("bad_name, kind", [("../evil.jpg", "'..'"), ("/tmp/abs.jpg", "absolute"),
                                             ("top/../../evil.jpg", "'..'")])
@pytest.mark.parametrize("make", [_zip, _targz], ids=["zip", "tar.gz"])
def test_unsafe_members_are_refused_and_nothing_is_left(tmp_path: Path, bad_name: str, kind: str,
                                                        make: Callable[[Path, dict[str, bytes]], Path]) -> None:
    members = _members("office-caltech")
    members[bad_name] = b"evil"
    archive = make(tmp_path / "src" / ("evil.zip" if make is _zip else "evil.tar.gz"), members)
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match=f"refusing to unpack member .*{kind}"):
        download_dataset("office-caltech", root, url=archive.as_uri(), progress=False)
    assert not (tmp_path / "evil.jpg").exists() and not (root / "evil.jpg").exists()
    assert not [p for p in root.iterdir() if p.name != DOWNLOAD_DIR]


def test_tar_links_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "src" / "link.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("top/amazon/mug/link.jpg")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DownloadError, match="link to '/etc/passwd'"):
        safe_extract(archive, tmp_path / "out")


def test_archive_without_the_domains_is_a_clear_error(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "src" / "wrong.zip", {"stuff/readme.txt": b"hi"})
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match=r"no folder for domain\(s\) amazon, dslr, webcam .*top level: stuff"):
        download_dataset("office31", root, url=archive.as_uri(), progress=False)
    assert not [p for p in root.iterdir() if p.name != DOWNLOAD_DIR]


def test_already_present_is_skipped_without_a_download(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    archive = _archive(tmp_path, "office-home")
    root = tmp_path / "data"
    download_dataset("office-home", root, url=archive.as_uri(), progress=False, keep_archive=False)
    assert not (root / DOWNLOAD_DIR / archive.name).exists()
    archive.unlink()  # a second download would now fail
    caplog.set_level("INFO", logger="dahash")
    caplog.clear()
    download_dataset("office-home", root, url=archive.as_uri(), progress=False)
    assert "Office-Home: already present in" in caplog.text
    # A domain that lost images no longer counts as complete.
    next((root / "Art" / "Mug").glob("*.jpg")).unlink()
    with pytest.raises(DownloadError, match="look incomplete .*'Art' has 3 images"):
        download_dataset("office-home", root, url=archive.as_uri(), progress=False)


def test_partly_present_domains_are_not_overwritten(tmp_path: Path) -> None:
    archive = _archive(tmp_path, "office-caltech")
    root = tmp_path / "data"
    (root / "amazon" / "mug").mkdir(parents=True)
    with pytest.raises(DownloadError, match="only partly there .*amazon exist, caltech10, dslr, webcam do not"):
        download_dataset("office-caltech", root, url=archive.as_uri(), progress=False)


def test_an_interrupted_move_is_undone_on_the_next_run(tmp_path: Path) -> None:
    archive = _archive(tmp_path, "office31")
    root = tmp_path / "data"
    work = root / DOWNLOAD_DIR
    work.mkdir(parents=True)
    # What a crash between two renames leaves: one domain moved, the journal, a temporary folder.
    (root / "amazon" / "images" / "mug").mkdir(parents=True)
    (work / "office31.moving.json").write_text('{"domains": ["amazon", "dslr", "webcam"]}')
    (root / ".dahash-unpack-office31-abc" / "staged").mkdir(parents=True)
    download_dataset("office31", root, url=archive.as_uri(), progress=False)
    _assert_layout(root, "office31")
    assert not (work / "office31.moving.json").exists()


def test_cli_download_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = _archive(tmp_path, "office31")
    root = tmp_path / "data"
    code = main(["download", "office31", "--url", archive.as_uri(), "--to", str(root), "--quiet"])
    err = capsys.readouterr().err  # the library's log lines, shown by the CLI on stderr
    assert code == 0
    assert "dahash: Office-31 is in" in err and "amazon" in err
    _assert_layout(root, "office31")

    missing = tmp_path / "src" / "nope.tar.gz"
    code = main(["download", "office-caltech", "--url", missing.as_uri(), "--to", str(tmp_path / "d2"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    # What it was doing (a log line), then one error line; no traceback.
    lines = [line for line in err.strip().splitlines() if line.startswith("dahash: error: ")]
    assert len(lines) == 1 and str(missing) in lines[0] and "Traceback" not in err, err
    assert main(["-q", "download", "office-caltech", "--url", missing.as_uri(), "--to", str(tmp_path / "d2"),
                 "--quiet"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == lines  # -q: the error line alone

    code = main(["download", "office31", "--sha256", "xyz", "--to", str(tmp_path / "d3"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "not a SHA-256 digest" in err and len(err.strip().splitlines()) == 1
