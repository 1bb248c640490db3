"""BIP9 version-bits state of regtest's only signalling deployment, `testdummy`.

The kernel enforces consensus; this only shapes getblocktemplate's `version`,
`vbavailable` and `rules` the way bitcoind does on regtest: `testdummy` (bit 28, start
time 0, no timeout) is DEFINED in the first 144-block period, STARTED from height 144,
LOCKED_IN after a period with >= 108 signalling blocks, ACTIVE one period later.
"""

import enum
from collections.abc import Sequence

VERSIONBITS_TOP_BITS = 0x20000000  # BIP9: top three bits 001
VERSIONBITS_TOP_MASK = 0xE0000000
REGTEST_PERIOD = 144  # blocks; regtest nMinerConfirmationWindow
REGTEST_THRESHOLD = 108  # blocks; regtest nRuleChangeActivationThreshold (75%)
TESTDUMMY_NAME = "testdummy"
TESTDUMMY_BIT = 28


class DeploymentState(enum.Enum):
    DEFINED = "defined"
    STARTED = "started"
    LOCKED_IN = "locked_in"
    ACTIVE = "active"


def signals(version: int, bit: int) -> bool:
    """BIP9 condition: top bits 001 and the deployment's bit set."""
    return (version & VERSIONBITS_TOP_MASK) == VERSIONBITS_TOP_BITS and bool(version >> bit & 1)


def state_for_height(
    versions: Sequence[int],
    height: int,
    *,
    bit: int = TESTDUMMY_BIT,
    period: int = REGTEST_PERIOD,
    threshold: int = REGTEST_THRESHOLD,
) -> DeploymentState:
    """State of the deployment for a block at `height`; `versions[h]` is block h's version
    (only heights below `height`'s period start are read)."""
    state = DeploymentState.DEFINED
    for period_start in range(period, height - height % period + 1, period):
        if state is DeploymentState.DEFINED:
            state = DeploymentState.STARTED  # start time 0: always past
        elif state is DeploymentState.STARTED:
            window = versions[period_start - period : period_start]
            if sum(signals(v, bit) for v in window) >= threshold:
                state = DeploymentState.LOCKED_IN
        elif state is DeploymentState.LOCKED_IN:
            state = DeploymentState.ACTIVE
    return state


def template_fields(versions: Sequence[int], height: int) -> tuple[int, dict[str, int], list[str]]:
    """(version, vbavailable, extra active rules) for a template at `height`."""
    state = state_for_height(versions, height)
    if state in (DeploymentState.STARTED, DeploymentState.LOCKED_IN):
        return VERSIONBITS_TOP_BITS | 1 << TESTDUMMY_BIT, {TESTDUMMY_NAME: TESTDUMMY_BIT}, []
    if state is DeploymentState.ACTIVE:
        return VERSIONBITS_TOP_BITS, {}, [TESTDUMMY_NAME]
    return VERSIONBITS_TOP_BITS, {}, []
