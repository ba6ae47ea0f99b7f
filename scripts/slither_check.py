"""Run slither-analyzer on the market contracts, with the solcjs shim as solc in Standard JSON mode.

Usage: ``python scripts/slither_check.py [--json OUT]``. Exit status 0 when every High or
Medium finding in the project's own sources is listed in :data:`EXPLAINED` with its reason,
1 otherwise; an explanation no finding needs any more is reported as stale (the test fails on
it, so explanations do not outlive what they explain). OpenZeppelin and the test-only
contracts (contracts/test) are not judged.

slither-analyzer pins ``web3<8`` while wattledger needs web3 8; its analysis never touches
web3, so it is installed without that pin (``pip install --no-deps slither-analyzer
crytic-compile`` plus their small pure-Python dependencies).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from deploy.compiler import SHIM_PATH, standard_json_input  # noqa: E402

JUDGED_IMPACTS = ("High", "Medium")

# (detector, function or contract name in the finding) -> why it is not a defect.
EXPLAINED: dict[tuple[str, str], str] = {
    ("uninitialized-state", "commitInterval"): (
        "false positive: _intervals is written through the storage pointer `rec` in "
        "commitInterval and settle; slither does not follow that alias."
    ),
    ("uninitialized-state", "deposit"): (
        "false positive: _balances is written through the storage pointer `b` in deposit and "
        "withdraw, and by _storeBalance (one SSTORE of the packed free/locked slot, whose key "
        "_balanceSlot computes as Solidity does); slither sees neither write."
    ),
    ("divide-before-multiply", "_loadOrders"): (
        "n = orders.length / ORDER_WORDS is an exact count (a remainder reverts MalformedOrders "
        "first); n * 96 sizes the order table from it. Nothing is rounded."
    ),
    ("uninitialized-state", "_checkLanes"): (
        "false positive: _commitLanes[t] is read and written through the storage mapping "
        "pointer `lanes` in _checkLanes; slither does not follow that alias."
    ),
    ("unused-return", "_checkOrderSigner"): (
        "the third value of ECDSA.tryRecover is not needed: any recover error or another "
        "signer falls through to the ERC-1271 check, else BadOrderSignature(index, party)."
    ),
    ("unused-return", "_checkMeter"): (
        "the third value of ECDSA.tryRecover (the malformed-signature argument) is not needed: "
        "any recover error or wrong signer reverts with InvalidMeterSignature(participant, signer)."
    ),
}


def _input() -> dict[str, Any]:
    data = standard_json_input(REPO_ROOT)
    data["sources"] = {
        rel: src for rel, src in data["sources"].items() if not rel.startswith("contracts/test/")
    }
    data["settings"]["outputSelection"] = {
        "*": {"*": ["abi", "evm.bytecode", "evm.deployedBytecode"], "": ["ast"]}
    }
    return data


def _function_name(finding: dict[str, Any]) -> str:
    for element in finding.get("elements", []):
        if element.get("type") == "function":
            return str(element.get("name"))
    for element in finding.get("elements", []):
        parent = element.get("type_specific_fields", {}).get("parent", {})
        if parent.get("type") == "function":
            return str(parent.get("name"))
    return ""


def run() -> list[dict[str, Any]]:
    """Return slither's findings (all impacts) on the project's non-test contracts."""
    from crytic_compile.platform.solc_standard_json import SolcStandardJson
    from slither import Slither
    from slither.detectors import all_detectors
    from slither.detectors.abstract_detector import AbstractDetector

    platform = SolcStandardJson(_input())
    slither = Slither(
        platform,
        solc=str(SHIM_PATH),
        solc_working_dir=str(REPO_ROOT),
        filter_paths=["node_modules"],
    )
    for name in dir(all_detectors):
        detector = getattr(all_detectors, name)
        if isinstance(detector, type) and issubclass(detector, AbstractDetector):
            slither.register_detector(detector)
    findings: list[dict[str, Any]] = []
    for result in slither.run_detectors():
        findings.extend(result)
    return findings


def judge(findings: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Split High/Medium findings into (explained, unexplained) one-line descriptions."""
    explained: list[str] = []
    unexplained: list[str] = []
    for finding in findings:
        if finding.get("impact") not in JUDGED_IMPACTS:
            continue
        key = (str(finding.get("check")), _function_name(finding))
        line = f"[{finding.get('impact')}] {key[0]} in {key[1] or '?'}: " + " ".join(
            str(finding.get("description", "")).split()
        )
        if key in EXPLAINED:
            explained.append(f"{line}\n    explained: {EXPLAINED[key]}")
        else:
            unexplained.append(line)
    return explained, unexplained


def stale(findings: list[dict[str, Any]]) -> list[str]:
    """Explanations in :data:`EXPLAINED` that no High or Medium finding needs any more."""
    fired = {
        (str(f.get("check")), _function_name(f))
        for f in findings
        if f.get("impact") in JUDGED_IMPACTS
    }
    return [f"{check} in {where}" for check, where in EXPLAINED if (check, where) not in fired]


def main(argv: list[str] | None = None) -> int:
    """Run slither, print High/Medium findings, and return 1 if any is unexplained."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write every finding to this file")
    args = parser.parse_args(argv)
    findings = run()
    if args.json:
        args.json.write_text(json.dumps(findings, indent=2, default=str))
    explained, unexplained = judge(findings)
    counts: dict[str, int] = {}
    for f in findings:
        counts[str(f.get("impact"))] = counts.get(str(f.get("impact")), 0) + 1
    print(f"slither: {len(findings)} findings by impact: {json.dumps(counts, sort_keys=True)}")
    for line in explained:
        print(line)
    for line in unexplained:
        print("UNEXPLAINED " + line)
    for line in stale(findings):
        print("STALE explanation (no finding needs it; remove it): " + line)
    print(f"high/medium: {len(explained)} explained, {len(unexplained)} unexplained")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
