"""Real Bitcoin data for the pool.bitcoin tests (see ../shared/testdata/README.md)."""

import json
from dataclasses import dataclass

import pytest
from shared_data import TESTDATA

from pool.bitcoin.block import Block

MAINNET_SEGWIT = "000000000000000000000c835b2adcaedc20fdf6ee440009c249452c726dafae"
MAINNET_413567 = "0000000000000000025aff8be8a55df8f89c77296db6198f272d6577325d4069"
TESTNET_SEGWIT = "000000000000045e0b1660b6445b5e5c5ab63c9a4f956be7e1e69be04fa4497b"


@dataclass(frozen=True)
class RealBlock:
    """A block the network produced: its raw bytes and its known hash (display hex)."""

    name: str
    raw: bytes
    hash_hex: str


def _load_blockfilter_rows() -> list[list]:
    path = TESTDATA / "blockfilters.json"
    if not path.exists():
        raise RuntimeError(f"test data missing: {path} (set GRIDPOOL_TESTDATA)")
    return json.loads(path.read_text())[1:]  # the first row is a header


_FILTER_ROWS = {f"testnet3_{row[0]}": row for row in _load_blockfilter_rows()}
_FILE_BLOCKS = {
    "mainnet_segwit": (f"mainnet_block_{MAINNET_SEGWIT}.raw", MAINNET_SEGWIT),
    "mainnet_413567": ("block413567.raw", MAINNET_413567),
    "testnet3_segwit": (f"testnet_block_{TESTNET_SEGWIT}.raw", TESTNET_SEGWIT),
}
BLOCK_IDS = [*_FILE_BLOCKS, *_FILTER_ROWS]
_cache: dict[str, tuple[RealBlock, Block]] = {}


def _load(name: str) -> tuple[RealBlock, Block]:
    if name not in _cache:
        if name in _FILE_BLOCKS:
            file_name, hash_hex = _FILE_BLOCKS[name]
            real = RealBlock(name, (TESTDATA / file_name).read_bytes(), hash_hex)
        else:
            row = _FILTER_ROWS[name]
            real = RealBlock(name, bytes.fromhex(row[2]), row[1])
        _cache[name] = (real, Block.parse(real.raw))
    return _cache[name]


@pytest.fixture(params=BLOCK_IDS)
def real_block(request: pytest.FixtureRequest) -> RealBlock:
    """Each real block in turn (13 of them: 3 files and 10 from blockfilters.json)."""
    return _load(request.param)[0]


@pytest.fixture
def parsed_block(real_block: RealBlock) -> Block:
    """The parsed form of real_block, parsed once per session."""
    return _load(real_block.name)[1]


def _load_json(name: str) -> list:
    return json.loads((TESTDATA / name).read_text())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per address vector: `valid_address_row` is [address, spk_hex, metadata] for
    every non-private-key row; `invalid_address` is each string of key_io_invalid.json."""
    if "valid_address_row" in metafunc.fixturenames:
        rows = [r for r in _load_json("key_io_valid.json") if not r[2]["isPrivkey"]]
        metafunc.parametrize("valid_address_row", rows, ids=[r[0] for r in rows])
    if "invalid_address" in metafunc.fixturenames:
        strings = [r[0] for r in _load_json("key_io_invalid.json")]
        metafunc.parametrize("invalid_address", strings, ids=[repr(s) for s in strings])
