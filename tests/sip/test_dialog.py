"""Dialog tests, driven by captured GB/T 28181 exchanges where they exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gb28181.sip import (
    Dialog,
    DialogId,
    DialogState,
    DialogTable,
    SipLocalError,
    SipRemoteError,
    SipRequest,
    SipResponse,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_event,
    parse_message,
    via_template,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sip-wire"
PLATFORM_VIA = "SIP/2.0/UDP 192.168.28.10:5080;rport"
DEVICE_VIA = "SIP/2.0/UDP 192.168.28.110:5060;rport"


def req(name: str) -> SipRequest:
    msg = parse_message((FIXTURES / name).read_bytes())
    assert isinstance(msg, SipRequest)
    return msg


def resp(name: str) -> SipResponse:
    msg = parse_message((FIXTURES / name).read_bytes())
    assert isinstance(msg, SipResponse)
    return msg


def state_of(dialog: Dialog) -> DialogState:
    """The state, read through a call so that mypy does not narrow it between steps."""
    return dialog.state


def reparse(msg: SipRequest | SipResponse) -> SipRequest | SipResponse:
    out = parse_message(bytes(msg))
    assert isinstance(out, SipRequest | SipResponse)
    return out


# ------------------------------------------------------------------- helpers
def test_identifier_helpers() -> None:
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100
    assert all(re.fullmatch(r"z9hG4bK[0-9a-f]{16}", b) for b in branches)
    assert re.fullmatch(r"[0-9a-f]{16}", new_tag())
    assert re.fullmatch(r"[0-9a-f]{24}@10\.0\.0\.5", new_call_id("10.0.0.5"))
    assert re.fullmatch(r"[0-9a-f]{24}", new_call_id())


def test_parse_event_and_via_template() -> None:
    assert parse_event("Catalog;id=5672") == ("catalog", "5672")
    assert parse_event("presence") == ("presence", None)
    assert parse_event(" presence ; id = 7") == ("presence", "7")
    assert (
        via_template("SIP/2.0/UDP 10.0.0.5:5060;rport=5061;received=1.2.3.4;branch=z9hG4bKx")
        == "SIP/2.0/UDP 10.0.0.5:5060;rport"
    )


# ------------------------------------------------------- INVITE, platform = UAC
def test_uac_invite_early_confirmed_ack_and_bye_match_the_dahua_capture() -> None:
    invite = req("sdk28181_invite-play_1.sip")
    early = Dialog.as_uac(invite, resp("dahua_101-invite_1.sip"))
    assert early.state is DialogState.EARLY
    assert early.id == DialogId("1465719582", "163568934", "92381153")
    assert early.remote_target == "sip:34020000001320000001@192.168.28.110:5060"
    assert early.route_set == []
    assert early.local_cseq == 20 and early.remote_cseq is None and early.invite_cseq == 20
    assert early.via == PLATFORM_VIA
    assert early.local_uri == "sip:34020000002000000001@3402000000"
    assert early.remote_uri == "sip:34020000001320000001@192.168.28.110:5060"
    assert not early.secure

    ok = resp("dahua_200ok-sdp_1.sip")
    table = DialogTable()
    table.add(early)
    assert table.match_response(ok) is early
    early.receive_response(ok)
    assert state_of(early) is DialogState.CONFIRMED

    ack = early.create_ack()
    captured_ack = req("sdk28181_ack_1.sip")
    assert ack.method == "ACK" and ack.uri == captured_ack.uri
    assert ack.cseq == captured_ack.cseq == (20, "ACK")
    assert ack.call_id == captured_ack.call_id
    assert ack.from_ == captured_ack.from_ and ack.to == captured_ack.to
    assert ack.top_via.sent_by == captured_ack.top_via.sent_by
    assert ack.top_via.branch != invite.top_via.branch  # the 2xx ACK is a new transaction
    assert early.local_cseq == 20  # ACK does not consume a number

    bye = early.create_request("BYE")
    captured_bye = req("sdk28181_bye_1.sip")
    assert (bye.method, bye.uri, bye.cseq) == (captured_bye.method, captured_bye.uri, (21, "BYE"))
    assert bye.from_ == captured_bye.from_ and bye.to == captured_bye.to
    assert bye.headers.get("Contact") is None  # BYE is not a target refresh
    assert reparse(bye).cseq == (21, "BYE")  # serialises into a valid message
    ok_bye = resp("dahua_200ok-bye_1.sip")
    assert table.match_response(ok_bye) is early
    early.receive_response(ok_bye)
    early.terminate()
    assert state_of(early) is DialogState.TERMINATED
    with pytest.raises(SipLocalError, match="terminated"):
        early.create_request("BYE")
    assert table.remove(early.id) is early and len(table) == 0


def test_uac_confirmed_directly_by_2xx() -> None:
    dialog = Dialog.as_uac(req("sdk28181_invite-play_1.sip"), resp("dahua_200ok-sdp_1.sip"))
    assert dialog.state is DialogState.CONFIRMED
    reinvite = dialog.create_request("INVITE", body=b"v=0\r\n")
    assert dialog.invite_cseq == 21 == reinvite.cseq[0]
    assert reinvite.headers.get("Contact") == "<sip:34020000002000000001@192.168.28.10:5080>"
    assert dialog.create_ack().cseq == (21, "ACK")
    assert dialog.create_ack(20).cseq == (20, "ACK")


def test_uac_rejects_what_makes_no_dialog() -> None:
    invite = req("sdk28181_invite-play_1.sip")
    with pytest.raises(SipLocalError):
        Dialog.as_uac(invite, make_response(invite, 486, to_tag="x"))
    with pytest.raises(SipLocalError, match="does not answer"):
        Dialog.as_uac(req("sdk28181_subscribe-catalog_1.sip"), resp("dahua_200ok-sdp_1.sip"))
    no_contact = make_response(invite, 200, to_tag="x")
    with pytest.raises(SipRemoteError):
        Dialog.as_uac(invite, no_contact)
    no_tag = req("sdk28181_invite-play_1.sip")
    no_tag.headers.set("From", "<sip:34020000002000000001@3402000000>")
    no_tag.invalidate()
    with pytest.raises(SipLocalError, match="From tag"):
        Dialog.as_uac(no_tag, make_response(no_tag, 200, to_tag="x"))


def test_failure_ends_an_early_dialog_and_481_ends_a_confirmed_one() -> None:
    invite = req("sdk28181_invite-play_1.sip")
    early = Dialog.as_uac(invite, resp("dahua_101-invite_1.sip"))
    early.receive_response(make_response(invite, 180, to_tag="92381153"))
    assert early.state is DialogState.EARLY
    early.receive_response(make_response(invite, 487, to_tag="92381153"))
    assert state_of(early) is DialogState.TERMINATED
    dialog = Dialog.as_uac(invite, resp("dahua_200ok-sdp_1.sip"))
    info = dialog.create_request("INFO")
    dialog.receive_response(make_response(info, 415, to_tag="92381153"))
    assert dialog.state is DialogState.CONFIRMED
    dialog.receive_response(make_response(info, 481, to_tag="92381153"))
    assert state_of(dialog) is DialogState.TERMINATED


# ------------------------------------------------------- INVITE, platform = UAS
def test_uas_invite_ack_bye_and_out_of_order_cseq() -> None:
    invite = req("sdk28181_invite-play_1.sip")
    ok = resp("dahua_200ok-sdp_1.sip")
    dialog = Dialog.as_uas(invite, ok, via=DEVICE_VIA)
    assert dialog.id == DialogId("1465719582", "92381153", "163568934")
    assert dialog.remote_target == "sip:34020000002000000001@192.168.28.10:5080"
    assert dialog.remote_cseq == 20 and dialog.local_cseq is None
    assert dialog.local_contact == "<sip:34020000001320000001@192.168.28.110:5060>"
    table = DialogTable()
    table.add(dialog)
    ack = req("sdk28181_ack_1.sip")
    assert table.match_request(ack) is dialog
    dialog.receive_request(ack)
    assert dialog.remote_cseq == 20
    bye = req("sdk28181_bye_1.sip")
    assert table.match_request(bye) is dialog
    dialog.receive_request(bye)
    assert dialog.remote_cseq == 21 and dialog.state is DialogState.TERMINATED
    late = req("sdk28181_bye_1.sip")
    late.headers.set("CSeq", "19 BYE")
    late.invalidate()
    with pytest.raises(SipRemoteError) as info:
        dialog.receive_request(late)
    assert info.value.status_hint == 500
    with pytest.raises(SipLocalError, match="not for this dialog"):
        dialog.receive_request(req("sdk28181_subscribe-catalog_1.sip"))


def test_uas_requests_from_our_side() -> None:
    invite = req("sdk28181_invite-play_1.sip")
    dialog = Dialog.as_uas(invite, resp("dahua_200ok-sdp_1.sip"), via=DEVICE_VIA)
    bye = dialog.create_request("BYE")
    assert bye.uri == "sip:34020000002000000001@192.168.28.10:5080"
    assert bye.from_.tag == "92381153" and bye.to.tag == "163568934"
    assert bye.cseq == (1, "BYE")
    assert bye.top_via.sent_by == "192.168.28.110:5060" and bye.top_via.branch
    viewless = req("sdk28181_invite-play_1.sip")
    viewless.headers.remove("Via")
    with pytest.raises(SipLocalError, match="no Via"):
        Dialog.as_uac(viewless, resp("dahua_200ok-sdp_1.sip"))
    no_via = Dialog.as_uas(invite, resp("dahua_200ok-sdp_1.sip"))
    with pytest.raises(SipLocalError, match="Via template"):
        no_via.create_request("BYE")
    with pytest.raises(SipLocalError, match="no INVITE"):
        dialog.create_ack()
    for method in ("ACK", "CANCEL"):
        with pytest.raises(SipLocalError):
            dialog.create_request(method)


def test_uas_rejects_what_makes_no_dialog() -> None:
    invite = req("sdk28181_invite-play_1.sip")
    with pytest.raises(SipLocalError, match="To tag"):
        Dialog.as_uas(invite, make_response(invite, 200))
    with pytest.raises(SipLocalError):
        Dialog.as_uas(invite, make_response(invite, 100))
    no_contact = req("sdk28181_invite-play_1.sip")
    no_contact.headers.remove("Contact")
    with pytest.raises(SipRemoteError):
        Dialog.as_uas(no_contact, make_response(no_contact, 200, to_tag="x"))


def test_target_refresh_updates_remote_target() -> None:
    invite = req("sdk28181_invite-play_1.sip")
    dialog = Dialog.as_uas(invite, resp("dahua_200ok-sdp_1.sip"), via=DEVICE_VIA)
    reinvite = req("sdk28181_invite-play_1.sip")
    reinvite.headers.set("To", "<sip:34020000001320000001@192.168.28.110:5060>;tag=92381153")
    reinvite.headers.set("CSeq", "22 INVITE")
    reinvite.headers.set("Contact", "<sip:34020000002000000001@192.168.28.99:5080>")
    reinvite.invalidate()
    dialog.receive_request(reinvite)
    assert dialog.remote_target == "sip:34020000002000000001@192.168.28.99:5080"
    uac = Dialog.as_uac(req("sdk28181_invite-play_1.sip"), resp("dahua_200ok-sdp_1.sip"))
    update = uac.create_request("UPDATE")
    moved = make_response(
        update, 200, headers=[("Contact", "<sip:34020000001320000001@192.168.28.111:5060>")]
    )
    uac.receive_response(moved)
    assert uac.remote_target == "sip:34020000001320000001@192.168.28.111:5060"


# ------------------------------------------------------------------ route sets
def _invite_with_routes(record_route: list[str]) -> tuple[SipRequest, SipResponse]:
    invite = req("sdk28181_invite-play_1.sip")
    ok = resp("dahua_200ok-sdp_1.sip")
    for value in record_route:
        ok.headers.add("Record-Route", value)
        invite.headers.add("Record-Route", value)
    return invite, ok


def test_loose_route_set_is_reversed_for_the_uac() -> None:
    invite, ok = _invite_with_routes(["<sip:p1.example;lr>", "<sip:p2.example;lr>"])
    uac = Dialog.as_uac(req("sdk28181_invite-play_1.sip"), ok)
    assert uac.route_set == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
    bye = uac.create_request("BYE")
    assert bye.uri == uac.remote_target
    assert bye.headers.get_all("Route") == uac.route_set
    uas = Dialog.as_uas(invite, ok, via=DEVICE_VIA)
    assert uas.route_set == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]


def test_strict_route_puts_the_target_last() -> None:
    _, ok = _invite_with_routes(["<sip:strict.example>"])
    uac = Dialog.as_uac(req("sdk28181_invite-play_1.sip"), ok)
    bye = uac.create_request("BYE")
    assert bye.uri == "sip:strict.example"
    assert bye.headers.get_all("Route") == [f"<{uac.remote_target}>"]


def test_early_route_set_recomputed_on_2xx() -> None:
    invite = req("sdk28181_invite-play_1.sip")
    early = Dialog.as_uac(invite, resp("dahua_101-invite_1.sip"))
    _, ok = _invite_with_routes(["<sip:p1.example;lr>"])
    early.receive_response(ok)
    assert early.route_set == ["<sip:p1.example;lr>"]


# ------------------------------------------------------------------ SUBSCRIBE
def test_uac_subscription_and_refresh() -> None:
    subscribe = req("sdk28181_subscribe-catalog_1.sip")
    ok = resp("dahua_200ok-subscribe_1.sip")
    dialog = Dialog.as_uac(subscribe, ok)
    assert dialog.event == "presence" and dialog.invite_cseq is None
    assert dialog.id == DialogId("369697548", "1601879615", "1683895784")
    refresh = dialog.create_request(
        "SUBSCRIBE", headers=[("Event", "presence"), ("Expires", "3600")]
    )
    assert refresh.cseq == (21, "SUBSCRIBE")
    assert refresh.headers.get("Contact") == subscribe.headers.get("Contact")
    assert refresh.headers.get("Expires") == "3600"
    assert refresh.to.tag == "1683895784"


def test_subscribe_200_without_contact_falls_back_to_request_uri() -> None:
    subscribe = req("sdk28181_subscribe-catalog_1.sip")
    ok = make_response(subscribe, 200, to_tag="n1")
    dialog = Dialog.as_uac(subscribe, ok)
    assert dialog.remote_target == subscribe.uri


def test_uas_subscription_sends_notify() -> None:
    subscribe = req("sdk28181_subscribe-catalog_1.sip")
    ok = resp("dahua_200ok-subscribe_1.sip")
    dialog = Dialog.as_uas(subscribe, ok, via=DEVICE_VIA)
    notify = dialog.create_request(
        "NOTIFY",
        headers=[("Event", "presence"), ("Subscription-State", "active;expires=3600")],
        body=b"<Notify/>",
    )
    assert notify.uri == "sip:34020000002000000001@192.168.28.10:5080"
    assert notify.from_.tag == "1683895784" and notify.to.tag == "1601879615"
    assert notify.headers.get("Contact") == "<sip:34020000001320000001@192.168.28.110:5060>"
    assert notify.body == b"<Notify/>"
    # The subscriber finds its dialog for this NOTIFY.
    subscriber = Dialog.as_uac(subscribe, ok)
    table = DialogTable()
    table.add(subscriber)
    assert table.match_notify(notify) is subscriber
    subscriber.receive_request(notify)
    assert subscriber.remote_cseq == 1


def _notify_for(subscribe: SipRequest, event: str, from_tag: str = "dev1") -> SipRequest:
    text = (
        f"NOTIFY sip:81000000462001888888@10.0.0.5:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 13.50.108.195:5080;rport;branch=z9hG4bKn1\r\n"
        f"From: {subscribe.headers.get('To')};tag={from_tag}\r\n"
        f"To: {subscribe.headers.get('From')}\r\n"
        f"Call-ID: {subscribe.call_id}\r\n"
        "CSeq: 1 NOTIFY\r\n"
        "Contact: <sip:81000000465001000001@13.50.108.195:5080>\r\n"
        f"Event: {event}\r\n"
        "Subscription-State: active;expires=60\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(text.encode())
    assert isinstance(msg, SipRequest)
    return msg


def test_notify_before_the_200_creates_the_dialog() -> None:
    subscribe = req("wvp_subscribe-catalog_1.sip")
    table = DialogTable()
    table.expect_notify(subscribe)
    assert table.match_notify(_notify_for(subscribe, "Catalog;id=9999")) is None  # other id
    assert table.match_notify(_notify_for(subscribe, "presence;id=5672")) is None  # other type
    notify = _notify_for(subscribe, "catalog;id=5672")
    dialog = table.match_notify(notify)
    assert dialog is not None and dialog.state is DialogState.CONFIRMED
    assert dialog.id == DialogId(subscribe.call_id, subscribe.from_.tag or "", "dev1")
    assert dialog.remote_target == "sip:81000000465001000001@13.50.108.195:5080"
    assert dialog.local_cseq == 96 and dialog.remote_cseq == 1
    assert dialog.via == "SIP/2.0/UDP 0.0.0.0:5060;rport"
    # The late 200 finds the same dialog.
    late_ok = make_response(subscribe, 200, to_tag="dev1")
    assert table.match_response(late_ok) is dialog
    dialog.receive_response(late_ok)
    assert dialog.state is DialogState.CONFIRMED
    # A second NOTIFY goes to the existing dialog.
    assert table.match_notify(_notify_for(subscribe, "Catalog;id=5672")) is dialog
    table.forget_subscription(subscribe)
    assert table.match_notify(_notify_for(subscribe, "Catalog;id=5672", "dev2")) is None


def test_notify_without_pending_subscription_or_tag() -> None:
    table = DialogTable(max_pending=1)
    subscribe = req("wvp_subscribe-catalog_1.sip")
    assert table.match_notify(_notify_for(subscribe, "Catalog;id=5672")) is None
    other = req("wvp_subscribe-mobileposition_1.sip")
    table.expect_notify(subscribe)
    table.expect_notify(other)  # the oldest pending SUBSCRIBE is forgotten
    assert table.match_notify(_notify_for(subscribe, "Catalog;id=5672")) is None
    broken = _notify_for(other, other.headers.get("Event") or "")
    broken.headers.remove("Contact")
    with pytest.raises(SipRemoteError):
        table.match_notify(broken)


def test_in_dialog_subscribe_refresh_from_wvp_is_matched() -> None:
    refresh = req("wvp_subscribe-mobileposition-refresh_1.sip")
    initial = req("wvp_subscribe-mobileposition-refresh_1.sip")
    initial.headers.set("To", "<sip:81000000465001000001@13.50.108.195:5080>")
    initial.headers.set("CSeq", "167 SUBSCRIBE")
    initial.invalidate()
    ok = make_response(initial, 200, to_tag="c2818523-9d6a-4c28-b4ab-0bb1ad2640d3")
    dialog = Dialog.as_uas(initial, ok, via=DEVICE_VIA)
    table = DialogTable()
    table.add(dialog)
    assert table.match_request(refresh) is dialog
    dialog.receive_request(refresh)
    assert dialog.remote_cseq == 168
    assert dialog.remote_target == "sip:81000000462001888888@0.0.0.0:5060"
    # A request without To tag is never in a dialog.
    assert table.match_request(req("wvp_subscribe-catalog_1.sip")) is None


def test_table_limits_and_duplicates() -> None:
    table = DialogTable(max_dialogs=1)
    invite = req("sdk28181_invite-play_1.sip")
    dialog = Dialog.as_uac(invite, resp("dahua_200ok-sdp_1.sip"))
    table.add(dialog)
    with pytest.raises(SipLocalError, match="already exists"):
        table.add(dialog)
    other = Dialog.as_uac(
        req("sdk28181_subscribe-catalog_1.sip"), resp("dahua_200ok-subscribe_1.sip")
    )
    with pytest.raises(SipLocalError, match="limit"):
        table.add(other)
    assert table.get(dialog.id) is dialog and list(table) == [dialog]
    assert table.remove(other.id) is None
    assert "early" not in repr(dialog) and "confirmed" in repr(dialog)
