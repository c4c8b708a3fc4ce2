"""Channel (catalog) storage: the contract both backends share."""

from __future__ import annotations

import pytest

from gb28181.store import ChannelRecord, Store, StoreDataError

NVR = "34020000001180000001"
PLATFORM = "34020000002000000009"


def camera(n: int, *, device_id: str = NVR, **changes: object) -> ChannelRecord:
    record = ChannelRecord(
        device_id=device_id,
        channel_id=f"3402000000131{n:07d}",
        parent_ids=(device_id,),
        kind="channel",
        name=f"南门 camera {n}",
        manufacturer="Hikvision",
        model="DS-2CD",
        owner="Owner",
        civil_code="340200",
        address="东区 1号",
        parental=0,
        status="ON",
        longitude=120.123456,
        latitude=30.5,
        ptz_type=1,
        business_group_id="34020000002150000001",
        info={"safety_way": 0, "info": {"resolution": "6/4"}, "extra": {"StreamNum": "2"}},
        updated_at=1_700_000_000.5,
    )
    for key, value in changes.items():
        setattr(record, key, value)
    return record


async def test_round_trip_every_field(store: Store) -> None:
    record = camera(1, parent_ids=(NVR, "34020000002160000001"))
    record.security_class = 2
    record.owner_department = "交警支队"
    record.shared = True
    await store.upsert_channels(NVR, [record])

    assert await store.load_channels(NVR) == [record]


async def test_nullable_fields_round_trip(store: Store) -> None:
    record = ChannelRecord(device_id=NVR, channel_id="340200", kind="region")
    await store.upsert_channels(NVR, [record])

    assert await store.load_channels(NVR) == [record]


async def test_argument_device_id_wins(store: Store) -> None:
    await store.upsert_channels(NVR, [camera(1, device_id=PLATFORM)])

    loaded = await store.load_channels(NVR)
    assert [c.device_id for c in loaded] == [NVR]
    assert await store.load_channels(PLATFORM) == []


async def test_upsert_keeps_operator_attributes(store: Store) -> None:
    await store.upsert_channels(NVR, [camera(1), camera(2)])
    assert await store.set_channel_attributes(
        NVR, camera(1).channel_id, security_class=3, owner_department="刑侦", shared=True
    )

    resync = camera(1, name="renamed", status="OFF")  # defaults: 0, None, False
    await store.upsert_channels(NVR, [resync])

    first = (await store.load_channels(NVR))[0]
    assert first.name == "renamed"
    assert first.status == "OFF"
    assert (first.security_class, first.owner_department, first.shared) == (3, "刑侦", True)


async def test_set_attributes_partial_and_clear(store: Store) -> None:
    channel_id = camera(1).channel_id
    await store.upsert_channels(NVR, [camera(1)])

    assert await store.set_channel_attributes(NVR, channel_id, owner_department="A")
    assert await store.set_channel_attributes(NVR, channel_id, security_class=1)
    loaded = (await store.load_channels(NVR))[0]
    assert (loaded.security_class, loaded.owner_department, loaded.shared) == (1, "A", False)

    assert await store.set_channel_attributes(
        NVR, channel_id, owner_department="", updated_at=1_800_000_000.25
    )
    loaded = (await store.load_channels(NVR))[0]
    assert loaded.owner_department is None
    assert loaded.security_class == 1
    assert loaded.updated_at == 1_800_000_000.25


async def test_set_attributes_unknown_channel(store: Store) -> None:
    assert not await store.set_channel_attributes(NVR, "nope", shared=True)


async def test_duplicate_ids_in_one_batch_last_wins(store: Store) -> None:
    await store.upsert_channels(NVR, [camera(1, name="first"), camera(1, name="second")])

    assert [c.name for c in await store.load_channels(NVR)] == ["second"]


async def test_load_is_per_device_and_ordered(store: Store) -> None:
    await store.upsert_channels(NVR, [camera(3), camera(1), camera(2)])
    await store.upsert_channels(PLATFORM, [camera(9, device_id=PLATFORM)])

    assert [c.channel_id[-1] for c in await store.load_channels(NVR)] == ["1", "2", "3"]
    assert len(await store.load_channels(PLATFORM)) == 1


async def test_delete_some_and_all(store: Store) -> None:
    await store.upsert_channels(NVR, [camera(1), camera(2), camera(3)])
    await store.upsert_channels(PLATFORM, [camera(1, device_id=PLATFORM)])

    deleted = await store.delete_channels(NVR, [camera(1).channel_id, "unknown"])
    assert deleted == 1
    assert len(await store.load_channels(NVR)) == 2

    assert await store.delete_channels(NVR) == 2
    assert await store.load_channels(NVR) == []
    assert len(await store.load_channels(PLATFORM)) == 1
    assert await store.delete_channels(NVR, []) == 0


async def test_search_by_name_and_id_prefix(store: Store) -> None:
    await store.upsert_channels(NVR, [camera(n) for n in range(1, 6)])
    await store.upsert_channels(PLATFORM, [camera(7, device_id=PLATFORM, name="North GATE 100%")])

    by_name = await store.search_channels("南门")
    assert len(by_name) == 5
    assert [c.device_id for c in by_name] == [NVR] * 5

    ascii_any_case = await store.search_channels("gate")
    assert [c.device_id for c in ascii_any_case] == [PLATFORM]

    by_prefix = await store.search_channels("34020000001310000002")
    assert [c.channel_id for c in by_prefix] == ["34020000001310000002"]
    assert await store.search_channels("1310000002") == []  # IDs match by prefix only


async def test_search_wildcards_are_literal(store: Store) -> None:
    await store.upsert_channels(NVR, [camera(1, name="a_b"), camera(2, name="axb 100%")])

    assert [c.name for c in await store.search_channels("a_b")] == ["a_b"]
    assert [c.name for c in await store.search_channels("0%")] == ["axb 100%"]
    assert len(await store.search_channels("")) == 2


async def test_search_pages(store: Store) -> None:
    await store.upsert_channels(NVR, [camera(n) for n in range(10)])

    pages = [await store.search_channels("camera", limit=4, offset=o) for o in (0, 4, 8)]
    ids = [c.channel_id for page in pages for c in page]
    assert [len(p) for p in pages] == [4, 4, 2]
    assert ids == sorted(ids)
    assert len(set(ids)) == 10


async def test_search_rejects_negative_paging(store: Store) -> None:
    with pytest.raises(StoreDataError):
        await store.search_channels("x", limit=-1)
    with pytest.raises(StoreDataError):
        await store.search_channels("x", offset=-1)


async def test_unserialisable_info_writes_nothing(store: Store) -> None:
    bad = camera(2, info={"x": object()})
    with pytest.raises(StoreDataError, match="info"):
        await store.upsert_channels(NVR, [camera(1), bad])
    assert await store.load_channels(NVR) == []


async def test_large_batch(store: Store) -> None:
    await store.upsert_channels(NVR, [camera(n) for n in range(2000)])
    await store.upsert_channels(NVR, [camera(n, status="OFF") for n in range(2000)])

    loaded = await store.load_channels(NVR)
    assert len(loaded) == 2000
    assert {c.status for c in loaded} == {"OFF"}


async def test_empty_upsert_is_noop(store: Store) -> None:
    await store.upsert_channels(NVR, [])
    assert await store.load_channels(NVR) == []
