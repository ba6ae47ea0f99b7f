"""What an integrator signs with: the templates of ``GET /market``, every signature form, and
registration requests (``POST /registrations``), on the in-memory ledger.

The same flows against a real anvil, with anvil's own ``eth_signTypedData_v4``, are in
``tests/test_integrator_signing_anvil.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from market_harness import OPERATOR, PRICE, Market, account, make_market

from ledger import eip712 as signing
from ledger.errors import BadSignature
from ledger.hashing import keccak
from ledger.records import Reading
from market.client import AppTransport, OrderSigner
from market.clock import SimulatedClock
from market.http.app import create_app
from market.ledger_port import MemoryLedger
from market.service import MarketConfig, MarketService
from market.signed_messages import SignedMessage
from market.store import OrderStore

if TYPE_CHECKING:  # imported in the tests, so that each fails alone on a market without them
    from market.registrar_policy import Decision, RegistrationRequest

ZERO = "0x" + "00" * 20
KINDS = {
    "order": ("Order", "POST /orders"),
    "cancel": ("Cancel", "DELETE /orders/{id}"),
    "closeGate": ("CloseGate", "POST /intervals/{t}/close"),
    "meterReading": ("MeterReading", "POST /meter-readings"),
    "registration": ("Registration", "POST /registrations"),
}
RECEIPTS = {"orderReceipt": ("OrderReceipt", None), "cancelReceipt": ("CancelReceipt", None)}
"""The receipts the operator signs: published the same way, taken by no path."""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Market, httpx.Client]]:
    m = make_market(tmp_path, deposit=10_000 * PRICE)
    transport = AppTransport(create_app(m.service))
    http = httpx.Client(transport=transport, base_url="http://market.test")
    yield m, http
    http.close()
    transport.close()


def expect(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code, problem
    return problem


def sign_with_template(template: dict[str, Any], key: LocalAccount, message: Any) -> str:
    """What an outside client does: sign ``{**template, "message": message}`` as it is."""
    signable = encode_typed_data(full_message={**template, "message": message})
    return "0x" + bytes(key.sign_message(signable).signature).hex()


def low_v(signature: str) -> str:
    """The same signature with ``v`` as 0/1 instead of 27/28."""
    return signature[:130] + format(int(signature[130:], 16) - 27, "02x")


def compact(signature: str) -> str:
    """The same signature in EIP-2098 compact form (64 bytes ``r ‖ vs``)."""
    r, vs = signing.compact_signature(signature)
    return "0x" + (r + vs).hex()


# ---------------------------------------------------------------- templates in GET /market


def test_market_publishes_a_ready_to_sign_template_for_every_kind(
    env: tuple[Market, httpx.Client],
) -> None:
    m, http = env
    eip712 = http.get("/market").json()["eip712"]
    domain = m.service.domain.as_json()
    assert set(eip712["messages"]) == set(KINDS) | set(RECEIPTS)
    for kind, (primary_type, submit) in {**KINDS, **RECEIPTS}.items():
        entry = eip712["messages"][kind]
        fields = signing.TYPES[primary_type]
        assert entry["submit"] == submit
        assert entry["template"] == {
            "domain": domain,
            "primaryType": primary_type,
            "types": {"EIP712Domain": signing.EIP712_DOMAIN_TYPE, primary_type: fields},
        }
        assert list(entry["fields"]) == [f["name"] for f in fields]
        assert all(len(text) > 20 for text in entry["fields"].values())
        assert entry["jsonSchema"]["required"] == [f["name"] for f in fields]
        assert entry["jsonSchema"]["additionalProperties"] is False
        assert eip712["primaryTypes"][kind] == primary_type
    assert "Wh" in eip712["messages"]["order"]["fields"]["quantityWh"]
    assert "base units per Wh" in eip712["messages"]["order"]["fields"]["pricePerWh"]
    assert "meter key" in eip712["messages"]["meterReading"]["fields"]["participant"]
    # The compatible keys stay, and now name the meter reading and registration types too.
    assert eip712["domain"] == domain
    assert eip712["types"]["MeterReading"] == signing.READING_TYPES["MeterReading"]
    assert eip712["types"]["Registration"] == signing.REGISTRATION_TYPE
    assert "64 bytes" in eip712["signature"]


def test_the_shared_types_cannot_be_signed_but_each_template_can(
    env: tuple[Market, httpx.Client],
) -> None:
    m, http = env
    eip712 = http.get("/market").json()["eip712"]
    key = account(1)
    message = {"interval": m.t, "nonce": 1, "expiry": 2}
    shared = {
        "types": eip712["types"],
        "primaryType": "CloseGate",
        "domain": eip712["domain"],
        "message": message,
    }
    with pytest.raises(ValueError, match="Unable to determine primary type"):
        encode_typed_data(full_message=shared)
    template = eip712["messages"]["closeGate"]["template"]
    digest = signing.digest(m.service.domain.separator, "CloseGate", message)
    signature = sign_with_template(template, key, message)
    assert signing.recover(digest, signature) == key.address.lower()


def test_every_kind_signed_from_its_template_alone_is_accepted(
    env: tuple[Market, httpx.Client],
) -> None:
    m, http = env
    messages = http.get("/market").json()["eip712"]["messages"]
    alice = m.alice.account
    operator = account(99)  # the harness's operator key
    expiry = str(m.clock.now() + 600)

    def signed(kind: str, key: LocalAccount, message: dict[str, Any]) -> str:
        return sign_with_template(messages[kind]["template"], key, message)

    order = {
        "participant": alice.address,
        "interval": m.t,
        "side": 0,
        "quantityWh": 1_000,
        "pricePerWh": str(PRICE),
        "nonce": "11",
        "expiry": expiry,
        "node": "root",
    }
    placed = http.post("/orders", json={"order": order, "signature": signed("order", alice, order)})
    assert placed.status_code == 201, placed.text
    cancel = {
        "participant": alice.address,
        "orderHash": placed.json()["id"],
        "nonce": 12,
        "expiry": expiry,
    }
    gone = http.request(
        "DELETE",
        f"/orders/{placed.json()['id']}",
        json={"cancel": cancel, "signature": signed("cancel", alice, cancel)},
    )
    assert gone.status_code == 200 and gone.json()["status"] == "cancelled", gone.text
    close = {"interval": m.t, "nonce": "13", "expiry": expiry}
    closed = http.post(
        f"/intervals/{m.t}/close",
        json={"close": close, "signature": signed("closeGate", operator, close)},
    )
    assert closed.status_code == 200, closed.text
    newcomer = account(7)
    registration: dict[str, Any] = {
        "participant": newcomer.address,
        "meter": account(8).address,
        "nonce": 1,
        "expiry": expiry,
    }
    answer = http.post(
        "/registrations",
        json={
            "registration": registration,
            "signature": signed("registration", newcomer, registration),
        },
    )
    assert answer.status_code == 201, answer.text
    # meterReading goes to the settlement API (tests/test_integrator_signing_anvil.py); its
    # template signs what the settlement intake recovers the meter from.
    meter = account(8)
    reading = {"participant": newcomer.address, "interval": m.t, "importedWh": 5, "exportedWh": 0}
    digest = signing.reading_digest(
        m.service.domain.separator, Reading(newcomer.address.lower(), m.t, 5, 0)
    )
    assert signing.recover(digest, signed("meterReading", meter, reading)) == (
        meter.address.lower()
    )


# ---------------------------------------------------------------- signature forms


@pytest.mark.parametrize("form", ["v27", "v01", "compact"])
def test_each_signature_form_is_accepted_and_published_canonical(
    env: tuple[Market, httpx.Client], form: str
) -> None:
    m, http = env
    convert = {"v27": lambda s: s, "v01": low_v, "compact": compact}[form]
    body = m.alice.order(m.t, "buy", 100, PRICE)
    canonical = body["signature"]
    assert int(canonical[130:], 16) in (27, 28)
    sent = {**body, "signature": convert(canonical)}
    placed = http.post("/orders", json=sent)
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    message = {
        k: int(v) if isinstance(v, str) and v.isdigit() else v for k, v in body["order"].items()
    }
    assert order_id == "0x" + signing.digest(m.service.domain.separator, "Order", message).hex()
    assert placed.json()["signature"] == canonical
    assert http.get(f"/orders/{order_id}").json()["signature"] == canonical
    # a cancel in the same form is stored canonical too
    other = http.post("/orders", json=m.alice.order(m.t, "buy", 70, PRICE)).json()
    cancel = m.alice.cancel(other["id"])
    response = http.request(
        "DELETE",
        f"/orders/{other['id']}",
        json={**cancel, "signature": convert(cancel["signature"])},
    )
    assert response.status_code == 200, response.text
    assert response.json()["cancel"]["signature"] == cancel["signature"]
    # the operator's gate closure in that form, and the published set shows canonical
    operator = OrderSigner(account(99), m.service.domain).close_gate(m.t)
    closed = http.post(
        f"/intervals/{m.t}/close", json={**operator, "signature": convert(operator["signature"])}
    )
    assert closed.status_code == 200, closed.text
    published = http.get(f"/intervals/{m.t}/orders").json()["orders"]
    assert [(o["id"], o["signature"]) for o in published] == [(order_id, canonical)]


def test_a_compact_signature_with_a_high_s_or_bad_text_is_refused() -> None:
    digest = keccak(b"order")
    half_n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141 // 2
    high = "0x" + "11" * 32 + (half_n + 1).to_bytes(32, "big").hex()
    with pytest.raises(BadSignature, match="lower half"):
        signing.recover(digest, high)
    good = compact(signing.sign_digest(account(1).key, digest))
    assert signing.recover(digest, good) == account(1).address.lower()
    for bad in (good[:-2] + "  ", good[:-2], good + "0", " " + good[1:], good[:-2] + "zz"):
        with pytest.raises(BadSignature):
            signing.recover(digest, bad)


def test_one_message_in_each_form_has_one_canonical_signature() -> None:
    digest = keccak(b"reading")
    canonical = signing.sign_digest(account(3).key, digest)
    for form in (
        canonical,
        canonical.upper().replace("0X", "0x"),
        low_v(canonical),
        compact(canonical),
    ):
        raw = signing.parse_signature(form)
        assert signing.canonical_signature(raw) == canonical


# ---------------------------------------------------------------- registrations


def registration_body(
    who: LocalAccount, meter: str, nonce: int, domain: signing.Domain, expiry: int
) -> dict[str, Any]:
    message = {"participant": who.address, "meter": meter, "nonce": nonce, "expiry": str(expiry)}
    return {
        "registration": message,
        "signature": signing.sign(who, domain, "Registration", message),
    }


def test_a_registration_on_a_dev_chain_is_registered_at_once_and_idempotently(
    env: tuple[Market, httpx.Client],
) -> None:
    m, http = env
    newcomer, meter = account(21), account(22)
    expiry = m.clock.now() + 60
    body = registration_body(newcomer, meter.address, 5, m.service.domain, expiry)
    before = http.get(f"/participants/{newcomer.address}").json()
    assert (before["registered"], before["meter"]) == (False, None)
    first = http.post("/registrations", json={**body, "signature": compact(body["signature"])})
    assert first.status_code == 201, first.text
    answer = first.json()
    assert answer["status"] == "registered" and answer["transactionHash"].startswith("0x")
    assert (answer["participant"], answer["meter"]) == (newcomer.address, meter.address)
    assert m.ledger.registrations == [(newcomer.address.lower(), meter.address.lower())]
    # the same request again: the same answer, no second chain write
    again = http.post("/registrations", json=body)
    assert again.status_code == 201 and again.json() == answer
    status = http.get(f"/registrations/{newcomer.address}").json()
    assert (
        status["status"] == "registered" and status["transactionHash"] == answer["transactionHash"]
    )
    view = http.get(f"/participants/{newcomer.address}").json()
    assert (view["registered"], view["meter"]) == (True, meter.address)
    # a new request, any nonce: already registered, and still one chain write
    other = registration_body(newcomer, account(23).address, 6, m.service.domain, expiry)
    expect(http.post("/registrations", json=other), 409, "already_registered")
    assert len(m.ledger.registrations) == 1
    # the registered participant trades at once (no stale "unregistered" answer)
    m.ledger.free[newcomer.address.lower()] = 10**18
    trader = OrderSigner(newcomer, m.service.domain)
    assert http.post("/orders", json=trader.order(m.t, "buy", 10, PRICE)).status_code == 201


def test_a_participant_seen_unregistered_trades_right_after_registering(
    env: tuple[Market, httpx.Client],
) -> None:
    m, http = env
    newcomer = account(31)
    trader = OrderSigner(newcomer, m.service.domain)
    expect(
        http.post("/orders", json=trader.order(m.t, "buy", 10, PRICE)),
        403,
        "unregistered_participant",
    )
    body = registration_body(newcomer, account(32).address, 1, m.service.domain, m.clock.now() + 60)
    assert http.post("/registrations", json=body).status_code == 201
    m.ledger.free[newcomer.address.lower()] = 10**18
    assert http.post("/orders", json=trader.order(m.t, "buy", 10, PRICE)).status_code == 201


def test_registration_refusals_have_stable_codes_and_store_nothing(
    env: tuple[Market, httpx.Client],
) -> None:
    m, http = env
    domain, now = m.service.domain, m.clock.now()
    newcomer, meter = account(41), account(42).address
    good = registration_body(newcomer, meter, 1, domain, now + 60)
    cases = {
        "bad_signature": ({**good, "signature": "0x1234"}, 400),
        "signer_mismatch": (
            {
                **good,
                "signature": registration_body(account(43), meter, 1, domain, now + 60)[
                    "signature"
                ],
            },
            403,
        ),
        "registration_expired": (registration_body(newcomer, meter, 1, domain, now), 422),
        "invalid_meter": (registration_body(newcomer, ZERO, 1, domain, now + 60), 422),
        "invalid_request": ({**good, "registration": {**good["registration"], "x": 1}}, 422),
    }
    for code, (body, status) in cases.items():
        expect(http.post("/registrations", json=body), status, code)
    for not_a_meter in (m.ledger.market_address, m.ledger.token_address, m.ledger.operator):
        body = registration_body(newcomer, not_a_meter, 1, domain, now + 60)
        expect(http.post("/registrations", json=body), 422, "invalid_meter")
    # someone else cannot register the newcomer: the signer must be the participant
    forged = registration_body(account(43), meter, 1, domain, now + 60)
    forged["registration"]["participant"] = newcomer.address
    expect(http.post("/registrations", json=forged), 403, "signer_mismatch")
    # registered on-chain already (by the registrar directly)
    m.ledger.register(account(44).address)
    expect(
        http.post(
            "/registrations", json=registration_body(account(44), meter, 1, domain, now + 60)
        ),
        409,
        "already_registered",
    )
    expect(http.get(f"/registrations/{newcomer.address}"), 404, "registration_not_found")
    assert m.service.store.get_registration(newcomer.address.lower()) is None
    assert m.ledger.registrations == []


def test_a_held_request_is_pending_durable_and_a_flood_makes_no_chain_write(
    tmp_path: Path,
) -> None:
    m = make_market(tmp_path, config=MarketConfig(registrar_policy="hold"))
    transport = AppTransport(create_app(m.service))
    http = httpx.Client(transport=transport, base_url="http://market.test")
    domain, now = m.service.domain, m.clock.now()
    newcomer, meter = account(51), account(52).address
    body = registration_body(newcomer, meter, 1, domain, now + 60)
    first = http.post("/registrations", json=body)
    assert first.status_code == 202, first.text
    assert first.json() == {"participant": newcomer.address, "meter": meter, "status": "pending"}
    for nonce in range(2, 22):
        flood = registration_body(newcomer, account(60 + nonce).address, nonce, domain, now + 60)
        expect(http.post("/registrations", json=flood), 409, "registration_pending")
    assert http.post("/registrations", json=body).status_code == 202  # the same one again
    assert m.ledger.registrations == []
    http.close()
    transport.close()
    # durable: a restarted market still holds it, and the registrar approves it later
    service = m.reopen(MarketConfig(registrar_policy="hold"))
    assert service.registration(newcomer.address).status == "pending"
    from market.registrar_policy import APPROVE

    done = service.decide_registration(newcomer.address, APPROVE)
    assert done.status == "registered" and done.tx_hash is not None
    assert m.ledger.registrations == [(newcomer.address.lower(), meter.lower())]
    assert service.participant(newcomer.address).registered


def test_the_default_policy_holds_off_dev_chains_and_approves_on_them(tmp_path: Path) -> None:
    for chain_id, status in (
        (1, "pending"),
        (31337, "registered"),
        (131277322940537, "registered"),
    ):
        ledger = MemoryLedger(chain_id=chain_id, operator=OPERATOR.address)
        clock = SimulatedClock(ledger.epoch_seconds + 10 * ledger.interval_seconds)
        service = MarketService(
            OrderStore(tmp_path / f"{chain_id}.db"), ledger, clock, operator_key=OPERATOR.key
        )
        who = account(70)
        body = registration_body(who, account(71).address, 1, service.domain, clock.now() + 60)
        record = service.register(SignedMessage(body["registration"], body["signature"]))
        assert record.status == status, chain_id
        service.store.close()


def test_a_refusing_policy_answers_with_its_reason_and_the_nonce_stays_used(tmp_path: Path) -> None:
    class NoMetersOfOurs:
        def decide(self, request: RegistrationRequest) -> Decision:
            from market.registrar_policy import APPROVE, refuse

            if request.meter == account(82).address.lower():
                return refuse("that meter belongs to another site")
            return APPROVE

    m = make_market(tmp_path)
    m.service = MarketService(
        m.service.store,
        m.ledger,
        m.clock,
        operator_key=OPERATOR.key,
        registrar_policy=NoMetersOfOurs(),
    )
    transport = AppTransport(create_app(m.service))
    http = httpx.Client(transport=transport, base_url="http://market.test")
    domain, now = m.service.domain, m.clock.now()
    who = account(81)
    refused = registration_body(who, account(82).address, 9, domain, now + 60)
    problem = expect(http.post("/registrations", json=refused), 403, "registration_refused")
    assert problem["reason"] == "that meter belongs to another site"
    assert http.get(f"/registrations/{who.address}").json()["status"] == "refused"
    expect(http.post("/registrations", json=refused), 403, "registration_refused")  # again
    replayed = registration_body(who, account(83).address, 9, domain, now + 60)
    expect(http.post("/registrations", json=replayed), 409, "nonce_used")
    fresh = registration_body(who, account(83).address, 10, domain, now + 60)
    assert http.post("/registrations", json=fresh).status_code == 201
    assert m.ledger.registrations == [(who.address.lower(), account(83).address.lower())]
    http.close()
    transport.close()


def test_a_failed_chain_write_is_kept_and_retried_by_the_same_request(
    env: tuple[Market, httpx.Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    m, http = env
    who = account(91)
    body = registration_body(who, account(92).address, 1, m.service.domain, m.clock.now() + 60)
    m.ledger.fail_registrations = True
    expect(http.post("/registrations", json=body), 503, "service_unavailable")
    assert m.service.store.get_registration(who.address.lower()).status == "registering"  # type: ignore[union-attr]
    expect(http.post("/registrations", json=body), 503, "service_unavailable")  # too soon
    m.ledger.fail_registrations = False
    monkeypatch.setattr("market.registrar.RETRY_SECONDS", 0.0)
    answer = http.post("/registrations", json=body)
    assert answer.status_code == 201 and answer.json()["status"] == "registered", answer.text
    assert m.ledger.registrations == [(who.address.lower(), account(92).address.lower())]


def test_registration_messages_hash_as_eth_account_does() -> None:
    domain = signing.Domain(31337, "0x" + "11" * 20)
    who = Account.create()
    message = {"participant": who.address, "meter": account(1).address, "nonce": 3, "expiry": 4}
    ours = signing.digest(domain.separator, "Registration", message)
    reference = encode_typed_data(full_message=signing.typed_data(domain, "Registration", message))
    assert ours == keccak(b"\x19" + reference.version + reference.header + reference.body)
    assert signing._encode_type("Registration", signing.REGISTRATION_TYPE) == (
        b"Registration(address participant,address meter,uint64 nonce,uint64 expiry)"
    )


def test_the_openapi_document_describes_the_templates_and_registrations(
    env: tuple[Market, httpx.Client],
) -> None:
    _, http = env
    document = http.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert {"messages", "domain", "types", "primaryTypes"} <= set(
        schemas["Eip712Info"]["properties"]
    )
    assert set(schemas["MessageKind"]["required"]) >= {"template", "fields", "submit"}
    assert "meter" in schemas["ParticipantInfo"]["properties"]
    assert "64 bytes" in schemas["SignedOrder"]["properties"]["signature"]["description"]
    register = document["paths"]["/registrations"]["post"]
    assert {"201", "202", "403", "409"} <= set(register["responses"])
    assert "404" in document["paths"]["/registrations/{participant}"]["get"]["responses"]
