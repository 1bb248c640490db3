"""Fault switches: validated all-or-nothing, errors name the key."""

import pytest

from miners.sim.faults import Faults
from pool.errors import ConfigError


def test_defaults_are_all_off():
    faults = Faults()
    assert faults.active() == {}


def test_update_applies_and_reports_active_switches():
    faults = Faults.from_mapping({"ignore_sleep": True, "stale_share_rate": 0.5})
    assert faults.active() == {"ignore_sleep": True, "stale_share_rate": 0.5}


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"ignore_sleep": 1}, "faults.ignore_sleep"),
        ({"invalid_share_rate": 1.5}, "faults.invalid_share_rate"),
        ({"api_delay_s": -1}, "faults.api_delay_s"),
        ({"slow_ramp_factor": 0.5}, "faults.slow_ramp_factor"),
        ({"teleport": True}, "faults.teleport"),
        ({"crash_after_s": "soon"}, "faults.crash_after_s"),
    ],
)
def test_bad_values_name_the_key_and_change_nothing(raw, key):
    faults = Faults(api_delay_s=2.0)
    with pytest.raises(ConfigError) as excinfo:
        faults.update({"stale_share_rate": 0.1, **raw})
    assert excinfo.value.key == key
    assert faults.active() == {"api_delay_s": 2.0}
