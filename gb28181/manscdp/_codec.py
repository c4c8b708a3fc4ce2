"""MANSCDP body codec: bytes <-> typed ``Message``.

Decoding: size limit -> charset detection (``_charset``) -> declaration stripped -> safe,
forgiving parse (``_xml``) -> header (root, CmdType, SN, DeviceID) -> the class registered for
(root, CmdType) in ``MESSAGE_TYPES`` reads the payload (``_records``). An unknown CmdType under a
known root becomes a ``GenericMessage`` (WVP answers those 200, notes §4.1); an unknown root is a
``ManscdpUnknownRootError`` (415).

Encoding follows what WVP puts on the wire: ``<?xml version="1.0" encoding="GB2312"?>`` and one
element per CRLF-terminated line, no indentation, no namespaces; the declaration names the charset
the bytes are really in (``_charset.encode_document``).
"""

from __future__ import annotations

import re
from typing import Any

from ._charset import Charset, decode_body, encode_document, strip_declaration
from ._errors import (
    ManscdpEncodeError,
    ManscdpSizeError,
    ManscdpSyntaxError,
    ManscdpUnknownRootError,
)
from ._messages import (
    AlarmNotify,
    AlarmQuery,
    BroadcastNotify,
    CatalogQuery,
    CatalogResponse,
    ConfigDownloadQuery,
    ConfigDownloadResponse,
    CruiseTrackListQuery,
    CruiseTrackListResponse,
    CruiseTrackQuery,
    CruiseTrackResponse,
    DeviceConfig,
    DeviceControl,
    DeviceInfoQuery,
    DeviceInfoResponse,
    DeviceStatusQuery,
    DeviceStatusResponse,
    GenericMessage,
    HomePositionQuery,
    HomePositionResponse,
    Keepalive,
    MediaStatusNotify,
    Message,
    MobilePositionNotify,
    MobilePositionQuery,
    PresetQuery,
    PresetQueryResponse,
    PtzPositionQuery,
    PtzPositionResponse,
    RecordInfoQuery,
    RecordInfoResponse,
    ResultResponse,
    Root,
    SdCardStatusQuery,
    SdCardStatusResponse,
    UploadSnapShotFinished,
)
from ._records import build, escape_text, read_fields, write_leaf, write_record
from ._xml import DEFAULT_MAX_DEPTH, parse_document

__all__ = ["DEFAULT_MAX_DEPTH", "DEFAULT_MAX_SIZE", "MESSAGE_TYPES", "decode", "encode"]

DEFAULT_MAX_SIZE = 1 << 20
"""Largest body accepted (1 MiB): a 2,000-item catalog chunk is ~1 MiB, real chunks are far less."""

_Q, _C, _N, _R = Root.QUERY, Root.CONTROL, Root.NOTIFY, Root.RESPONSE

MESSAGE_TYPES: dict[tuple[Root, str], type[Message]] = {
    (_N, "keepalive"): Keepalive,
    (_Q, "catalog"): CatalogQuery,
    (_R, "catalog"): CatalogResponse,
    (_N, "catalog"): CatalogResponse,
    (_Q, "deviceinfo"): DeviceInfoQuery,
    (_R, "deviceinfo"): DeviceInfoResponse,
    (_Q, "devicestatus"): DeviceStatusQuery,
    (_R, "devicestatus"): DeviceStatusResponse,
    (_Q, "recordinfo"): RecordInfoQuery,
    (_R, "recordinfo"): RecordInfoResponse,
    (_Q, "configdownload"): ConfigDownloadQuery,
    (_R, "configdownload"): ConfigDownloadResponse,
    (_C, "deviceconfig"): DeviceConfig,
    (_R, "deviceconfig"): ResultResponse,
    (_Q, "presetquery"): PresetQuery,
    (_R, "presetquery"): PresetQueryResponse,
    (_C, "devicecontrol"): DeviceControl,
    (_R, "devicecontrol"): ResultResponse,
    (_N, "alarm"): AlarmNotify,
    (_Q, "alarm"): AlarmQuery,
    (_R, "alarm"): ResultResponse,
    (_Q, "mobileposition"): MobilePositionQuery,
    (_N, "mobileposition"): MobilePositionNotify,
    (_R, "mobileposition"): MobilePositionNotify,
    (_N, "mediastatus"): MediaStatusNotify,
    (_N, "broadcast"): BroadcastNotify,
    (_R, "broadcast"): ResultResponse,
    (_Q, "homepositionquery"): HomePositionQuery,
    (_R, "homepositionquery"): HomePositionResponse,
    (_Q, "ptzposition"): PtzPositionQuery,
    (_R, "ptzposition"): PtzPositionResponse,
    (_N, "ptzposition"): PtzPositionResponse,
    (_Q, "sdcardstatus"): SdCardStatusQuery,
    (_R, "sdcardstatus"): SdCardStatusResponse,
    (_Q, "cruisetracklistquery"): CruiseTrackListQuery,
    (_R, "cruisetracklistquery"): CruiseTrackListResponse,
    (_Q, "cruisetrackquery"): CruiseTrackQuery,
    (_R, "cruisetrackquery"): CruiseTrackResponse,
    (_N, "uploadsnapshotfinished"): UploadSnapShotFinished,
}
"""(root, lower-case CmdType) -> message class; anything else decodes to ``GenericMessage``."""

