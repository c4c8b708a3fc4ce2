"""Message dataclasses: helpers, equality rules, compact repr."""

from __future__ import annotations

import dataclasses

import pytest

from gb28181.manscdp import (
    CatalogInfo,
    CatalogItem,
    ConfigDownloadQuery,
    GenericMessage,
    Keepalive,
    Root,
    XmlNode,
)


def test_xml_node_lookup_is_case_insensitive() -> None:
    node = XmlNode("A", children=(XmlNode("Item", "1"), XmlNode("item", "2"), XmlNode("B", "b")))
    assert node.find("ITEM") == XmlNode("Item", "1")
    assert [n.text for n in node.findall("item")] == ["1", "2"]
    assert node.findtext("b") == "b" and node.findtext("c", "-") == "-" and node.find("c") is None


def test_group_id_reads_both_places() -> None:
    assert CatalogItem(business_group_id="g1").group_id == "g1"
    assert CatalogItem(info=CatalogInfo(business_group_id="g2")).group_id == "g2"
    assert (
        CatalogItem(business_group_id="", info=CatalogInfo(business_group_id="g2")).group_id == "g2"
    )
    assert CatalogItem().group_id is None


def test_config_types() -> None:
    assert ConfigDownloadQuery(config_type="BasicParam/VideoParamOpt/").config_types == (
        "BasicParam",
        "VideoParamOpt",
    )
    assert ConfigDownloadQuery().config_types == ()


def test_metadata_fields_do_not_affect_equality() -> None:
    a = Keepalive(sn=1, device_id="d", status="OK")
    b = dataclasses.replace(a, salvaged=True, repairs=("truncated",))
    assert a == b


def test_cmd_type_is_fixed_for_typed_messages() -> None:
    assert Keepalive().cmd_type == "Keepalive" and Keepalive().root is Root.NOTIFY
    with pytest.raises(TypeError):
        Keepalive(cmd_type="Other")  # type: ignore[call-arg]
    generic = GenericMessage(root=Root.QUERY, cmd_type="X", extra={"A": "1"})
    assert generic.fields == {"A": "1"}


def test_repr_shows_only_what_is_set() -> None:
    text = repr(Keepalive(sn=3, device_id="d", status="OK", salvaged=True))
    assert text.startswith("Keepalive(") and "status='OK'" in text and "salvaged=True" in text
    assert "info_device_ids" not in text and "extra" not in text
    assert "salvaged" not in repr(Keepalive())


def test_messages_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Keepalive().sn = 2  # type: ignore[misc]
