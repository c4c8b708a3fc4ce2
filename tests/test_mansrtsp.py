from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gb28181.mansrtsp import (
    MAX_SIZE,
    MansrtspError,
    MansrtspRequest,
    MansrtspResponse,
    Method,
    parse_request,
    parse_response,
)

# The bodies of notes §7, as devices and WVP send them.
SCALE = b"PLAY RTSP/1.0\r\nCSeq: 7\r\nScale: 2.0\r\n\r\n"
RESUME = b"PLAY RTSP/1.0\r\nCSeq: 8\r\nRange: npt=now-\r\n\r\n"
SEEK = b"PLAY RTSP/1.0\r\nCSeq: 9\r\nRange: npt=600-\r\n\r\n"
PAUSE = b"PAUSE RTSP/1.0\r\nCSeq: 10\r\nPauseTime: now\r\n\r\n"
TEARDOWN = b"TEARDOWN RTSP/1.0\r\nCSeq: 11\r\n\r\n"
HIK_OK = b"RTSP/1.0 200 OK\r\nCSeq: 9\r\nRTP-Info: seq=1;rtptime=2\r\n\r\n"


def test_wire_examples() -> None:
    assert parse_request(SCALE) == MansrtspRequest(Method.PLAY, 7, scale=2.0)
    assert parse_request(RESUME) == MansrtspRequest(Method.PLAY, 8)
    assert parse_request(SEEK) == MansrtspRequest(Method.PLAY, 9, range_start=600.0)
    assert parse_request(PAUSE) == MansrtspRequest(Method.PAUSE, 10, pause_time="now")
    assert parse_request(TEARDOWN) == MansrtspRequest(Method.TEARDOWN, 11)
    assert parse_response(HIK_OK) == MansrtspResponse(200, "OK", 9, "seq=1;rtptime=2")


def test_round_trips() -> None:
    for body in (SCALE, SEEK, PAUSE, TEARDOWN):
        assert bytes(parse_request(body)).replace(b"Scale: 2\r", b"Scale: 2.0\r") == body
    assert bytes(parse_response(HIK_OK)) == HIK_OK
    wvp = MansrtspRequest(Method.PLAY, 3, scale=0.25, range_start=12.5)
    assert parse_request(bytes(wvp)) == wvp


def test_lenient_forms() -> None:
    body = b"\r\nplay RTSP/1.0\ncseq: 5\nSCALE: 0.5\nrange: npt=12.5-30\n"
    assert parse_request(body) == MansrtspRequest(Method.PLAY, 5, scale=0.5, range_start=12.5)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"PLAY RTSP/1.0\r\n\r\n", "without CSeq"),
        (b"PLAY RTSP/1.0\r\nCSeq: x\r\n", "bad CSeq"),
        (b"RECORD RTSP/1.0\r\nCSeq: 1\r\n", "unsupported MANSRTSP method"),
        (b"PLAY rtsp://x RTSP/1.0\r\nCSeq: 1\r\n", "bad MANSRTSP request line"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: fast\r\n", "bad Scale"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: nan\r\n", "bad Scale"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nRange: clock=1-\r\n", "not npt"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nRange: npt=abc-\r\n", "bad Range"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nno colon\r\n", "bad MANSRTSP header"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\n" + b"X: y\r\n" * 20, "too many"),
        (b"PLAY RTSP/1.0\r\nCSeq: \xff\r\n", "not ASCII"),
        (b"PLAY RTSP/1.0\r\n" + b"x" * MAX_SIZE, "exceeds"),
    ],
)
def test_bad_requests(body: bytes, message: str) -> None:
    with pytest.raises(MansrtspError, match=message):
        parse_request(body)


def test_bad_response() -> None:
    with pytest.raises(MansrtspError, match="status line"):
        parse_response(b"HTTP/1.1 200 OK\r\nCSeq: 1\r\n")


@given(st.binary(max_size=3000))
def test_fuzz_request_parses_or_raises_mansrtsp_error(data: bytes) -> None:
    try:
        parse_request(data)
    except MansrtspError:
        pass


@given(
    st.sampled_from([SCALE, RESUME, SEEK, PAUSE, TEARDOWN, HIK_OK]),
    st.integers(0, 60),
    st.binary(max_size=8),
)
def test_fuzz_mutated_seeds(seed: bytes, at: int, junk: bytes) -> None:
    data = seed[:at] + junk + seed[at + len(junk) :]
    for parse in (parse_request, parse_response):
        try:
            parse(data)
        except MansrtspError:
            pass


def test_response_errors_and_pause_time_round_trip() -> None:
    with pytest.raises(MansrtspError, match="without CSeq"):
        parse_response(b"RTSP/1.0 200 OK\r\n\r\n")
    with pytest.raises(MansrtspError, match="status line"):
        parse_response(b"RTSP/1.0 2000 OK\r\nCSeq: 1\r\n")
    assert parse_response(b"RTSP/1.0 457 Invalid Range\r\nCSeq: 3\r\n") == MansrtspResponse(
        457, "Invalid Range", 3
    )
    pause = MansrtspRequest(Method.PAUSE, 4, pause_time="now")
    assert parse_request(bytes(pause)) == pause
    # Range on a PAUSE is not written (only PLAY seeks).
    assert b"Range" not in bytes(MansrtspRequest(Method.PAUSE, 5, range_start=3.0))
    with pytest.raises(MansrtspError, match="bad CSeq"):
        parse_request(b"PLAY RTSP/1.0\r\nCSeq: 12345678901\r\n")
