"""Keccak-256, Ethereum's hash: pysha3's C implementation when installed, else eth-hash."""

from __future__ import annotations

from eth_hash.auto import keccak as _eth_hash_keccak

try:  # pysha3's C keccak is about ten times faster than eth-hash's pycryptodome backend
    from sha3 import keccak_256 as _keccak_256

    def keccak(data: bytes) -> bytes:
        """Keccak-256 of ``data`` (Ethereum's hash), via pysha3."""
        return bytes(_keccak_256(data).digest())

except ImportError:  # pragma: no cover - depends on the installed packages

    def keccak(data: bytes) -> bytes:
        """Keccak-256 of ``data`` (Ethereum's hash), via eth-hash."""
        return _eth_hash_keccak(data)


__all__ = [
    "keccak",
]
