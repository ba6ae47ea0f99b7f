"""Chain connection: the embedded eth-tester chain by default, or any JSON-RPC endpoint.

:func:`connect` is the one way the rest of the system gets a :class:`Chain`: a connected
``Web3`` plus funded development accounts whose private keys are known, and the few test
controls (advance time, mine, snapshot) that both eth-tester and anvil offer.

* ``connect()`` starts an in-process eth-tester chain (py-evm, Prague rules) with ten
  accounts of 1,000,000 ETH each; nothing needs to be running.
* ``connect("http://127.0.0.1:8545")`` reaches anvil (``wattledger node``) or any other
  JSON-RPC chain. Anvil's ten default accounts are known; on another chain pass the
  accounts to sign with (``accounts``, decrypted from keystores by :mod:`chain.keys`) or
  raw keys (``private_keys``). ``WATTLEDGER_PRIVATE_KEY`` is read on a local dev chain only,
  or anywhere with ``allow_env_keys`` (:func:`chain.keys.env_key`).

Many view calls at once (:meth:`Chain.view_calls`) run against one state: on eth-tester in
one py-evm state whose account and storage caches the calls share (a fifth of the cost of a
call each), on a JSON-RPC node as one batch request pinned to one block.

Receipts (:meth:`Chain.receipt`, :meth:`Chain.wait_for_receipt`) come in web3's shape but
not through web3's result formatters, which walk every value of every log with generic
machinery (a checksum per log address): 20 ms for a commit with 150 logs where the node
answered in 2. The chain id is read once per :class:`Chain`, and web3's own validation of
``eth_call`` and ``eth_sendTransaction`` reads it from the provider's cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlparse

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import Address, ChecksumAddress
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound
from web3.middleware import SignAndSendRawMiddlewareBuilder
from web3.types import RPCEndpoint, TxReceipt, Wei

from chain.errors import ChainConnectionError
from chain.fee_cap import NO_CAP, FeeCap, format_gwei
from chain.finality import IMMEDIATE, Finality
from chain.keys import env_key
from chain.receipts import format_receipt, hash_bytes, hash_hex, tester_receipt
from chain.rpc import unreachable_reason

ChainKind = Literal["eth-tester", "json-rpc"]

# The well-known development mnemonic anvil (and hardhat) fund by default. These keys are
# public knowledge and only ever hold test funds.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
ANVIL_CHAIN_ID = 31337
DEV_ACCOUNT_COUNT = 10
PRIVATE_KEY_ENV = "WATTLEDGER_PRIVATE_KEY"
RPC_TIMEOUT_SECONDS = 30
VIEW_GAS = 30_000_000
"""Gas given to a view call (the conventional ``eth_call`` cap)."""
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
FEE_CAP_POLL_SECONDS = 2.0
"""How often a transaction held back by the fee cap looks at the base fee again."""
DEFAULT_TIP_WEI = 1_000_000_000
"""Tip asked for when the node suggests none (1 gwei)."""

log = logging.getLogger("wattledger.chain")


def is_dev_chain(chain_id: int, *, embedded: bool = False) -> bool:
    """True for a local development chain: the embedded chain, or anvil's chain id. Raw keys
    from the environment are allowed there, and a mined block is final there."""
    return embedded or chain_id == ANVIL_CHAIN_ID


@dataclass(frozen=True)
class ViewCall:
    """One read-only contract call: ABI-encoded ``data`` sent to ``to``."""

    to: str
    data: bytes


@dataclass
class Chain:
    """A connected chain with funded accounts whose keys are known.

    ``signers`` are the accounts this process can sign for; ``accounts`` their addresses
    (the first is the default deployer and operator). ``allow_env_keys``: raw private keys
    from the environment are accepted on a chain that is not a local dev chain
    (:meth:`env_key`).
    """

    w3: Web3
    kind: ChainKind
    rpc_url: str | None
    signers: tuple[LocalAccount, ...] = field(repr=False)
    _tester: Any = field(default=None, repr=False)
    _chain_id: int | None = field(default=None, repr=False)
    allow_env_keys: bool = False
    fee_cap: FeeCap = NO_CAP
    """The most a transaction sent through :meth:`capped_fees` (the market's commits and
    registrations) pays per gas; the settlement service has its own
    (``TxPolicy.fee_cap``)."""
    finality: Finality = IMMEDIATE
    """When a transaction on this chain counts as done (:mod:`chain.finality`): every service
    marks a step done only once it is final. Final once mined unless set (the command line
    sets the chain's default, :func:`chain.canonical.resolve_finality`)."""

    @property
    def chain_id(self) -> int:
        """The chain id reported by the node, asked once: an endpoint's chain id does not
        change (a request each time cost a day's simulation 2,000 round trips)."""
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    @property
    def accounts(self) -> tuple[ChecksumAddress, ...]:
        """Addresses of the funded accounts this process can sign for."""
        return tuple(Web3.to_checksum_address(s.address) for s in self.signers)

    @property
    def is_embedded(self) -> bool:
        """True for the in-process eth-tester chain."""
        return self.kind == "eth-tester"

    @property
    def is_dev(self) -> bool:
        """True for a local development chain (:func:`is_dev_chain`)."""
        return is_dev_chain(self.chain_id, embedded=self.is_embedded)

    def env_key(self, name: str) -> str | None:
        """The raw private key in the environment variable ``name`` (None when unset); on a
        chain that is not a dev chain refused unless :attr:`allow_env_keys`
        (:func:`chain.keys.env_key`)."""
        where = f"the chain at {self.rpc_url} (chain id {self.chain_id})"
        return env_key(name, dev_chain=self.is_dev, allow_env_keys=self.allow_env_keys, where=where)

    def capped_fees(self, *, sleep: Callable[[float], None] = time.sleep) -> dict[str, int] | None:
        """EIP-1559 fee fields within :attr:`fee_cap` for a transaction sent now, or None
        to leave them to web3 (no cap, or the embedded chain's legacy pricing).

        ``maxFeePerGas = min(2 * baseFee + tip, cap)`` with the node's tip (capped). While
        the latest base fee plus the tip is above the cap it waits, saying so in the log
        (the current base fee and the cap), and never pays more."""
        cap = self.fee_cap
        if not cap.active or self.is_embedded:
            return None
        said = False
        while True:
            block = self.w3.eth.get_block("latest")
            base = block.get("baseFeePerGas")
            try:
                tip = int(self.w3.eth.max_priority_fee)
            except Exception:  # a node without eth_maxPriorityFeePerGas
                tip = DEFAULT_TIP_WEI
            tip = cap.tip(max(tip, 1))
            if base is None:
                return {"gasPrice": cap.max_fee(int(self.w3.eth.gas_price))}
            if not cap.blocks(int(base), tip):
                if said:
                    log.warning("base fee %s is within the fee cap again", format_gwei(int(base)))
                max_fee = cap.max_fee(2 * int(base) + tip)
                return {"maxFeePerGas": max_fee, "maxPriorityFeePerGas": min(tip, max_fee)}
            if not said:
                log.warning(
                    "waiting: the base fee is %s (tip %s), above the fee cap (%s); "
                    "nothing sent until it falls",
                    format_gwei(int(base)),
                    format_gwei(tip),
                    cap.describe(),
                )
                said = True
            sleep(FEE_CAP_POLL_SECONDS)

    def add_signer(self, account: LocalAccount) -> None:
        """Let transactions ``from`` this account be signed locally and sent raw."""
        self.w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)

    def timestamp(self) -> int:
        """Timestamp (seconds) of the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def mine(self, blocks: int = 1) -> None:
        """Mine ``blocks`` empty blocks."""
        if self._tester is not None:
            self._tester.mine_blocks(blocks)
            return
        for _ in range(blocks):
            self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def advance_time(self, seconds: int) -> None:
        """Move chain time forward by ``seconds`` and mine a block at the new time."""
        if seconds < 0:
            raise ValueError("cannot move chain time backwards")
        if self._tester is not None:
            # time_travel mines a block just before the target; the next one lands on it.
            self._tester.time_travel(self.timestamp() + seconds)
            self._tester.mine_blocks(1)
            return
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.mine(1)

    def wait_for_receipt(self, tx_hash: Any, timeout_seconds: float = 120.0) -> TxReceipt:
        """The receipt of ``tx_hash`` (as :meth:`receipt` gives it), polling from 5 ms and
        doubling to 0.5 s (web3's ``wait_for_transaction_receipt`` polls every 0.1 s, and a
        local node mines within a few milliseconds); web3's ``TimeExhausted`` after
        ``timeout_seconds``."""
        deadline = time.monotonic() + timeout_seconds
        delay = 0.005
        while True:
            found = self.receipt(tx_hash)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise TimeExhausted(f"no receipt for {tx_hash!r} after {timeout_seconds} s")
            time.sleep(delay)
            delay = min(2 * delay, 0.5)

    def block_number(self) -> int:
        """Number of the latest block (what a read at ``latest`` sees), as cheaply as the
        chain allows: eth-tester's head header, or a bare ``eth_blockNumber`` request."""
        if self._tester is not None:
            return int(self._tester.backend.chain.get_canonical_head().block_number)
        response = self.w3.provider.make_request(RPCEndpoint("eth_blockNumber"), [])
        if response.get("error") or "result" not in response:
            return int(self.w3.eth.block_number)  # let web3 raise its own error
        result = response["result"]
        return int(result, 16) if isinstance(result, str) else int(result)

    def head(self) -> tuple[int, bytes, int]:
        """(number, hash, timestamp) of the latest block: py-evm's head header on the embedded
        chain, one ``eth_getBlockByNumber`` on a node."""
        if self._tester is not None:
            header = self._tester.backend.chain.get_canonical_head()
            return int(header.block_number), bytes(header.hash), int(header.timestamp)
        block = self.w3.eth.get_block("latest")
        return int(block["number"]), bytes(block["hash"]), int(block["timestamp"])

    def pending(self) -> tuple[int, int] | None:
        """(timestamp, number) of the block being built on the embedded chain (the block the
        next transaction lands in), read from py-evm; None on a JSON-RPC node (ask it)."""
        if self._tester is None:
            return None
        header = self._tester.backend.chain.header
        return int(header.timestamp), int(header.block_number)

    def logs(self, address: str, from_block: int, to_block: int) -> list[dict[str, Any]]:
        """Every log ``address`` emitted in blocks ``[from_block, to_block]``, in chain order,
        each ``{"address", "topics", "data", "blockNumber", "blockHash", "transactionHash",
        "transactionIndex", "logIndex"}`` (topics and hashes as bytes), the fields web3's
        event decoding (``process_log``) reads.

        On eth-tester straight from py-evm's receipts: its ``eth_getLogs`` looks every
        transaction of the range up by scanning back from the newest block and serialises
        every log of every receipt, a tenth of a second for a block with a batch of readings.
        """
        if self._tester is None:
            params: Any = {"address": address, "fromBlock": from_block, "toBlock": to_block}
            return [
                {
                    "address": str(e["address"]),
                    "topics": [bytes(t) for t in e["topics"]],
                    "data": bytes(e["data"]),
                    "blockNumber": int(e["blockNumber"]),
                    "blockHash": bytes(e["blockHash"]),
                    "transactionHash": bytes(e["transactionHash"]),
                    "transactionIndex": int(e["transactionIndex"]),
                    "logIndex": int(e["logIndex"]),
                }
                for e in self.w3.eth.get_logs(params)
            ]
        evm = self._tester.backend.chain
        wanted = bytes.fromhex(address[2:])
        checksum = Web3.to_checksum_address(address)
        out: list[dict[str, Any]] = []
        head = int(evm.get_canonical_head().block_number)
        for number in range(max(from_block, 0), min(to_block, head) + 1):
            block = evm.get_canonical_block_by_number(number)
            if not block.transactions:
                continue
            index = 0
            block_hash = bytes(block.hash)
            for tx_index, (tx, receipt) in enumerate(
                zip(block.transactions, block.get_receipts(evm.chaindb), strict=True)
            ):
                tx_hash: bytes | None = None  # py-evm re-encodes the transaction per .hash
                for entry in receipt.logs:
                    if entry.address == wanted:
                        if tx_hash is None:
                            tx_hash = bytes(tx.hash)
                        out.append(
                            {
                                "address": checksum,
                                "topics": [t.to_bytes(32, "big") for t in entry.topics],
                                "data": bytes(entry.data),
                                "blockNumber": number,
                                "blockHash": block_hash,
                                "transactionHash": tx_hash,
                                "transactionIndex": tx_index,
                                "logIndex": index,
                            }
                        )
                    index += 1
        return out

    def receipt(self, tx_hash: Any) -> TxReceipt | None:
        """The receipt of the mined transaction ``tx_hash`` (bytes or 0x hex), or None while
        the chain has none: what ``w3.eth.get_transaction_receipt`` returns, the same keys
        with the same values and types (logs included, so web3's ``process_receipt`` reads
        it), without web3's formatting machinery.

        A JSON-RPC node is asked with a bare ``eth_getTransactionReceipt`` and the answer is
        formatted by :func:`format_receipt`. The embedded chain's receipt is read from
        py-evm by the transaction's index (eth-tester finds a receipt by decoding blocks
        back from the newest, then serialises and renames every field twice).
        """
        if self._tester is not None:
            found = tester_receipt(self._tester.backend.chain, hash_bytes(tx_hash))
            if found is not False:
                return found
            # A transaction this reader does not cover (a blob transaction): ask web3.
        else:
            response = self.w3.provider.make_request(
                RPCEndpoint("eth_getTransactionReceipt"), [hash_hex(tx_hash)]
            )
            if not response.get("error") and "result" in response:
                result = response["result"]
                return None if result is None else format_receipt(result)
        try:  # let web3 answer (or raise its own error)
            return self.w3.eth.get_transaction_receipt(hash_hex(tx_hash))  # type: ignore[arg-type]
        except TransactionNotFound:
            return None

    def block_hash(self, number: int) -> bytes:
        """Hash of the canonical block ``number``."""
        if self._tester is not None:
            return bytes(self._tester.backend.chain.get_canonical_block_hash(number))
        return bytes(self.w3.eth.get_block(number)["hash"])

    def view_calls(
        self, calls: Sequence[ViewCall], *, sender: str | None = None
    ) -> tuple[int, list[bytes]]:
        """Run ``calls`` against the state of one block; return its number and each output.

        eth-tester: one py-evm state for all calls (what ``eth_call`` at ``latest`` runs each
        in a state of its own, rebuilt from the state root, with every account and storage
        word read from the trie again). A JSON-RPC node: one batch request of ``eth_call``
        at one block number. A call that reverts raises web3's ``ContractLogicError`` with
        the revert data, as ``fn.call()`` does on a node.
        """
        origin = sender or (self.signers[0].address if self.signers else "0x" + "00" * 20)
        if not calls:
            return self.block_number(), []
        if self._tester is not None:
            return self._tester_views(calls, origin)
        number = self.block_number()
        tag = hex(number)
        batch = [
            (
                RPCEndpoint("eth_call"),
                [{"from": origin, "to": c.to, "data": "0x" + c.data.hex()}, tag],
            )
            for c in calls
        ]
        provider: Any = self.w3.provider
        replies = provider.make_batch_request(batch)
        if not isinstance(replies, list) or len(replies) != len(calls):
            raise RuntimeError(f"the node did not answer the batch of calls: {replies!r}"[:300])
        out = []
        for reply in replies:
            error = reply.get("error")
            if error:
                data = error.get("data") if isinstance(error, dict) else None
                message = error.get("message", error) if isinstance(error, dict) else error
                raise ContractLogicError(str(message), data=data)
            result = reply["result"]
            out.append(bytes.fromhex(result[2:]) if isinstance(result, str) else bytes(result))
        return number, out

    def _tester_views(self, calls: Sequence[ViewCall], origin: str) -> tuple[int, list[bytes]]:
        from eth.vm.message import Message

        evm = self._tester.backend.chain
        header = evm.get_canonical_head()
        state = evm.get_vm(at_header=header).state
        sender = Address(bytes.fromhex(origin[2:]))
        context = state.get_transaction_context_class()(gas_price=0, origin=sender)
        code: dict[Address, bytes] = {}
        out = []
        for call in calls:
            to = Address(bytes.fromhex(call.to[2:]))
            if to not in code:
                code[to] = state.get_code(to)
            message = Message(
                gas=VIEW_GAS, to=to, sender=sender, value=0, data=call.data, code=code[to]
            )
            snapshot = state.snapshot()
            computation = state.computation_class.apply_message(state, message, context)
            state.revert(snapshot)
            if computation.is_error:
                error = computation.error
                data = error.args[0] if error.args and isinstance(error.args[0], bytes) else b""
                raise ContractLogicError(f"execution reverted: {error!r}", data="0x" + data.hex())
            out.append(bytes(computation.output))
        return int(header.block_number), out

    def snapshot(self) -> Any:
        """Take a snapshot of chain state; pass the result to :meth:`revert`."""
        if self._tester is not None:
            return self._tester.take_snapshot()
        return self.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]

    def revert(self, snapshot_id: Any) -> None:
        """Return chain state to a snapshot taken with :meth:`snapshot`."""
        if self._tester is not None:
            self._tester.revert_to_snapshot(snapshot_id)
            return
        self.w3.provider.make_request("evm_revert", [snapshot_id])  # type: ignore[arg-type]


