"""Addresses ↔ output scripts for each chain, with Bitcoin Core's decoding rules
(key_io.cpp DecodeDestination): Base58Check P2PKH/P2SH, BIP173 bech32 for witness v0,
BIP350 bech32m for witness v1+."""

from dataclasses import dataclass

from pool.bitcoin import base58, bech32
from pool.bitcoin.script import (
    MAX_WITNESS_PROGRAM_SIZE,
    MIN_WITNESS_PROGRAM_SIZE,
    OP_CHECKSIG,
    OP_DUP,
    OP_EQUAL,
    OP_EQUALVERIFY,
    OP_HASH160,
    p2pkh_script,
    p2sh_script,
    parse_witness_script,
    witness_script,
)
from pool.errors import AddressError

CHAINS = ("main", "test", "testnet4", "signet", "regtest")
MAX_ADDRESS_LEN = 100  # chars; anything longer is rejected before decoding
MAX_WITNESS_VERSION = 16  # BIP141: OP_0..OP_16
V0_PROGRAM_SIZES = (20, 32)  # bytes; BIP141 P2WPKH and P2WSH
HASH160_SIZE = 20  # bytes in P2PKH/P2SH payloads


@dataclass(frozen=True, slots=True)
class ChainParams:
    """Address prefixes of one chain (Core's chainparams.cpp)."""

    p2pkh_version: int
    p2sh_version: int
    hrp: str


_TEST = ChainParams(p2pkh_version=0x6F, p2sh_version=0xC4, hrp="tb")
CHAIN_PARAMS = {
    "main": ChainParams(p2pkh_version=0x00, p2sh_version=0x05, hrp="bc"),
    "test": _TEST,
    "testnet4": _TEST,
    "signet": _TEST,
    "regtest": ChainParams(p2pkh_version=0x6F, p2sh_version=0xC4, hrp="bcrt"),
}
_TEST_NAMES = "test/testnet4/signet"
_HRP_NETWORK = {"bc": "main", "tb": _TEST_NAMES, "bcrt": "regtest"}
_BASE58_NETWORK = {0x00: "main", 0x05: "main", 0x6F: "test/regtest", 0xC4: "test/regtest"}


def chain_params(chain: str) -> ChainParams:
    """Prefixes for chain; an unknown chain name is a programming or config error."""
    try:
        return CHAIN_PARAMS[chain]
    except KeyError:
        raise ValueError(f"unknown chain {chain!r}; expected one of {CHAINS}") from None


def address_to_script_pubkey(address: str, chain: str) -> bytes:
    """The output script an address pays to on chain; AddressError says why not."""
    params = chain_params(chain)
    if not address:
        raise AddressError("empty address")
    if len(address) > MAX_ADDRESS_LEN:
        raise AddressError(f"address longer than {MAX_ADDRESS_LEN} characters")
    sep = address.rfind("1")  # bech32's separator is its last "1"
    if sep > 0 and address[:sep].lower() in _HRP_NETWORK:
        return _decode_segwit(address, params, chain)
    try:
        return _decode_base58(address, params, chain)
    except AddressError:
        if sep > 0 and _has_bech32_checksum(address):
            hrp = address[:sep].lower()
            raise AddressError(f"unknown Bech32 prefix {hrp!r} (expected {params.hrp!r})") from None
        raise


def _has_bech32_checksum(address: str) -> bool:
    try:
        bech32.decode(address)
    except AddressError:
        return False
    return True


def _decode_base58(address: str, params: ChainParams, chain: str) -> bytes:
    payload = base58.b58decode_check(address)
    if not payload:
        raise AddressError("empty Base58Check payload")
    version, body = payload[0], payload[1:]
    if version not in (params.p2pkh_version, params.p2sh_version):
        network = _BASE58_NETWORK.get(version)
        if network is not None and len(body) == HASH160_SIZE:
            raise AddressError(f"address is for the {network} network, not {chain}")
        raise AddressError("invalid or unsupported Base58-encoded address")
    if len(body) != HASH160_SIZE:
        raise AddressError(
            f"invalid length for a Base58 P2PKH/P2SH address ({len(payload)}-byte payload)"
        )
    if version == params.p2pkh_version:
        return p2pkh_script(body)
    return p2sh_script(body)


def _decode_segwit(address: str, params: ChainParams, chain: str) -> bytes:
    hrp, data, encoding = bech32.decode(address)
    if hrp != params.hrp:
        raise AddressError(
            f"address is for the {_HRP_NETWORK[hrp]} network (prefix {hrp!r}), not {chain} "
            f"(prefix {params.hrp!r})"
        )
    if not data:
        raise AddressError("Bech32 address has no witness version")
    version = data[0]
    if version > MAX_WITNESS_VERSION:
        raise AddressError(f"invalid witness version {version}")
    if version == 0 and encoding is not bech32.Encoding.BECH32:
        raise AddressError("witness v0 address must use a Bech32 checksum, not Bech32m (BIP350)")
    if version != 0 and encoding is not bech32.Encoding.BECH32M:
        raise AddressError("witness v1+ address must use a Bech32m checksum, not Bech32 (BIP350)")
    program = bytes(bech32.convert_bits(data[1:], 5, 8, pad=False))
    if version == 0 and len(program) not in V0_PROGRAM_SIZES:
        raise AddressError(f"invalid witness v0 program size {len(program)} (BIP141: 20 or 32)")
    if not MIN_WITNESS_PROGRAM_SIZE <= len(program) <= MAX_WITNESS_PROGRAM_SIZE:
        raise AddressError(f"invalid witness program size {len(program)} (BIP141: 2..40)")
    return witness_script(version, program)


def script_pubkey_to_address(spk: bytes, chain: str) -> str | None:
    """The address of a standard output script on chain, or None for scripts without one
    (P2PK, bare multisig, OP_RETURN, non-standard, v0 programs not 20/32 bytes)."""
    params = chain_params(chain)
    if _is_p2pkh(spk):
        return base58.b58encode_check(bytes((params.p2pkh_version,)) + spk[3:23])
    if _is_p2sh(spk):
        return base58.b58encode_check(bytes((params.p2sh_version,)) + spk[2:22])
    witness = parse_witness_script(spk)
    if witness is None:
        return None
    version, program = witness
    if version == 0 and len(program) not in V0_PROGRAM_SIZES:
        return None
    encoding = bech32.Encoding.BECH32 if version == 0 else bech32.Encoding.BECH32M
    data = [version, *bech32.convert_bits(list(program), 8, 5, pad=True)]
    return bech32.encode(params.hrp, data, encoding)


def _is_p2pkh(spk: bytes) -> bool:
    return (
        len(spk) == 25
        and spk[:3] == bytes((OP_DUP, OP_HASH160, HASH160_SIZE))
        and spk[23:] == bytes((OP_EQUALVERIFY, OP_CHECKSIG))
    )


def _is_p2sh(spk: bytes) -> bool:
    return len(spk) == 23 and spk[:2] == bytes((OP_HASH160, HASH160_SIZE)) and spk[22] == OP_EQUAL
