"""Where this process's signing keys come from: encrypted keystores, or (dev chains) the env.

A key that controls real funds lives in an Ethereum encrypted keystore, the JSON V3 file
geth's ``account new`` and foundry's ``cast wallet new`` write (the key encrypted with AES
under a key derived from a password by scrypt or PBKDF2). :func:`load_keystore` decrypts one
with ``eth_account.Account.decrypt``; the password comes from a file (``--password-file``,
its first line, as geth reads it) or is asked for on the terminal (``getpass``, which does
not echo).

A raw private key in an environment variable (``WATTLEDGER_PRIVATE_KEY``,
``WATTLEDGER_OPERATOR_KEY``, ``WATTLEDGER_SETTLER_KEY``) is readable by anything that can
read the process's environment (``/proc/<pid>/environ``, crash reporters, CI logs of
``env``); it is fine for the public test keys of a dev chain, and refused anywhere else
(:func:`env_key`) unless the operator opts in with ``--allow-env-keys``.

Nothing here logs, prints or puts a key or a password in an error message: errors name the
file and what is wrong with it.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger.errors import InputError

ALLOW_ENV_KEYS_FLAG = "--allow-env-keys"
"""The flag that accepts raw keys from the environment on a chain that is not a dev chain."""


@dataclass(frozen=True)
class KeySource:
    """Where to find the keys to sign with: keystore files and the password for each.

    ``keystores``: paths of JSON V3 keystores, in order. ``password_files``: none (ask on the
    terminal), one (the password of every keystore) or one per keystore (in the same order).
    ``allow_env_keys``: accept raw private keys from the environment on any chain.
    """

    keystores: tuple[Path, ...] = ()
    password_files: tuple[Path, ...] = ()
    allow_env_keys: bool = False

    def password_file_for(self, index: int) -> Path | None:
        """The password file of the ``index``-th keystore, or None (ask)."""
        if not self.password_files:
            return None
        if len(self.password_files) == 1:
            return self.password_files[0]
        return self.password_files[index]

    def check(self) -> None:
        """Refuse password files that do not pair up with the keystores."""
        n, m = len(self.keystores), len(self.password_files)
        if m and not n:
            raise InputError(
                "--password-file was given without --keystore.",
                hint="Name the encrypted keystore with --keystore PATH.",
            )
        if m > 1 and m != n:
            raise InputError(
                f"{m} --password-file options for {n} --keystore options.",
                hint="Give one password file for every keystore, or one per keystore in the "
                "same order.",
            )

    def load(
        self,
        *,
        prompt: Callable[[str], str] = getpass.getpass,
        interactive: Callable[[], bool] | None = None,
    ) -> tuple[LocalAccount, ...]:
        """Decrypt every keystore (see :func:`load_keystore`)."""
        self.check()
        return tuple(
            load_keystore(
                path,
                read_password(
                    path, self.password_file_for(i), prompt=prompt, interactive=interactive
                ),
            )
            for i, path in enumerate(self.keystores)
        )


def read_password(
    keystore: Path,
    password_file: Path | None,
    *,
    prompt: Callable[[str], str] = getpass.getpass,
    interactive: Callable[[], bool] | None = None,
) -> str:
    """The password of ``keystore``: the first line of ``password_file`` (without its line
    ending), else asked on the terminal when stdin is one. Raises :class:`InputError` when
    the file cannot be read, or there is no file and no terminal to ask on."""
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else "not UTF-8"
            raise InputError(f"Cannot read the password file {password_file}: {reason}.") from None
        return text.splitlines()[0] if text else ""
    is_tty = interactive or (lambda: sys.stdin is not None and sys.stdin.isatty())
    if not is_tty():
        raise InputError(
            f"The keystore {keystore} needs its password, and there is no terminal to ask on.",
            hint="Pass --password-file PATH (a file readable only by you, the password on its "
            "first line).",
        )
    return prompt(f"password for keystore {keystore}: ")


def load_keystore(path: Path, password: str) -> LocalAccount:
    """Decrypt the JSON V3 keystore at ``path`` with ``password``.

    Raises :class:`InputError`, naming the file, when it cannot be read, is not a JSON V3
    keystore, the password is wrong, or the key does not belong to the address it records.
    """
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(f"Cannot read the keystore {path}: {err.strerror or err}.") from None
    try:
        document: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InputError(
            f"The keystore {path} is not JSON.",
            hint="Pass an encrypted keystore (JSON V3) as geth or `cast wallet new` write it.",
        ) from None
    crypto = document.get("crypto", document.get("Crypto")) if isinstance(document, dict) else None
    if not isinstance(crypto, dict) or document.get("version") != 3:
        raise InputError(
            f"The keystore {path} is not an encrypted keystore of version 3 (no 'crypto' "
            "section or another 'version').",
            hint="Pass an encrypted keystore (JSON V3) as geth or `cast wallet new` write it.",
        )
    try:
        key = Account.decrypt(document, password)
    except ValueError as err:
        if "mac mismatch" in str(err).lower():
            raise InputError(
                f"Wrong password for the keystore {path}.",
                hint="Check the password file (its first line is the password) or retype it.",
            ) from None
        raise InputError(f"The keystore {path} is malformed: {_reason(err)}.") from None
    except (KeyError, TypeError, NotImplementedError) as err:
        raise InputError(f"The keystore {path} is malformed: {_reason(err)}.") from None
    account: LocalAccount = Account.from_key(key)
    recorded = document.get("address")
    theirs = recorded.lower().removeprefix("0x") if isinstance(recorded, str) else ""
    if theirs and theirs != account.address.lower().removeprefix("0x"):
        raise InputError(
            f"The keystore {path} records the address 0x{theirs}, but its key belongs to "
            f"{account.address}."
        )
    return account


def _reason(err: BaseException) -> str:
    """What is wrong with a keystore, without echoing any of its secrets: the error's class
    and, for a missing field, its name."""
    if isinstance(err, KeyError):
        return f"missing field {err.args[0]!r}" if err.args else "a field is missing"
    text = str(err)
    # eth-keyfile's messages name fields and parameters, never the key; cap them anyway.
    return f"{type(err).__name__}: {text[:120]}" if text else type(err).__name__


def env_key(name: str, *, dev_chain: bool, allow_env_keys: bool, where: str) -> str | None:
    """The raw private key in the environment variable ``name``, or None when it is unset.

    On a chain that is not a local dev chain (``where`` names it in the message) a set
    variable raises :class:`InputError` unless ``allow_env_keys``: a key that controls real
    funds belongs in an encrypted keystore (``--keystore``).
    """
    value = os.environ.get(name)
    if not value:
        return None
    if dev_chain or allow_env_keys:
        return value
    raise InputError(
        f"${name} holds a raw private key, and {where} is not a local dev chain: keys of a "
        "real chain are read from an encrypted keystore.",
        hint=f"Pass --keystore PATH (with --password-file PATH, or type the password when "
        f"asked) and unset ${name}; or, if you accept a raw key in the environment, add "
        f"{ALLOW_ENV_KEYS_FLAG}.",
    )


def paths(values: Sequence[str | Path] | None) -> tuple[Path, ...]:
    """argparse's list of paths (None when the option was not given) as a tuple."""
    return tuple(Path(v) for v in values or ())


__all__ = [
    "ALLOW_ENV_KEYS_FLAG",
    "KeySource",
    "env_key",
    "load_keystore",
    "paths",
    "read_password",
]
