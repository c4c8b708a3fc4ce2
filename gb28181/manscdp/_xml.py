"""Safe, forgiving XML parsing for MANSCDP bodies.

Strategy, cheapest first (notes §4.2 and §12 item 4; WVP #541, #903, #1320, #291):

1. Refuse hostile input before parsing: any markup declaration (``<!DOCTYPE``, ``<!ENTITY``...)
   is rejected, so expat never sees a DTD and entity expansion (billion laughs, external
   entities) cannot happen; nesting deeper than ``max_depth`` is rejected after (small bodies)
   or while (large bodies) parsing.
2. Clean input goes straight to a strict parse with the C ElementTree parser: two cheap scans
   (bare ``&``, stray ``<``) show sanitising would change nothing, and expat itself refuses the
   forbidden characters, so a clean catalog chunk never pays for the control-character scan.
3. Otherwise cheap sanitising, then the strict parse: drop characters XML 1.0 forbids
   (0x00-0x1F except TAB/LF/CR: WVP #541, #1320), escape bare ``&`` (Hikvision) and ``<`` that
   cannot start markup (``<`` inside ``<Address>``). These repairs lose nothing.
4. If the strict parse fails, *rebalance*: re-tokenise the text, match closing tags
   case-insensitively, let an unmatched closing tag close the current leaf element
   (``<Name>x</Nmae>``), drop stray closing tags, rebuild attributes, close what is left open at
   the end and drop a trailing ``<Item>`` cut off by truncation. The document is then marked
   ``salvaged``.
5. If even that fails to parse, *salvage* with regular expressions: the root name, top-level
   simple elements and every complete ``<Item>...</Item>`` block, each on its own.

Everything here is pure string work; the codec turns the tree into typed messages.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from itertools import chain

from ._errors import ManscdpDepthError, ManscdpDtdError, ManscdpError, ManscdpSyntaxError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "ParsedXml",
    "check_hostile",
    "parse_document",
    "rebalance",
    "salvage",
    "sanitize",
]

DEFAULT_MAX_DEPTH = 32
"""MANSCDP nests at most 5 deep (Response/DeviceList/Item/Info/AlarmTypeParam)."""

_SMALL = 64 * 1024  # below this a fully built tree is cheap; above it, parse incrementally
_CHUNK = 16 * 1024

_DECLARATION = re.compile(r"<!\s*(?:DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)\b", re.IGNORECASE)
_BAD_CHARS = "\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff"
_CTRL = re.compile(f"[{_BAD_CHARS}]")
_BARE_AMP = re.compile(r"&(?!(?:amp|lt|gt|quot|apos|#[0-9]{1,8}|#x[0-9a-fA-F]{1,8});)")
_STRAY_LT = re.compile(r"<(?![A-Za-z_/!?])")
_CHARREF = re.compile(r"&#(x[0-9a-fA-F]{1,8}|[0-9]{1,8});")

_NAME = r"[A-Za-z_][\w.\-:]*"
_TOKEN = re.compile(
    rf"</\s*(?P<cname>{_NAME})\s*(?:>|(?=<)|$)"
    rf"|<(?P<oname>{_NAME})(?P<attrs>(?:\s[^<>]*?)?)\s*(?P<selfclose>/)?>"
)
_ATTR = re.compile(rf"""({_NAME})\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=]+))""")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_PI = re.compile(r"<\?[^<>]*\?>")
_CDATA = re.compile(r"<!\[CDATA\[(.*?)\]\]>", re.DOTALL)

_ROOT_OPEN = re.compile(r"<(Query|Control|Notify|Response)\b", re.IGNORECASE)
_ITEM_OPEN = re.compile(r"<Item\b", re.IGNORECASE)
_ITEM_BLOCK = re.compile(r"<Item\b[^<>]*>(.*?)</Item\s*>", re.IGNORECASE | re.DOTALL)
_LEAF = re.compile(rf"<({_NAME})(?:\s[^<>]*)?>([^<]*)</\1\s*>", re.IGNORECASE)
_LAST_OPEN = re.compile(rf"<({_NAME})((?:\s[^<>]*)?)>\s*$")
_NUM_ATTR = re.compile(r"""\bNum\s*=\s*["']?(\d{1,9})""", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ParsedXml:
    """A parsed body: the root element and what had to be done to get it."""

    root: ET.Element
    repairs: tuple[str, ...] = ()
    salvaged: bool = False


def check_hostile(text: str) -> None:
    """Refuse markup declarations (DTDs carry every entity-expansion attack).

    Raises:
        ManscdpDtdError: ``<!DOCTYPE``, ``<!ENTITY``, ``<!ELEMENT``, ``<!ATTLIST`` or
            ``<!NOTATION`` appears anywhere in the text.
    """
    if "!" in text and _DECLARATION.search(text):  # one-character scan first: much cheaper
        raise ManscdpDtdError("markup declarations (DOCTYPE/ENTITY) are not accepted")


def sanitize(text: str) -> tuple[str, list[str]]:
    """Lossless repairs: returns the text and the names of the repairs made."""
    repairs: list[str] = []
    if not (
        _CTRL.search(text) or ("&" in text and _BARE_AMP.search(text)) or _STRAY_LT.search(text)
    ):
        return text, repairs
    fixed = _CTRL.sub("", text)
    if fixed != text:
        repairs.append("control-chars")
    step = _BARE_AMP.sub("&amp;", fixed)
    if step != fixed:
        repairs.append("bare-ampersand")
    fixed = _STRAY_LT.sub("&lt;", step)
    if fixed != step:
        repairs.append("stray-lt")
    return fixed, repairs


def parse_document(text: str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> ParsedXml:
    """Parse body text (declaration already stripped), repairing or salvaging as needed.

    Raises:
        ManscdpDtdError: markup declarations present.
        ManscdpDepthError: elements nested deeper than ``max_depth``.
        ManscdpSyntaxError: nothing MANSCDP-like could be recovered.
    """
    check_hostile(text)
    if _needs_no_sanitizing(text):
        try:
            return ParsedXml(_parse_strict(text, max_depth))
        except ManscdpError:
            raise
        except (ET.ParseError, ValueError):
            pass  # dirty after all: start over below (the strict parse fails again)
    text, repairs = sanitize(text)
    try:
        return ParsedXml(_parse_strict(text, max_depth), tuple(repairs))
    except ManscdpError:
        raise
    except (ET.ParseError, ValueError):
        pass
    fixed, more = rebalance(text, max_depth=max_depth)
    repairs.extend(more)
    try:
        return ParsedXml(_parse_strict(fixed, max_depth), tuple(repairs), salvaged=True)
    except ManscdpError:
        raise
    except (ET.ParseError, ValueError):
        pass
    repairs.append("item-salvage")
    return ParsedXml(salvage(text), tuple(repairs), salvaged=True)


def _needs_no_sanitizing(text: str) -> bool:
    """True when ``sanitize`` would return ``text`` unchanged *provided expat accepts it*.

    Of the three checks in ``sanitize`` the control-character scan is the expensive one (a
    character-class search over the whole body), and expat rejects every one of those characters
    anywhere in a document, so it is left to the parser: a clean body costs two cheap scans, a
    dirty one a failed parse before the full path.
    """
    if "&" in text and _BARE_AMP.search(text):
        return False
    return _STRAY_LT.search(text) is None


def _parse_strict(text: str, max_depth: int) -> ET.Element:
    check_hostile(text)
    if len(text) <= _SMALL:
        root = ET.fromstring(text)
        _check_depth(root, max_depth)
        return root
    # Large bodies (big catalogs): parse incrementally so a nesting bomb is refused after one
    # chunk instead of after building a tree of hundreds of thousands of elements.
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
    depth = 0
    first: ET.Element | None = None
    for offset in range(0, len(text), _CHUNK):
        parser.feed(text[offset : offset + _CHUNK])
        for pair in parser.read_events():
            if len(pair) != 2:
                continue
            event, elem = pair
            if not isinstance(elem, ET.Element):
                continue
            if event == "start":
                depth += 1
                if depth > max_depth:
                    raise ManscdpDepthError(f"elements nested deeper than {max_depth}")
                if first is None:
                    first = elem
            else:
                depth -= 1
    parser.close()
    if first is None:
        raise ET.ParseError("no element found")
    return first


def _check_depth(root: ET.Element, max_depth: int) -> None:
    # A chain from the root down to the deepest element passes only through elements that have
    # children, so with few of those the tree cannot be too deep: counted in C, this settles
    # any message of a few dozen items without a walk. Otherwise walk level by level.
    child_counts = list(map(len, root.iter()))
    if len(child_counts) - child_counts.count(0) < max_depth:
        return
    level = [root]
    depth = 1
    while True:
        level = list(chain.from_iterable(level))
        if not level:
            return
        depth += 1
        if depth > max_depth:
            raise ManscdpDepthError(f"elements nested deeper than {max_depth}")


def _valid_charref(match: re.Match[str]) -> str:
    ref = match.group(1)
    code = int(ref[1:], 16) if ref[0] == "x" else int(ref)
    ok = code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD
    ok = ok or 0x10000 <= code <= 0x10FFFF
    return match.group(0) if ok else ""


def _fix_text(segment: str) -> str:
    segment = segment.replace("<", "&lt;").replace(">", "&gt;")
    segment = _BARE_AMP.sub("&amp;", segment)
    return _CHARREF.sub(_valid_charref, segment)


def _fix_attrs(raw: str) -> str:
    seen: set[str] = set()
    parts: list[str] = []
    for match in _ATTR.finditer(raw):
        name = match.group(1)
        if name in seen:
            continue
        seen.add(name)
        value = next(v for v in match.groups()[1:] if v is not None)
        parts.append(f' {name}="{_fix_text(value).replace(chr(34), "&quot;")}"')
    return "".join(parts)


def rebalance(text: str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[str, list[str]]:
    """Rebuild ``text`` as well-formed XML (see the module docstring, step 4).

    Returns the new text and the repairs made. Raises ``ManscdpDepthError`` when the input nests
    deeper than ``max_depth``.
    """
    repairs: list[str] = []
    text = _COMMENT.sub("", text)
    text = _PI.sub("", text)
    text = _CDATA.sub(lambda m: m.group(1).replace("&", "&amp;").replace("<", "&lt;"), text)
    out: list[str] = []
    # per open element: [name, has element children, index in out where it starts]
    stack: list[list[object]] = []
    pos = 0
    root_done = False

    def note(repair: str) -> None:
        if repair not in repairs:
            repairs.append(repair)

    for match in _TOKEN.finditer(text):
        if stack:
            out.append(_fix_text(text[pos : match.start()]))
        pos = match.end()
        cname = match.group("cname")
        if cname is not None:
            if not stack:
                note("stray-close-tag")
                continue
            lower = cname.lower()
            index = next(
                (i for i in range(len(stack) - 1, -1, -1) if str(stack[i][0]).lower() == lower),
                None,
            )
            if index is None:
                if stack[-1][1]:
                    note("stray-close-tag")
                    continue
                index = len(stack) - 1  # "<Name>x</Nmae>": the typo closes the leaf
                note("mismatched-close-tag")
            elif str(stack[index][0]) != cname:
                note("close-tag-case")
            if index < len(stack) - 1:
                note("unclosed-tag")
            while len(stack) > index:
                out.append(f"</{stack.pop()[0]}>")
            if not stack:
                root_done = True
            continue
        name = match.group("oname")
        if root_done:
            note("trailing-garbage")
            break
        if stack:
            stack[-1][1] = True
        attrs = _fix_attrs(match.group("attrs"))
        if match.group("selfclose"):
            out.append(f"<{name}{attrs}/>")
            if not stack:
                root_done = True
            continue
        stack.append([name, False, len(out)])
        if len(stack) > max_depth:
            raise ManscdpDepthError(f"elements nested deeper than {max_depth}")
        out.append(f"<{name}{attrs}>")
    else:
        if stack:
            out.append(_fix_text(text[pos:]))
    if stack:
        note("truncated")
        index = next((i for i, entry in enumerate(stack) if str(entry[0]).lower() == "item"), None)
        if index is not None and index > 0:
            del out[int(str(stack[index][2])) :]
            del stack[index:]
            note("partial-item-dropped")
        while stack:
            out.append(f"</{stack.pop()[0]}>")
    return "".join(out), repairs


def _unescape(value: str) -> str:
    return _CTRL.sub("", html.unescape(value)).strip()


def salvage(text: str) -> ET.Element:
    """Regex extraction of the root, top-level simple elements and complete ``<Item>`` blocks.

    Top-level elements are taken from before the first ``<Item`` only (the header of every
    MANSCDP list message), so a broken item cannot lend its DeviceID to the message.

    Nested elements inside an item are flattened into the item. Items are put in a container
    named after the last opening tag before the first item (``DeviceList Num="n"``...).

    Raises:
        ManscdpSyntaxError: no MANSCDP root element in the text.
    """
    root_match = _ROOT_OPEN.search(text)
    if root_match is None:
        raise ManscdpSyntaxError("no MANSCDP root element found")
    root = ET.Element(root_match.group(1))
    body = text[root_match.end() :]
    items = list(_ITEM_BLOCK.finditer(body))
    # Top-level elements come before the list; an unmatched item must not leak its DeviceID.
    first_item = _ITEM_OPEN.search(body)
    header = body if first_item is None else body[: first_item.start()]
    seen: set[str] = set()
    for leaf in _LEAF.finditer(header):
        if leaf.group(1).lower() not in seen:
            seen.add(leaf.group(1).lower())
            ET.SubElement(root, leaf.group(1)).text = _unescape(leaf.group(2))
    if items:
        opener = _LAST_OPEN.search(body[: items[0].start()])
        if opener is not None and opener.group(1).lower() != root.tag.lower():
            container = ET.SubElement(root, opener.group(1))
            num = _NUM_ATTR.search(opener.group(2))
            if num is not None:
                container.set("Num", num.group(1))
            for item in items:
                elem = ET.SubElement(container, "Item")
                for leaf in _LEAF.finditer(item.group(1)):
                    ET.SubElement(elem, leaf.group(1)).text = _unescape(leaf.group(2))
    return root
