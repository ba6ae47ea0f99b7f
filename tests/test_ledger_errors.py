"""The one table from Solidity custom errors to Python exceptions is complete and decodes."""

from __future__ import annotations

from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from chain.artifacts import load_artifact
from chain.reverts import decode_revert, error_selectors
from ledger.contract_errors import ERRORS_BY_NAME, InsufficientCollateral, LedgerError, LedgerRevert
from ledger.errors import WattledgerError

SAMPLE = {
    "address": "0x00000000000000000000000000000000000000aA",
    "uint256": 2**200 + 7,
    "uint64": 2**64 - 1,
    "uint128": 2**128 - 1,
    "uint16": 10_000,
    "uint32": 2**32 - 1,
    "bytes32": b"\x11" * 32,
    "string": "too long",
}


def _abi_errors() -> list[dict[str, Any]]:
    return [e for e in load_artifact("EnergyMarket").abi if e["type"] == "error"]


def test_every_abi_error_has_a_python_exception() -> None:
    missing = sorted({e["name"] for e in _abi_errors()} - set(ERRORS_BY_NAME))
    assert missing == [], f"add these Solidity errors to deploy/ledger_errors.py: {missing}"


def test_mapped_classes_match_the_abi_arity_and_are_documented() -> None:
    for entry in _abi_errors():
        cls = ERRORS_BY_NAME[entry["name"]]
        assert issubclass(cls, LedgerError) and issubclass(cls, WattledgerError)
        assert cls.solidity_name == entry["name"]
        assert len(cls.fields) == len(entry["inputs"]), entry["name"]
        assert cls.__doc__ and cls.__doc__.startswith("Raised when")


def test_every_error_decodes_from_revert_data_with_its_arguments() -> None:
    for entry in _abi_errors():
        types = [i["type"] for i in entry["inputs"]]
        values = [SAMPLE[t] for t in types]
        selector = keccak(text=f"{entry['name']}({','.join(types)})")[:4]
        err = decode_revert("0x" + (selector + encode(types, values)).hex())
        assert type(err) is ERRORS_BY_NAME[entry["name"]]
        expected = tuple(
            v.lower() if isinstance(v, str) and v.startswith("0x") else v for v in values
        )
        got = tuple(
            v.lower() if isinstance(v, str) and v.startswith("0x") else v for v in err.values
        )
        assert got == expected


def test_selector_table_covers_every_abi_error() -> None:
    assert len(error_selectors()) == len(_abi_errors())


def test_unknown_revert_data_gives_ledger_revert() -> None:
    assert isinstance(decode_revert("0xdeadbeef"), LedgerRevert)
    assert isinstance(decode_revert(None, "panic"), LedgerRevert)


def test_error_exposes_named_fields_and_compares_by_value() -> None:
    a = InsufficientCollateral("0xabc", 10, 3)
    assert (a.participant, a.needed, a.free) == ("0xabc", 10, 3)
    assert a == InsufficientCollateral("0xabc", 10, 3)
    assert a != InsufficientCollateral("0xabc", 10, 4)
    assert "needed=10" in str(a)