# CmdType spellings for the classes whose cmd_type is an init argument.
_CANONICAL = {
    "devicecontrol": "DeviceControl",
    "deviceconfig": "DeviceConfig",
    "alarm": "Alarm",
    "broadcast": "Broadcast",
}
_ROOTS = {r.value.lower(): r for r in Root}

# Keepalive is ~1,000 decodes a second on a busy platform (50,000 devices every 60 s). The common
# shape, exactly as Hikvision and Dahua send it, is matched by one regex instead of building a
# tree; anything else (other order or case, Info with faulty children, dirt) takes the full path,
# which yields an equal message.
_FAST_KEEPALIVE = re.compile(
    r"\s*<Notify>\s*<CmdType>Keepalive</CmdType>\s*<SN>([0-9]{1,18})</SN>"
    r"\s*<DeviceID>([0-9A-Za-z]{1,64})</DeviceID>\s*<Status>([A-Za-z]{1,16})</Status>"
    r"\s*(?:<Info>\s*</Info>\s*)?</Notify>\s*"
)
_HEADER = frozenset({"cmdtype", "sn", "deviceid"})


def decode(
    data: bytes, *, max_size: int = DEFAULT_MAX_SIZE, max_depth: int = DEFAULT_MAX_DEPTH
) -> Message:
    """Decode a MANSCDP body (the bytes after the SIP header block).

    Args:
        data: the body exactly as received, in whatever charset the device used.
        max_size: bodies longer than this are refused.
        max_depth: elements nested deeper than this are refused.

    Returns:
        A typed message (``Keepalive``, ``CatalogResponse``...) or a ``GenericMessage``;
        ``salvaged``/``repairs`` tell whether the XML needed repair, ``charset`` what it was in.

    Raises:
        ManscdpSizeError, ManscdpDtdError, ManscdpDepthError: hostile input.
        ManscdpUnknownRootError: the root is not Query/Control/Notify/Response (answer 415).
        ManscdpSyntaxError: nothing usable (no root, no CmdType, SN not a number) (answer 400).
    """
    if len(data) > max_size:
        raise ManscdpSizeError(f"body of {len(data)} bytes exceeds the {max_size}-byte limit")
    text, charset = decode_body(data)
    text = strip_declaration(text)
    if len(text) < 400:
        fast = _FAST_KEEPALIVE.fullmatch(text)
        if fast is not None:
            sn, device_id, status = fast.groups()
            return Keepalive(sn=int(sn), device_id=device_id, status=status, charset=charset)
    parsed = parse_document(text, max_depth=max_depth)
    root_elem = parsed.root
    root = _ROOTS.get(root_elem.tag.lower())
    if root is None:
        raise ManscdpUnknownRootError(f"unknown MANSCDP root element {root_elem.tag[:40]!r}")
    header: dict[str, str] = {}
    for child in root_elem:
        key = child.tag.lower()
        if key in _HEADER and key not in header:
            header[key] = (child.text or "").strip()
    cmd_type = header.get("cmdtype")
    if not cmd_type:
        raise ManscdpSyntaxError("no CmdType")
    sn_text = header.get("sn", "")
    if sn_text and not (sn_text.isascii() and sn_text.isdigit() and len(sn_text) <= 18):
        raise ManscdpSyntaxError(f"SN is not a number: {sn_text[:40]!r}")
    lower = cmd_type.lower()
    cls = MESSAGE_TYPES.get((root, lower), GenericMessage)
    values: dict[str, Any] = read_fields(cls, root_elem, _HEADER)
    if cls is GenericMessage:
        values["cmd_type"] = cmd_type
    elif cls is ResultResponse:
        values["cmd_type"] = _CANONICAL.get(lower, cmd_type)
    values["root"] = root
    values["sn"] = int(sn_text) if sn_text else 0
    values["device_id"] = header.get("deviceid", "")
    values["salvaged"] = parsed.salvaged
    values["repairs"] = parsed.repairs
    values["charset"] = charset
    message: Message = build(cls, values)
    return message


def encode(
    message: Message, charset: Charset | str = Charset.GB2312, *, strict: bool = False
) -> bytes:
    """Encode ``message`` as a complete body (declaration included) in ``charset``.

    The result is what goes after the SIP headers; its length is the Content-Length.
    Characters GB2312/GBK cannot represent escalate the body to GB18030 (declared as such)
    unless ``strict``. ``device_id`` "" omits ``<DeviceID>`` (Broadcast notifies have none).

    Raises:
        ManscdpEncodeError: invalid root, CmdType, element name or character; unknown charset;
            with ``strict``, a character the charset cannot represent.
    """
    root = message.root
    if root not in _ROOTS.values():
        raise ManscdpEncodeError(f"invalid root {root!r}")
    if not message.cmd_type:
        raise ManscdpEncodeError("empty CmdType")
    out = [f"<{Root(root).value}>"]
    write_leaf(out, "CmdType", message.cmd_type)
    out.append(f"<SN>{int(message.sn)}</SN>")
    if message.device_id:
        out.append(f"<DeviceID>{escape_text(message.device_id)}</DeviceID>")
    write_record(out, message)
    out.append(f"</{Root(root).value}>")
    out.append("")
    return encode_document("\r\n".join(out), charset, strict=strict)
