"""Prometheus metrics of the fleet controller (default registry, defined once).

Label values are bounded: sites come from the configuration, states and commands from
enums, results from `RESULTS`.
"""

from prometheus_client import Counter, Gauge, Histogram

SITE_BUDGET_WATTS = Gauge("gridpool_site_budget_watts", "Power budget in force", ["site"])
SITE_POWER_WATTS = Gauge(
    "gridpool_site_power_watts",
    "Site power from miner telemetry (estimated for firmware that reports none)",
    ["site"],
)
SITE_PLANNED_POWER_WATTS = Gauge(
    "gridpool_site_planned_power_watts", "Site power the current plan leads to", ["site"]
)
SITE_HASHRATE_HPS = Gauge(
    "gridpool_site_hashrate_hps", "Site hash rate from miner telemetry (H/s)", ["site"]
)
MINERS = Gauge("gridpool_miners", "Miners by state", ["site", "state"])
MINERS_FLAGGED = Gauge(
    "gridpool_miners_flagged", "Miners that did not comply after every retry", ["site"]
)
MINERS_STARVED = Gauge(
    "gridpool_miners_starved", "Flagged miners whose worker the pool no longer feeds", ["site"]
)

RESULTS = ("ok", "timeout", "unreachable", "refused", "protocol", "unsupported", "error")
COMMANDS = Counter(
    "gridpool_fleet_commands",
    "Commands sent to miners, by command (sleep, wake, set_target) and result",
    ["site", "command", "result"],
)
COMMAND_SECONDS = Histogram(
    "gridpool_fleet_command_seconds",
    "Time for a miner to acknowledge a command (including a session logon)",
    ["command"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
NONCOMPLIANCE = Counter(
    "gridpool_fleet_noncompliance",
    "Commands acknowledged but not carried out by their deadline",
    ["site", "command"],
)
READ_FAILURES = Counter(
    "gridpool_fleet_read_failures", "Telemetry reads that failed (timeout, refused, bad reply)",
    ["site"],
)
SWEEP_SECONDS = Gauge(
    "gridpool_fleet_sweep_seconds", "Duration of the last telemetry sweep", ["site"]
)

# Grid link (miners/grid/service.py), one series per site the grid interface manages.
GRID_LAST_CONTACT = Gauge(
    "gridpool_grid_last_contact_timestamp_seconds",
    "Unix time of the last message from the grid operator for the site",
    ["site"],
)
GRID_SILENT = Gauge(
    "gridpool_grid_silent",
    "1 while the site's grid link is silent and its safe budget applies, else 0",
    ["site"],
)
