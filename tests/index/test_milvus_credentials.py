"""Milvus credentials come from arguments or $DAHASH_MILVUS_*, reach the client, and never reach a message,
the manifest or the stats (no server needed: the client's connect is recorded and refused)."""

from __future__ import annotations

from typing import Any

import pytest

pymilvus = pytest.importorskip("pymilvus", reason="the Milvus backend needs pymilvus (extra 'milvus')")

from dahash.index.milvus_index import MilvusIndex, MilvusUnavailableError  # noqa: E402

TOKEN = "root:S3cret-Pass"


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every connect the index asks of pymilvus, each refused as an unreachable server would be."""
    seen: list[dict[str, Any]] = []

    def connect(alias: str, **kwargs: Any) -> None:
        seen.append(kwargs)
        raise pymilvus.MilvusException(message="server unavailable")

    monkeypatch.setattr(pymilvus.connections, "connect", connect)
    for name in ("DAHASH_MILVUS_URI", "DAHASH_MILVUS_TOKEN", "DAHASH_MILVUS_DB", "DAHASH_MILVUS_TLS_CA"):
        monkeypatch.delenv(name, raising=False)
    return seen


def test_the_environment_supplies_server_token_database_and_tls(connects, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAHASH_MILVUS_URI", f"https://{TOKEN}@milvus.example:19530")
    monkeypatch.setenv("DAHASH_MILVUS_TOKEN", TOKEN)
    monkeypatch.setenv("DAHASH_MILVUS_DB", "images")
    monkeypatch.setenv("DAHASH_MILVUS_TLS_CA", "/etc/ssl/private-ca.pem")
    with pytest.raises(MilvusUnavailableError) as info:
        MilvusIndex(64)
    (call,) = connects
    assert call["token"] == TOKEN and call["db_name"] == "images"
    assert call["secure"] is True and call["server_pem_path"] == "/etc/ssl/private-ca.pem"
    assert call["uri"] == f"https://{TOKEN}@milvus.example:19530"  # the client gets the address as given ...
    message = str(info.value)
    assert "https://milvus.example:19530" in message and TOKEN not in message and "S3cret" not in message


def test_arguments_win_and_defaults_are_local(connects, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAHASH_MILVUS_TOKEN", "from-env")
    with pytest.raises(MilvusUnavailableError):
        MilvusIndex(64, token="given", db_name="other")
    with pytest.raises(MilvusUnavailableError):
        MilvusIndex(64, token="")  # an explicit empty token: none, whatever the environment holds
    assert [c["token"] for c in connects] == ["given", ""] and connects[0]["db_name"] == "other"
    assert all(c["uri"] == "http://127.0.0.1:19530" for c in connects) and "secure" not in connects[0]


def test_a_saved_manifest_holds_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # A connected index, without a server: connect and open succeed and do nothing.
    monkeypatch.setattr(pymilvus.connections, "connect", lambda alias, **kwargs: None)
    monkeypatch.setattr(MilvusIndex, "_open", lambda self, create: None)
    index = MilvusIndex(64, f"https://{TOKEN}@milvus.example:19530", token=TOKEN, db_name="images",
                        tls_ca="/etc/ssl/private-ca.pem")
    manifest = index.manifest()
    assert manifest["uri"] == "https://milvus.example:19530"
    assert not {TOKEN, "S3cret", "images", "private-ca"} & set(" ".join(map(str, manifest.values())).split())
    assert "S3cret" not in str(manifest) and "private-ca" not in str(manifest)
