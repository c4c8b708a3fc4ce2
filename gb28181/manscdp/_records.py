"""Generic element <-> record mapping driven by the field metadata declared in ``_messages``.

One reader and one writer serve every CmdType, so adding a CmdType is a dataclass and a table
row, not parsing code. Lookups are case-insensitive (devices and WVP itself send ``<info>``;
the 2022 text reportedly prints ``PTzPrecisectrl``, notes §4.7 and §4.10).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import MISSING, dataclass, fields
from decimal import Decimal
from itertools import repeat
from types import MemberDescriptorType
from typing import Any

from ._errors import ManscdpEncodeError
from ._messages import Record, XmlNode

__all__ = [
    "FieldSpec",
    "build",
    "format_float",
    "read_fields",
    "specs",
    "write_leaf",
    "write_record",
]


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
#
# A catalog item has ~30 typed fields and its Info another ~30, and a city platform decodes
# hundreds of thousands of items, so the reader is built for one pass per element:
#
# * each class gets a ``_Table`` once: lower-case element name -> what to do with it, plus the
#   slot descriptors and defaults needed to build an instance;
# * the children of an element are visited once, in document order, with one dict lookup each
#   (the spelling the standard uses is tried first, so ``str.lower`` runs only for odd cases);
# * records are built without the generated ``__init__`` (keyword parsing and one frozen
#   ``object.__setattr__`` per field): the instance is allocated and its slots filled straight
#   from a list in field order. The result is the same frozen dataclass, equal to one built by
#   ``cls(**values)``; ``build`` falls back to the constructor for any class this cannot serve.
#
# What lands in ``extra`` and ``extra_nodes`` is exactly what the straightforward reader (look up
# every declared field, then sweep the leftovers) produces, in the same order: numbers that did
# not parse first (in field order), then unclaimed simple elements in document order; unclaimed
# nested elements in document order, then repeated elements.

_INT = re.compile(r"[+-]?[0-9]{1,18}")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")

_STR, _INT_KIND, _FLOAT_KIND, _NUM, _ITEMS, _TEXTS, _RECORD = range(7)
_KIND_CODES = {
    "str": _STR,
    "int": _INT_KIND,
    "float": _FLOAT_KIND,
    "num": _NUM,
    "items": _ITEMS,
    "texts": _TEXTS,
    "record": _RECORD,
}
_set_slot = MemberDescriptorType.__set__
_NO_SKIP: frozenset[str] = frozenset()
_new = object.__new__


def _text(elem: ET.Element) -> str:
    text = elem.text
    return text.strip() if text else ""


def _parse_int(text: str) -> int | None:
    if text.isdigit() and text.isascii() and len(text) <= 18:  # the common case, no regex
        return int(text)
    return int(text) if _INT.fullmatch(text) else None


def _parse_float(text: str) -> float | None:
    if len(text) > 400:
        return None
    if not (text.isascii() and text.replace(".", "", 1).isdigit()) and not _FLOAT.fullmatch(text):
        return None  # (plain "117.25" needs no regex)
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


@dataclass(frozen=True, slots=True)
class _Entry:
    """What to do with a child element whose lower-case name is ``key``."""

    key: str
    kind: int
    index: int  # position of the field in ``fields(cls)``: the row index
    order: int  # position among the XML-mapped fields: orders ``extra``
    sub: _Table | None
    item: str  # lower-case item element name (``texts``)
    higher: tuple[str, ...]  # names of the same field that take precedence (aliases)


class _Unset:
    """Marks a row cell ``read_fields`` did not fill."""


class _Bad:
    """Marks the cell of a number that did not parse (see ``_read``)."""


_UNSET = _Unset()
_BAD = _Bad()


class _Table:
    """Per-class decoding table and construction recipe (built once, see ``_table``)."""

    __slots__ = (
        "by_key",
        "cls",
        "defaults",
        "extra_at",
        "fast",
        "index",
        "names",
        "nodes_at",
        "numbers",
        "order",
        "simple_keys",
        "slots",
        "strings",
        "unset",
    )

    def __init__(self, cls: type[Record]) -> None:
        self.cls = cls
        # lower-case name -> entries (a container may feed two fields: ``items`` and ``num``)
        self.by_key: dict[str, tuple[_Entry, ...]] = {}
        # the hot path: standard spelling of a str field -> row index, of an int/float field ->
        # (kind, row index); aliased fields are left to the general path
        self.strings: dict[str, int] = {}
        self.numbers: dict[str, tuple[int, int]] = {}  # -> (kind, row index)
        # lower-case name of such a field -> row index (for odd spellings of it)
        self.simple_keys: dict[str, int] = {}
        all_fields = fields(cls)
        self.names = [f.name for f in all_fields]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.order = [-1] * len(all_fields)  # row index -> position among the XML fields
        self.extra_at = self.names.index("extra")
        self.nodes_at = self.names.index("extra_nodes")
        self.unset: list[Any] = [_UNSET] * len(all_fields)
        self.defaults: list[Any] = []
        self.slots: list[MemberDescriptorType] = []
        self.fast = not hasattr(cls, "__post_init__")
        for f in all_fields:
            if f.default is not MISSING:
                self.defaults.append(f.default)
            else:  # a default factory (``extra``: a fresh dict per instance) or none at all
                self.fast = self.fast and f.name == "extra" and f.default_factory is dict
                self.defaults.append(None)
            slot = next((k.__dict__[f.name] for k in cls.__mro__ if f.name in k.__dict__), None)
            if isinstance(slot, MemberDescriptorType):  # ``init=False`` ones get their default
                self.slots.append(slot)
            else:
                self.fast = False
        declared = {name for k in cls.__mro__ for name in getattr(k, "__slots__", ())}
        self.fast = self.fast and declared == set(self.names)

    def fill(self) -> None:
        """Second step, so that nested tables may refer to each other."""
        for order, spec in enumerate(specs(self.cls)):
            sub = _table(spec.sub) if spec.sub is not None else None
            kind = _KIND_CODES[spec.kind]
            index = self.names.index(spec.attr)
            self.order[index] = order
            for rank, key in enumerate(spec.keys):
                higher = spec.keys[:rank]
                entry = _Entry(key, kind, index, order, sub, spec.item.lower(), higher)
                found = (*self.by_key.get(key, ()), entry)
                if len(found) > 1 and any(e.higher for e in found):
                    raise TypeError(f"{self.cls.__name__}: alias {key!r} shared by two fields")
                self.by_key[key] = found
        for key, entries in self.by_key.items():
            (entry, *others) = entries
            spec = next(s for s in specs(self.cls) if key in s.keys)
            if not others and len(spec.keys) == 1 and entry.kind <= _FLOAT_KIND:
                if self.defaults[entry.index] is not None:
                    raise TypeError(f"{self.cls.__name__}.{spec.attr}: default must be None")
                if entry.kind == _STR:
                    self.strings[spec.name] = entry.index
                else:
                    self.numbers[spec.name] = (entry.kind, entry.index)
                self.simple_keys[key] = entry.index


_TABLES: dict[type[Record], _Table] = {}
_BUILDING: dict[type[Record], _Table] = {}  # tables being filled (record types may nest)


def _table(cls: type[Record]) -> _Table:
    table = _TABLES.get(cls) or _BUILDING.get(cls)
    if table is None:
        table = _BUILDING[cls] = _Table(cls)
        try:
            table.fill()
        finally:
            del _BUILDING[cls]
        _TABLES[cls] = table  # published only when complete
    return table


def read_fields(
    cls: type[Record], elem: ET.Element, skip: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Constructor arguments of ``cls`` read from the children of ``elem``.

    ``skip`` holds lower-case names handled by the caller (the message header). Never raises:
    malformed numbers become ``None`` with their text kept in ``extra``.
    """
    table = _table(cls)
    row = table.unset.copy()
    _read(table, elem, skip, row, _UNSET)
    return {
        name: value for name, value in zip(table.names, row, strict=True) if value is not _UNSET
    }