def anvil_dev_accounts(count: int = DEV_ACCOUNT_COUNT) -> tuple[LocalAccount, ...]:
    """Return anvil's default funded accounts (derived from its public test mnemonic)."""
    Account.enable_unaudited_hdwallet_features()
    return tuple(
        Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")
        for i in range(count)
    )


EMBEDDED_FUNDING_WEI = 1_000 * 10**18
"""Ether given on the embedded chain to an account this process brought (a keystore's): the
chain lives as long as the process, and its own accounts hold all its ether."""


def _embedded(accounts: tuple[LocalAccount, ...] = ()) -> Chain:
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider

    from chain.calldata_floor import install as install_calldata_floor
    from chain.trie_cache import install as install_trie_node_cache

    install_trie_node_cache()
    install_calldata_floor()
    backend = PyEVMBackend()
    tester = EthereumTester(backend)
    w3 = Web3(EthereumTesterProvider(tester))
    own = tuple(Account.from_key(key) for key in backend.account_keys)
    chain = Chain(w3=w3, kind="eth-tester", rpc_url=None, signers=accounts + own, _tester=tester)
    for account in accounts:
        chain.add_signer(account)
        tx_hash = w3.eth.send_transaction(
            {"from": own[0].address, "to": account.address, "value": Wei(EMBEDDED_FUNDING_WEI)}
        )
        chain.wait_for_receipt(tx_hash)
    return chain


