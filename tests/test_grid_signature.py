"""The grid operator's EIP-712 signature over a grid document (docs/grid.md §1.1)."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak
from hypothesis import given
from hypothesis import strategies as st

from ledger import eip712 as signing
from ledger.errors import BadSignature
from ledger.grid_signature import (
    GridSignatureMismatch,
    grid_document_digest,
    recover_grid_signer,
    sign_grid_document,
    verify_grid_signature,
)
from market.grid import single_node_grid

DOMAIN = signing.Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
DSO = Account.from_key("0x" + "22" * 32)
OTHER = Account.from_key("0x" + "33" * 32)
DSO_KEY = bytes.fromhex("22" * 32)
OTHER_KEY = bytes.fromhex("33" * 32)


@given(
    interval=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    chain_id=st.integers(1, 2**64),
)
def test_grid_document_digest_equals_eth_account_reference(
    interval: int, root: bytes, chain_id: int
) -> None:
    domain = signing.Domain(chain_id, DOMAIN.verifying_contract)
    message = {"interval": interval, "gridRoot": "0x" + root.hex()}
    signable = encode_typed_data(full_message=signing.typed_data(domain, "GridDocument", message))
    reference = keccak(b"\x19" + signable.version + signable.header + signable.body)
    assert grid_document_digest(domain.separator, interval, root) == reference
    assert signing.digest(domain.separator, "GridDocument", message) == reference


def test_a_wallet_signature_recovers_to_the_grid_operator() -> None:
    grid = single_node_grid("sub", interval=7)
    message = {"interval": 7, "gridRoot": grid.grid_root_hex}
    wallet = signing.sign(DSO, DOMAIN, "GridDocument", message)
    assert recover_grid_signer(DOMAIN, 7, grid.grid_root, wallet) == DSO.address.lower()
    ours = sign_grid_document(DSO_KEY, DOMAIN, 7, grid.grid_root)
    verify_grid_signature(DOMAIN, 7, grid.grid_root, ours, DSO.address)


def test_a_tampered_root_interval_domain_or_signer_fails() -> None:
    root = single_node_grid("sub", interval=7).grid_root
    signature = sign_grid_document(DSO_KEY, DOMAIN, 7, root)
    loosened = single_node_grid("substation", interval=7).grid_root
    with pytest.raises(GridSignatureMismatch, match="not to the grid operator"):
        verify_grid_signature(DOMAIN, 7, loosened, signature, DSO.address)
    with pytest.raises(GridSignatureMismatch):
        verify_grid_signature(DOMAIN, 8, root, signature, DSO.address)
    other_market = signing.Domain(31337, "0x" + "ab" * 20)
    with pytest.raises(GridSignatureMismatch):
        verify_grid_signature(other_market, 7, root, signature, DSO.address)
    forged = sign_grid_document(OTHER_KEY, DOMAIN, 7, root)
    with pytest.raises(GridSignatureMismatch, match=OTHER.address.lower()):
        verify_grid_signature(DOMAIN, 7, root, forged, DSO.address)
    with pytest.raises(BadSignature):
        verify_grid_signature(DOMAIN, 7, root, "0x1234", DSO.address)


def test_the_digest_refuses_a_root_that_is_not_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        grid_document_digest(DOMAIN.separator, 1, b"\x00" * 31)
    with pytest.raises(OverflowError):
        grid_document_digest(DOMAIN.separator, 2**64, b"\x00" * 32)
