"""The key options ``deploy``, ``serve`` and ``settle`` share: ``--keystore``,
``--password-file`` and ``--allow-env-keys`` (:mod:`chain.keys` reads them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from eth_account.signers.local import LocalAccount

from chain.connection import Chain, connect
from chain.keys import ALLOW_ENV_KEYS_FLAG, KeySource, paths

ENV_RULE = (
    "Raw private keys in the environment (WATTLEDGER_PRIVATE_KEY,\n"
    "WATTLEDGER_OPERATOR_KEY, WATTLEDGER_SETTLER_KEY) are read on a local dev chain (the\n"
    "embedded chain, anvil's chain id 31337) only; elsewhere they are refused unless\n"
    f"{ALLOW_ENV_KEYS_FLAG}."
)


def add_key_arguments(
    parser: argparse._ActionsContainer, whose: str, *, prefix: str = "", env_rule: bool = True
) -> None:
    """Add ``--{prefix}keystore`` and ``--{prefix}password-file`` (``whose`` says whose key
    it is), and ``--allow-env-keys`` when ``env_rule``."""
    dest = prefix.replace("-", "_")
    parser.add_argument(
        f"--{prefix}keystore",
        dest=f"{dest}keystore",
        metavar="PATH",
        action="append",
        type=Path,
        help=f"encrypted keystore (JSON V3, as geth or `cast wallet new` write it) of {whose}; "
        "repeatable",
    )
    parser.add_argument(
        f"--{prefix}password-file",
        dest=f"{dest}password_file",
        metavar="PATH",
        action="append",
        type=Path,
        help=f"file whose first line is the password of the --{prefix}keystore (one for all, or "
        "one per keystore in order); without it the password is asked on the terminal",
    )
    if env_rule:
        parser.add_argument(
            ALLOW_ENV_KEYS_FLAG,
            action="store_true",
            help="accept raw private keys from WATTLEDGER_*_KEY environment variables on a "
            "chain that is not a local dev chain (default: refused there; use --keystore)",
        )


def key_source(args: argparse.Namespace, prefix: str = "") -> KeySource:
    """The :class:`KeySource` of parsed options added by :func:`add_key_arguments`."""
    dest = prefix.replace("-", "_")
    return KeySource(
        keystores=paths(getattr(args, f"{dest}keystore", None)),
        password_files=paths(getattr(args, f"{dest}password_file", None)),
        allow_env_keys=bool(getattr(args, "allow_env_keys", False)),
    )


def load_accounts(args: argparse.Namespace, prefix: str = "") -> tuple[LocalAccount, ...]:
    """Decrypt the keystores named by the options (none: an empty tuple)."""
    return key_source(args, prefix).load()


def connect_with_keys(rpc_url: str | None, args: argparse.Namespace) -> Chain:
    """Connect to ``rpc_url`` (embedded when None) signing with the ``--keystore`` accounts
    (decrypted before connecting: a wrong password is found before anything is sent)."""
    source = key_source(args)
    return connect(rpc_url, accounts=source.load(), allow_env_keys=source.allow_env_keys)


__all__ = ["ENV_RULE", "add_key_arguments", "connect_with_keys", "key_source", "load_accounts"]
