"""Arguments of the API converted to the component's WIT types, and nothing
else: every rule about a value (an empty task, a bad URL, a page size, a
JSON context that is not an object) is the component's, so every host
refuses the same input with the same error. What is refused here is a
value its WIT type cannot hold at all: a number for a string, -1 or 1.5 for
a u32, a lone surrogate in a string, NaN or a set in a JSON value, a status
that is not a ``session-status``, a record field left out. That is a
``SessionError("invalid-input")`` too, worded exactly as the Node package
words it (``packages/node/src/args.js`` is this module in JavaScript; both
run ``tests/conformance/wrapper-cases/``), with the argument named as in
the WIT (``start: options.max-iterations``), the same in every host.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any, List, NoReturn, Optional, Tuple

from wasmtime.component import Record, Variant

from .types import Key, SessionError, TypedValue

STATUSES = ("active", "paused", "completed", "failed", "timeout")
U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
# Code points of a string shown in a message, as the core shows them.
_SHOWN = 80
_SURROGATE = re.compile("[\ud800-\udfff]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Missing:
    """The default of a record field given as a keyword argument: left out."""

    def __repr__(self) -> str:
        return "MISSING"


#: A record field that was not given (JavaScript's ``undefined``).
MISSING: Any = _Missing()


def _refuse(message: str) -> NoReturn:
    raise SessionError("invalid-input", message)


def quote(s: str) -> str:
    """``s`` quoted as Rust's ``{:?}`` quotes it (so as the core's and the
    CLI's messages quote), for the characters a message is likely to meet:
    quotes, backslashes, control characters and lone surrogates escaped."""
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif c == 0:
            out.append("\\0")
        elif c < 0x20 or 0x7F <= c <= 0x9F or 0xD800 <= c <= 0xDFFF:
            out.append(f"\\u{{{c:x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _shown(s: str) -> str:
    return quote(s[:_SHOWN]) + ("..." if len(s) > _SHOWN else "")


def js_number(x: float) -> str:
    """``x`` as JavaScript's ``String(x)`` writes it, so that both hosts
    show a number the same way (``1.5e-7``, ``1e+21``, ``100``)."""
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    # repr gives the shortest digits that read back as x, as JavaScript's
    # algorithm does; only where the point and exponent go differs.
    _, digits_tuple, exponent = Decimal(repr(abs(x))).as_tuple()
    digits = list(digits_tuple)
    while digits and digits[-1] == 0:
        digits.pop()
        exponent += 1  # type: ignore[operator]
    s = "".join(map(str, digits))
    k = len(s)
    n = k + int(exponent)  # x = 0.s * 10^n
    sign = "-" if x < 0 else ""
    if k <= n <= 21:
        body = s + "0" * (n - k)
    elif 0 < n <= 21:
        body = s[:n] + "." + s[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * -n + s
    else:
        e = n - 1
        mantissa = s if k == 1 else s[0] + "." + s[1:]
        body = f"{mantissa}e{'+' if e > 0 else '-'}{abs(e)}"
    return sign + body


def _article(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def describe(v: Any) -> str:
    """What ``v`` is, in words both hosts use ("the number -1", "nothing")."""
    if v is None or v is MISSING:
        return "nothing"
    if isinstance(v, bool):
        return f"the boolean {'true' if v else 'false'}"
    if isinstance(v, int):
        try:
            return f"the number {int.__repr__(v)}"
        except ValueError:  # more digits than Python converts
            return "a number too long to show"
    if isinstance(v, float):
        return f"the number {js_number(v)}"
    if isinstance(v, str):
        return f"the string {_shown(v)}"
    if isinstance(v, (list, tuple)):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return _article(type(v).__name__)


def _need(ok: bool, where: str, expected: str, v: Any) -> None:
    if not ok:
        _refuse(f"{where} must be {expected}, got {describe(v)}")


def string(v: Any, where: str) -> str:
    """A string (WIT strings hold Unicode scalar values: no lone surrogates)."""
    _need(isinstance(v, str), where, "a string", v)
    _need(_SURROGATE.search(v) is None, where, "a string without lone surrogates", v)
    return v


def opt_string(v: Any, where: str) -> Optional[str]:
    """An optional string (None: none)."""
    return None if v is None else string(v, where)


def _integer(v: Any, where: str, top: int) -> int:
    # wasmtime-py stores integers through ctypes, which wraps what does not
    # fit (-1 would become 4294967295): so the range is checked here. A
    # float with an integer value is that integer, as in JavaScript.
    value: Optional[int] = None
    if isinstance(v, int) and not isinstance(v, bool):
        value = int(v)
    elif isinstance(v, float) and v.is_integer():
        value = int(v)
    if value is None or not 0 <= value <= top:
        _refuse(f"{where} must be an integer from 0 to {top}, got {describe(v)}")
    return value


def u32(v: Any, where: str) -> int:
    """A u32."""
    return _integer(v, where, U32_MAX)


def opt_u32(v: Any, where: str) -> Optional[int]:
    """An optional u32."""
    return None if v is None else u32(v, where)


def u64(v: Any, where: str) -> int:
    """A u64: any integer in range; the component judges it (e.g. durations
    above 2^53 - 1)."""
    return _integer(v, where, U64_MAX)


def opt_u64(v: Any, where: str) -> Optional[int]:
    """An optional u64."""
    return None if v is None else u64(v, where)


def boolean(v: Any, where: str) -> bool:
    """A boolean."""
    _need(isinstance(v, bool), where, "a boolean", v)
    return bool(v)


def strings(v: Any, where: str) -> List[str]:
    """A list of strings (a list or a tuple)."""
    _need(isinstance(v, (list, tuple)), where, "an array of strings", v)
    return [string(s, f"{where}[{i}]") for i, s in enumerate(v)]


def opt_status(v: Any, where: str) -> Optional[str]:
    """An optional ``session-status``: its name. An unknown name cannot be
    passed (the WIT type is an enum), so it is refused here, with the
    message of the core's own status parser (``SessionStatus::parse``, what
    the CLI answers to ``list --status``)."""
    if v is None:
        return None
    _need(isinstance(v, str), where, f"one of {', '.join(STATUSES)}", v)
    if v not in STATUSES:
        _refuse(f"unknown status {_shown(v)}; expected one of {', '.join(STATUSES)}")
    return str(v)


def _step(key: str) -> str:
    """``key`` as a step of a path in a message: ``.name`` or ``["other key"]``."""
    return f".{key}" if _NAME.fullmatch(key) else f"[{quote(key)}]"


def _key_text(k: Any) -> Optional[str]:
    """A dict key as the json module writes it; None if it writes none."""
    if isinstance(k, str):
        return k
    if isinstance(k, bool):
        return "true" if k else "false"
    if k is None:
        return "null"
    if isinstance(k, int):
        return int.__repr__(k)
    if isinstance(k, float) and k - k == 0:  # finite
        return float.__repr__(k)
    return None


def _check_json(value: Any, where: str) -> None:
    """Refuse what JSON cannot hold: only None, booleans, integers, finite
    floats, strings, lists, tuples and dicts pass (the keys of a dict as
    the json module takes them). Walks without recursion, so any depth is
    looked at (the component judges it)."""
    leave = object()
    inside = set()
    stack: List[Tuple[Any, str, Any]] = [(value, "", None)]
    while stack:
        v, at, leaving = stack.pop()
        if leaving is leave:
            inside.discard(id(v))
            continue

        def bad(what: str) -> NoReturn:
            _refuse(f"{where}{at} must be a JSON value, got {what}")

        if v is None or isinstance(v, (str, bool, int)):
            continue
        if isinstance(v, float):
            if v - v != 0:  # NaN, Infinity
                bad(describe(v))
            continue
        if not isinstance(v, (list, tuple, dict)):
            bad(describe(v))
        if id(v) in inside:
            bad("an object that contains itself")
        inside.add(id(v))
        stack.append((v, at, leave))
        if isinstance(v, dict):
            items = list(v.items())
            for k, x in reversed(items):
                text = _key_text(k)
                if text is None:
                    bad(f"a key that is {describe(k)}")
                stack.append((x, f"{at}{_step(text)}", None))
        else:
            for i in range(len(v) - 1, -1, -1):
                stack.append((v[i], f"{at}[{i}]", None))


class _Text:
    """A piece of JSON text on the stack of ``_dumps_deep``."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _scalar(v: Any) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return int.__repr__(v)
    if isinstance(v, float):
        return float.__repr__(v)
    return encode_basestring(v)


