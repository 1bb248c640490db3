"""Addresses against Bitcoin Core's key_io test vectors (../shared/testdata)."""

import pytest

from pool.bitcoin.address import CHAINS, address_to_script_pubkey, script_pubkey_to_address
from pool.bitcoin.base58 import b58decode, b58encode, b58encode_check
from pool.bitcoin.bech32 import Encoding, convert_bits, encode
from pool.errors import AddressError

MAINNET_P2PKH = "1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2mo"
MAINNET_P2WPKH = "bc1qvyq0cc6rahyvsazfdje0twl7ez82ndmuac2lhv"
TESTNET_P2WPKH = "tb1qcrh3yqn4nlleplcez2yndq2ry8h9ncg3qh7n54"
TESTNET_P2PKH = "mzK2FFDEhxqHcmrJw1ysqFkVyhUULo45hZ"


def test_valid_address(valid_address_row: list) -> None:
    address, spk_hex, meta = valid_address_row
    chain = meta["chain"]
    assert address_to_script_pubkey(address, chain).hex() == spk_hex
    encoded = script_pubkey_to_address(bytes.fromhex(spk_hex), chain)
    if meta.get("tryCaseFlip"):
        assert encoded == address.lower()
        assert address_to_script_pubkey(address.upper(), chain).hex() == spk_hex
    else:
        assert encoded == address


def test_invalid_address_rejected_on_every_chain(invalid_address: str) -> None:
    for chain in CHAINS:
        with pytest.raises(AddressError) as err:
            address_to_script_pubkey(invalid_address, chain)
        assert str(err.value)


@pytest.mark.parametrize(
    "address", [MAINNET_P2PKH, MAINNET_P2WPKH, "3BZECeAH8gSKkjrTx8PwMrNQBLG18yHpvf"]
)
def test_mainnet_address_rejected_on_regtest_naming_network(address: str) -> None:
    with pytest.raises(AddressError, match="network") as err:
        address_to_script_pubkey(address, "regtest")
    assert "main" in str(err.value) and "regtest" in str(err.value)


def test_testnet_addresses_and_regtest() -> None:
    # Testnets and regtest share Base58 prefixes, as in Core; only the bech32 HRP differs.
    for chain in ("test", "testnet4", "signet", "regtest"):
        assert address_to_script_pubkey(TESTNET_P2PKH, chain).hex().startswith("76a914")
    with pytest.raises(AddressError, match="network"):
        address_to_script_pubkey(TESTNET_P2WPKH, "regtest")
    with pytest.raises(AddressError, match="network"):
        address_to_script_pubkey(TESTNET_P2PKH, "main")


def test_unknown_chain_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown chain"):
        address_to_script_pubkey(MAINNET_P2PKH, "mainnet")


def _segwit(hrp: str, version: int, program: bytes, encoding: Encoding) -> str:
    return encode(hrp, [version, *convert_bits(list(program), 8, 5, pad=True)], encoding)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        (_segwit("bc", 0, bytes(20), Encoding.BECH32M), "Bech32 checksum"),
        (_segwit("bc", 1, bytes(32), Encoding.BECH32), "Bech32m checksum"),
        (_segwit("bc", 0, bytes(21), Encoding.BECH32), "v0 program size"),
        (_segwit("bc", 1, bytes(41), Encoding.BECH32M), "program size"),
        (_segwit("bc", 2, bytes(1), Encoding.BECH32M), "program size"),
        (MAINNET_P2WPKH[:-1] + "q", "checksum"),
        (MAINNET_P2WPKH[:5].upper() + MAINNET_P2WPKH[5:], "mixes upper and lower case"),
        ("bc1" + "q" * 88, "longer than 90"),
        (MAINNET_P2PKH[:-1] + "n", "checksum"),
        ("1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2m0", "Base58 character"),
        (b58encode_check(b"\x00" + bytes(21)), "length"),
        (b58encode_check(b"\x30" + bytes(20)), "unsupported"),
        ("", "empty"),
    ],
)
def test_rejection_reasons(address: str, reason: str) -> None:
    with pytest.raises(AddressError, match=reason):
        address_to_script_pubkey(address, "main")


@pytest.mark.parametrize(
    "spk_hex",
    [
        "",
        "6a0401020304",
        "0001ff",
        "0015" + "00" * 21,
        "21" + "02" * 33 + "ac",
        "5101ff",
        "76a91400",
    ],
)
def test_non_standard_scripts_have_no_address(spk_hex: str) -> None:
    assert script_pubkey_to_address(bytes.fromhex(spk_hex), "main") is None


def test_base58_leading_zeros_round_trip() -> None:
    for data in (b"", b"\x00", b"\x00\x00\x01", b"\xff" * 5):
        assert b58decode(b58encode(data)) == data
    assert b58encode(b"\x00\x00\x01") == "112"
