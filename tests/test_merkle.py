"""The book root: OpenZeppelin MerkleProof-compatible tree over order hashes."""

from __future__ import annotations

from typing import Any

import pytest
from eth_hash.auto import keccak
from hypothesis import given
from hypothesis import strategies as st

from chain.artifacts import REPO_ROOT
from chain.connection import Chain
from deploy.compiler import EVM_VERSION, REMAPPINGS, SHIM_PATH
from ledger.merkle import EMPTY_ROOT, MerkleTree, hash_pair, leaf_hash, verify


def _h(label: str) -> bytes:
    return keccak(label.encode())


def test_three_order_tree_matches_a_hand_computed_root_and_proofs() -> None:
    hashes = [_h("order-1"), _h("order-2"), _h("order-3")]
    # Leaves are keccak(keccak(abi.encode(orderHash))); abi.encode(bytes32) is the hash itself.
    a, b, c = sorted(keccak(keccak(h)) for h in hashes)
    # StandardMerkleTree layout for 3 leaves: nodes [root, n1, c, b, a] with n1 = H(a, b).
    n1 = keccak(a + b)  # a < b, so the sorted pair is a ‖ b
    root = keccak(min(n1, c) + max(n1, c))
    tree = MerkleTree.of(hashes)
    assert tree.root == root
    by_leaf = {keccak(keccak(h)): h for h in hashes}
    assert tree.proof(by_leaf[a]) == [b, c]
    assert tree.proof(by_leaf[b]) == [a, c]
    assert tree.proof(by_leaf[c]) == [n1]


def test_empty_book_has_zero_root_and_single_order_root_is_its_leaf() -> None:
    assert MerkleTree.of([]).root == EMPTY_ROOT == bytes(32)
    only = _h("only")
    tree = MerkleTree.of([only])
    assert tree.root == leaf_hash(only)
    assert tree.proof(only) == []


@given(st.sets(st.binary(min_size=32, max_size=32), min_size=1, max_size=40))
def test_every_member_proof_verifies_and_order_of_input_does_not_matter(hashes: Any) -> None:
    ordered = sorted(hashes)
    tree = MerkleTree.of(ordered)
    assert MerkleTree.of(list(reversed(ordered))).root == tree.root
    for h in ordered:
        assert verify(tree.proof(h), tree.root, leaf_hash(h))


@given(st.sets(st.binary(min_size=32, max_size=32), min_size=2, max_size=20))
def test_a_proof_does_not_verify_another_order_or_a_tampered_root(hashes: Any) -> None:
    members = sorted(hashes)
    outsider, members = members[0], members[1:]
    tree = MerkleTree.of(members)
    proof = tree.proof(members[0])
    assert not verify(proof, tree.root, leaf_hash(outsider))
    assert not verify(proof, bytes(32), leaf_hash(members[0]))


def test_inner_nodes_hash_sorted_pairs() -> None:
    x, y = _h("x"), _h("y")
    assert hash_pair(x, y) == hash_pair(y, x) == keccak(min(x, y) + max(x, y))


def test_duplicate_order_hash_is_refused() -> None:
    with pytest.raises(ValueError):
        MerkleTree.of([_h("a"), _h("a")])


VERIFIER = """
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
contract BookProofVerifier {
    function verify(bytes32[] calldata proof, bytes32 root, bytes32 orderHash)
        external pure returns (bool)
    {
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(orderHash))));
        return MerkleProof.verify(proof, root, leaf);
    }
}
"""


@pytest.mark.slow
def test_openzeppelin_merkle_proof_accepts_our_proofs_on_chain(chain: Chain) -> None:
    import solcx

    output = solcx.compile_standard(
        {
            "language": "Solidity",
            "sources": {"BookProofVerifier.sol": {"content": VERIFIER}},
            "settings": {
                "evmVersion": EVM_VERSION,
                "remappings": list(REMAPPINGS),
                "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
            },
        },
        solc_binary=str(SHIM_PATH),
        base_path=str(REPO_ROOT),
        allow_paths=str(REPO_ROOT),
    )
    compiled = output["contracts"]["BookProofVerifier.sol"]["BookProofVerifier"]
    factory = chain.w3.eth.contract(
        abi=compiled["abi"], bytecode="0x" + compiled["evm"]["bytecode"]["object"]
    )
    receipt = chain.w3.eth.wait_for_transaction_receipt(
        factory.constructor().transact({"from": chain.accounts[0]})
    )
    verifier = chain.w3.eth.contract(address=receipt["contractAddress"], abi=compiled["abi"])
    hashes = [_h(f"order-{i}") for i in range(7)]
    tree = MerkleTree.of(hashes)
    for h in hashes:
        assert verifier.functions.verify(tree.proof(h), tree.root, h).call()
    assert not verifier.functions.verify(tree.proof(hashes[0]), tree.root, hashes[1]).call()
    single = MerkleTree.of([hashes[0]])
    assert verifier.functions.verify([], single.root, hashes[0]).call()
