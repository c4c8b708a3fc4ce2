"""Generic element <-> record mapping driven by the field metadata declared in ``_messages``.

One reader and one writer serve every CmdType, so adding a CmdType is a dataclass and a table
row, not parsing code. Lookups are case-insensitive (devices and WVP itself send ``<info>``;
the 2022 text reportedly prints ``PTzPrecisectrl``, notes §4.7 and §4.10).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from ._errors import ManscdpEncodeError
from ._messages import Record, XmlNode

__all__ = ["FieldSpec", "format_float", "read_fields", "specs", "write_leaf", "write_record"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one dataclass field maps to XML."""

    attr: str
    name: str
    kind: str
    sub: type[Record] | None
    item: str
    keys: tuple[str, ...]  # lower-case element names accepted on decode


_SPECS: dict[type[Record], tuple[FieldSpec, ...]] = {}


def specs(cls: type[Record]) -> tuple[FieldSpec, ...]:
    """The XML-mapped fields of ``cls`` in declaration order (cached)."""
    found = _SPECS.get(cls)
    if found is None:
        items: list[FieldSpec] = []
        for f in fields(cls):
            meta = f.metadata.get("xml")
            if meta is None:
                continue
            name, kind, sub, item, aliases = meta
            keys = tuple(k.lower() for k in (name, *aliases))
            items.append(FieldSpec(f.name, name, kind, sub, item, keys))
        found = _SPECS[cls] = tuple(items)
    return found


# --- decoding ------------------------------------------------------------------------------------

_INT = re.compile(r"[+-]?[0-9]{1,18}")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


def _text(elem: ET.Element) -> str:
    text = elem.text
    return text.strip() if text else ""


def _parse_int(text: str) -> int | None:
    return int(text) if _INT.fullmatch(text) else None


def _parse_float(text: str) -> float | None:
    if len(text) > 400 or not _FLOAT.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _num_attr(elem: ET.Element) -> int | None:
    for key, value in elem.attrib.items():
        if key.lower() == "num":
            return _parse_int(value.strip())
    return None


def to_node(elem: ET.Element) -> XmlNode:
    """Keep an element verbatim (text stripped)."""
    return XmlNode(
        name=elem.tag,
        text=_text(elem),
        attrs=tuple(elem.attrib.items()),
        children=tuple(to_node(child) for child in elem),
    )


def read_fields(
    cls: type[Record], elem: ET.Element, skip: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Constructor arguments of ``cls`` read from the children of ``elem``.

    ``skip`` holds lower-case names handled by the caller (the message header). Never raises:
    malformed numbers become ``None`` with their text kept in ``extra``.
    """
    children: dict[str, ET.Element] = {}
    repeated: list[ET.Element] = []
    for child in elem:
        key = child.tag.lower()
        if key in children:
            repeated.append(child)
        else:
            children[key] = child
    values: dict[str, Any] = {}
    extra: dict[str, str] = {}
    claimed = set(skip)
    for spec in specs(cls):
        node = None
        for key in spec.keys:
            node = children.get(key)
            if node is not None:
                claimed.add(key)
                break
        if node is None:
            continue
        kind = spec.kind
        if kind == "str":
            values[spec.attr] = _text(node)
        elif kind == "int" or kind == "float":
            raw = _text(node)
            number = _parse_int(raw) if kind == "int" else _parse_float(raw)
            if number is None:
                extra[node.tag] = raw
            else:
                values[spec.attr] = number
        elif kind == "num":
            values[spec.attr] = _num_attr(node)
        elif kind == "items":
            assert spec.sub is not None
            sub = spec.sub
            values[spec.attr] = tuple(sub(**read_fields(sub, child)) for child in node)
        elif kind == "texts":
            item = spec.item.lower()
            values[spec.attr] = tuple(_text(c) for c in node if c.tag.lower() == item)
        else:  # record
            assert spec.sub is not None
            values[spec.attr] = spec.sub(**read_fields(spec.sub, node))
    nodes: list[XmlNode] = []
    for key, child in children.items():
        if key in claimed:
            continue
        if len(child) or child.attrib:
            nodes.append(to_node(child))
        else:
            extra[child.tag] = _text(child)
    nodes.extend(to_node(child) for child in repeated)
    if extra:
        values["extra"] = extra
    if nodes:
        values["extra_nodes"] = tuple(nodes)
    return values


# --- encoding ------------------------------------------------------------------------------------

_NAME_OK = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_TEXT_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


def _name(name: str) -> str:
    if not _NAME_OK.fullmatch(name):
        raise ManscdpEncodeError(f"invalid element name {name!r}")
    return name


def escape_text(text: str) -> str:
    """Escape character data; characters XML 1.0 cannot carry raise ``ManscdpEncodeError``."""
    if _TEXT_BAD.search(text):
        raise ManscdpEncodeError(f"character not allowed in XML 1.0 in {text!r}")
    return text.translate(_ESCAPES)


def format_float(value: float) -> str:
    """Positional notation (no exponent: device parsers expect plain decimals), shortest
    representation that reads back to the same float."""
    if not math.isfinite(value):
        raise ManscdpEncodeError(f"cannot encode {value!r}")
    return format(Decimal(repr(float(value))), "f")


def write_leaf(out: list[str], name: str, text: str) -> None:
    name = _name(name)
    out.append(f"<{name}>{escape_text(text)}</{name}>")


def _write_node(out: list[str], node: XmlNode) -> None:
    name = _name(node.name)
    attrs = "".join(
        f' {_name(k)}="{escape_text(v).replace(chr(34), "&quot;")}"' for k, v in node.attrs
    )
    if not node.children:
        out.append(f"<{name}{attrs}>{escape_text(node.text)}</{name}>")
        return
    out.append(f"<{name}{attrs}>{escape_text(node.text)}" if node.text else f"<{name}{attrs}>")
    for child in node.children:
        _write_node(out, child)
    out.append(f"</{name}>")


def write_record(out: list[str], record: Record) -> None:
    """Append the elements of ``record`` (typed fields, then ``extra``, then ``extra_nodes``)."""
    table = specs(type(record))
    for spec in table:
        value = getattr(record, spec.attr)
        kind = spec.kind
        if kind == "num" or (value is None):
            continue
        if kind == "str":
            write_leaf(out, spec.name, value)
        elif kind == "int":
            write_leaf(out, spec.name, str(int(value)))
        elif kind == "float":
            write_leaf(out, spec.name, format_float(value))
        elif kind == "record":
            out.append(f"<{spec.name}>")
            write_record(out, value)
            out.append(f"</{spec.name}>")
        elif kind == "texts":
            if value:
                out.append(f"<{spec.name}>")
                for text in value:
                    write_leaf(out, spec.item, text)
                out.append(f"</{spec.name}>")
        else:  # items
            num = next(
                (getattr(record, s.attr) for s in table if s.kind == "num" and s.name == spec.name),
                None,
            )
            if not value and num is None:
                continue
            out.append(f'<{spec.name} Num="{len(value) if num is None else int(num)}">')
            for item in value:
                out.append(f"<{spec.item}>")
                write_record(out, item)
                out.append(f"</{spec.item}>")
            out.append(f"</{spec.name}>")
    for key, text in record.extra.items():
        write_leaf(out, key, text)
    for node in record.extra_nodes:
        _write_node(out, node)
