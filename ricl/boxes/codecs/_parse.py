"""Text helpers shared by the codecs' parsers (standard library only).

Everything here is tolerant and never raises on odd text: it finds what looks like box
syntax and hands back raw numbers in the codec's own units. Conversion to the canonical
frame, repairs and the ok/empty/parse_error decision live in :mod:`ricl.boxes.codecs.base`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

__all__ = [
    "NUMBER",
    "Extracted",
    "extract_json",
    "numbers",
    "says_no_box",
    "tag_contents",
    "tagged_lists",
    "token_runs",
]

#: a decimal number as models write it: ``512``, ``512.0``, ``.5``, ``-3``, ``1e3``
NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(NUMBER)
_NUMBER_FULL_RE = re.compile(rf"\s*{NUMBER}\s*")

# Prose meaning "there is nothing to box". Only consulted when no box syntax was found.
_NO_BOX_RE = re.compile(
    r"\b(?:no|none|nothing|absent|negative"
    r"|not\s+(?:present|visible|seen|found|identified|detected|evident|shown|apparent"
    r"|observed|demonstrated|depicted|appreciated)"
    r"|(?:cannot|can\s*not|can't|unable\s+to)\s+(?:be\s+)?(?:locate|find|identify|see|"
    r"located|found|identified|seen))\b",
    re.IGNORECASE,
)
_FENCE_RE = re.compile(r"```[A-Za-z0-9_+-]*")
_TRAILING_COMMA_RE = re.compile(r",\s*(?=[\]}])")
_JSON_START_RE = re.compile(r"[\[{]")
_NUMERIC_LIST_RE = re.compile(rf"\[\s*({NUMBER}(?:\s*,\s*{NUMBER})*)\s*,?\s*\]")
_INNER_LIST_RE = re.compile(r"\[([^\[\]]*)\]")
_LIST_PREFIX_RE = re.compile(rf"(?:\s|[\[\],]|{NUMBER})*")
_EMPTY_LIST_RE = re.compile(r"^\s*\[\s*\]\s*$")
_CUT_TAG_RE = re.compile(r"\s*(?:<[^<>]*)?")  # what may follow a token run cut by max_tokens


@dataclass
class Extracted:
    """What a codec found in a text, before conversion.

    ``groups``: one tuple of numbers per box candidate, in the codec's units and written
    order (a tuple of the wrong length is a box that will be dropped); ``said_empty``: the
    codec's own empty syntax (e.g. ``[]``) was seen; ``truncated``: a box was opened but its
    numbers were cut off (only used to word the parse_error).
    """

    groups: list[tuple[float, ...]] = field(default_factory=list)
    said_empty: bool = False
    truncated: bool = False


def numbers(text: str) -> tuple[float, ...]:
    """Every number in ``text``, as floats (``1e999`` gives inf; callers drop it)."""
    return tuple(float(m) for m in _NUMBER_RE.findall(text))


def says_no_box(text: str) -> bool:
    """Whether ``text`` states that there is nothing to box ("No pneumothorax", "none", ...)."""
    return _NO_BOX_RE.search(text) is not None


def tag_contents(
    text: str, open_re: re.Pattern[str], close_re: re.Pattern[str]
) -> list[tuple[str, bool]]:
    """The text inside every ``open ... close`` pair, left to right, as ``(content, closed)``.

    An opening tag without its closing tag (truncated generation, or a forgotten tag) yields
    the text up to the next opening tag or the end, with ``closed=False``; the caller keeps
    only the complete boxes at its start.
    """
    opens = list(open_re.finditer(text))
    out: list[tuple[str, bool]] = []
    for i, m in enumerate(opens):
        stop = opens[i + 1].start() if i + 1 < len(opens) else len(text)
        segment = text[m.end() : stop]
        close = close_re.search(segment)
        out.append((segment[: close.start()], True) if close else (segment, False))
    return out


def tagged_lists(text: str, open_re: re.Pattern[str], close_re: re.Pattern[str]) -> Extracted:
    """Boxes written as bracketed lists between tags: ``<box>[[x1, y1, x2, y2], ...]</box>``.

    A closed tag gives every innermost ``[...]`` list in it (one box each), or, without any,
    all its numbers as one box (``<box>x1 y1 x2 y2</box>``); ``[]`` alone means "no box".
    An unclosed tag (truncated) gives only the complete lists at its start.
    """
    found = Extracted()
    for content, closed in tag_contents(text, open_re, close_re):
        if closed and _EMPTY_LIST_RE.match(content):
            found.said_empty = True
            continue
        prefix = _LIST_PREFIX_RE.match(content)
        body = content if closed or prefix is None else prefix.group(0)
        inner = [numbers(m.group(1)) for m in _INNER_LIST_RE.finditer(body)]
        if inner:
            found.groups.extend(inner)
        elif closed:
            found.groups.append(numbers(content))
        else:
            found.truncated = True
    return found


def token_runs(text: str, token_re: re.Pattern[str], n: int = 4) -> Extracted:
    """Boxes written as runs of one-number tokens: ``<loc0205><loc0102><loc0614><loc0512>``.

    ``token_re`` matches one token, its number in group 1; tokens separated by nothing but
    whitespace form a run, cut into boxes of ``n`` numbers in written order. An incomplete
    rest that ends the text (at most a cut-off tag after it) is a truncated box; one
    anywhere else is an unusable box.
    """
    found = Extracted()
    runs: list[tuple[list[float], int]] = []  # (numbers, end of the run's last token)
    for m in token_re.finditer(text):
        if runs and not text[runs[-1][1] : m.start()].strip():
            runs[-1][0].append(float(m.group(1)))
            runs[-1] = (runs[-1][0], m.end())
        else:
            runs.append(([float(m.group(1))], m.end()))
    for nums, end in runs:
        whole = len(nums) - len(nums) % n
        found.groups.extend(tuple(nums[i : i + n]) for i in range(0, whole, n))
        if whole < len(nums):
            if _CUT_TAG_RE.fullmatch(text, end):
                found.truncated = True
            else:
                found.groups.append(tuple(nums[whole:]))
    return found


# ---------------------------------------------------------------------------- JSON


def _is_num(v: object) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    return isinstance(v, str) and _NUMBER_FULL_RE.fullmatch(v) is not None


def _num(v: object) -> float:
    return float(v)  # type: ignore[arg-type]  # only called after _is_num


def _scan_json(text: str) -> list[object]:
    """Every JSON value starting at a ``[`` or ``{`` that decodes, left to right, not nested."""
    decoder = json.JSONDecoder()
    out: list[object] = []
    pos = 0
    while (m := _JSON_START_RE.search(text, pos)) is not None:
        try:
            value, end = decoder.raw_decode(text, m.start())
        except (ValueError, RecursionError):
            pos = m.start() + 1
            continue
        out.append(value)
        pos = end
    return out


def _walk(value: object, keys: frozenset[str], in_list: bool, found: Extracted) -> None:
    """Collect box candidates from a decoded JSON value.

    A dict contributes the values of its box ``keys`` (any arity: a wrong one is a dropped
    box) or, without such a key, whatever its values contain. A list of numbers is a box when
    it has 4 numbers, or when it sits inside a list (``[[1, 2, 3]]`` is a malformed box);
    a lone ``[1]`` in prose-like JSON is ignored. An empty list (or a box key set to
    ``null`` / ``[]``) means "no box".
    """
    if isinstance(value, dict):
        hits = [k for k in value if isinstance(k, str) and k.lower() in keys]
        if not hits:
            for v in value.values():
                _walk(v, keys, False, found)
        for k in hits:
            v = value[k]
            if v is None or v == []:
                found.said_empty = True
            elif isinstance(v, list) and all(_is_num(x) for x in v):
                found.groups.append(tuple(_num(x) for x in v))
            elif isinstance(v, list):
                for x in v:
                    _walk(x, keys, True, found)
            else:
                found.groups.append(())  # a box key holding a string/number: unusable box
    elif isinstance(value, list):
        if not value:
            found.said_empty = True
        elif all(_is_num(x) for x in value):
            if len(value) == 4 or in_list:
                found.groups.append(tuple(_num(x) for x in value))
        else:
            for x in value:
                _walk(x, keys, True, found)


def extract_json(text: str, keys: frozenset[str] = frozenset()) -> Extracted:
    """Box candidates in JSON-ish model text.

    Cleanup first: markdown fences are removed and trailing commas dropped. Then every JSON
    value in the text is decoded (so prose around it, several answers and a truncated tail
    are tolerated: the complete objects before the cut still decode). Without result, the
    text is retried with single quotes turned into double quotes (Python-style dicts), then
    a regex takes bracketed lists of numbers that JSON rejects (``[.5, 1., 3, 4]``).
    ``keys`` (lower case) name the box fields of dicts, e.g. ``{"bbox_2d"}``. More ``[``
    than ``]`` marks the answer as truncated (only used to word the parse_error).
    """
    cleaned = _TRAILING_COMMA_RE.sub("", _FENCE_RE.sub("\n", text))
    found = Extracted(truncated=cleaned.count("[") > cleaned.count("]"))
    for value in _scan_json(cleaned):
        _walk(value, keys, False, found)
    if not found.groups and not found.said_empty and "'" in cleaned:
        for value in _scan_json(cleaned.replace("'", '"')):
            _walk(value, keys, False, found)
    if not found.groups and not found.said_empty:
        for m in _NUMERIC_LIST_RE.finditer(cleaned):
            nums = numbers(m.group(1))
            if len(nums) == 4:
                found.groups.append(nums)
    return found
