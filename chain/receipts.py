"""Receipts and logs in web3's shape, from a node's JSON answers or straight from py-evm.

A node answers ``eth_getTransactionReceipt`` with hex strings; :func:`format_receipt` turns
them into what web3 returns (ints, HexBytes, checksum addresses, AttributeDicts), so callers
see one shape on every chain. On the embedded chain :func:`tester_receipt` builds the same
receipt from py-evm's own records, without eth-tester's JSON round trip.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal, cast

from eth_typing import ChecksumAddress, Hash32
from eth_utils.address import is_address, to_checksum_address
from hexbytes import HexBytes
from web3.datastructures import AttributeDict
from web3.types import TxReceipt

_RECEIPT_INTS = frozenset(
    {"cumulativeGasUsed", "status", "gasUsed", "effectiveGasPrice", "type"}
    | {"blobGasPrice", "blobGasUsed"}
)
_NULLABLE_INTS = frozenset({"blockNumber", "transactionIndex"})
_NULLABLE_HASHES = frozenset({"blockHash", "transactionHash"})


def format_receipt(raw: Mapping[str, Any]) -> TxReceipt:
    """A node's ``eth_getTransactionReceipt`` answer as web3 returns it: web3's receipt and
    log formatters (``RECEIPT_FORMATTERS``, ``LOG_ENTRY_FORMATTERS``) field by field, in
    an ``AttributeDict``; any other field as the node sent it.

    web3 applies the same conversions through curried formatter pipelines that test every
    value's type several times and checksum every log's address afresh; here a field is
    converted once and an address's checksum is remembered.
    """
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "logs":
            out[key] = [_format_log(entry) for entry in value]
        elif key in _RECEIPT_INTS:
            out[key] = _int(value)
        elif key in _NULLABLE_INTS:
            out[key] = None if value is None else _int(value)
        elif key == "transactionHash":
            out[key] = _hexbytes(32, value)
        elif key == "blockHash":
            out[key] = None if value is None else _hexbytes(32, value)
        elif key == "logsBloom":
            out[key] = _hexbytes(256, value, variable_length=True)
        elif key in ("contractAddress", "from"):
            out[key] = None if value is None else _checksum(value)
        elif key == "to":
            out[key] = _checksum(value) if _is_address(value) else value
        else:
            out[key] = _plain(value)
    return cast(TxReceipt, AttributeDict(out))


def _format_log(raw: Mapping[str, Any]) -> AttributeDict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "topics":
            out[key] = [_hexbytes(32, topic) for topic in value]
        elif key == "data":
            out[key] = _hex_to_bytes(value)
        elif key == "address":
            out[key] = _checksum(value)
        elif key == "logIndex":
            out[key] = _int(value)
        elif key in _NULLABLE_HASHES:
            out[key] = None if value is None else _hexbytes(32, value)
        elif key in _NULLABLE_INTS:
            out[key] = None if value is None else _int(value)
        else:
            out[key] = _plain(value)
    return AttributeDict(out)


def _plain(value: Any) -> Any:
    """``AttributeDict.recursive``, answered at once for the scalars a node sends."""
    if value is None or isinstance(value, bool | int | str):
        return value
    return AttributeDict.recursive(value)


def _hex_to_bytes(value: Any) -> HexBytes:
    """``HexBytes(value)``; an even-length ``0x`` string is decoded here without the
    generic conversion's checks (the form every node sends)."""
    if isinstance(value, str) and value[:2] == "0x" and not len(value) % 2:
        return HexBytes(bytes.fromhex(value[2:]))
    return HexBytes(value)


def _int(value: Any) -> Any:
    """web3's ``to_integer_if_hex``: a string is hex, anything else stays."""
    return int(value, 16) if isinstance(value, str) else value