def _dumps_deep(value: Any) -> str:
    """The text ``json.dumps`` makes of checked data, without recursion
    (``json.dumps`` gives up at about a thousand levels)."""
    out: List[str] = []
    stack: List[Any] = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, _Text):
            out.append(v.text)
        elif isinstance(v, dict):
            out.append("{")
            stack.append(_Text("}"))
            items = list(v.items())
            for i in range(len(items) - 1, -1, -1):
                k, x = items[i]
                stack.append(x)
                stack.append(_Text(encode_basestring(_key_text(k) or "") + ":"))
                if i:
                    stack.append(_Text(","))
        elif isinstance(v, (list, tuple)):
            out.append("[")
            stack.append(_Text("]"))
            for i in range(len(v) - 1, -1, -1):
                stack.append(v[i])
                if i:
                    stack.append(_Text(","))
        else:
            out.append(_scalar(v))
    return "".join(out)


def json_text(v: Any, where: str) -> str:
    """The JSON text of a JSON value (the component judges its shape, size
    and numbers): compact and not ASCII-escaped, like serde_json in the Rust
    host and JSON.stringify in Node, since the component's size limits count
    these bytes. A lone surrogate in a string is written as its escape, as
    JSON.stringify writes it (the component refuses it, in every host)."""
    if v is MISSING:
        _refuse(f"{where} must be a JSON value, got {describe(v)}")
    _check_json(v, where)
    try:
        try:
            text = json.dumps(v, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except RecursionError:
            text = _dumps_deep(v)
    except ValueError as e:  # an integer with more digits than Python writes
        _refuse(f"{where} cannot be written as JSON: {e}")
    if _SURROGATE.search(text):
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def opt_json(v: Any, where: str) -> Optional[str]:
    """An optional JSON value (None: none)."""
    return None if v is None else json_text(v, where)


def session_ref(v: Any, op: str, param: str = "") -> Variant:
    """A ``session-ref``: an id (a string) or a :class:`Key`. ``param``
    names the argument when an operation takes two (``copy-checkpoints:
    from``); else the id is ``<op>: id`` and the key ``<op>: key``."""
    if isinstance(v, Key):
        return Variant("key", string(v.key, f"{op}: {param}.key" if param else f"{op}: key"))
    return Variant("id", string(v, f"{op}: {param}" if param else f"{op}: id"))


def opt_session_ref(v: Any, op: str, param: str) -> Optional[Variant]:
    """An optional ``session-ref`` (None: none)."""
    return None if v is None else session_ref(v, op, param)


def typed_value(v: Any, where: str) -> Record:
    """A ``typed-value``: a :class:`TypedValue` or a ``(type, bytes)`` pair
    (what a LangGraph serializer's ``dumps_typed`` returns)."""
    if isinstance(v, TypedValue):
        type_, data = v.type, v.bytes
    elif isinstance(v, tuple) and len(v) == 2:
        type_, data = v
    else:
        _refuse(f"{where} must be a TypedValue or a (type, bytes) pair, got {describe(v)}")
    r = Record()
    setattr(r, "type", string(type_, f"{where}.type"))
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    _need(isinstance(data, bytes), f"{where}.bytes", "bytes", data)
    setattr(r, "bytes", data)
    return r


def opt_typed_value(v: Any, where: str) -> Optional[Record]:
    """An optional ``typed-value`` (None: none)."""
    return None if v is None else typed_value(v, where)
