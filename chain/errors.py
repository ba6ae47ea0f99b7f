"""Errors of the chain edge: toolchain, compiler, artifacts, chain connection and a node that
stops answering.

They are branches of :class:`ledger.errors.WattledgerError`; the tree is drawn there.
"""

from __future__ import annotations

from ledger.errors import WattledgerError


class ToolchainError(WattledgerError):
    """Raised when Node.js or the npm packages (solc, OpenZeppelin, anvil) are missing."""

    code = "toolchain_missing"


class CompilationError(ToolchainError):
    """Raised when the Solidity sources do not compile; the message holds solc's report."""

    code = "compilation_failed"


class ArtifactError(WattledgerError):
    """Raised when compiled artifacts in contracts/build are missing, unreadable or stale."""

    code = "artifacts_stale"


class ChainConnectionError(WattledgerError):
    """Raised when a JSON-RPC endpoint cannot be reached or does not answer as a chain."""

    code = "chain_unreachable"


class ChainUnavailable(WattledgerError):
    """Raised when the chain does not answer (connection refused, timeout, HTTP 5xx) after a
    few quick retries (:func:`chain.rpc.with_retries`).

    Transient: the settlement service waits with exponential backoff and resumes from
    on-chain state; the API answers ``service_unavailable`` (503).
    """

    code = "chain_unavailable"


class DeploymentError(WattledgerError):
    """Raised when a deployment transaction reverts or its receipt says it failed."""

    code = "deployment_failed"
