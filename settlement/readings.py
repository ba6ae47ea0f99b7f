"""Meter readings: EIP-712 typed data, signing by a meter key, and signature recovery.

A meter signs ``MeterReading(address participant,uint64 interval,uint64 importedWh,
uint64 exportedWh)`` under the domain ``{name: "wattledger EnergyMarket", version: "1",
chainId, verifyingContract: market}``. The market accepts the signature in compact form
(EIP-2098: ``r`` and ``vs = s | (v - 27) << 255``). Pure: eth_account only, no web3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from settlement.model import Reading

DOMAIN_NAME = "wattledger EnergyMarket"
DOMAIN_VERSION = "1"
READING_TYPE = (
    "MeterReading(address participant,uint64 interval,uint64 importedWh,uint64 exportedWh)"
)
READING_TYPEHASH = keccak(text=READING_TYPE)

READING_TYPES: dict[str, list[dict[str, str]]] = {
    "MeterReading": [
        {"name": "participant", "type": "address"},
        {"name": "interval", "type": "uint64"},
        {"name": "importedWh", "type": "uint64"},
        {"name": "exportedWh", "type": "uint64"},
    ]
}


@dataclass(frozen=True)
class ReadingDomain:
    """The EIP-712 domain of one deployed market."""

    chain_id: int
    market: str

    def as_dict(self) -> dict[str, Any]:
        """The domain as eth_account's typed-data ``domain`` object."""
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.market),
        }


@dataclass(frozen=True)
class SignedReading:
    """A reading with its meter signature in compact form (``r``, ``vs``), 32 bytes each."""

    reading: Reading
    r: bytes
    vs: bytes

    def as_tuple(self) -> tuple[str, int, int, int, bytes, bytes]:
        """ABI tuple for ``submitReadings``."""
        rd = self.reading
        return (
            to_checksum_address(rd.participant),
            rd.interval,
            rd.imported_wh,
            rd.exported_wh,
            self.r,
            self.vs,
        )


def _message(reading: Reading) -> dict[str, Any]:
    return {
        "participant": to_checksum_address(reading.participant),
        "interval": reading.interval,
        "importedWh": reading.imported_wh,
        "exportedWh": reading.exported_wh,
    }


def reading_digest(reading: Reading, domain: ReadingDomain) -> bytes:
    """The 32-byte EIP-712 digest a meter signs (the contract's ``readingDigest``)."""
    signable = encode_typed_data(
        domain_data=domain.as_dict(), message_types=READING_TYPES, message_data=_message(reading)
    )
    return bytes(keccak(b"\x19" + signable.version + signable.header + signable.body))


def compact_signature(v: int, r: int, s: int) -> tuple[bytes, bytes]:
    """Return EIP-2098 ``(r, vs)`` for a signature with ``v`` in {27, 28} and low ``s``."""
    if v not in (27, 28):
        raise ValueError(f"v must be 27 or 28, got {v}")
    vs = s | ((v - 27) << 255)
    return r.to_bytes(32, "big"), vs.to_bytes(32, "big")


def sign_reading(meter: LocalAccount, reading: Reading, domain: ReadingDomain) -> SignedReading:
    """Sign ``reading`` with the meter key ``meter`` for the market in ``domain``."""
    signed = meter.sign_typed_data(
        domain_data=domain.as_dict(), message_types=READING_TYPES, message_data=_message(reading)
    )
    r, vs = compact_signature(int(signed.v), int(signed.r), int(signed.s))
    return SignedReading(reading=reading, r=r, vs=vs)


def recover_meter(signed: SignedReading, domain: ReadingDomain) -> str:
    """Return the checksum address that signed ``signed`` (as the contract recovers it)."""
    vs = int.from_bytes(signed.vs, "big")
    v = 27 + (vs >> 255)
    s = vs & ((1 << 255) - 1)
    digest = reading_digest(signed.reading, domain)
    address: str = Account._recover_hash(digest, vrs=(v, int.from_bytes(signed.r, "big"), s))
    return to_checksum_address(address)


__all__ = [
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "READING_TYPE",
    "READING_TYPEHASH",
    "ReadingDomain",
    "SignedReading",
    "compact_signature",
    "reading_digest",
    "recover_meter",
    "sign_reading",
]
