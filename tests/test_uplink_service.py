"""The uplink service: who the upper platforms are, what they may see, under which IDs."""

from __future__ import annotations

from tests.uplink_helpers import CAM, PUBLISHED, UPPER, make_service


def test_upper_platform_is_recognised_by_id_and_address() -> None:
    service, _ = make_service()
    assert service.upper_of(UPPER, "192.0.2.10") is service.uplinks[UPPER]
    assert service.upper_of(UPPER, "198.51.100.7") is None
    assert service.upper_of("44010000002000000009", "192.0.2.10") is None


def test_sharing_by_channel_prefix_and_group_and_id_mapping() -> None:
    service, _ = make_service()
    service.ancestors = lambda c: ["34020000002150000001"] if c.endswith("77") else []
    assert service.shares(UPPER, CAM)
    assert service.shares(UPPER, "34020000001310000005")  # prefix 3402000000131
    assert service.shares(UPPER, "34020000001320000077")  # under a shared business group
    assert not service.shares(UPPER, "34020000001320000002")
    assert not service.shares("44010000002000000009", CAM)
    assert service.publish(UPPER, CAM) == PUBLISHED
    assert service.resolve(UPPER, PUBLISHED) == CAM
    assert service.resolve(UPPER, "34020000001320000002") == "34020000001320000002"
