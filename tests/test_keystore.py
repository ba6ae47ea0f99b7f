"""Keys from encrypted keystores, and raw keys from the environment on dev chains only.

* ``deploy`` and ``settle`` sign with the accounts of ``--keystore`` files (JSON V3, as
  ``Account.encrypt`` writes them; PBKDF2 with two rounds here to keep the tests fast), with
  the password from ``--password-file`` or asked on the terminal;
* a wrong password or a malformed keystore is one paragraph naming the file (exit 2);
* no key or password ever reaches the logs, stdout or stderr;
* ``WATTLEDGER_PRIVATE_KEY`` and friends are refused on a chain that is not a dev chain
  unless ``--allow-env-keys``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from test_ledger_support import commit_backed, trade
from test_settlement_service_support import populate_anvil

from chain.anvil import running_anvil
from chain.client import LedgerClient
from chain.connection import Chain, anvil_dev_accounts, connect
from chain.deployment import read_deployment
from chain.keys import KeySource, env_key, load_keystore
from deploy.cli import main
from ledger.errors import InputError
from settlement.store import ReadingStore

PASSWORD = "correct horse 7f3a battery"


def keystore(tmp_path: Path, name: str, account: LocalAccount, password: str = PASSWORD) -> Path:
    """Write ``account``'s encrypted keystore (fast PBKDF2) to ``tmp_path/name``."""
    path = tmp_path / name
    path.write_text(json.dumps(Account.encrypt(account.key, password, kdf="pbkdf2", iterations=2)))
    return path


def password_file(tmp_path: Path, password: str = PASSWORD) -> Path:
    path = tmp_path / "password.txt"
    path.write_text(password + "\n")  # geth's format: the first line is the password
    return path


def secrets_of(account: LocalAccount) -> list[str]:
    hex_key = bytes(account.key).hex()
    return [hex_key, "0x" + hex_key, hex_key.upper(), PASSWORD]


