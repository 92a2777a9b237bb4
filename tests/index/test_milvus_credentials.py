"""Milvus credentials come from arguments or $DAHASH_MILVUS_*, reach pymilvus's MilvusClient, and never reach a
message, a log, the manifest or the stats.  The first tests need no server (the client is recorded and refused);
the last connects to the session's embedded server, which requires a token (conftest.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pymilvus = pytest.importorskip("pymilvus", reason="the Milvus backend needs pymilvus (extra 'milvus')")

from dahash.index.milvus_index import MilvusIndex, MilvusUnavailableError  # noqa: E402

TOKEN = "root:S3cret-Pass"
ENV = ("DAHASH_MILVUS_URI", "DAHASH_MILVUS_TOKEN", "DAHASH_MILVUS_DB", "DAHASH_MILVUS_TLS_CA")
# pymilvus 3.0 warns (FutureWarning) on each ORM call it removes in 3.1: none may be reached.
pytestmark = [pytest.mark.filterwarnings("error:.*will be removed in PyMilvus:FutureWarning"),
              pytest.mark.filterwarnings("error::DeprecationWarning:pymilvus")]


@pytest.fixture
def no_milvus_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch, no_milvus_environment: None) -> list[dict[str, Any]]:
    """The arguments of every MilvusClient the index makes, each refused as an unreachable server would be
    (with a message quoting the address as given, as pymilvus's own messages about a URI do)."""
    seen: list[dict[str, Any]] = []

    def client(**kwargs: Any) -> None:
        seen.append(kwargs)
        raise pymilvus.MilvusException(message=f"server unavailable: {kwargs['uri']} token {kwargs['token']}")

    monkeypatch.setattr(pymilvus, "MilvusClient", client)
    return seen


def test_the_environment_supplies_server_token_database_and_tls(clients, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAHASH_MILVUS_URI", f"https://{TOKEN}@milvus.example:19530")
    monkeypatch.setenv("DAHASH_MILVUS_TOKEN", TOKEN)
    monkeypatch.setenv("DAHASH_MILVUS_DB", "images")
    monkeypatch.setenv("DAHASH_MILVUS_TLS_CA", "/etc/ssl/private-ca.pem")
    with pytest.raises(MilvusUnavailableError) as info:
        MilvusIndex(64)
    (call,) = clients
    assert call["token"] == TOKEN and call["db_name"] == "images"
    assert call["secure"] is True and call["server_pem_path"] == "/etc/ssl/private-ca.pem"
    assert call["uri"] == f"https://{TOKEN}@milvus.example:19530"  # the client gets the address as given ...
    assert call["dedicated"] is True  # ... on a connection of this index alone, which close() releases
    message = str(info.value)
    # ... while the message names the server, and shows the server's words with the secrets masked.
    assert message.startswith("cannot connect to Milvus at https://milvus.example:19530 ")
    assert "server unavailable" in message and TOKEN not in message and "S3cret" not in message


def test_arguments_win_and_defaults_are_local(clients, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAHASH_MILVUS_TOKEN", "from-env")
    with pytest.raises(MilvusUnavailableError):
        MilvusIndex(64, token="given", db_name="other")
    with pytest.raises(MilvusUnavailableError):
        MilvusIndex(64, token="")  # an explicit empty token: none, whatever the environment holds
    assert [c["token"] for c in clients] == ["given", ""] and clients[0]["db_name"] == "other"
    assert all(c["uri"] == "http://127.0.0.1:19530" for c in clients) and "secure" not in clients[0]


def test_a_uri_pymilvus_refuses_is_quoted_without_its_password(no_milvus_environment: None) -> None:
    # The real client: it rejects the scheme, quoting the URI whole in its message.
    with pytest.raises(MilvusUnavailableError) as info:
        MilvusIndex(64, "ftp://root:S3cret-Pass@milvus.example:19530")
    message = str(info.value)
    assert message.startswith("cannot connect to Milvus at ftp://milvus.example:19530 ")
    assert "ftp://***@milvus.example:19530" in message and "S3cret" not in message


def test_a_saved_manifest_holds_no_credentials(monkeypatch: pytest.MonkeyPatch, no_milvus_environment: None) -> None:
    # A connected index, without a server: the client is made and open does nothing.
    class Client:
        def __init__(self, **kwargs: Any) -> None:
            self.closed = False

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(pymilvus, "MilvusClient", Client)
    monkeypatch.setattr(MilvusIndex, "_open", lambda self, create: None)
    index = MilvusIndex(64, f"https://{TOKEN}@milvus.example:19530", token=TOKEN, db_name="images",
                        tls_ca="/etc/ssl/private-ca.pem")
    manifest = index.manifest()
    assert manifest["uri"] == "https://milvus.example:19530"
    assert not {TOKEN, "S3cret", "images", "private-ca"} & set(" ".join(map(str, manifest.values())).split())
    assert "S3cret" not in str(manifest) and "private-ca" not in str(manifest)
    client = index.client
    index.close()
    assert client.closed


@pytest.mark.xdist_group("milvus")  # one server, one xdist worker (conftest.py)
def test_a_server_that_requires_a_token(milvus_server, collection_name: str, no_milvus_environment: None,
                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    if not milvus_server.token:
        pytest.skip("the server of $DAHASH_MILVUS_URI came without $DAHASH_MILVUS_TOKEN: no authentication to test")
    uri, token = milvus_server.uri, milvus_server.token
    secret = token.split(":", 1)[-1]
    # No token, or a wrong one: refused, in one line naming the server and not the token.
    with pytest.raises(MilvusUnavailableError, match=rf"^cannot connect to Milvus at {re.escape(uri)} "):
        MilvusIndex(16, uri, collection_name, timeout=5)
    with pytest.raises(MilvusUnavailableError, match=rf"^cannot connect to Milvus at {re.escape(uri)} ") as info:
        MilvusIndex(16, uri, collection_name, token="root:Wr0ng-S3cret", timeout=5)
    assert "Wr0ng" not in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).endswith("check the address, and the token if the server requires one")

    # The token from $DAHASH_MILVUS_TOKEN, as the CLI's commands find it: the whole cycle works.
    monkeypatch.setenv("DAHASH_MILVUS_TOKEN", token)
    rng = np.random.default_rng(8)
    codes = np.packbits(rng.random((50, 16)) < 0.5, axis=1)
    index = MilvusIndex(16, uri, collection_name)
    try:
        index.add(codes, np.arange(50) + 100, [{"i": i} for i in range(50)])
        res = index.search(codes[:5], k=1)
        assert res.ids[:, 0].tolist() == [100, 101, 102, 103, 104] and (res.distances[:, 0] == 0).all()
        assert res.metadata[0][0] == {"i": 0}
        index.save(tmp_path / "idx")
        text = (tmp_path / "idx" / "manifest.json").read_text()
        assert secret not in text and json.loads(text)["uri"] == uri
        index.close()
        # The same server with user:password in the URI instead: reopened from the manifest.
        monkeypatch.delenv("DAHASH_MILVUS_TOKEN")
        with MilvusIndex.load(tmp_path / "idx", uri=uri.replace("://", f"://{token}@", 1)) as again:
            assert len(again) == 50 and again.uri == uri and secret not in json.dumps(again.stats())
    finally:
        monkeypatch.setenv("DAHASH_MILVUS_TOKEN", token)
        MilvusIndex(16, uri, collection_name).drop()
    out, err = capfd.readouterr()  # pymilvus logs to stderr through its own handler
    assert secret not in out + err and "Wr0ng" not in out + err
