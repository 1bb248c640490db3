"""The model catalogue: vendor nominal points, a curve whose efficiency improves when turned
down, and LuxOS-style preset profiles."""

import itertools

import pytest

from miners.sim import models
from miners.sim.models import BITAXE_GAMMA, M50S, MODELS, S19J_PRO, S21


@pytest.mark.parametrize(
    ("model", "ths", "watts"),
    [
        (S19J_PRO, 104.0, 3068.0),
        (S21, 200.0, 3500.0),
        (M50S, 126.0, 3276.0),
        (BITAXE_GAMMA, 1.2, 18.0),
    ],
)
def test_nominal_point_is_the_vendor_spec(model, ths, watts):
    assert model.hashrate_at(model.nominal_w) == pytest.approx(ths)
    assert model.nominal_w == watts
    assert model.source  # every model cites where its numbers come from


@pytest.mark.parametrize("model", list(MODELS.values()), ids=list(MODELS))
def test_turning_down_improves_efficiency(model):
    low, nominal, high = model.min_w, model.nominal_w, model.max_w
    assert model.efficiency_j_per_th(low) < model.efficiency_j_per_th(nominal)
    assert model.efficiency_j_per_th(nominal) < model.efficiency_j_per_th(high)
    assert model.hashrate_at(low) < model.hashrate_at(nominal) < model.hashrate_at(high)


def test_targets_outside_the_range_are_clamped():
    assert S21.clamp_power(100.0) == S21.min_w
    assert S21.clamp_power(10_000.0) == S21.max_w
    assert S21.hashrate_at(10_000.0) == S21.hashrate_at(S21.max_w)


def test_power_for_hashrate_inverts_the_curve():
    for watts in (S19J_PRO.min_w, 2000.0, S19J_PRO.nominal_w, S19J_PRO.max_w):
        assert S19J_PRO.power_for_hashrate(S19J_PRO.hashrate_at(watts)) == pytest.approx(watts)
    assert S19J_PRO.power_for_frequency(S19J_PRO.nominal_mhz) == pytest.approx(S19J_PRO.nominal_w)


def test_curve_matches_the_luxos_s19jpro_presets():
    # docs.luxor.tech: 545 MHz/13.4 V is 104 TH/s; 520 MHz/13.3 V is one step down.
    # f·V² scaling: power falls by (520/545)*(13.3/13.4)^2 of the hashing part.
    ratio = (520 / 545) * (13.3 / 13.4) ** 2
    hashing_w = S19J_PRO.nominal_w - S19J_PRO.sleep_w
    watts = S19J_PRO.sleep_w + hashing_w * ratio
    assert S19J_PRO.hashrate_at(watts) == pytest.approx(104.0 * 520 / 545, rel=0.01)


def test_profiles_are_25mhz_steps_around_default_inside_the_range():
    profs = models.profiles(S19J_PRO)
    names = [p.name for p in profs]
    assert "default" in names and "520MHz" in names and "570MHz" in names
    default = next(p for p in profs if p.name == "default")
    assert (default.frequency_mhz, default.voltage, default.watts) == (545.0, 13.4, 3068)
    assert all(S19J_PRO.min_w <= p.watts <= S19J_PRO.max_w for p in profs)
    steps = [p.frequency_mhz for p in profs]
    assert steps == sorted(steps)
    assert all(b - a == 25.0 for a, b in itertools.pairwise(steps))


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ValueError, match="s21"):
        models.get_model("s9")


def test_profile_selectors_never_overshoot():
    profs = models.profiles(S21)
    assert models.select_profile(profs, "DEFAULT").name == "default"
    by_w = models.select_profile(profs, "3000W")
    assert by_w.watts <= 3000 and all(p.watts > 3000 or p.watts <= by_w.watts for p in profs)
    assert models.select_profile(profs, "3kW") == by_w
    by_ths = models.select_profile(profs, "150THs")
    assert by_ths.hashrate_ths <= 150
    assert models.select_profile(profs, "1W") == profs[0]  # below every profile: the lowest
    assert models.select_profile(profs, "fastW") is None
    assert models.select_profile(profs, "turbo") is None
