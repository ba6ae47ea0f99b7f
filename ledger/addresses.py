"""EIP-55 checksum addresses, cached.

``eth_utils.to_checksum_address`` hashes the address with keccak every time (50-100 µs a
call). A simulated day asks for the checksum form of the same few hundred party addresses
about 270,000 times (party tables, balance reads, settlement chunks, decoded commits), so
the answers are kept in a bounded LRU cache keyed by the lowercase hex string: every
spelling of one address shares one entry, and an invalid address raises ``ValueError`` each
time it is asked for (exceptions are not cached).
"""

from __future__ import annotations

from functools import lru_cache

from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address

CACHE_SIZE = 1 << 16
"""Addresses kept (a few MB at most); far more than the parties of any one market."""


@lru_cache(maxsize=CACHE_SIZE)
def _checksum_of_lower(lower: str) -> ChecksumAddress:
    return to_checksum_address(lower)


def checksum_address(address: str) -> ChecksumAddress:
    """``to_checksum_address(address)`` for a hex string, answered from a cache."""
    return _checksum_of_lower(address.lower())


def checksum_of_bytes(raw: bytes) -> ChecksumAddress:
    """The checksum address of a 20-byte value (e.g. the low bytes of an ABI word)."""
    if len(raw) != 20:
        raise ValueError(f"an address is 20 bytes, not {len(raw)}")
    return _checksum_of_lower("0x" + raw.hex())


__all__ = ["CACHE_SIZE", "checksum_address", "checksum_of_bytes"]
