"""API keys (hashed key file, roles), 401 / 403, per-key rate limits (429), and `robertaops keys add`."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from serving_helpers import error
from typer.testing import CliRunner

from robertaops import cli
from robertaops.errors import InvalidInputError, RateLimitedError
from robertaops.serving.auth import Keyring, TokenBucket, add_key, hash_key, parse_keys

DEFAULT = "all-MiniLM-L6-v2"




@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    path.write_text("# team keys\n\n")
    return path, add_key(path, ["infer"], "app"), add_key(path, ["admin"], "ops")


@pytest.fixture(scope="module")
def secured(make_app, keys):
    with TestClient(make_app(names=[DEFAULT], api_keys=keys[0])) as c:
        yield c


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_key_file_holds_hashes_only(keys):
    path, infer_key, admin_key = keys
    text = path.read_text()
    assert infer_key not in text and admin_key not in text
    assert f"sha256:{hash_key(infer_key)} infer app" in text
    assert [k.name for k in parse_keys(text)] == ["app", "ops"]


def test_401_missing_key(secured):
    r = secured.post("/embed", json={"inputs": "x"})
    assert "missing API key" in error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Bearer wrong", "Basic abc", "Bearer", "rok_x"])
def test_401_wrong_key(secured, header):
    error(secured.post("/embed", json={"inputs": "x"}, headers={"Authorization": header}), 401, "unauthorized")


def test_infer_key_infers(secured, keys):
    assert secured.post("/embed", json={"inputs": "x"}, headers=bearer(keys[1])).status_code == 200
    assert secured.post("/v1/embeddings", json={"input": "x"}, headers=bearer(keys[1])).status_code == 200


def test_403_infer_key_on_admin_route(secured, keys):
    assert "admin" in error(secured.get("/admin/models", headers=bearer(keys[1])), 403, "forbidden")


def test_admin_key_admins_and_infers(secured, keys):
    r = secured.get("/admin/models", headers=bearer(keys[2]))
    assert r.status_code == 200 and r.json()[0]["name"] == DEFAULT and r.json()[0]["default"] is True
    settings = secured.get("/admin/settings", headers=bearer(keys[2])).json()
    assert settings["api_keys"].endswith("keys.txt") and settings["models"] == [DEFAULT]
    assert secured.post("/embed", json={"inputs": "x"}, headers=bearer(keys[2])).status_code == 200


def test_probes_and_metrics_need_no_key(secured):
    for path in ("/health", "/health/live", "/health/ready", "/metrics"):
        assert secured.get(path).status_code == 200, path


def test_429_rate_limited_per_key(make_app, keys):
    with TestClient(make_app(names=[DEFAULT], api_keys=keys[0], rate_limit=0.01, rate_burst=2)) as c:
        for _ in range(2):
            assert c.post("/embed", json={"inputs": "x"}, headers=bearer(keys[1])).status_code == 200
        r = c.post("/embed", json={"inputs": "x"}, headers=bearer(keys[1]))
        assert "rate limit" in error(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
        assert c.post("/embed", json={"inputs": "x"}, headers=bearer(keys[2])).status_code == 200  # its own bucket


def test_open_server_rate_limits_per_client(make_app):
    with TestClient(make_app(names=[DEFAULT], rate_limit=0.01, rate_burst=1)) as c:
        assert c.post("/embed", json={"inputs": "x"}).status_code == 200
        error(c.post("/embed", json={"inputs": "x"}), 429, "rate_limited")


def test_token_bucket_refills():
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=2, clock=lambda: now[0])
    bucket.take("k")
    bucket.take("k")
    with pytest.raises(RateLimitedError) as info:
        bucket.take("k")
    assert info.value.retry_after == pytest.approx(0.5)
    now[0] = 0.5
    bucket.take("k")


@pytest.mark.parametrize("line", ["abc infer", "sha256:xyz infer", "sha256:" + "a" * 64,
                                  "sha256:" + "a" * 64 + " root"])
def test_bad_key_file_lines(line):
    with pytest.raises(InvalidInputError, match="line 1"):
        parse_keys(line)


def test_keyring_compares_every_entry():
    keys = parse_keys(f"sha256:{hash_key('k1')} infer a\nsha256:{hash_key('k2')} admin,infer b\n")
    ring = Keyring(keys)
    assert ring.authenticate("Bearer k2").name == "b"
    assert ring.authenticate("bearer k1").name == "a"


def test_unreadable_key_file_fails_at_create_app(make_app, tmp_path):
    with pytest.raises(InvalidInputError, match="cannot read"):
        make_app(names=[DEFAULT], api_keys=tmp_path / "missing.txt")


def test_cli_keys_add(tmp_path):
    path = tmp_path / "keys"
    result = CliRunner().invoke(cli.app, ["keys", "add", "--file", str(path), "--role", "admin", "--name", "ops"])
    assert result.exit_code == 0, result.output
    key = result.output.strip()
    assert key.startswith("rok_") and key not in path.read_text()
    assert Keyring(parse_keys(path.read_text())).authenticate(f"Bearer {key}").roles == {"admin"}
    bad = CliRunner().invoke(cli.app, ["keys", "add", "--file", str(path), "--role", "root"])
    assert bad.exit_code == 2 and "root" in bad.output
