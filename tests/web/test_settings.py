"""The [api] settings (errors name the key; only hashes of tokens are kept) and the
token file (atomic, private, refused when damaged)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pool.errors import ConfigError
from pool.web.auth import TokenStore
from pool.web.settings import ApiSettings, sha256_hex

TOKEN = "a-long-enough-admin-token"


def test_defaults_read_the_admin_token_from_the_environment() -> None:
    assert ApiSettings.from_mapping({}, environ={}).admin_token_sha256 is None
    settings = ApiSettings.from_mapping({}, environ={"GRIDPOOL_ADMIN_TOKEN": TOKEN})
    assert settings.admin_token_sha256 == sha256_hex(TOKEN)
    assert TOKEN not in repr(settings)


def test_admin_token_sources(tmp_path: Path) -> None:
    (tmp_path / "admin.token").write_text(TOKEN + "\n")
    by_file = ApiSettings.from_mapping({"admin_token_file": "admin.token"}, environ={},
                                       base_dir=tmp_path)
    by_env = ApiSettings.from_mapping({"admin_token_env": "MY_TOKEN"}, environ={"MY_TOKEN": TOKEN})
    by_hash = ApiSettings.from_mapping({"admin_token_sha256": sha256_hex(TOKEN)}, environ={})
    assert by_file.admin_token_sha256 == by_env.admin_token_sha256 == by_hash.admin_token_sha256


@pytest.mark.parametrize(("raw", "key"), [
    ({"cache_ttl_s": -1}, "api.cache_ttl_s"),
    ({"cache_ttl_s": "5"}, "api.cache_ttl_s"),
    ({"max_rows": 1.5}, "api.max_rows"),
    ({"max_blocks": 0}, "api.max_blocks"),
    ({"worker_online": 5}, "api.worker_online"),
    ({"admin_token_env": "NOT_SET"}, "api.admin_token_env"),
    ({"admin_token_env": "SHORT"}, "api.admin_token_env"),
    ({"admin_token_sha256": "ABC"}, "api.admin_token_sha256"),
    ({"admin_token_file": "missing.token"}, "api.admin_token_file"),
    ({"admin_token_env": "X", "admin_token_sha256": "0" * 64}, "api.admin_token_env"),
    ({"account_tokens": {"alice": "nothex"}}, "api.account_tokens.alice"),
    ({"account_tokens": {"bad name": "0" * 64}}, "api.account_tokens.bad name"),
    ({"account_tokens": ["alice"]}, "api.account_tokens"),
])
def test_bad_settings_name_the_key(raw: dict, key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        ApiSettings.from_mapping(raw, environ={"SHORT": "short"}, base_dir=tmp_path)
    assert err.value.key == key


async def test_token_file_round_trip_and_damage(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tokens.json"
    store = TokenStore(path)
    store.load()  # missing: no tokens
    token = await store.issue("alice")
    assert path.stat().st_mode & 0o777 == 0o600 and token not in path.read_text()
    again = TokenStore(path)
    again.load()
    assert again.check("alice", token) and not again.check("alice", token + "x")
    assert not again.check("bob", token)
    assert not list(path.parent.glob("*.tmp"))  # replaced atomically
    path.write_text('{"version": 1, "accounts": {"alice": {}}}')
    with pytest.raises(ConfigError) as err:
        TokenStore(path).load()
    assert err.value.key == "api.tokens_file"
