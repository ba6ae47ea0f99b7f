"""Contract reverts as the Python exceptions of :mod:`ledger.contract_errors`."""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_tester.exceptions import TransactionFailed
from eth_utils.crypto import keccak
from web3.exceptions import ContractLogicError

from chain.artifacts import load_artifact
from ledger.addresses import checksum_address
from ledger.contract_errors import ERRORS_BY_NAME, LedgerError, LedgerRevert


def _error_selectors(abi: Iterable[Mapping[str, Any]]) -> dict[bytes, tuple[str, list[str]]]:
    table: dict[bytes, tuple[str, list[str]]] = {}
    for entry in abi:
        if entry.get("type") != "error":
            continue
        types = [str(i["type"]) for i in entry["inputs"]]
        signature = f"{entry['name']}({','.join(types)})"
        table[bytes(keccak(text=signature))[:4]] = (str(entry["name"]), types)
    return table


_SELECTORS: dict[bytes, tuple[str, list[str]]] | None = None


def error_selectors() -> dict[bytes, tuple[str, list[str]]]:
    """4-byte selector -> (error name, argument types), from the compiled EnergyMarket ABI."""
    global _SELECTORS
    if _SELECTORS is None:
        _SELECTORS = _error_selectors(load_artifact("EnergyMarket").abi)
    return _SELECTORS


def decode_revert(data: bytes | str | Mapping[str, Any] | None, reason: str = "") -> LedgerError:
    """Return the exception for revert ``data`` (4-byte selector + ABI-encoded arguments).

    Unknown selectors, panics and empty data give :class:`LedgerRevert` with ``reason``.
    """
    raw = _to_bytes(data)
    if len(raw) >= 4 and raw[:4] in error_selectors():
        name, types = error_selectors()[raw[:4]]
        values = abi_decode(types, raw[4:]) if types else ()
        cleaned = tuple(
            checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True)
        )
        return ERRORS_BY_NAME[name](*cleaned)
    return LedgerRevert(reason or ("0x" + raw.hex() if raw else "reverted without data"))


def _to_bytes(data: bytes | str | Mapping[str, Any] | None) -> bytes:
    if data is None:
        return b""
    if isinstance(data, Mapping):
        return _to_bytes(data.get("data"))
    if isinstance(data, bytes):
        return data
    text = data.removeprefix("0x")
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def _tester_revert_data(err: BaseException) -> bytes | None:
    """Revert data of an eth-tester ``TransactionFailed`` (it carries bytes, or their repr)."""
    seen: set[int] = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        arg = node.args[0] if node.args else None
        if isinstance(arg, bytes):
            return arg
        if isinstance(arg, str) and arg.startswith(_TESTER_PREFIX):
            with contextlib.suppress(ValueError, SyntaxError):
                value = ast.literal_eval(arg.removeprefix(_TESTER_PREFIX))
                if isinstance(value, bytes):
                    return value
        node = node.__cause__ or node.__context__
    return None


_TESTER_PREFIX = "execution reverted: "


@contextlib.contextmanager
def mapped_reverts() -> Iterator[None]:
    """Turn contract reverts raised inside the block into :class:`LedgerError`.

    Handles web3's ``ContractLogicError`` (JSON-RPC nodes such as anvil) and eth-tester's
    ``TransactionFailed`` (the embedded chain).
    """
    try:
        yield
    except ContractLogicError as err:
        raise decode_revert(err.data, str(err.message or err)) from None
    except TransactionFailed as err:
        raise decode_revert(_tester_revert_data(err), str(err)) from None


__all__ = [
    "decode_revert",
    "error_selectors",
    "mapped_reverts",
]
