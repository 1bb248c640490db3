"""gridpool's fleet side: miner drivers, power allocation, grid interface, audit, simulator."""
