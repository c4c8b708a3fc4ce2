"""The uplink state machine with injected time: digest, refresh, keepalive, back-off, recovery."""

from __future__ import annotations

import random

import pytest

from gb28181 import manscdp
from gb28181.config import UpstreamConfig
from gb28181.sip import (
    AuthResult,
    DigestCredentials,
    DigestVerifier,
    NonceIssuer,
    SipRequest,
    SipResponse,
    make_response,
)
from gb28181.uplink import (
    JITTER,
    KEEPALIVE,
    REGISTER,
    UNREGISTER,
    Uplink,
    UplinkState,
    _granted_expires,
)

UPPER = "44010000002000000001"
LOCAL = "34020000002000000001"
PASSWORD = "upper-secret"


def make_uplink(**overrides: object) -> Uplink:
    values: dict[str, object] = {
        "id": UPPER,
        "host": "192.0.2.10",
        "port": 5060,
        "password": PASSWORD,
        "expires": 3600,
        "keepalive_interval": 60.0,
        "keepalive_misses": 3,
        "retry_min": 5.0,
        "retry_max": 300.0,
    }
    values.update(overrides)
    cfg = UpstreamConfig(**values)  # type: ignore[arg-type]
    return Uplink(
        cfg, local_id=LOCAL, local_host="192.0.2.1", local_port=5060, rng=random.Random(7)
    )


class Upper:
    """The upper platform's registrar: challenges, verifies, grants."""

    def __init__(self, password: str = PASSWORD) -> None:
        self.password = password
        self.verifier = DigestVerifier(NonceIssuer(b"s" * 32, 300.0), UPPER[:10])

    def answer(self, request: SipRequest, now: float, *, expires: int | None = None) -> SipResponse:
        auth = request.headers.get("Authorization")
        if auth is None:
            challenge = self.verifier.challenge(now)
            return make_response(
                request, 401, to_tag="u1", headers=[("WWW-Authenticate", str(challenge))]
            )
        creds = DigestCredentials.parse(auth)
        result = self.verifier.verify(creds, "REGISTER", self.password, now, expected_user=LOCAL)
        if result is not AuthResult.OK:
            challenge = self.verifier.challenge(now, stale=result is AuthResult.STALE)
            return make_response(
                request, 401, to_tag="u1", headers=[("WWW-Authenticate", str(challenge))]
            )
        granted = request.expires if expires is None else expires
        return make_response(request, 200, to_tag="u1", headers=[("Expires", str(granted))])


def register(up: Uplink, upper: Upper, now: float) -> None:
    """Drive a full 401 -> digest -> 200 round at ``now``."""
    (first,) = up.poll(now)
    (second,) = up.on_response(first, upper.answer(first, now), now)
    assert up.on_response(second, upper.answer(second, now), now) == []
    assert up.state is UplinkState.REGISTERED


def test_first_register_is_challenged_and_answered_with_a_digest() -> None:
    up, upper = make_uplink(), Upper()
    changes: list[bool] = []
    up.on_change.append(lambda u, registered: changes.append(registered))
    (first,) = up.poll(0.0)
    assert first.method == "REGISTER"
    assert first.uri == f"sip:{UPPER}@192.0.2.10:5060"
    assert first.from_.uri.user == LOCAL and first.to.uri.user == LOCAL
    assert first.headers.get("Expires") == "3600"
    assert first.headers.get("Contact") == f"<sip:{LOCAL}@192.0.2.1:5060>"
    assert up.kind_of(first) == REGISTER
    assert up.state is UplinkState.REGISTERING
    (second,) = up.on_response(first, upper.answer(first, 0.0), 0.0)
    assert second.call_id == first.call_id
    assert second.cseq[0] == first.cseq[0] + 1
    creds = DigestCredentials.parse(second.headers.get("Authorization") or "")
    assert creds.username == LOCAL and creds.qop == "auth" and creds.nc == "00000001"
    ok = upper.answer(second, 0.0)
    assert ok.status == 200
    up.on_response(second, ok, 0.0)
    assert up.registered and up.registered_until == 3600.0
    assert changes == [True]


