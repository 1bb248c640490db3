"""Usernames → payout scripts, on Bitcoin Core's address vectors (shared/testdata)."""

import json

import pytest
from shared_data import TESTDATA

from pool.stratum.usernames import PayoutPolicy, UsernameError

VECTORS = TESTDATA / "key_io_valid.json"
POOL_SCRIPT = bytes.fromhex("0014" + "11" * 20)


def regtest_addresses():
    rows = json.loads(VECTORS.read_text())
    return [(r[0], r[1]) for r in rows if r[2].get("chain") == "regtest" and not r[2]["isPrivkey"]]


def test_every_regtest_address_type_is_a_solo_username():
    policy = PayoutPolicy("regtest")
    rows = regtest_addresses()
    assert len(rows) >= 10
    for address, script_hex in rows:
        for username in (address, f"{address}.rig-07", f"{address}.site1.rack2"):
            identity = policy.identify(username)
            assert identity.solo and identity.payout_script.hex() == script_hex
            assert identity.account == address
            assert identity.username == username
    assert policy.identify(f"{rows[0][0]}.w1").worker == "w1"


def test_account_usernames_pay_the_pool_address_or_are_refused():
    assert PayoutPolicy("regtest", POOL_SCRIPT).identify("alice.rig1").payout_script == POOL_SCRIPT
    with pytest.raises(UsernameError, match="solo mining needs a regtest address"):
        PayoutPolicy("regtest").identify("alice.rig1")


@pytest.mark.parametrize(
    ("username", "reason"),
    [
        ("", "non-empty"),
        (None, "non-empty"),
        (42, "non-empty"),
        ("a" * 129, "longer than 128"),
        ("alice.rig 1", "worker name"),
        ("al ice.rig1", "nor an account name"),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4.w", "is a main address"),
    ],
)
def test_bad_usernames_say_why(username, reason):
    with pytest.raises(UsernameError, match=reason):
        PayoutPolicy("regtest", POOL_SCRIPT).identify(username)
