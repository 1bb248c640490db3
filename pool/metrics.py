"""Every Prometheus metric of the pool, defined once at module level in the default registry.

Label values must stay bounded (a hostile miner must not be able to grow a label set), so
free-form strings such as bitcoind's submitblock reasons go through `submit_result_label`.
"""

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS = Gauge("gridpool_connections", "Open Stratum connections")

SHARES = Counter(
    "gridpool_shares",
    "Shares received, by result "
    "(accepted, stale, duplicate, low_difficulty, invalid, unauthorized)",
    ["result"],
)

SHARE_DIFFICULTY = Counter(
    "gridpool_share_difficulty", "Sum of the difficulty of accepted shares (work done)"
)

BLOCKS_FOUND = Counter("gridpool_blocks_found", "Shares that met the network target")

BLOCKS_SUBMITTED = Counter(
    "gridpool_blocks_submitted",
    "submitblock answers per node: 'accepted' or bitcoind's reason (unknown reasons -> 'other')",
    ["node", "result"],
)

JOB_BROADCAST_SECONDS = Histogram(
    "gridpool_job_broadcast_seconds",
    "Time from a new template to mining.notify written to every session",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

TEMPLATE_AGE_SECONDS = Gauge(
    "gridpool_template_age_seconds", "Age of the block template behind the current job"
)

NODE_UP = Gauge("gridpool_node_up", "1 when the bitcoind node is healthy, else 0", ["node"])

HASH_BACKEND_INFO = Gauge(
    "gridpool_hash_backend_info", "The active sha256d backend (value 1)", ["backend"]
)

SESSIONS_DISCONNECTED = Counter(
    "gridpool_sessions_disconnected", "Stratum sessions closed, by reason", ["reason"]
)

JOBS_BROADCAST = Counter(
    "gridpool_jobs_broadcast", "Jobs broadcast, by kind (empty, full, refresh)", ["kind"]
)

# bitcoind's submitblock reasons (BIP 22 and validation.cpp) kept as their own label value.
KNOWN_SUBMIT_RESULTS = frozenset(
    {
        "accepted",
        "duplicate",
        "duplicate-invalid",
        "duplicate-inconclusive",
        "inconclusive",
        "rejected",
        "high-hash",
        "bad-txnmrklroot",
        "bad-txns-duplicate",
        "bad-cb-missing",
        "bad-cb-multiple",
        "bad-cb-height",
        "bad-cb-amount",
        "bad-cb-length",
        "bad-diffbits",
        "bad-version",
        "bad-prevblk",
        "prev-blk-not-found",
        "time-too-old",
        "time-too-new",
        "bad-witness-merkle-match",
        "bad-witness-nonce-size",
        "unexpected-witness",
        "bad-blk-weight",
        "bad-blk-length",
        "bad-blk-sigops",
        "Block decode failed",
        "error",
    }
)


def submit_result_label(result: str | None) -> str:
    """Map a submitblock answer to a bounded label: None -> accepted, transport errors ->
    error, an unknown reason -> other."""
    if result is None:
        return "accepted"
    if result.startswith("error"):
        return "error"
    return result if result in KNOWN_SUBMIT_RESULTS else "other"


# ---- ledger, blocks and payouts (appended with the ledger wiring) -------------------------

SHARES_NOT_RECORDED = Counter(
    "gridpool_shares_not_recorded",
    "Valid shares answered with error 20 because the ledger could not make them durable",
)

BLOCKS_CONFIRMED = Counter(
    "gridpool_blocks_confirmed", "Found blocks that reached 100 confirmations (coinbase mature)"
)

BLOCKS_ORPHANED = Counter(
    "gridpool_blocks_orphaned", "Found blocks another block replaced in the best chain"
)

LEDGER_BATCH_SHARES = Histogram(
    "gridpool_ledger_batch_shares",
    "Shares per ledger transaction of the share recorder",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)

LEDGER_COMMIT_SECONDS = Histogram(
    "gridpool_ledger_commit_seconds",
    "Time to commit one batch of shares (what a miner's share answer waits for)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0),
)

LEDGER_PENDING_SHARES = Gauge(
    "gridpool_ledger_pending_shares", "Shares queued for the ledger, not yet durable"
)

LEDGER_JOURNAL_BYTES = Gauge(
    "gridpool_ledger_journal_bytes",
    "Bytes of acknowledged shares in the local journal, waiting for the database",
)

LEDGER_DEGRADED = Gauge(
    "gridpool_ledger_degraded", "1 while the database is unavailable and shares are journaled"
)

LEDGER_JOURNALED_SHARES = Counter(
    "gridpool_ledger_journaled_shares", "Shares acknowledged after a journal fsync (outage)"
)

PPLNS_WINDOW_READ_SECONDS = Histogram(
    "gridpool_pplns_window_read_seconds",
    "Time to read the PPLNS window, accounts and balances from the ledger",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

PPLNS_PLAN_SECONDS = Histogram(
    "gridpool_pplns_plan_seconds",
    "Time to compute one PPLNS coinbase split",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)

PPLNS_WINDOW_ACCOUNTS = Gauge(
    "gridpool_pplns_window_accounts", "Accounts with work in the current PPLNS window"
)