def _hexbytes(size: int, value: Any, variable_length: bool = False) -> HexBytes:
    """web3's ``to_hexbytes``: exactly ``size`` bytes (fewer when ``variable_length``);
    leading zero bytes beyond ``size`` are dropped, other extra bytes are an error."""
    result = _hex_to_bytes(value)
    extra = len(result) - size
    if extra == 0 or (variable_length and extra < 0):
        return result
    if extra > 0 and not any(result[:extra]):
        return HexBytes(result[extra:])
    raise ValueError(f"the value {result!r} is {len(result)} bytes, but should be {size}")


@functools.lru_cache(maxsize=4096)
def _checksum(address: str | bytes) -> ChecksumAddress:
    """An address's checksum form; a few addresses recur in every receipt of a market."""
    return to_checksum_address(address)


@functools.lru_cache(maxsize=4096)
def _is_address(value: Any) -> bool:
    return is_address(value)


def hash_bytes(tx_hash: Any) -> bytes:
    if isinstance(tx_hash, str):
        return bytes.fromhex(tx_hash.removeprefix("0x"))
    return bytes(tx_hash)


def hash_hex(tx_hash: Any) -> str:
    return "0x" + hash_bytes(tx_hash).hex()


def tester_receipt(evm: Any, tx_hash: bytes) -> TxReceipt | Literal[False] | None:
    """The receipt of ``tx_hash`` from py-evm as web3 returns eth-tester's (eth-tester's
    ``serialize_transaction_receipt`` renamed and formatted), None when no canonical block
    holds it, or False for a blob transaction (not rebuilt here).

    py-evm keeps an index from transaction hash to (block, position); the transaction found
    there is checked against the hash, since a snapshot revert leaves the index of the
    abandoned blocks behind.
    """
    from eth._utils.address import generate_contract_address
    from eth.exceptions import BlockNotFound, HeaderNotFound
    from eth.exceptions import TransactionNotFound as EvmTransactionNotFound

    try:
        number, index = evm.chaindb.get_transaction_index(Hash32(tx_hash))
        tx = evm.get_canonical_transaction_by_index(number, index)
        if bytes(tx.hash) != tx_hash:
            return None
        header = evm.chaindb.get_canonical_block_header_by_number(number)
        receipt = evm.get_transaction_receipt_by_index(number, index)
        before = evm.get_transaction_receipt_by_index(number, index - 1).gas_used if index else 0
    except (EvmTransactionNotFound, HeaderNotFound, BlockNotFound, KeyError, IndexError):
        return None
    tx_type = int(getattr(tx, "type_id", None) or 0)
    if tx_type == 3:
        return False
    if tx_type >= 2:
        price = min(tx.max_fee_per_gas, tx.max_priority_fee_per_gas + header.base_fee_per_gas)
    else:
        price = tx.gas_price
    block_hash = HexBytes(header.hash)
    hash_bytes = HexBytes(tx_hash)
    created = generate_contract_address(tx.sender, tx.nonce) if tx.to == b"" else None
    logs = [
        AttributeDict(
            {
                "type": "mined",
                "logIndex": log_index,
                "transactionIndex": index,
                "transactionHash": hash_bytes,
                "blockHash": block_hash,
                "blockNumber": number,
                "address": _checksum(bytes(entry.address)),
                "data": HexBytes(entry.data),
                "topics": [HexBytes(topic.to_bytes(32, "big")) for topic in entry.topics],
            }
        )
        for log_index, entry in enumerate(receipt.logs)
    ]
    state_root = bytes(receipt.state_root)
    return cast(
        TxReceipt,
        AttributeDict(
            {
                "blockHash": block_hash,
                "blockNumber": number,
                "contractAddress": None if created is None else _checksum(bytes(created)),
                "cumulativeGasUsed": receipt.gas_used,
                "effectiveGasPrice": price,
                "from": _checksum(bytes(tx.sender)),
                "gasUsed": receipt.gas_used - before,
                "logs": logs,
                "state_root": state_root,
                "status": int.from_bytes(state_root, "big"),
                "to": _checksum(bytes(tx.to)) if tx.to else "",
                "transactionHash": hash_bytes,
                "transactionIndex": index,
                "type": tx_type,
            }
        ),
    )


__all__ = ["format_receipt", "hash_bytes", "hash_hex", "tester_receipt"]
