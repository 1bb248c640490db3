"""Management-API drivers: one protocol (`base.MinerDriver`) over each firmware's own API.

`luxos` (LuxOS TCP 4028 with sessions), `cgminer` (stock cgminer/bmminer, reads only),
`bitaxe` (ESP-Miner HTTP), `pyasic_adapter` (other brands, optional extra). Drivers are
built from the inventory by `miners.fleet.make_driver`.
"""