def test_refresh_goes_before_expiry_on_the_same_call_id() -> None:
    up, upper = make_uplink(expires=100, keepalive_interval=1000.0), Upper()
    register(up, upper, 0.0)
    call_id = up._call_id
    assert up.poll(79.0) == []
    (refresh,) = up.poll(80.0)
    assert refresh.call_id == call_id and refresh.headers.get("Expires") == "100"
    # The refresh carries credentials for the last nonce (nc 2): accepted without a challenge.
    answer = upper.answer(refresh, 80.0)
    assert answer.status == 200
    up.on_response(refresh, answer, 80.0)
    assert up.registered and up.registered_until == 180.0


def test_a_granted_lifetime_shorter_than_asked_is_refreshed_in_time() -> None:
    up, upper = make_uplink(expires=3600, keepalive_interval=1000.0), Upper()
    (first,) = up.poll(0.0)
    (second,) = up.on_response(first, upper.answer(first, 0.0), 0.0)
    up.on_response(second, upper.answer(second, 0.0, expires=60), 0.0)
    assert up.registered_until == 60.0
    assert up.next_deadline() == 48.0


def test_keepalives_go_every_interval_and_answers_reset_misses() -> None:
    up, upper = make_uplink(keepalive_interval=60.0), Upper()
    register(up, upper, 0.0)
    assert up.poll(59.0) == []
    (ka,) = up.poll(60.0)
    assert ka.method == "MESSAGE" and up.kind_of(ka) == KEEPALIVE
    msg = manscdp.decode(ka.body)
    assert msg.cmd_type == "Keepalive" and msg.device_id == LOCAL
    assert ka.to.uri.user == UPPER
    up.on_response(ka, make_response(ka, 200, to_tag="k"), 60.1)
    (ka2,) = up.poll(120.0)
    up.on_response(ka2, make_response(ka2, 200, to_tag="k"), 120.1)
    assert up.registered and up.stats.keepalives_missed == 0


def test_missed_keepalives_lead_to_a_new_registration_after_backoff() -> None:
    up, upper = make_uplink(keepalive_interval=10.0, keepalive_misses=3), Upper()
    changes: list[bool] = []
    up.on_change.append(lambda u, registered: changes.append(registered))
    register(up, upper, 0.0)
    first_call_id = up._call_id
    sent = []
    for t in (10.0, 20.0, 30.0):
        sent += up.poll(t)  # nobody answers
    assert [up.kind_of(r) for r in sent] == [KEEPALIVE] * 3
    assert up.registered
    assert up.poll(40.0) == []  # the third miss: registration given up
    assert up.state is UplinkState.BACKOFF and changes == [True, False]
    retry_at = up.next_deadline()
    assert retry_at is not None and 40.0 + 5.0 * (1 - JITTER) <= retry_at <= 40.0 + 5.0 * (
        1 + JITTER
    )
    assert up.poll(retry_at - 0.01) == []
    (again,) = up.poll(retry_at)
    assert again.method == "REGISTER" and again.call_id != first_call_id
    assert "Authorization" not in again.headers
    (auth,) = up.on_response(again, upper.answer(again, retry_at), retry_at)
    up.on_response(auth, upper.answer(auth, retry_at), retry_at)
    assert up.registered and changes == [True, False, True]
    # A late answer to an old keepalive changes nothing.
    up.on_response(sent[0], make_response(sent[0], 200, to_tag="k"), retry_at + 1)
    assert up.registered


def test_keepalive_answered_404_registers_again_at_once() -> None:
    up, upper = make_uplink(keepalive_interval=10.0), Upper()
    register(up, upper, 0.0)
    (ka,) = up.poll(10.0)
    up.on_response(ka, make_response(ka, 404, to_tag="k"), 10.0)
    assert up.state is UplinkState.BACKOFF
    (again,) = up.poll(10.0)
    assert again.method == "REGISTER"


