"""EIP-712 order signing: the fast hashing and recovery agree with eth_account's reference."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak
from hypothesis import given
from hypothesis import strategies as st

from ledger import eip712 as signing
from ledger.errors import BadSignature

DOMAIN = signing.Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
KEY = Account.from_key("0x" + "11" * 32)


def reference_digest(full_message: dict[str, Any]) -> bytes:
    """The digest eth_account computes for eth_signTypedData_v4."""
    signable = encode_typed_data(full_message=full_message)
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


uint64 = st.integers(0, 2**64 - 1)
addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
orders = st.fixed_dictionaries(
    {
        "participant": addresses,
        "interval": uint64,
        "side": st.integers(0, 255),
        "quantityWh": uint64,
        "pricePerWh": st.integers(0, 2**128 - 1),
        "nonce": uint64,
        "expiry": uint64,
        "node": st.from_regex(signing.NODE_ID_PATTERN[:-1] + r"\Z"),
    }
)


@given(orders, st.integers(1, 2**64), addresses)
def test_order_digest_equals_eth_account_reference(
    message: Any, chain_id: Any, contract: Any
) -> None:
    domain = signing.Domain(chain_id, contract)
    ours = signing.digest(domain.separator, "Order", message)
    assert ours == reference_digest(signing.typed_data(domain, "Order", message))


@given(orders, st.integers(1, 2**64), addresses)
def test_order_digest_fast_path_equals_the_generic_digest(
    message: Any, chain_id: Any, contract: Any
) -> None:
    separator = signing.Domain(chain_id, contract).separator
    fast = signing.order_digest(
        separator,
        message["participant"],
        message["interval"],
        message["side"],
        message["quantityWh"],
        message["pricePerWh"],
        message["nonce"],
        message["expiry"],
        message["node"],
    )
    assert fast == signing.digest(separator, "Order", message)
    other = "x" + message["node"][:127]
    assert fast != signing.digest(separator, "Order", {**message, "node": other})


@given(addresses, st.binary(min_size=32, max_size=32), uint64, uint64)
def test_cancel_digest_equals_eth_account_reference(
    participant: Any, order_hash: Any, nonce: Any, expiry: Any
) -> None:
    message = {
        "participant": participant,
        "orderHash": "0x" + order_hash.hex(),
        "nonce": nonce,
        "expiry": expiry,
    }
    ours = signing.digest(DOMAIN.separator, "Cancel", message)
    assert ours == reference_digest(signing.typed_data(DOMAIN, "Cancel", message))


def test_close_gate_digest_equals_eth_account_reference() -> None:
    message = {"interval": 7, "nonce": 1, "expiry": 2**40}
    ours = signing.digest(DOMAIN.separator, "CloseGate", message)
    assert ours == reference_digest(signing.typed_data(DOMAIN, "CloseGate", message))


def _wallet_payload() -> dict[str, Any]:
    """What a dapp hands a browser wallet for eth_signTypedData_v4: uints as strings."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Order": signing.ORDER_TYPE,
        },
        "primaryType": "Order",
        "domain": {
            "name": signing.DOMAIN_NAME,
            "version": "1",
            "chainId": "31337",
            "verifyingContract": DOMAIN.verifying_contract.lower(),
        },
        "message": {
            "participant": KEY.address,
            "interval": "1963",
            "side": "1",
            "quantityWh": "2500",
            "pricePerWh": "250000000000000",
            "nonce": "42",
            "expiry": "1767225600",
            "node": "feeder-1:bus.7",
        },
    }


def test_wallet_signed_typed_data_recovers_the_participant() -> None:
    payload = _wallet_payload()
    signature = Account.sign_typed_data(KEY.key, full_message=payload).signature
    assert signature[64] in (27, 28)  # wallets return v as 27/28
    ours = signing.digest(DOMAIN.separator, "Order", payload["message"])
    assert signing.recover(ours, "0x" + bytes(signature).hex()) == KEY.address.lower()