def test_keystore_decrypts_with_its_password_from_a_file_or_the_terminal(tmp_path: Path) -> None:
    owner = Account.create()
    path = keystore(tmp_path, "owner.json", owner)
    assert load_keystore(path, PASSWORD).address == owner.address
    from_file = KeySource((path,), (password_file(tmp_path),)).load()
    assert [a.address for a in from_file] == [owner.address]
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return PASSWORD

    typed = KeySource((path,)).load(prompt=prompt, interactive=lambda: True)
    assert [a.address for a in typed] == [owner.address]
    assert asked == [f"password for keystore {path}: "]
    with pytest.raises(InputError, match="no terminal to ask on"):
        KeySource((path,)).load(prompt=prompt, interactive=lambda: False)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json {", "is not JSON"),
        ('{"version": 3, "address": "00"}', "not an encrypted keystore of version 3"),
        ('{"version": 3, "crypto": {"kdf": "pbkdf2"}}', "is malformed"),
        ("[1, 2]", "not an encrypted keystore of version 3"),
    ],
)
def test_malformed_keystore_is_a_clear_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content)
    pw = password_file(tmp_path)
    assert main(["deploy", "--keystore", str(path), "--password-file", str(pw)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err
    assert "Traceback" not in err and PASSWORD not in err


def test_wrong_password_is_a_clear_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    owner = Account.create()
    path = keystore(tmp_path, "owner.json", owner)
    pw = password_file(tmp_path, "not the password")
    assert main(["deploy", "--keystore", str(path), "--password-file", str(pw)]) == 2
    err = capsys.readouterr().err
    assert f"Wrong password for the keystore {path}" in err
    assert "Traceback" not in err and "not the password" not in err
    missing = tmp_path / "nowhere.txt"
    assert main(["deploy", "--keystore", str(path), "--password-file", str(missing)]) == 2
    assert f"Cannot read the password file {missing}" in capsys.readouterr().err


def test_keystore_without_password_file_or_terminal_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = keystore(tmp_path, "owner.json", Account.create())
    assert main(["deploy", "--keystore", str(path)]) == 2  # pytest's stdin is no terminal
    err = capsys.readouterr().err
    assert "needs its password" in err and "--password-file" in err


def test_env_key_is_read_on_dev_chains_and_refused_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATTLEDGER_TEST_KEY", "0x" + "11" * 32)
    assert env_key("WATTLEDGER_TEST_KEY", dev_chain=True, allow_env_keys=False, where="x")
    with pytest.raises(InputError, match="--keystore") as refused:
        env_key("WATTLEDGER_TEST_KEY", dev_chain=False, allow_env_keys=False, where="chain 5")
    assert "11" * 32 not in str(refused.value) and "--allow-env-keys" in str(refused.value)
    assert env_key("WATTLEDGER_TEST_KEY", dev_chain=False, allow_env_keys=True, where="x")
    monkeypatch.delenv("WATTLEDGER_TEST_KEY")
    assert env_key("WATTLEDGER_TEST_KEY", dev_chain=False, allow_env_keys=False, where="x") is None


@pytest.fixture(scope="module")
def public_like_anvil() -> Iterator[str]:
    """An anvil whose chain id (4242) is not a dev chain's, as a public chain would look."""
    with running_anvil(extra_args=["--chain-id", "4242"]) as url:
        yield url


@pytest.mark.anvil
def test_raw_env_key_is_refused_off_dev_chains_unless_opted_in(
    public_like_anvil: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    funded = anvil_dev_accounts(1)[0]  # anvil funds the same accounts under any chain id
    monkeypatch.setenv("WATTLEDGER_PRIVATE_KEY", "0x" + bytes(funded.key).hex())
    out = ["--out-dir", str(tmp_path / "dep")]
    assert main(["deploy", "--rpc-url", public_like_anvil, *out]) == 2
    err = capsys.readouterr().err
    assert "WATTLEDGER_PRIVATE_KEY holds a raw private key" in err and "chain id 4242" in err
    assert "--keystore" in err and "--allow-env-keys" in err
    assert bytes(funded.key).hex() not in err
    args = ["deploy", "--rpc-url", public_like_anvil, *out, "--single-key"]
    assert main([*args, "--allow-env-keys"]) == 0
    record = read_deployment(4242, tmp_path / "dep")
    assert record is not None and record.deployer == funded.address
    capsys.readouterr()
    # With a keystore instead, the environment is not consulted at all.
    owner = Account.create()
    connect(public_like_anvil, accounts=(funded,)).w3.provider.make_request(
        "anvil_setBalance",  # type: ignore[arg-type]
        [owner.address, hex(10**20)],
    )
    ks = keystore(tmp_path, "owner.json", owner)
    pw = password_file(tmp_path)
    assert main([*args, "--keystore", str(ks), "--password-file", str(pw)]) == 0
    record = read_deployment(4242, tmp_path / "dep")
    assert record is not None and record.deployer == owner.address


@pytest.mark.anvil
def test_deploy_and_settle_sign_with_keystores_and_never_show_a_secret(
    anvil_chain: Chain,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    deployer, settler = Account.create(), Account.create()
    for who in (deployer, settler):
        anvil_chain.w3.provider.make_request(
            "anvil_setBalance",  # type: ignore[arg-type]
            [who.address, hex(10**20)],
        )
    pw = password_file(tmp_path)
    url = anvil_chain.rpc_url
    assert url is not None
    dep = tmp_path / "dep"
    deploy_keys = ["--keystore", str(keystore(tmp_path, "deployer.json", deployer))]
    assert main(["deploy", "--rpc-url", url, "--out-dir", str(dep), *deploy_keys,
                 "--password-file", str(pw)]) == 0  # fmt: skip
    deployment = read_deployment(anvil_chain.chain_id, dep)
    assert deployment is not None
    assert deployment.deployer == deployer.address == deployment.role("operator")
    for contract in deployment.contracts.values():
        sent = anvil_chain.w3.eth.get_transaction(contract.tx_hash)  # type: ignore[arg-type]
        assert sent["from"] == deployer.address

    # An interval for the settlement account to settle, committed by the keystore operator.
    anvil_chain.add_signer(deployer)
    ledger = LedgerClient.from_deployment(anvil_chain, deployment)
    people = populate_anvil(anvil_chain, ledger, 2, 10**24, seed=31)
    a, b = people.participants
    t = ledger.current_interval() + 1
    commit_backed(ledger, people.keys, t, [trade(a, b, 400)])
    anvil_chain.advance_time(ledger.interval_info(t).deadline - anvil_chain.timestamp())

    db = tmp_path / "settle.db"
    settle_keys = ["--keystore", str(keystore(tmp_path, "settler.json", settler))]
    common = ["--rpc-url", url, "--deployments-dir", str(dep), "--db", str(db)]
    assert main(["settle", *common, *settle_keys, "--password-file", str(pw)]) == 0
    assert ledger.interval_info(t).status == "settled"
    store = ReadingStore(db)
    txs = store.txs(t)
    store.close()
    assert txs and {tx.sender for tx in txs} == {settler.address}
    for tx in txs:
        assert anvil_chain.w3.eth.get_transaction(tx.hash)["from"] == settler.address  # type: ignore[arg-type]

    captured = capsys.readouterr()
    shown = captured.out + captured.err + caplog.text
    assert settler.address in shown  # the runs did report who signed
    for secret in secrets_of(deployer) + secrets_of(settler):
        assert secret not in shown
