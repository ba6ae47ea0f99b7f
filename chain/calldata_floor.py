"""The embedded chain refuses a transaction whose gas limit is below its calldata floor.

Why: since Prague (EIP-7623) a transaction pays at least ``21000 + 10 * tokens`` gas, where
``tokens = zero bytes + 4 * non-zero bytes`` of its calldata, and a transaction whose gas
limit is below that floor is invalid: a real node (geth, anvil) refuses it before mining.
py-evm 0.12 charges the floor after execution but does not refuse such a transaction, so on
eth-tester a transaction with a gas limit within the block's could use more gas than the
block holds (a 14,000-trade commit used 31.5M gas in a 30.0M block) and be mined. Tests on
the embedded chain would then pass what no real chain accepts.

:func:`install` adds the missing check to py-evm's Prague state validation, and makes
eth-tester's ``eth_estimateGas`` answer at least the floor, as a real node's does (py-evm's
estimate runs the code only: a contract creation of EnergyMarket's size estimates at about
60 % of its floor). Once per process. It does nothing when py-evm or eth-tester do not look
like the versions this was written against (py-evm 0.12, eth-tester 0.13).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Final

GAS_TX: Final = 21_000
TOTAL_COST_FLOOR_PER_TOKEN: Final = 10
STANDARD_TOKEN_COST: Final = 4


def calldata_floor(data: bytes) -> int:
    """The least gas a Prague transaction with calldata ``data`` pays (EIP-7623)."""
    zeros = data.count(0)
    tokens = zeros + STANDARD_TOKEN_COST * (len(data) - zeros)
    return GAS_TX + TOTAL_COST_FLOOR_PER_TOKEN * tokens


_installed = False
_estimating: ContextVar[bool] = ContextVar("calldata_floor_estimating", default=False)


def install() -> bool:
    """Make py-evm's Prague state refuse a transaction whose gas limit is below its calldata
    floor; True if it does (also when already installed)."""
    global _installed
    if _installed:
        return True
    try:
        from eth.vm.forks.prague.state import PragueState
        from eth_tester.backends.pyevm.main import PyEVMBackend
        from eth_utils.exceptions import ValidationError
    except ImportError:  # pragma: no cover - another py-evm layout: leave it as it is
        return False
    stock = PragueState.validate_transaction
    stock_estimate = PyEVMBackend.estimate_gas

    def estimate_gas(self: Any, transaction: Any, block_number: Any = "latest") -> int:
        # py-evm's estimate searches over trial gas limits, most of them below the floor;
        # the check is for transactions, not for those trials
        token = _estimating.set(True)
        try:
            estimate = int(stock_estimate(self, transaction, block_number))
        finally:
            _estimating.reset(token)
        data = transaction.get("data") or b""
        if isinstance(data, str):
            data = bytes.fromhex(data.removeprefix("0x"))
        return max(estimate, calldata_floor(bytes(data)))

    def validate_transaction(self: Any, transaction: Any) -> None:
        floor = calldata_floor(bytes(transaction.data))
        if transaction.gas < floor and not _estimating.get():
            raise ValidationError(
                f"intrinsic gas too low: the transaction's gas limit {transaction.gas} is "
                f"below its EIP-7623 calldata floor {floor}"
            )
        stock(self, transaction)

    PragueState.validate_transaction = validate_transaction  # type: ignore[method-assign]
    PyEVMBackend.estimate_gas = estimate_gas
    _installed = True
    return True


__all__ = ["calldata_floor", "install"]