@pytest.mark.parametrize("status", [408, 503, 500, 403, 404])
def test_backoff_after_errors_grows_exponentially_with_jitter_up_to_the_cap(status: int) -> None:
    up = make_uplink(retry_min=5.0, retry_max=40.0)
    now = 0.0
    delays = []
    for _ in range(6):
        (req,) = up.poll(now)
        up.on_response(req, make_response(req, status, to_tag="x"), now)
        assert up.state is UplinkState.BACKOFF
        deadline = up.next_deadline()
        assert deadline is not None
        delays.append(deadline - now)
        now = deadline
    for delay, nominal in zip(delays, (5, 10, 20, 40, 40, 40), strict=True):
        assert nominal * (1 - JITTER) <= delay <= nominal * (1 + JITTER)
    assert up.stats.failures == 6


def test_no_answer_to_register_counts_as_a_failure_and_recovery_resets_backoff() -> None:
    up, upper = make_uplink(retry_min=5.0), Upper()
    (req,) = up.poll(0.0)
    # The driver's transaction timed out...
    up.on_no_answer(req, 32.0)
    assert up.state is UplinkState.BACKOFF
    deadline = up.next_deadline()
    assert deadline is not None
    (req2,) = up.poll(deadline)
    # ... or the machine's own answer timeout fires first.
    assert up.poll(deadline + 10.0) == []
    assert up.state is UplinkState.BACKOFF and up.stats.failures == 2
    d2 = up.next_deadline()
    assert d2 is not None and d2 - (deadline + 10.0) >= 10.0 * (1 - JITTER)
    # A late answer to the abandoned REGISTER is ignored.
    assert up.on_response(req2, upper.answer(req2, d2), d2) == []
    register(up, upper, d2)
    assert up._failures == 0


def test_wrong_password_is_not_retried_in_a_loop() -> None:
    up, upper = make_uplink(password="wrong"), Upper()
    (first,) = up.poll(0.0)
    (second,) = up.on_response(first, upper.answer(first, 0.0), 0.0)
    refused = upper.answer(second, 0.0)
    assert refused.status == 401
    assert up.on_response(second, refused, 0.0) == []
    assert up.state is UplinkState.BACKOFF
    assert "wrong password" in up.stats.last_error


def test_423_takes_min_expires() -> None:
    up = make_uplink(expires=30)
    (first,) = up.poll(0.0)
    too_brief = make_response(first, 423, to_tag="x", headers=[("Min-Expires", "120")])
    (again,) = up.on_response(first, too_brief, 0.0)
    assert again.headers.get("Expires") == "120"


def test_stop_unregisters_with_expires_zero_and_answers_a_challenge() -> None:
    up, upper = make_uplink(), Upper()
    register(up, upper, 0.0)
    (bye,) = up.stop(10.0)
    assert bye.headers.get("Expires") == "0" and up.kind_of(bye) == UNREGISTER
    assert up.state is UplinkState.STOPPED
    challenge = make_response(
        bye, 401, to_tag="u", headers=[("WWW-Authenticate", str(upper.verifier.challenge(10.0)))]
    )
    (bye2,) = up.on_response(bye, challenge, 10.0)
    assert bye2.headers.get("Expires") == "0" and "Authorization" in bye2.headers
    up.on_response(bye2, make_response(bye2, 200, to_tag="u"), 10.0)
    assert up.poll(1000.0) == [] and up.next_deadline() is None


def test_stop_before_registering_sends_nothing() -> None:
    up = make_uplink()
    assert up.stop(0.0) == []
    assert up.poll(0.0) == []


def test_message_builds_a_manscdp_request_to_the_upper_platform() -> None:
    up = make_uplink()
    req = up.message(b"<Response/>")
    assert req.method == "MESSAGE" and req.to.uri.user == UPPER
    assert req.headers.get("Content-Type") == "Application/MANSCDP+xml"
    up.on_response(req, make_response(req, 200, to_tag="m"), 0.0)


def test_granted_expires_prefers_our_contact_parameter() -> None:
    up = make_uplink()
    (req,) = up.poll(0.0)
    resp = make_response(
        req,
        200,
        to_tag="u",
        headers=[("Contact", f"<sip:{LOCAL}@192.0.2.1:5060>;expires=600"), ("Expires", "900")],
    )
    assert _granted_expires(resp, req) == 600