def build(cls: type[Record], values: dict[str, Any]) -> Any:
    """``cls(**values)``, without the cost of the generated ``__init__`` where possible.

    ``values`` may only name init fields of ``cls`` (as ``read_fields`` returns them).
    """
    table = _table(cls)
    if not table.fast:
        return cls(**values)
    row = table.defaults.copy()
    index = table.index
    for name, value in values.items():
        row[index[name]] = value
    return _make(table, row)


def _make(table: _Table, row: list[Any]) -> Any:
    if not table.fast:
        return table.cls(**{n: v for n, v in zip(table.names, row, strict=True) if v is not _UNSET})
    if row[table.extra_at] is None:
        row[table.extra_at] = {}
    obj = _new(table.cls)
    any(map(_set_slot, table.slots, repeat(obj), row))  # fills every slot; bypasses frozen
    return obj


def _record(table: _Table, elem: ET.Element) -> Any:
    if table.fast:
        row = table.defaults.copy()
        _read(table, elem, _NO_SKIP, row, None)
    else:
        row = table.unset.copy()
        _read(table, elem, _NO_SKIP, row, _UNSET)
    return _make(table, row)


def _convert(entry: _Entry, node: ET.Element, row: list[Any], bad: list[Any]) -> None:
    kind = entry.kind
    if kind == _STR:
        row[entry.index] = _text(node)
    elif kind in (_INT_KIND, _FLOAT_KIND):
        raw = _text(node)
        number = _parse_int(raw) if kind == _INT_KIND else _parse_float(raw)
        if number is None:
            bad.append((entry.order, node.tag, raw, entry.index))
            row[entry.index] = _BAD
        else:
            row[entry.index] = number
    elif kind == _NUM:
        row[entry.index] = _num_attr(node)
    elif kind == _ITEMS:
        sub = entry.sub
        assert sub is not None
        row[entry.index] = tuple([_record(sub, child) for child in node])
    elif kind == _TEXTS:
        item = entry.item
        row[entry.index] = tuple(_text(c) for c in node if c.tag.lower() == item)
    else:  # record
        assert entry.sub is not None
        row[entry.index] = _record(entry.sub, node)


