"""subscribe, configure (BIP 310), authorize, suggest_difficulty, extranonce: over real TCP
against a pool on the devnet."""

from __future__ import annotations

import pytest
from stratum.harness import POOL_SCRIPT_HEX, SOLO_ADDRESS, SOLO_SCRIPT_HEX

from miners.sim.stratum_client import MiningJob, StratumClientError


async def test_subscribe_gives_unique_extranonce1_and_size(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet], stratum={"extranonce2_size": 6})
    clients = [await client_factory(app, handshake=False) for _ in range(5)]
    results = [await c.subscribe() for c in clients]
    for (subscriptions, extranonce1, size), client in zip(results, clients, strict=True):
        assert [s[0] for s in subscriptions] == ["mining.set_difficulty", "mining.notify"]
        assert len(bytes.fromhex(extranonce1)) == 4 and size == 6
        assert client.extranonce2_size == 6
    assert len({r[1] for r in results}) == 5
    await clients[0].close()  # a freed value is not reused while others are free
    newcomer = await client_factory(app, handshake=False)
    assert (await newcomer.subscribe())[1] not in {r[1] for r in results}


@pytest.mark.parametrize(
    ("miner_mask", "expected"),
    [
        ("1fffe000", "1fffe000"),
        ("00fff000", "00ffe000"),
        ("ffffffff", "1fffe000"),
        (None, "1fffe000"),
    ],
)
async def test_version_rolling_mask_negotiation(
    devnet, pool_factory, client_factory, miner_mask, expected
):
    app = await pool_factory([devnet])
    client = await client_factory(app, handshake=False)
    options = {"version-rolling.min-bit-count": 16}  # advisory: answered anyway
    if miner_mask is not None:
        options["version-rolling.mask"] = miner_mask
    result = await client.request(
        "mining.configure", [["version-rolling", "minimum-difficulty", "x-unknown"], options]
    )
    assert result == {
        "version-rolling": True,
        "version-rolling.mask": expected,
        "minimum-difficulty": False,
        "x-unknown": False,
    }


async def test_set_version_mask_only_after_authorize(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet])
    client = await client_factory(app, handshake=False)
    await client.configure()
    await client.subscribe()
    assert client.methods_received() == []  # nothing unsolicited before authorize
    await client.authorize()
    await client.wait_for(lambda: client.job is not None)
    assert client.methods_received()[:3] == [
        "mining.set_version_mask",
        "mining.set_difficulty",
        "mining.notify",
    ]
    assert client.version_mask == 0x1FFFE000


async def test_minimum_difficulty_is_honoured(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet])
    client = await client_factory(
        app, handshake=False, minimum_difficulty=0.5, suggest_difficulty=0.01
    )
    result = await client.configure()
    assert result["minimum-difficulty"] is True
    await client.subscribe()
    await client.authorize()
    await client.request("mining.suggest_difficulty", [0.01])  # below the minimum asked for
    await client.wait_for(lambda: client.difficulty == 0.5)
    assert all(
        m["params"][0] >= 0.5 for m in client.messages if m["method"] == "mining.set_difficulty"
    )


async def test_suggest_difficulty_before_and_after_authorize(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet], stratum={"min_difficulty": 1e-6, "max_difficulty": 1e6})
    client = await client_factory(app, handshake=False)
    await client.subscribe()
    assert await client.request("mining.suggest_difficulty", [0.0025]) is True
    await client.authorize()
    await client.wait_for(lambda: client.job is not None)
    assert client.difficulty == 0.0025  # fractional, used as the start difficulty
    await client.request("mining.suggest_difficulty", ["1e9"])  # quoted: accepted, clamped
    await client.wait_for(lambda: client.difficulty == 1e6)
    await client.request("mining.suggest_difficulty", [1e-9])
    await client.wait_for(lambda: client.difficulty == 1e-6)
    with pytest.raises(StratumClientError) as info:
        await client.request("mining.suggest_difficulty", [-1])
    assert info.value.code == 20


async def test_password_difficulty(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet])
    client = await client_factory(app, password="x,d=0.125", suggest_difficulty=None)
    assert client.difficulty == 0.125


