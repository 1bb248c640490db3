"""The fleet controller as the grid's `BudgetSink` (miners.controller.FleetController)."""

from __future__ import annotations

import time
from collections.abc import Callable

from miners.controller import FleetController


class FleetSink:
    """Budgets go to `FleetController.set_budget`; power comes from each site's last sweep."""

    def __init__(self, fleet: FleetController, *, clock: Callable[[], float] = time.time):
        self.fleet = fleet
        self.clock = clock

    async def set_site_budget(self, site: str, watts: float, *, reason: str) -> float:
        ack = self.fleet.set_budget(site, watts, source=f"grid:{reason}"[:200])
        return max(0.0, ack.under_budget_by - self.clock())

    def site_power(self, site: str) -> tuple[float, float] | None:
        controller = self.fleet.sites.get(site)
        if controller is None or not controller.history:
            return None
        sample = controller.history[-1]
        return sample.at, sample.power_w