def _read(
    table: _Table, elem: ET.Element, skip: frozenset[str], row: list[Any], blank: object
) -> None:
    """Fill ``row`` (one cell per field of the class) from the children of ``elem``.

    ``blank`` is what the cells of plain str/int/float fields hold until read (their default,
    ``None``, or ``_UNSET``): a filled cell means a second element of that name is "repeated",
    so the hot loop needs no set of names seen. A number that does not parse marks its cell
    ``_BAD`` until ``_leftovers`` moves its text to ``extra``.
    """
    seen: set[str] | None = None  # other lower-case names met so far
    bad: list[Any] = []  # (field order, tag, text, row index) of numbers that did not parse
    later: list[tuple[ET.Element, _Entry | None]] | None = None  # unclaimed or aliased
    repeated: list[ET.Element] | None = None
    strings = table.strings
    numbers = table.numbers
    for child in elem:
        tag = child.tag
        index = strings.get(tag, -1)
        if index >= 0:
            if row[index] is blank:
                text = child.text
                row[index] = text.strip() if text else ""
                continue
        elif tag in numbers:
            kind, index = numbers[tag]
            if row[index] is blank:
                text = child.text
                text = text.strip() if text else ""
                if kind == _INT_KIND and text.isdigit() and text.isascii() and len(text) < 19:
                    row[index] = int(text)
                else:
                    number = _parse_int(text) if kind == _INT_KIND else _parse_float(text)
                    if number is None:
                        bad.append((table.order[index], tag, text, index))
                        row[index] = _BAD
                    else:
                        row[index] = number
                continue
        else:
            key = tag.lower()
            index = table.simple_keys.get(key, -1)
            if index < 0:
                if seen is None:
                    seen = set()
                if key not in seen:
                    seen.add(key)
                    entries = table.by_key.get(key)
                    if entries is None:
                        if key not in skip:
                            later = [] if later is None else later
                            later.append((child, None))
                    elif entries[0].higher:
                        later = [] if later is None else later
                        later.append((child, entries[0]))
                    else:
                        for entry in entries:
                            _convert(entry, child, row, bad)
                    continue
            elif row[index] is blank:
                _convert(table.by_key[key][0], child, row, bad)
                continue
        repeated = [] if repeated is None else repeated
        repeated.append(child)
    if later or repeated or bad:
        _leftovers(row, table, blank, seen or set(), bad, later or [], repeated or [])


def _leftovers(
    row: list[Any],
    table: _Table,
    blank: object,
    seen: set[str],
    bad: list[Any],
    later: list[tuple[ET.Element, _Entry | None]],
    repeated: list[ET.Element],
) -> None:
    """Resolve aliases and keep what no field claimed (``extra``, ``extra_nodes``)."""
    nodes: list[XmlNode] = []
    leftovers: list[tuple[str, str]] = []
    for child, aliased in later:
        if aliased is not None and not any(key in seen for key in aliased.higher):
            _convert(aliased, child, row, bad)
        elif len(child) or child.attrib:
            nodes.append(to_node(child))
        else:
            leftovers.append((child.tag, _text(child)))
    bad.sort(key=lambda cell: int(cell[0]))
    extra = {}
    for _order, tag, raw, index in bad:
        extra[tag] = raw
        row[index] = blank
    extra.update(leftovers)
    nodes.extend(to_node(child) for child in repeated)
    if extra:
        row[table.extra_at] = extra
    if nodes:
        row[table.nodes_at] = tuple(nodes)


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
