"""MobilePosition reports: both body forms become position records, written in the background."""

from __future__ import annotations

from gb28181 import manscdp
from gb28181.positions import PositionService, positions_from_notify
from gb28181.server import alarm_subscription
from gb28181.store import PositionRecord, open_store

DEV = "34020000001180000001"
CAM = "34020000001320000007"

FLAT_2016 = (
    '<?xml version="1.0" encoding="GB2312"?>\n<Notify>\n<CmdType>MobilePosition</CmdType>\n'
    f"<SN>5</SN>\n<DeviceID>{CAM}</DeviceID>\n<Time>2024-05-01T10:00:00</Time>\n"
    "<Longitude>117.28</Longitude>\n<Latitude>31.86</Latitude>\n<Speed>12.5</Speed>\n"
    "<Direction>90</Direction>\n<Altitude>30</Altitude>\n</Notify>\n"
).encode("gb2312")

LIST_2022 = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Notify>\n<CmdType>MobilePosition</CmdType>\n'
    f'<SN>6</SN>\n<DeviceID>{DEV}</DeviceID>\n<SumNum>3</SumNum>\n<DeviceList Num="3">\n'
    f"<Item><DeviceID>{CAM}</DeviceID><CaptureTime>2024-05-01T10:00:05</CaptureTime>"
    "<Longitude>117.29</Longitude><Latitude>31.87</Latitude><Height>12</Height></Item>\n"
    "<Item><DeviceID>34020000001320000008</DeviceID><Longitude>117.3</Longitude>"
    "<Latitude>31.9</Latitude></Item>\n"
    "<Item><DeviceID>34020000001320000009</DeviceID></Item>\n"
    "</DeviceList>\n</Notify>\n"
).encode()


def test_flat_2016_form() -> None:
    (rec,) = positions_from_notify(DEV, manscdp.decode(FLAT_2016), 100.0)
    assert rec == PositionRecord(
        DEV, CAM, 100.0, "2024-05-01T10:00:00", 117.28, 31.86, 12.5, 90.0, 30.0
    )


def test_list_2022_form_skips_items_without_coordinates() -> None:
    recs = positions_from_notify(DEV, manscdp.decode(LIST_2022), 100.0)
    assert [(r.channel_id, r.capture_time, r.altitude) for r in recs] == [
        (CAM, "2024-05-01T10:00:05", 12.0),
        ("34020000001320000008", None, None),
    ]


def test_other_messages_carry_no_position() -> None:
    assert positions_from_notify(DEV, manscdp.CatalogQuery(device_id=DEV), 1.0) == []


async def test_service_stores_reports() -> None:
    store = await open_store("sqlite://:memory:")
    try:
        service = PositionService(store)
        service.on_position(DEV, manscdp.decode(FLAT_2016), 100.0)
        service.on_position(DEV, manscdp.decode(LIST_2022), 101.0)
        assert service.on_position(DEV, manscdp.MobilePositionNotify(device_id=DEV), 1.0) == []
        await service.stop()
        assert service.received == 3 and len(service.recent) == 3
        history = await store.position_history(CAM)
        assert [p.received_at for p in history] == [101.0, 100.0]
    finally:
        await store.close()


def test_alarm_subscription_body_asks_for_everything() -> None:
    body = manscdp.encode(alarm_subscription(DEV, 9), manscdp.Charset.GB2312)
    msg = manscdp.decode(body)
    assert isinstance(msg, manscdp.AlarmQuery)
    assert (msg.start_alarm_priority, msg.end_alarm_priority, msg.alarm_method) == (1, 4, "0")
    assert msg.sn == 9 and msg.device_id == DEV
