from pool.stratum.limits import CostMeter, IPLimits, TokenBucket


def test_cost_decays_linearly():
    meter = CostMeter(decay_per_s=10.0)
    assert meter.add(100.0, 0.0) == 100.0
    assert meter.add(0.0, 5.0) == 50.0
    assert meter.add(10.0, 100.0) == 10.0  # never negative
    assert meter.seconds_until_below(0.0) == 1.0


def test_token_bucket_allows_a_burst_then_the_rate():
    bucket = TokenBucket(rate_per_s=5.0, tokens=5.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(0.2)  # one token back after 1/5 s
    assert not bucket.take(0.2)


def test_ip_limits_count_and_ban():
    limits = IPLimits(max_per_ip=2, max_bans=2)
    assert limits.admit("1.1.1.1", 0.0) is None
    assert limits.admit("1.1.1.1", 0.0) is None
    assert limits.admit("1.1.1.1", 0.0) == "too_many_per_ip"
    limits.release("1.1.1.1")
    assert limits.connections("1.1.1.1") == 1
    limits.ban("2.2.2.2", until_s=10.0)
    assert limits.admit("2.2.2.2", 5.0) == "banned"
    assert limits.admit("2.2.2.2", 10.0) is None  # expired
    for ip in ("3.3.3.3", "4.4.4.4", "5.5.5.5"):
        limits.ban(ip, until_s=100.0)
    assert limits.admit("3.3.3.3", 0.0) is None  # the oldest ban was evicted (bounded)
    limits.purge(1000.0)
    assert limits.admit("5.5.5.5", 1000.0) is None