def test_signature_with_v_as_0_or_1_is_accepted() -> None:
    digest = keccak(b"order")
    signature = bytes.fromhex(signing.sign_digest(KEY.key, digest)[2:])
    low_v = signature[:64] + bytes([signature[64] - 27])
    assert signing.recover(digest, "0x" + low_v.hex()) == KEY.address.lower()


def test_sign_and_fast_sign_digest_recover_the_same_signer() -> None:
    message = {k: int(v) if v.isdigit() else v for k, v in _wallet_payload()["message"].items()}
    digest = signing.digest(DOMAIN.separator, "Order", message)
    assert signing.recover(digest, signing.sign(KEY, DOMAIN, "Order", message)) == (
        KEY.address.lower()
    )
    assert signing.recover(digest, signing.sign_digest(KEY.key, digest)) == KEY.address.lower()


def test_signature_for_another_domain_recovers_another_address() -> None:
    message = {k: int(v) if v.isdigit() else v for k, v in _wallet_payload()["message"].items()}
    other_chain = signing.Domain(1, DOMAIN.verifying_contract)
    other_contract = signing.Domain(31337, "0x" + "99" * 20)
    digest = signing.digest(DOMAIN.separator, "Order", message)
    for domain in (other_chain, other_contract):
        signature = signing.sign(KEY, domain, "Order", message)
        assert signing.recover(digest, signature) != KEY.address.lower()


def test_high_s_signature_is_refused() -> None:
    digest = keccak(b"order")
    raw = bytes.fromhex(signing.sign_digest(KEY.key, digest)[2:])
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = int.from_bytes(raw[32:64], "big")
    flipped = raw[:32] + (n - s).to_bytes(32, "big") + bytes([55 - raw[64]])
    with pytest.raises(BadSignature, match="lower half"):
        signing.recover(digest, "0x" + flipped.hex())


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "0x",
        "0x1234",
        "0x" + "zz" * 65,
        "0x" + "11" * 64 + "1d",
        "0x" + "00" * 65,
        "0x" + "11" * 64 + "  ",
        12345,
    ],
)
def test_malformed_signature_is_refused(signature: Any) -> None:
    with pytest.raises(BadSignature):
        signing.recover(keccak(b"order"), signature)


def test_type_strings_are_the_published_eip712_types() -> None:
    assert signing._encode_type("Order", signing.ORDER_TYPE) == (
        b"Order(address participant,uint64 interval,uint8 side,uint64 quantityWh,"
        b"uint128 pricePerWh,uint64 nonce,uint64 expiry,string node)"
    )
    assert signing._encode_type("Cancel", signing.CANCEL_TYPE) == (
        b"Cancel(address participant,bytes32 orderHash,uint64 nonce,uint64 expiry)"
    )


@given(
    st.integers(0, 2**64 - 1),
    st.sampled_from(["buy", "sell"]),
    st.integers(1, 2**64 - 1),
    st.integers(1, 2**128 - 1),
    uint64,
    uint64,
)
def test_order_signer_signs_what_the_market_recovers_the_participant_from(
    interval: int, side: str, quantity: int, price: int, nonce: int, expiry: int
) -> None:
    from market.client import OrderSigner

    signer = OrderSigner(KEY, DOMAIN)
    body = signer.order(interval, side, quantity, price, nonce=nonce, expiry=expiry)
    message = dict(body["order"])
    for key in ("pricePerWh", "nonce", "expiry"):
        message[key] = int(message[key])
    generic = signing.digest(DOMAIN.separator, "Order", message)
    assert signing.recover(generic, body["signature"]) == KEY.address.lower()
    assert body["signature"] == signing.sign(KEY, DOMAIN, "Order", message)


def test_order_signer_still_signs_an_out_of_range_order_for_the_market_to_refuse() -> None:
    from market.client import OrderSigner

    body = OrderSigner(KEY, DOMAIN).order(2**64, "buy", 1, 1, nonce=1, expiry=2)
    assert body["order"]["interval"] == 2**64
    assert len(body["signature"]) == 132
