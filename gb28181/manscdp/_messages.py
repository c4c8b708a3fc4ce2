"""Typed MANSCDP messages, one dataclass per (root, CmdType) shape.

Each payload field names the XML element it comes from in its metadata (``_x``), so one generic
reader and one writer (``_records.py``) serve every CmdType; the dispatch table lives in
``_codec.py``. Element names are matched case-insensitively on decode and written in the spelling
given here on encode. Anything a device sends that has no typed field is kept, never dropped:
simple elements in ``extra`` (name as sent -> text) and nested or repeated ones in
``extra_nodes``. A typed number that does not parse is left ``None`` and its raw text goes to
``extra``, so the encoder sends it back unchanged.

Times stay strings (devices send ``T`` or space, with or without milliseconds or ``+08:00``,
notes §4.6); identifiers stay strings; counts, indexes and codes are ``int``; coordinates,
angles and speeds are ``float``. ``None`` means "element absent", ``""`` "present but empty".
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from ._charset import Charset

__all__ = [
    "AlarmInfo",
    "AlarmNotify",
    "AlarmQuery",
    "AlarmStatusItem",
    "AlarmTypeParam",
    "BasicParam",
    "BroadcastNotify",
    "CatalogInfo",
    "CatalogItem",
    "CatalogQuery",
    "CatalogResponse",
    "ConfigDownloadQuery",
    "ConfigDownloadResponse",
    "CruisePoint",
    "CruiseTrackItem",
    "CruiseTrackListQuery",
    "CruiseTrackListResponse",
    "CruiseTrackQuery",
    "CruiseTrackResponse",
    "DeviceConfig",
    "DeviceControl",
    "DeviceControlInfo",
    "DeviceInfoQuery",
    "DeviceInfoResponse",
    "DeviceStatusQuery",
    "DeviceStatusResponse",
    "DeviceUpgrade",
    "DragZoom",
    "GenericMessage",
    "HomePosition",
    "HomePositionQuery",
    "HomePositionResponse",
    "Keepalive",
    "MediaStatusNotify",
    "Message",
    "MobilePositionItem",
    "MobilePositionNotify",
    "MobilePositionQuery",
    "PresetItem",
    "PresetQuery",
    "PresetQueryResponse",
    "PtzCmdParams",
    "PtzPositionQuery",
    "PtzPositionResponse",
    "PtzPreciseCtrl",
    "Record",
    "RecordInfoQuery",
    "RecordInfoResponse",
    "RecordItem",
    "ResultResponse",
    "Root",
    "SdCardItem",
    "SdCardStatusQuery",
    "SdCardStatusResponse",
    "UploadSnapShotFinished",
    "VideoParamOpt",
    "XmlNode",
]


class Root(StrEnum):
    """The four MANSCDP root elements (GB/T 28181-2016 Annex A)."""

    QUERY = "Query"
    CONTROL = "Control"
    NOTIFY = "Notify"
    RESPONSE = "Response"


@dataclass(frozen=True, slots=True)
class XmlNode:
    """An element kept verbatim because no typed field describes it."""

    name: str
    text: str = ""
    attrs: tuple[tuple[str, str], ...] = ()
    children: tuple[XmlNode, ...] = ()

    def find(self, name: str) -> XmlNode | None:
        """First child whose name matches ``name`` case-insensitively."""
        lower = name.lower()
        return next((c for c in self.children if c.name.lower() == lower), None)

    def findall(self, name: str) -> list[XmlNode]:
        """Every child whose name matches ``name`` case-insensitively."""
        lower = name.lower()
        return [c for c in self.children if c.name.lower() == lower]

    def findtext(self, name: str, default: str | None = None) -> str | None:
        """Text of the first matching child, or ``default``."""
        node = self.find(name)
        return default if node is None else node.text


def _x(
    name: str,
    kind: str = "str",
    *,
    sub: type[Record] | None = None,
    item: str = "Item",
    aliases: tuple[str, ...] = (),
) -> Any:
    """Declare a payload field read from / written to element ``name``.

    kinds: ``str``, ``int``, ``float``; ``record`` (nested element -> ``sub``); ``items``
    (container whose element children are ``sub`` records, written as ``item``); ``texts``
    (container of repeated simple ``item`` elements); ``num`` (the container's ``Num``).
    """
    default: Any = () if kind in ("items", "texts") else None
    return field(
        default=default,
        metadata={"xml": (name, kind, sub, item, aliases)},
    )


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Record:
    """Base of every decoded element group: the untyped leftovers."""

    extra: dict[str, str] = field(default_factory=dict)
    extra_nodes: tuple[XmlNode, ...] = ()

    def __repr__(self) -> str:
        # Only what is set: a catalog item has 40 fields, most of them absent.
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == () or value == {} or (f.name == "salvaged" and not value):
                continue
            shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Message(Record):
    """Common header of every MANSCDP body (GB/T 28181-2016 §A.2.1).

    ``salvaged`` says the body was not well-formed XML and was recovered leniently (content may be
    incomplete: log it); ``repairs`` names every fix applied; ``charset`` is the charset the
    body was found to be in (a per-device hint for replies). None of them takes part in equality.
    """

    cmd_type: str = ""
    root: Root = Root.QUERY
    sn: int = 0
    device_id: str = ""
    salvaged: bool = field(default=False, compare=False)
    repairs: tuple[str, ...] = field(default=(), compare=False)
    charset: Charset | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class GenericMessage(Message):
    """A CmdType this codec has no type for; every child is in ``extra``/``extra_nodes``."""

    cmd_type: str = ""

    @property
    def fields(self) -> dict[str, str]:
        """The simple child elements (name as sent -> text)."""
        return self.extra


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ResultResponse(Message):
    """A Response whose only payload is ``Result`` (DeviceControl, DeviceConfig, Alarm,
    Broadcast... notes §4.1: absence of Result usually means OK)."""

    root: Root = Root.RESPONSE
    cmd_type: str = ""
    result: str | None = _x("Result")


# --- Keepalive (notes §4.3) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Keepalive(Message):
    """Device heartbeat; ``info_device_ids`` lists faulty sub-devices when Status is ERROR."""

    cmd_type: str = field(default="Keepalive", init=False)
    root: Root = Root.NOTIFY
    status: str | None = _x("Status")
    info_device_ids: tuple[str, ...] = _x("Info", "texts", item="DeviceID")


# --- Catalog (notes §4.4, §5) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CatalogInfo(Record):
    """``Item/Info``: 2016 fields and the common 2022 additions; the rest is in ``extra``."""

    ptz_type: int | None = _x("PTZType", "int")
    position_type: int | None = _x("PositionType", "int")
    room_type: int | None = _x("RoomType", "int")
    use_type: int | None = _x("UseType", "int")
    supply_light_type: int | None = _x("SupplyLightType", "int")
    direction_type: int | None = _x("DirectionType", "int")
    resolution: str | None = _x("Resolution")
    business_group_id: str | None = _x("BusinessGroupID")
    download_speed: str | None = _x("DownloadSpeed")
    svc_space_support_mode: int | None = _x("SVCSpaceSupportMode", "int")
    svc_time_support_mode: int | None = _x("SVCTimeSupportMode", "int")
    stream_number_list: str | None = _x("StreamNumberList")
    ssvc_ratio_support_list: str | None = _x("SSVCRatioSupportList")
    security_level_code: str | None = _x("SecurityLevelCode")
    photoelectric_imaging_type: str | None = _x("PhotoelectricImagingType")
    capture_position_type: str | None = _x("CapturePositionType")
    mobile_device_type: int | None = _x("MobileDeviceType", "int")
    horizontal_field_angle: float | None = _x("HorizontalFieldAngle", "float")
    vertical_field_angle: float | None = _x("VerticalFieldAngle", "float")
    max_view_distance: float | None = _x("MaxViewDistance", "float")
    grassroots_code: str | None = _x("GrassrootsCode")
    mac: str | None = _x("MAC")
    function_type: str | None = _x("FunctionType")
    encode_type: str | None = _x("EncodeType")
    install_time: str | None = _x("InstallTime")
    management_unit: str | None = _x("ManagementUnit")
    contact_info: str | None = _x("ContactInfo")
    record_save_days: int | None = _x("RecordSaveDays", "int")
    industrial_classification: str | None = _x("IndustrialClassification")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CatalogItem(Record):
    """One channel / device / organisation node. ``event`` is set in subscription NOTIFYs
    (ON, OFF, VLOST, DEFECT, ADD, DEL, UPDATE); DEL/ON/OFF items carry little else."""

    device_id: str | None = _x("DeviceID")
    event: str | None = _x("Event")
    name: str | None = _x("Name")
    manufacturer: str | None = _x("Manufacturer")
    model: str | None = _x("Model")
    owner: str | None = _x("Owner")
    civil_code: str | None = _x("CivilCode")
    block: str | None = _x("Block")
    address: str | None = _x("Address")
    parental: int | None = _x("Parental", "int")
    parent_id: str | None = _x("ParentID")
    safety_way: int | None = _x("SafetyWay", "int")
    register_way: int | None = _x("RegisterWay", "int")
    cert_num: str | None = _x("CertNum")
    certifiable: int | None = _x("Certifiable", "int")
    err_code: int | None = _x("ErrCode", "int")
    end_time: str | None = _x("EndTime")
    secrecy: int | None = _x("Secrecy", "int")
    ip_address: str | None = _x("IPAddress")
    port: int | None = _x("Port", "int")
    password: str | None = _x("Password")
    status: str | None = _x("Status")
    longitude: float | None = _x("Longitude", "float")
    latitude: float | None = _x("Latitude", "float")
    business_group_id: str | None = _x("BusinessGroupID")
    info: CatalogInfo | None = _x("Info", "record", sub=CatalogInfo)  # noqa: RUF009

    @property
    def group_id(self) -> str | None:
        """BusinessGroupID wherever the device put it (Item level or Info, as WVP reads it)."""
        if self.business_group_id:
            return self.business_group_id
        return self.info.business_group_id if self.info is not None else None


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CatalogQuery(Message):
    """Catalog query (MESSAGE) or subscription body (SUBSCRIBE)."""

    cmd_type: str = field(default="Catalog", init=False)
    root: Root = Root.QUERY
    start_time: str | None = _x("StartTime")
    end_time: str | None = _x("EndTime")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CatalogResponse(Message):
    """Catalog answer chunk (root Response) or change notification (root Notify).

    ``sum_num`` is the total across all chunks, ``num`` the ``DeviceList Num`` of this chunk.
    """

    cmd_type: str = field(default="Catalog", init=False)
    root: Root = Root.RESPONSE
    result: str | None = _x("Result")
    sum_num: int | None = _x("SumNum", "int")
    num: int | None = _x("DeviceList", "num")
    items: tuple[CatalogItem, ...] = _x("DeviceList", "items", sub=CatalogItem)


# --- DeviceInfo / DeviceStatus (notes §4.5) ------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class DeviceInfoQuery(Message):
    cmd_type: str = field(default="DeviceInfo", init=False)
    root: Root = Root.QUERY


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class DeviceInfoResponse(Message):
    cmd_type: str = field(default="DeviceInfo", init=False)
    root: Root = Root.RESPONSE
    device_name: str | None = _x("DeviceName")
    result: str | None = _x("Result")
    device_type: str | None = _x("DeviceType")
    manufacturer: str | None = _x("Manufacturer")
    model: str | None = _x("Model")
    firmware: str | None = _x("Firmware")
    channel: int | None = _x("Channel", "int")
    max_camera: int | None = _x("MaxCamera", "int")
    max_alarm: int | None = _x("MaxAlarm", "int")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class AlarmStatusItem(Record):
    device_id: str | None = _x("DeviceID")
    duty_status: str | None = _x("DutyStatus")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class DeviceStatusQuery(Message):
    cmd_type: str = field(default="DeviceStatus", init=False)
    root: Root = Root.QUERY


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class DeviceStatusResponse(Message):
    """``Alarmstatus`` keeps the standard's lower-case *s* on encode."""

    cmd_type: str = field(default="DeviceStatus", init=False)
    root: Root = Root.RESPONSE
    result: str | None = _x("Result")
    online: str | None = _x("Online")
    status: str | None = _x("Status")
    reason: str | None = _x("Reason")
    encode: str | None = _x("Encode")
    record: str | None = _x("Record")
    device_time: str | None = _x("DeviceTime")
    alarm_status_num: int | None = _x("Alarmstatus", "num")
    alarm_status: tuple[AlarmStatusItem, ...] = _x("Alarmstatus", "items", sub=AlarmStatusItem)


# --- RecordInfo (notes §4.6) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class RecordInfoQuery(Message):
    """Recording search; send ``type="all"`` (Dahua answers nothing without it)."""

    cmd_type: str = field(default="RecordInfo", init=False)
    root: Root = Root.QUERY
    start_time: str | None = _x("StartTime")
    end_time: str | None = _x("EndTime")
    file_path: str | None = _x("FilePath")
    address: str | None = _x("Address")
    secrecy: int | None = _x("Secrecy", "int")
    type: str | None = _x("Type")
    recorder_id: str | None = _x("RecorderID")
    indistinct_query: str | None = _x("IndistinctQuery")
    stream_number: int | None = _x("StreamNumber", "int")
    alarm_method: str | None = _x("AlarmMethod")
    alarm_type: str | None = _x("AlarmType")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class RecordItem(Record):
    device_id: str | None = _x("DeviceID")
    name: str | None = _x("Name")
    file_path: str | None = _x("FilePath")
    address: str | None = _x("Address")
    start_time: str | None = _x("StartTime")
    end_time: str | None = _x("EndTime")
    secrecy: int | None = _x("Secrecy", "int")
    type: str | None = _x("Type")
    recorder_id: str | None = _x("RecorderID")
    file_size: int | None = _x("FileSize", "int")
    stream_number: int | None = _x("StreamNumber", "int")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class RecordInfoResponse(Message):
    cmd_type: str = field(default="RecordInfo", init=False)
    root: Root = Root.RESPONSE
    name: str | None = _x("Name")
    result: str | None = _x("Result")
    sum_num: int | None = _x("SumNum", "int")
    num: int | None = _x("RecordList", "num")
    items: tuple[RecordItem, ...] = _x("RecordList", "items", sub=RecordItem)


# --- DeviceConfig / ConfigDownload (notes §4.8) --------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class BasicParam(Record):
    name: str | None = _x("Name")
    device_id: str | None = _x("DeviceID")
    sip_server_id: str | None = _x("SIPServerID")
    sip_server_ip: str | None = _x("SIPServerIP")
    sip_server_port: int | None = _x("SIPServerPort", "int")
    domain_name: str | None = _x("DomainName")
    expiration: int | None = _x("Expiration", "int")
    password: str | None = _x("Password")
    heart_beat_interval: int | None = _x("HeartBeatInterval", "int")
    heart_beat_count: int | None = _x("HeartBeatCount", "int")
    position_capability: int | None = _x("PositionCapability", "int")
    longitude: float | None = _x("Longitude", "float")
    latitude: float | None = _x("Latitude", "float")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class VideoParamOpt(Record):
    download_speed: str | None = _x("DownloadSpeed")
    resolution: str | None = _x("Resolution")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ConfigDownloadQuery(Message):
    """``config_type`` may join several types with ``/`` (``BasicParam/VideoParamOpt``)."""

    cmd_type: str = field(default="ConfigDownload", init=False)
    root: Root = Root.QUERY
    config_type: str | None = _x("ConfigType")

    @property
    def config_types(self) -> tuple[str, ...]:
        return tuple(t for t in (self.config_type or "").split("/") if t)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ConfigDownloadResponse(Message):
    """Other sections (``SVACEncodeConfig``, 2022 ``VideoParamAttribute``, ``OSDConfig``... or
    Uniview's own names) are kept as ``XmlNode`` in ``extra_nodes``."""

    cmd_type: str = field(default="ConfigDownload", init=False)
    root: Root = Root.RESPONSE
    result: str | None = _x("Result")
    basic_param: BasicParam | None = _x("BasicParam", "record", sub=BasicParam)  # noqa: RUF009
    video_param_opt: VideoParamOpt | None = _x("VideoParamOpt", "record", sub=VideoParamOpt)  # noqa: RUF009


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class DeviceConfig(Message):
    """Set configuration; sections other than the two typed ones go in ``extra_nodes``."""

    cmd_type: str = field(default="DeviceConfig", init=False)
    root: Root = Root.CONTROL
    basic_param: BasicParam | None = _x("BasicParam", "record", sub=BasicParam)  # noqa: RUF009
    video_param_opt: VideoParamOpt | None = _x("VideoParamOpt", "record", sub=VideoParamOpt)  # noqa: RUF009


# --- PresetQuery and the 2022 query family (notes §4.9) ------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class PresetQuery(Message):
    cmd_type: str = field(default="PresetQuery", init=False)
    root: Root = Root.QUERY


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class PresetItem(Record):
    preset_id: int | None = _x("PresetID", "int")
    preset_name: str | None = _x("PresetName")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class PresetQueryResponse(Message):
    cmd_type: str = field(default="PresetQuery", init=False)
    root: Root = Root.RESPONSE
    result: str | None = _x("Result")
    sum_num: int | None = _x("SumNum", "int")
    num: int | None = _x("PresetList", "num")
    items: tuple[PresetItem, ...] = _x("PresetList", "items", sub=PresetItem)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class HomePosition(Record):
    enabled: int | None = _x("Enabled", "int")
    reset_time: int | None = _x("ResetTime", "int")
    preset_index: int | None = _x("PresetIndex", "int")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class HomePositionQuery(Message):
    cmd_type: str = field(default="HomePositionQuery", init=False)
    root: Root = Root.QUERY


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class HomePositionResponse(Message):
    cmd_type: str = field(default="HomePositionQuery", init=False)
    root: Root = Root.RESPONSE
    result: str | None = _x("Result")
    home_position: HomePosition | None = _x("HomePosition", "record", sub=HomePosition)  # noqa: RUF009


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class PtzPositionQuery(Message):
    cmd_type: str = field(default="PTZPosition", init=False)
    root: Root = Root.QUERY


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class PtzPositionResponse(Message):
    """Answer to a PTZPosition query (Response) or a position subscription update (Notify)."""

    cmd_type: str = field(default="PTZPosition", init=False)
    root: Root = Root.RESPONSE
    result: str | None = _x("Result")
    pan: float | None = _x("Pan", "float")
    tilt: float | None = _x("Tilt", "float")
    zoom: float | None = _x("Zoom", "float")
    horizontal_field_angle: float | None = _x("HorizontalFieldAngle", "float")
    vertical_field_angle: float | None = _x("VerticalFieldAngle", "float")
    max_view_distance: float | None = _x("MaxViewDistance", "float")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class SdCardStatusQuery(Message):
    cmd_type: str = field(default="SDCardStatus", init=False)
    root: Root = Root.QUERY


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class SdCardItem(Record):
    id: str | None = _x("ID")
    hdd_name: str | None = _x("HddName")
    status: str | None = _x("Status")
    format_progress: str | None = _x("FormatProgress")
    capacity: str | None = _x("Capacity")
    free_space: str | None = _x("FreeSpace")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class SdCardStatusResponse(Message):
    cmd_type: str = field(default="SDCardStatus", init=False)
    root: Root = Root.RESPONSE
    result: str | None = _x("Result")
    sum_num: int | None = _x("SumNum", "int")
    num: int | None = _x("SDCardStatusInfo", "num")
    items: tuple[SdCardItem, ...] = _x("SDCardStatusInfo", "items", sub=SdCardItem)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CruiseTrackListQuery(Message):
    cmd_type: str = field(default="CruiseTrackListQuery", init=False)
    root: Root = Root.QUERY


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CruiseTrackItem(Record):
    number: int | None = _x("Number", "int")
    name: str | None = _x("Name")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CruiseTrackListResponse(Message):
    cmd_type: str = field(default="CruiseTrackListQuery", init=False)
    root: Root = Root.RESPONSE
    result: str | None = _x("Result")
    sum_num: int | None = _x("SumNum", "int")
    num: int | None = _x("CruiseTrackList", "num")
    items: tuple[CruiseTrackItem, ...] = _x(
        "CruiseTrackList", "items", sub=CruiseTrackItem, item="CruiseTrack"
    )


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CruiseTrackQuery(Message):
    cmd_type: str = field(default="CruiseTrackQuery", init=False)
    root: Root = Root.QUERY
    number: int | None = _x("Number", "int")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CruisePoint(Record):
    preset_index: int | None = _x("PresetIndex", "int")
    stay_time: int | None = _x("StayTime", "int")
    speed: int | None = _x("Speed", "int")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CruiseTrackResponse(Message):
    cmd_type: str = field(default="CruiseTrackQuery", init=False)
    root: Root = Root.RESPONSE
    result: str | None = _x("Result")
    number: int | None = _x("Number", "int")
    name: str | None = _x("Name")
    sum_num: int | None = _x("SumNum", "int")
    num: int | None = _x("CruisePointList", "num")
    items: tuple[CruisePoint, ...] = _x(
        "CruisePointList", "items", sub=CruisePoint, item="CruisePoint"
    )


# --- DeviceControl (notes §4.7) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class DeviceControlInfo(Record):
    """``Info`` of a control: ControlPriority for PTZ; AlarmMethod/AlarmType for AlarmCmd."""

    control_priority: int | None = _x("ControlPriority", "int")
    alarm_method: str | None = _x("AlarmMethod")
    alarm_type: str | None = _x("AlarmType")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class PtzCmdParams(Record):
    preset_name: str | None = _x("PresetName")
    cruise_track_name: str | None = _x("CruiseTrackName")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class DragZoom(Record):
    """Player window size (``length``, ``width``) and the dragged rectangle, in pixels."""

    length: int | None = _x("Length", "int")
    width: int | None = _x("Width", "int")
    mid_point_x: int | None = _x("MidPointX", "int")
    mid_point_y: int | None = _x("MidPointY", "int")
    length_x: int | None = _x("LengthX", "int")
    length_y: int | None = _x("LengthY", "int")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class PtzPreciseCtrl(Record):
    pan: float | None = _x("Pan", "float")
    tilt: float | None = _x("Tilt", "float")
    zoom: float | None = _x("Zoom", "float")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class DeviceUpgrade(Record):
    firmware: str | None = _x("Firmware")
    file_url: str | None = _x("FileURL")
    manufacturer: str | None = _x("Manufacturer")
    session_id: str | None = _x("SessionID")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class DeviceControl(Message):
    """One control sub-command per message. ``iframe_cmd`` reads both ``IFameCmd`` (the 2016
    spelling, sent on encode) and ``IFrameCmd``."""

    cmd_type: str = field(default="DeviceControl", init=False)
    root: Root = Root.CONTROL
    ptz_cmd: str | None = _x("PTZCmd")
    tele_boot: str | None = _x("TeleBoot")
    record_cmd: str | None = _x("RecordCmd")
    stream_number: int | None = _x("StreamNumber", "int")
    guard_cmd: str | None = _x("GuardCmd")
    alarm_cmd: str | None = _x("AlarmCmd")
    iframe_cmd: str | None = _x("IFameCmd", aliases=("IFrameCmd",))
    drag_zoom_in: DragZoom | None = _x("DragZoomIn", "record", sub=DragZoom)  # noqa: RUF009
    drag_zoom_out: DragZoom | None = _x("DragZoomOut", "record", sub=DragZoom)  # noqa: RUF009
    home_position: HomePosition | None = _x("HomePosition", "record", sub=HomePosition)  # noqa: RUF009
    ptz_precise_ctrl: PtzPreciseCtrl | None = _x("PTZPreciseCtrl", "record", sub=PtzPreciseCtrl)  # noqa: RUF009
    format_sd_card: int | None = _x("FormatSDCard", "int")
    target_track: str | None = _x("TargetTrack")
    device_id2: str | None = _x("DeviceID2")
    target_area: str | None = _x("TargetArea")
    device_upgrade: DeviceUpgrade | None = _x("DeviceUpgrade", "record", sub=DeviceUpgrade)  # noqa: RUF009
    ptz_cmd_params: PtzCmdParams | None = _x("PTZCmdParams", "record", sub=PtzCmdParams)  # noqa: RUF009
    info: DeviceControlInfo | None = _x("Info", "record", sub=DeviceControlInfo)  # noqa: RUF009


# --- Alarm (notes §4.10) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class AlarmTypeParam(Record):
    event_type: str | None = _x("EventType")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class AlarmInfo(Record):
    alarm_type: str | None = _x("AlarmType")
    alarm_type_param: AlarmTypeParam | None = _x("AlarmTypeParam", "record", sub=AlarmTypeParam)  # noqa: RUF009


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class AlarmNotify(Message):
    """``alarm_method`` stays a string: methods may be combined ("12")."""

    cmd_type: str = field(default="Alarm", init=False)
    root: Root = Root.NOTIFY
    alarm_priority: int | None = _x("AlarmPriority", "int")
    alarm_method: str | None = _x("AlarmMethod")
    alarm_time: str | None = _x("AlarmTime")
    alarm_description: str | None = _x("AlarmDescription")
    longitude: float | None = _x("Longitude", "float")
    latitude: float | None = _x("Latitude", "float")
    info: AlarmInfo | None = _x("Info", "record", sub=AlarmInfo)  # noqa: RUF009


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class AlarmQuery(Message):
    """Alarm query / subscription body; the misspelling ``...AlarmPrority`` is accepted."""

    cmd_type: str = field(default="Alarm", init=False)
    root: Root = Root.QUERY
    start_alarm_priority: int | None = _x(
        "StartAlarmPriority", "int", aliases=("StartAlarmPrority",)
    )
    end_alarm_priority: int | None = _x("EndAlarmPriority", "int", aliases=("EndAlarmPrority",))
    alarm_method: str | None = _x("AlarmMethod")
    alarm_type: str | None = _x("AlarmType")
    start_alarm_time: str | None = _x("StartAlarmTime")
    end_alarm_time: str | None = _x("EndAlarmTime")


# --- MobilePosition, MediaStatus, Broadcast, snapshots (notes §4.8, §4.11-§4.13) -----------------


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class MobilePositionQuery(Message):
    cmd_type: str = field(default="MobilePosition", init=False)
    root: Root = Root.QUERY
    interval: int | None = _x("Interval", "int")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class MobilePositionItem(Record):
    device_id: str | None = _x("DeviceID")
    capture_time: str | None = _x("CaptureTime")
    longitude: float | None = _x("Longitude", "float")
    latitude: float | None = _x("Latitude", "float")
    speed: float | None = _x("Speed", "float")
    direction: float | None = _x("Direction", "float")
    altitude: float | None = _x("Altitude", "float")
    height: float | None = _x("Height", "float")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class MobilePositionNotify(Message):
    """2016 flat form (``time`` ... ``altitude``) or 2022 list form (``items``), or both."""

    cmd_type: str = field(default="MobilePosition", init=False)
    root: Root = Root.NOTIFY
    time: str | None = _x("Time")
    longitude: float | None = _x("Longitude", "float")
    latitude: float | None = _x("Latitude", "float")
    speed: float | None = _x("Speed", "float")
    direction: float | None = _x("Direction", "float")
    altitude: float | None = _x("Altitude", "float")
    sum_num: int | None = _x("SumNum", "int")
    num: int | None = _x("DeviceList", "num")
    items: tuple[MobilePositionItem, ...] = _x("DeviceList", "items", sub=MobilePositionItem)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class MediaStatusNotify(Message):
    """``notify_type`` "121" = history media finished (route by Call-ID, then BYE)."""

    cmd_type: str = field(default="MediaStatus", init=False)
    root: Root = Root.NOTIFY
    notify_type: str | None = _x("NotifyType")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class BroadcastNotify(Message):
    """Voice broadcast invitation; has no DeviceID in practice (``device_id`` is then "")."""

    cmd_type: str = field(default="Broadcast", init=False)
    root: Root = Root.NOTIFY
    source_id: str | None = _x("SourceID")
    target_id: str | None = _x("TargetID")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class UploadSnapShotFinished(Message):
    cmd_type: str = field(default="UploadSnapShotFinished", init=False)
    root: Root = Root.NOTIFY
    session_id: str | None = _x("SessionID")
    snapshot_file_ids: tuple[str, ...] = _x("SnapShotList", "texts", item="SnapShotFileID")