def local_session(rpc_url: str) -> requests.Session | None:
    """A requests session that ignores the environment's proxy settings, for an endpoint on
    this machine (``127.0.0.1``, ``localhost``, ``::1``); None for any other host.

    requests looks the proxy settings up in the environment on every request (0.4 ms, a
    tenth of a local node's answer). A loopback address is never meant to go through a
    proxy; a remote endpoint keeps the default session, so users behind a proxy still
    reach it.
    """
    if (urlparse(rpc_url).hostname or "") not in LOOPBACK_HOSTS:
        return None
    session = requests.Session()
    session.trust_env = False
    return session


def http_provider(rpc_url: str) -> HTTPProvider:
    """web3's HTTP provider for ``rpc_url``: a proxy-free session for a node on this machine
    (:func:`local_session`), and ``eth_chainId`` answered from the provider's cache (web3's
    validation of every ``eth_call``, ``eth_estimateGas`` and ``eth_sendTransaction`` asks
    for it)."""
    return HTTPProvider(
        rpc_url,
        request_kwargs={"timeout": RPC_TIMEOUT_SECONDS},
        session=local_session(rpc_url),
        cache_allowed_requests=True,
        cacheable_requests={RPCEndpoint("eth_chainId")},
    )


def _json_rpc(
    rpc_url: str,
    private_keys: tuple[str, ...],
    accounts: tuple[LocalAccount, ...],
    allow_env_keys: bool,
) -> Chain:
    w3 = Web3(http_provider(rpc_url))
    try:
        chain_id = int(w3.eth.chain_id)
    except Exception as err:  # requests, JSON and RPC errors all mean "not a usable chain"
        raise ChainConnectionError(
            f"Cannot reach a chain at {rpc_url}: {unreachable_reason(err)}.",
            hint=(
                "Start a local node with `wattledger node` (anvil on 127.0.0.1:8545), check the "
                "URL and port, or leave out --rpc-url to use the embedded chain."
            ),
        ) from None
    chain = Chain(
        w3=w3,
        kind="json-rpc",
        rpc_url=rpc_url,
        signers=(),
        _chain_id=chain_id,
        allow_env_keys=allow_env_keys,
    )
    signers: tuple[LocalAccount, ...] = accounts
    if not signers:
        keys = private_keys
        if not keys:
            from_env = chain.env_key(PRIVATE_KEY_ENV)
            keys = (from_env,) if from_env else ()
        signers = tuple(Account.from_key(k) for k in keys)
    if not signers and chain_id == ANVIL_CHAIN_ID:
        signers = anvil_dev_accounts()
    if not signers:
        raise ChainConnectionError(
            f"The chain at {rpc_url} (chain id {chain_id}) is not a local anvil, so its "
            "funded accounts are unknown.",
            hint="Pass --keystore PATH, the encrypted keystore of a funded account (with "
            "--password-file PATH, or type the password when asked).",
        )
    chain.signers = signers
    unlocked = {a.lower() for a in w3.eth.accounts} if chain_id == ANVIL_CHAIN_ID else set()
    for signer in signers:
        if signer.address.lower() not in unlocked:
            chain.add_signer(signer)
    return chain


def connect(
    rpc_url: str | None = None,
    private_keys: tuple[str, ...] = (),
    *,
    accounts: Sequence[LocalAccount] = (),
    allow_env_keys: bool = False,
) -> Chain:
    """Return a connected :class:`Chain`: embedded eth-tester, or the JSON-RPC ``rpc_url``.

    ``accounts`` (decrypted keystores) sign first: the first is the deployer. Without them,
    ``private_keys``, else ``WATTLEDGER_PRIVATE_KEY`` (on a dev chain, or anywhere with
    ``allow_env_keys``), else anvil's development accounts on anvil. On the embedded chain
    ``accounts`` come before its own funded accounts and are given ether from them.

    Raises :class:`ChainConnectionError` when the endpoint does not answer, or answers but
    no funded account is known for it; :class:`~ledger.errors.InputError` for a raw key in
    the environment on a chain that is not a dev chain without ``allow_env_keys``.
    """
    if rpc_url is None:
        return _embedded(tuple(accounts))
    return _json_rpc(rpc_url, private_keys, tuple(accounts), allow_env_keys)
