"""Tests for gb28181.sip._sdp: captured bodies, round trips, offers, SSRCs, fuzzing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gb28181.sip._sdp import (
    MAX_SDP_SIZE,
    Connection,
    MediaDescription,
    Origin,
    SdpError,
    SessionDescription,
    build_offer,
    make_ssrc,
    parse_sdp,
    ssrc_to_int,
)

WIRE = Path(__file__).resolve().parent.parent / "fixtures" / "sip-wire"


def sdp_body(path: Path) -> bytes | None:
    """The body of a captured SIP message if it is SDP (split after the blank line)."""
    _, sep, body = path.read_bytes().partition(b"\r\n\r\n")
    return body if sep and body.startswith(b"v=") else None


SDP_FILES = sorted(p.name for p in WIRE.glob("*.sip") if sdp_body(p) is not None)


def fixture(name: str) -> SessionDescription:
    body = sdp_body(WIRE / name)
    assert body is not None
    return parse_sdp(body)


def test_every_captured_sdp_body_is_found() -> None:
    # INVITEs and 200 OKs with SDP in tests/fixtures/sip-wire (README).
    assert len(SDP_FILES) == 14


@pytest.mark.parametrize("name", SDP_FILES)
def test_captured_bodies_round_trip(name: str) -> None:
    body = sdp_body(WIRE / name)
    assert body is not None
    parsed = parse_sdp(body)
    assert parsed.origin is not None and parsed.connection is not None
    assert len(parsed.media) == 1
    again = parse_sdp(bytes(parsed))
    assert again == parsed
    # All captures already use our line order: re-serialising is byte-exact
    # (one eXosip body lacks the final CRLF, which we always write).
    assert bytes(parsed) == (body if body.endswith(b"\r\n") else body + b"\r\n")
    # The same body with LF line ends and trailing spaces parses the same.
    sloppy = body.replace(b"\r\n", b" \n")
    assert parse_sdp(sloppy) == parsed
    assert parse_sdp(body.decode("ascii")) == parsed


def test_dahua_answer_with_malformed_f_line() -> None:
    sdp = fixture("dahua_200ok-sdp_1.sip")
    assert sdp.origin == Origin("34020000001320000001", "0", "0", "IN", "IP4", "192.168.28.110")
    assert sdp.session_name == "Play"
    assert sdp.info == "VCam Live Video"
    assert sdp.connection == Connection("IN", "IP4", "192.168.28.110")
    assert (sdp.start, sdp.stop) == (0, 0)
    assert sdp.ssrc == "0000000000"
    assert sdp.ssrc_int == 0
    assert sdp.media_format == "v/0/0/0/0/0a/0/0/0"  # kept verbatim
    media = sdp.primary
    assert media == MediaDescription(
        "video",
        9708,
        "RTP/AVP",
        ("96",),
        attributes=(("sendonly", None), ("rtpmap", "96 PS/90000"), ("streamprofile", "0")),
    )
    assert media.rtpmap == {96: "PS/90000"}
    assert not media.is_tcp
    assert sdp.direction == media.direction == "sendonly"
    assert sdp.stream_number == media.stream_number == 0
    assert sdp.connection_address == "192.168.28.110"
    assert sdp.media_port == 9708
    assert sdp.setup is None and sdp.connection_mode is None


def test_offer_without_y_line() -> None:
    sdp = fixture("sdk28181_invite-play_1.sip")
    assert sdp.ssrc is None and sdp.ssrc_int is None and sdp.media_format is None
    assert sdp.primary is not None
    assert sdp.primary.formats == ("96", "98", "97")
    assert sdp.primary.rtpmap == {96: "PS/90000", 98: "H264/90000", 97: "MPEG4/90000"}
    assert sdp.direction == "recvonly"


def test_playback_offer_and_answer() -> None:
    offer = fixture("exosip_invite-playback_1.sip")
    assert offer.session_name == "Playback"
    assert offer.uri == "34020000001310000001:3"
    assert (offer.start, offer.stop) == (1714804996, 1714806986)
    assert offer.ssrc == "0000002000"
    assert offer.media_format == ""  # bare "f=" without a line end
    answer = fixture("hikvision-nvr_200ok-playback_1.sip")
    assert answer.session_name == "Network Video Recorder"
    assert answer.stop - offer.stop == 28800  # the NVR's 8-hour shift
    assert answer.file_size == 2124794308
    assert answer.get_attribute("password") == "zzgd1234"


def test_download_offer_and_answer() -> None:
    offer = fixture("feiyangqingyun_invite-download_1.sip")
    assert offer.session_name == "Download"
    assert offer.download_speed == 8
    assert offer.setup == "passive"
    assert offer.connection_mode == "new"
    assert offer.stream_number == 1
    assert offer.ssrc_int == 1000010004
    answer = fixture("hikvision_200ok-download_1.sip")
    assert answer.file_size == 1367160
    assert answer.setup == "active"
    assert answer.direction == "sendonly"


def test_tcp_talk() -> None:
    offer = fixture("hikvision_invite-talk-tcp_1.sip")
    media = offer.media_of("audio")
    assert media is not None and media.is_tcp
    assert media.proto == "TCP/RTP/AVP"
    assert media.rtpmap == {8: "PCMA/8000", 96: "PS/90000"}
    assert offer.media_of("video") is None
    assert (offer.setup, offer.connection_mode) == ("active", "new")
    assert offer.media_format == "v/////a/1/8/1"
    answer = fixture("feiyangqingyun_200ok-talk-tcp_1.sip")
    assert answer.setup == "passive"
    assert answer.origin is not None and answer.origin.sess_id == "601"


# -- the notes' examples and other tolerances ------------------------------------

NOTES_62A_OFFER = (
    "v=0 / o=34020000002000000001 0 0 IN IP4 10.0.0.5 / s=Play / c=IN IP4 10.0.0.5 / t=0 0 / "
    "m=video 30010 TCP/RTP/AVP 96 97 98 / a=recvonly / a=rtpmap:96 PS/90000 / "
    "a=rtpmap:97 MPEG4/90000 / a=rtpmap:98 H264/90000 / a=setup:passive / a=connection:new / "
    "y=0200000007"
)


def test_notes_live_view_example_matches_build_offer() -> None:
    wire = "\r\n".join(NOTES_62A_OFFER.split(" / ")) + "\r\n"
    parsed = parse_sdp(wire)
    built = build_offer(
        "Play",
        "34020000002000000001",
        "10.0.0.5",
        30010,
        "TCP-PASSIVE",
        make_ssrc("3402000000", 7, history=False),
    )
    assert parsed == built
    assert bytes(built) == wire.encode()
    assert built.ssrc_int == 0x0BEBC207  # the RTP SSRC field the device will send


def test_y_line_with_trailing_space_and_lf() -> None:
    sdp = parse_sdp(
        b"v=0\no=x 0 0 IN IP4 1.2.3.4\ns=Play\nt=0 0\nm=video 1 RTP/AVP 96\ny=0100000001 \n"
    )
    assert sdp.ssrc == "0100000001"
    assert sdp.connection is None and sdp.connection_address is None


def test_attribute_names_are_case_insensitive() -> None:
    sdp = parse_sdp(
        "v=0\r\nm=video 5 RTP/AVP 96\r\na=doWnloadspeed:4\r\na=RecvOnly\r\n"
        "a=RTPMAP:96 PS/90000\r\na=STREAMMODE:SUB\r\na=Setup: Active \r\n"
    )
    assert sdp.download_speed == 4
    assert sdp.direction == "recvonly"
    assert sdp.primary is not None and sdp.primary.rtpmap == {96: "PS/90000"}
    assert sdp.stream_mode == "SUB"
    assert sdp.setup == "active"
    # the name keeps its spelling for re-serialisation
    assert b"a=doWnloadspeed:4\r\n" in bytes(sdp)


def test_session_level_attributes_are_the_fallback() -> None:
    sdp = parse_sdp(
        "v=0\r\nc=IN IP4 1.1.1.1\r\na=sendonly\r\na=setup:passive\r\na=filesize:9\r\n"
        "a=stream:1\r\nm=video 5 RTP/AVP 96\r\nc=IN IP4 2.2.2.2\r\na=setup:active\r\n"
    )
    assert sdp.direction == "sendonly"
    assert sdp.setup == "active"  # media level wins
    assert sdp.file_size == 9
    assert sdp.stream_number == 1
    assert sdp.connection_address == "2.2.2.2"
    assert sdp.get_attribute("missing") is None
    bare = parse_sdp("v=0\r\na=recvonly\r\na=flag\r\n")
    assert bare.primary is None and bare.media_port is None
    assert bare.direction == "recvonly"
    assert bare.get_attribute("flag") == ""
    assert bare.stream_number is None and bare.download_speed is None


def test_unknown_and_extra_lines_are_kept() -> None:
    text = (
        "v=0\r\no=- 1 2 IN IP4 h\r\ns=Talk\r\ne=a@b\r\nc=IN IP4 h\r\nb=AS:2048\r\nt=1 2\r\n"
        "t=3 4\r\nr=7d 1h\r\nx=custom\r\nm=audio 8000/2 RTP/AVP 8\r\ni=mic\r\nb=AS:64\r\n"
        "a=rtpmap:8 PCMA/8000\r\nz=0 0\r\ny=0100000001\r\nf=v/2/4/25/1/2048a/1/8/1\r\n"
    )
    sdp = parse_sdp(text)
    assert sdp.extra_lines == (
        ("e", "a@b"),
        ("b", "AS:2048"),
        ("t", "3 4"),
        ("r", "7d 1h"),
        ("x", "custom"),
        ("z", "0 0"),  # session-only letter after m=: moves to the session
    )
    assert (sdp.start, sdp.stop) == (1, 2)
    media = sdp.primary
    assert media is not None
    assert media.port_count == 2
    assert media.extra_lines == (("i", "mic"), ("b", "AS:64"))
    assert parse_sdp(bytes(sdp)) == sdp
    assert b"m=audio 8000/2 RTP/AVP 8\r\n" in bytes(sdp)


def test_missing_t_means_unbounded() -> None:
    sdp = parse_sdp("v=0\r\nm=video 1 RTP/AVP 96\r\n")
    assert (sdp.start, sdp.stop) == (0, 0)
    assert bytes(sdp) == b"v=0\r\nt=0 0\r\nm=video 1 RTP/AVP 96\r\n"


def test_byte_level_tolerances() -> None:
    base = "v=0\r\ns=Play\r\nm=video 1 RTP/AVP 96\r\n"
    expected = parse_sdp(base)
    assert parse_sdp(base.encode() + b"\x00\x00") == expected  # NUL padding
    assert parse_sdp(base.replace("\r\n", "\r")) == expected  # bare CR
    assert parse_sdp("\r\n" + base + "\r\n\r\n") == expected  # blank lines
    assert parse_sdp(" " + base.replace("\r\n", "\t\r\n")) == expected
    assert parse_sdp(base.replace("s=", "S=")) == expected  # letter case
    gb = "v=0\r\ns=网络录像机\r\n".encode("gb18030")
    assert parse_sdp(gb).session_name == "网络录像机"
    utf8 = "v=0\r\ns=网络录像机\r\n".encode()
    assert parse_sdp(utf8).session_name == "网络录像机"
    tabbed = parse_sdp("v=0\r\ns=a\tb\r\n")
    assert tabbed.session_name == "a\tb"
    assert parse_sdp(bytes(tabbed)) == tabbed


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\r\n \r\n", "empty"),
        (b"hello", "not an SDP line"),
        (b"<?xml version='1.0'?>", "not an SDP line"),
        (b"s=Play\r\nv=0\r\n", "must start with v="),
        (b"v=x\r\n", "bad v= version"),
        (b"v=0\r\nv=0\r\n", "duplicate v="),
        (b"v=0\r\ny=1\r\ny=2\r\n", "duplicate y="),
        (b"v=0\r\ns=a\r\nm=video 1 RTP/AVP 96\r\ns=b\r\n", "duplicate s="),
        (b"v=0\r\nc=IN IP4 a\r\nc=IN IP4 b\r\n", "duplicate c="),
        (b"v=0\r\ni=a\r\ni=b\r\n", "duplicate i="),
        (b"v=0\r\nm=video 1 RTP/AVP\r\nc=IN IP4 a\r\nc=IN IP4 b\r\n", "duplicate c="),
        (b"v=0\r\no=a b c\r\n", "bad o= line"),
        (b"v=0\r\nc=IN IP4\r\n", "bad c= line"),
        (b"v=0\r\nt=0\r\n", "bad t= line"),
        (b"v=0\r\nt=now later\r\n", "bad t= start"),
        (b"v=0\r\nm=video 1\r\n", "bad m= line"),
        (b"v=0\r\nm=video x RTP/AVP 96\r\n", "bad m= port"),
        ("v=0\r\nm=video ٣ RTP/AVP 96\r\n".encode(), "bad m= port"),
        (b"v=0\r\nm=video 70000 RTP/AVP 96\r\n", "out of range"),
        (b"v=0\r\nm=video 1/x RTP/AVP 96\r\n", "bad m= port count"),
        (b"v=0\r\ns=a\x01b\r\n", "control character"),
        (b"v=0\r\n1=2\r\n", "not an SDP line"),
        (b"v=0\r\n==\r\n", "not an SDP line"),
        ("v=0\r\n\u212a=x\r\n".encode(), "not an SDP line"),  # Kelvin sign, not "k"
        (b"v=0\r\n" + b"a=x\r\n" * (MAX_SDP_SIZE // 5), "larger than"),
    ],
)
def test_garbage_raises_sdp_error(data: bytes, message: str) -> None:
    with pytest.raises(SdpError, match=message):
        parse_sdp(data)


def test_max_size_is_adjustable() -> None:
    with pytest.raises(SdpError):
        parse_sdp("v=0\r\n", max_size=3)
    assert parse_sdp("v=0\r\n", max_size=5).version == 0


# -- SSRC ----------------------------------------------------------------------


def test_make_ssrc() -> None:
    assert make_ssrc("3402000000", 1, history=False) == "0200000001"
    assert make_ssrc("3402000000", 1, history=True) == "1200000001"
    assert make_ssrc("81000000", 9999, False) == "0000009999"
    assert make_ssrc("4401060000", 0, True) == "1106000000"
    for domain in ("3402000", "34020abc00", "３４０２０００００"):
        with pytest.raises(ValueError, match="digits 4-8"):
            make_ssrc(domain, 1, False)
    for seq in (-1, 10000):
        with pytest.raises(ValueError, match="outside"):
            make_ssrc("3402000000", seq, False)


def test_ssrc_to_int() -> None:
    assert ssrc_to_int("0200000001") == 200000001
    assert f"{ssrc_to_int('0200000001'):08X}" == "0BEBC201"  # ZLMediaKit stream name
    assert ssrc_to_int(" 1999999999 ") == 1999999999
    assert ssrc_to_int("4294967295") == 0xFFFFFFFF
    for bad in ("", "abc", "-1", "4294967296", "00000000001", "0x10", "１"):
        with pytest.raises(SdpError):
            ssrc_to_int(bad)
    assert parse_sdp("v=0\r\ny=garbage\r\n").ssrc_int is None


# -- offers --------------------------------------------------------------------


def test_build_play_offer_udp() -> None:
    offer = build_offer("Play", "34020000002000000001", "10.0.0.5", 30000, "UDP", "0200000001")
    assert bytes(offer) == (
        b"v=0\r\n"
        b"o=34020000002000000001 0 0 IN IP4 10.0.0.5\r\n"
        b"s=Play\r\n"
        b"c=IN IP4 10.0.0.5\r\n"
        b"t=0 0\r\n"
        b"m=video 30000 RTP/AVP 96 97 98\r\n"
        b"a=recvonly\r\n"
        b"a=rtpmap:96 PS/90000\r\n"
        b"a=rtpmap:97 MPEG4/90000\r\n"
        b"a=rtpmap:98 H264/90000\r\n"
        b"y=0200000001\r\n"
    )
    assert parse_sdp(bytes(offer)) == offer
    assert offer.serialize() == bytes(offer)


def test_build_download_offer() -> None:
    offer = build_offer(
        "Download",
        "34020000002000000001",
        "10.0.0.5",
        30002,
        "tcp-active",
        make_ssrc("3402000000", 4, history=True),
        1744856617,
        1744856620,
        channel_id="34020000001310000001",
        download_speed=4,
        stream_number=0,
        media_format="v/2/6/25/1/4096a///",
    )
    assert offer.uri == "34020000001310000001:0"
    assert (offer.start, offer.stop) == (1744856617, 1744856620)
    assert offer.setup == "active" and offer.connection_mode == "new"
    assert offer.download_speed == 4
    assert offer.stream_number == 0
    assert offer.primary is not None and offer.primary.is_tcp
    text = bytes(offer).decode()
    assert text.endswith(
        "a=downloadspeed:4\r\na=streamnumber:0\r\ny=1200000004\r\nf=v/2/6/25/1/4096a///\r\n"
    )
    assert parse_sdp(text) == offer


def test_build_offer_variants() -> None:
    talk = build_offer("Talk", "34020000002000000001", "::1", 9000, ssrc=None)
    assert talk.connection == Connection("IN", "IP6", "::1")
    assert talk.origin is not None and talk.origin.addrtype == "IP6"
    audio = talk.media_of("audio")
    assert audio is not None and audio.formats == ("8", "96")
    assert audio.rtpmap == {8: "PCMA/8000", 96: "PS/90000"}
    assert talk.direction == "sendrecv"
    assert talk.ssrc is None
    playback = build_offer(
        "Playback",
        "id",
        "1.2.3.4",
        5,
        channel_id="34020000001310000001:3",
        stream_number=1,
        stream_attribute="streamMode",
    )
    assert playback.uri == "34020000001310000001:3"
    assert playback.stream_mode == "SUB"
    main = build_offer("Play", "id", "1.2.3.4", 5, stream_number=0, stream_attribute="streamMode")
    assert main.stream_mode == "MAIN"
    for style in ("stream", "streamprofile"):
        offer = build_offer("Play", "id", "1.2.3.4", 5, stream_number=1, stream_attribute=style)
        assert offer.get_attribute(style) == "1" and offer.stream_number == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "Record"}, "unknown session kind"),
        ({"transport": "SCTP"}, "unknown transport"),
        ({"port": 0}, "out of range"),
        ({"port": 65536}, "out of range"),
        ({"ssrc": "02000000x1"}, "SSRC"),
        ({"kind": "Playback"}, "needs channel_id"),
        ({"kind": "Download"}, "needs channel_id"),
        ({"stream_number": 1, "stream_attribute": "substream"}, "unknown stream attribute"),
    ],
)
def test_build_offer_errors(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "kind": "Play",
        "origin_id": "id",
        "address": "1.2.3.4",
        "port": 5,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        build_offer(**args)  # type: ignore[arg-type]


def test_models_are_immutable_values() -> None:
    sdp = fixture("dahua_200ok-sdp_2.sip")
    with pytest.raises(dataclasses.FrozenInstanceError):
        sdp.ssrc = "1"  # type: ignore[misc]
    changed = dataclasses.replace(sdp, ssrc="0200000001")
    assert parse_sdp(bytes(changed)).ssrc == "0200000001"
    assert hash(sdp) == hash(fixture("dahua_200ok-sdp_2.sip"))
    assert sdp.primary is not None
    assert sdp.primary.get_attributes("RTPMAP") == ["96 PS/90000"]
    assert sdp.primary.get_attribute("nothing") is None


# -- fuzzing -------------------------------------------------------------------

_SEEDS = [body for name in SDP_FILES if (body := sdp_body(WIRE / name)) is not None]


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_fuzz_bytes_raise_only_sdp_error(data: bytes) -> None:
    try:
        sdp = parse_sdp(data)
    except SdpError:
        return
    assert parse_sdp(bytes(sdp)) == sdp


@given(st.sampled_from(_SEEDS), st.integers(0, 600), st.binary(max_size=8), st.integers(0, 600))
@settings(max_examples=300, deadline=None)
def test_fuzz_mutated_captures(seed: bytes, at: int, insert: bytes, cut: int) -> None:
    data = seed[:at] + insert + seed[at + cut % 5 :]
    try:
        sdp = parse_sdp(data)
    except SdpError:
        return
    assert parse_sdp(bytes(sdp)) == sdp


_LINE = st.tuples(
    st.sampled_from("vosiuctmabyfkzrxVY"),
    st.sampled_from(
        [
            "0",
            "Play",
            "IN IP4 1.2.3.4",
            "x 0 0 IN IP4 h",
            "0 0",
            "video 5 RTP/AVP 96",
            "audio 7/2 TCP/RTP/AVP",
            "rtpmap:96 PS/90000",
            "recvonly",
            "setup:passive",
            "",
            " ",
            ":",
            "0100000001 ",
            "v/0/0/0/0/0a/0/0/0",
        ]
    )
    | st.text(max_size=12),
).map(lambda pair: f"{pair[0]}={pair[1]}")


@given(st.lists(_LINE, max_size=14), st.sampled_from(["\r\n", "\n", "\r"]))
@settings(max_examples=300, deadline=None)
def test_fuzz_structured_round_trip(lines: list[str], newline: str) -> None:
    text = newline.join(["v=0", *lines])
    try:
        sdp = parse_sdp(text)
    except SdpError:
        return
    assert parse_sdp(bytes(sdp)) == sdp


def test_media_level_accessors() -> None:
    media = fixture("feiyangqingyun_invite-download_1.sip").primary
    assert media is not None
    assert (media.setup, media.connection_mode) == ("passive", "new")
    assert (media.download_speed, media.file_size, media.stream_number) == (8, None, 1)
    assert media.stream_mode is None
    answer = fixture("hikvision_200ok-download_1.sip").primary
    assert answer is not None
    assert (answer.file_size, answer.stream_number, answer.connection_mode) == (1367160, None, None)
    sub = parse_sdp("v=0\r\nm=video 1 RTP/AVP 96\r\na=streamMode:MAIN\r\na=setup\r\n").primary
    assert sub is not None and sub.stream_mode == "MAIN" and sub.setup is None


def test_rtpmap_oddities() -> None:
    sdp = parse_sdp(
        "v=0\r\nm=video 1 RTP/AVP 96\r\na=rtpmap\r\na=rtpmap:x PS/90000\r\n"
        "a=rtpmap:96 PS/90000\r\na=rtpmap:96 H264/90000\r\na=rtpmap: 98  H264/90000 \r\n"
    )
    assert sdp.primary is not None
    assert sdp.primary.rtpmap == {96: "PS/90000", 98: "H264/90000"}


def test_media_connection_is_written_in_its_section() -> None:
    text = "v=0\r\nt=0 0\r\nm=video 1 RTP/AVP 96\r\nc=IN IP4 2.2.2.2\r\nb=AS:1\r\na=sendonly\r\n"
    assert bytes(parse_sdp(text)) == text.encode()