async def test_solo_address_is_paid_by_the_sessions_coinbase(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet])
    solo = await client_factory(app, f"{SOLO_ADDRESS}.rig7")
    pooled = await client_factory(app, "acct.rig1")
    solo_job: MiningJob = solo.job
    assert bytes.fromhex(SOLO_SCRIPT_HEX) in solo_job.coinb2
    assert bytes.fromhex(POOL_SCRIPT_HEX) in pooled.job.coinb2
    assert solo_job.job_id == pooled.job.job_id and solo_job.coinb1 == pooled.job.coinb1


async def test_bad_usernames_get_24_with_the_reason(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet], payout={})  # solo only: no pool address
    client = await client_factory(app, handshake=False)
    await client.subscribe()
    for username, reason in (
        ("alice.rig1", "solo mining needs a regtest address"),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "is a main address"),
        (17, "non-empty string"),
    ):
        with pytest.raises(StratumClientError) as info:
            await client.request("mining.authorize", [username, "x"])
        assert info.value.code == 24 and reason in info.value.message
    assert await client.authorize(SOLO_ADDRESS)
    with pytest.raises(StratumClientError, match="one payout address per connection"):
        await client.authorize("2MxFajLApXpYk4VodBSZSt7rw8y4ryABkfA")


async def test_extranonce_subscribe_and_set_extranonce(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet], network={"simulated_difficulty": 1e9})
    client = await client_factory(app)  # the handshake sends mining.extranonce.subscribe
    old = client.extranonce1
    (session,) = app.stratum.sessions
    assert app.stratum.change_extranonce1(session)
    await client.wait_for(lambda: client.extranonce1 != old)
    assert "mining.set_extranonce" in client.methods_received()
    await client.wait_for(
        lambda: client.job.clean and client.methods_received()[-1] == "mining.notify"
    )
    assert await client.submit(client.find_solution())  # mined with the new extranonce1

    plain = await client_factory(app, extranonce_subscribe=False)
    (other,) = [s for s in app.stratum.sessions if s is not session]
    assert not app.stratum.change_extranonce1(other)  # it did not subscribe: nothing sent
    assert "mining.set_extranonce" not in plain.methods_received()


async def test_get_transactions_answers_an_empty_list(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet])
    client = await client_factory(app)
    assert await client.request("mining.get_transactions", [client.job.job_id]) == []


async def test_authorize_before_subscribe_starts_work_at_subscribe(
    devnet, pool_factory, client_factory
):
    app = await pool_factory([devnet])
    client = await client_factory(app, handshake=False)
    assert await client.authorize()
    assert await client.request("mining.suggest_difficulty", [0.001])
    assert client.methods_received() == []  # no work before subscribe
    await client.subscribe()
    await client.wait_for(lambda: client.job is not None)
    assert client.methods_received() == ["mining.set_difficulty", "mining.notify"]
    assert client.difficulty == 0.001


async def test_vardiff_raises_a_fast_miner_and_resends_the_job(
    devnet, pool_factory, client_factory
):
    app = await pool_factory(
        [devnet],
        network={"simulated_difficulty": 1e9},
        stratum={"vardiff_retarget_shares": 6, "vardiff_target_share_interval_s": 10.0},
    )
    client = await client_factory(app, suggest_difficulty=1e-5)
    mark = len(client.messages)
    for _ in range(6):  # six shares in well under a second: far too easy
        assert await client.submit(client.find_solution())
    await client.wait_for(lambda: client.difficulty == 4e-5)  # one step: x4 at most
    await client.wait_for(lambda: len(client.messages) >= mark + 2)
    after = [(m["method"], m["params"]) for m in list(client.messages)[mark:]]
    # The new difficulty goes out before a job: set_difficulty, then the current job again
    # (not clean), for firmware that applies a difficulty from the next job only.
    assert after[0] == ("mining.set_difficulty", [4e-5])
    assert after[1][0] == "mining.notify" and after[1][1][8] is False
    assert after[1][1][0] == client.job.job_id
