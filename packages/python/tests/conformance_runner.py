"""The conformance suite's machinery (format in tests/conformance/README.md):
calling the Python API by WIT operation name with canonical arguments,
the canonical form of its answers, patterns, and transcripts. It also runs
the wrapper cases (tests/conformance/wrapper-cases/, README "Wrapper
cases"), which only the Node and Python hosts run, and the delivery
scenarios (tests/conformance/delivery/), which call the ``delivery``
interface too, on the same instance as the scenario's sessions."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from agent_session import Key, SessionError, Sessions
from agent_session._deliver import Answer, DeliveryCalls, Failed, Refused, Response

REPO = Path(__file__).resolve().parents[3]
SCENARIOS = REPO / "tests" / "conformance"
WRAPPER_CASES = SCENARIOS / "wrapper-cases"
DELIVERY_SCENARIOS = SCENARIOS / "delivery"
HOST = "python"

# Every scenario's [op, outcome] steps, by file name, for the transcript.
TRANSCRIPTS: Dict[str, List[Any]] = {}
# The same for the delivery scenarios, written to their own transcript.
DELIVERY_TRANSCRIPTS: Dict[str, List[Any]] = {}


class Broken(Exception):
    """The scenario or the host is broken (never an expected outcome)."""


def scenario_files() -> List[Path]:
    return sorted(SCENARIOS.glob("*.json"))


def wrapper_case_files() -> List[Path]:
    return sorted(WRAPPER_CASES.glob("*.json"))


def delivery_scenario_files() -> List[Path]:
    return sorted(DELIVERY_SCENARIOS.glob("*.json"))


def _at(args: List[Any], i: int) -> Any:
    return args[i] if i < len(args) else None


def _record(args: List[Any], i: int) -> Dict[str, Any]:
    return _at(args, i) or {}


def _ref(args: List[Any], i: int) -> Any:
    """A canonical ``session-ref``: an id (a string), ``{"key": k}`` (the
    API's ``Key(k)``) or ``{"id": id}``; anything else as it is (for the
    API to refuse)."""
    v = _at(args, i)
    if isinstance(v, dict) and list(v) == ["key"]:
        return Key(v["key"])
    if isinstance(v, dict) and list(v) == ["id"]:
        return v["id"]
    return v


# The Python API takes WIT records as keyword arguments, so each operation
# says how its canonical arguments map onto its method.
_OPS: Dict[str, Callable[[Sessions, List[Any]], Any]] = {
    "start": lambda s, a: s.start(**_record(a, 0)),
    "get": lambda s, a: s.get(_ref(a, 0)),
    "pause": lambda s, a: s.pause(_ref(a, 0), _at(a, 1)),
    "resume": lambda s, a: s.resume(_ref(a, 0)),
    "complete": lambda s, a: s.complete(_ref(a, 0), _at(a, 1)),
    "fail": lambda s, a: s.fail(_ref(a, 0), _at(a, 1)),
    "iterate": lambda s, a: s.iterate(_ref(a, 0), _at(a, 1)),
    "record-tool-call": lambda s, a: s.record_tool_call(_ref(a, 0), **_record(a, 1)),
    "record-learning": lambda s, a: s.record_learning(_ref(a, 0), **_record(a, 1)),
    "record-event": lambda s, a: s.record_event(_ref(a, 0), _at(a, 1), _at(a, 2)),
    "events": lambda s, a: s.events(_ref(a, 0), _at(a, 1), _at(a, 2)),
    "recent-events": lambda s, a: s.recent_events(_ref(a, 0)),
    "update-context": lambda s, a: s.update_context(_ref(a, 0), _at(a, 1)),
    "resumption-context": lambda s, a: s.resumption_context(_ref(a, 0)),
    "list": lambda s, a: s.list(**_record(a, 0), cursor=_at(a, 1), limit=_at(a, 2)),
    "stats": lambda s, a: s.stats(**_record(a, 0)),
    "cleanup": lambda s, a: s.cleanup(_at(a, 0), _at(a, 1)),
    "delete": lambda s, a: s.delete(_ref(a, 0)),
    "rebuild-index": lambda s, a: s.rebuild_index(_at(a, 0)),
    "export": lambda s, a: s.export(_ref(a, 0)),
    "import": lambda s, a: s.import_(_at(a, 0)),
    "set-webhook": lambda s, a: s.set_webhook(**_record(a, 0)),
    "check-webhook-url": lambda s, a: s.check_webhook_url(a[0], a[1]),
    "get-webhook": lambda s, a: s.get_webhook(),
    "clear-webhook": lambda s, a: s.clear_webhook(),
    "disable-webhook": lambda s, a: s.disable_webhook(_at(a, 0)),
    "is-resumable": lambda s, a: s.is_resumable(_ref(a, 0)),
    "duration": lambda s, a: s.duration(_ref(a, 0)),
    "progress": lambda s, a: s.progress(_ref(a, 0)),
    "add-items": lambda s, a: s.add_items(_ref(a, 0), _at(a, 1)),
    "items": lambda s, a: s.items(_ref(a, 0), _at(a, 1)),
    "pop-item": lambda s, a: s.pop_item(_ref(a, 0)),
    "clear-items": lambda s, a: s.clear_items(_ref(a, 0)),
}




def _answer(v: Any) -> Answer:
    """A canonical WIT ``answer`` (``{"response": {"status", "retry_after"}}``,
    ``{"refused": reason}`` or ``{"failed": error}``) as the API's value."""
    if not (isinstance(v, dict) and len(v) == 1):
        raise Broken(f"an answer is an object with one case, got {json.dumps(v)}")
    (case, payload), = v.items()
    if case == "response":
        if not isinstance(payload, dict):
            raise Broken(f"a response is a record, got {json.dumps(payload)}")
        return Response(**payload)
    if case == "refused":
        return Refused(payload)
    if case == "failed":
        return Failed(payload)
    raise Broken(f"no answer case {case!r}")


# The ``delivery`` interface's functions, called on the instance of the
# scenario's Sessions (what start and complete queue there is what
# claim-due finds), through the package's own ``DeliveryCalls``.
_DELIVERY_OPS: Dict[str, Callable[[DeliveryCalls, List[Any]], Any]] = {
    "start-sending": lambda d, a: d.start_sending(**_record(a, 0)),
    "claim-due": lambda d, a: d.claim_due(_at(a, 0), _at(a, 1)),
    "record-answer": lambda d, a: d.record_answer(
        _at(a, 0), _at(a, 1), _at(a, 2), _answer(_at(a, 3))
    ),
    "stop-sending": lambda d, a: d.stop_sending(),
    "deliveries": lambda d, a: d.deliveries(),
}


def canonical(value: Any) -> Any:
    """A Python API value in the canonical form: dataclasses as objects with
    snake_case keys, tuples as arrays (JSON values are already parsed). A
    ``key`` that is None is left out, as the core's records leave it out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: canonical(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (f.name == "key" and getattr(value, f.name) is None)
        }
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    return value


def call(sessions: Sessions, op: str, args: List[Any]) -> Tuple[bool, Any]:
    """(True, canonical value) or (False, canonical error) of one step."""
    run: Optional[Callable[[], Any]] = None
    if op in _OPS:
        run = lambda: _OPS[op](sessions, args)  # noqa: E731
    elif op in _DELIVERY_OPS:
        run = lambda: _DELIVERY_OPS[op](DeliveryCalls(sessions._runtime), args)  # noqa: E731
    if run is None:
        raise Broken(f"unknown operation {op!r}")
    try:
        return True, canonical(run())
    except SessionError as e:
        return False, {"error": e.code, "message": e.message}
    except (TypeError, ValueError) as e:
        raise Broken(f"the arguments do not fit the Python API: {e}") from e


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_INDEX = re.compile(r"[0-9]+")


def reference(s: str, names: Dict[str, Any]) -> Optional[Any]:
    """The value a ``$name.path`` string refers to; None if it is not a
    reference. Raises Broken for a reference to nothing."""
    if not s.startswith("$") or s.startswith("$$") or s == "$any":
        return None
    name, *path = s[1:].split(".")
    if name not in names:
        raise Broken(f"no value kept as {name!r}")
    value = names[name]
    for p in path:
        if isinstance(value, list) and _INDEX.fullmatch(p) and int(p) < len(value):
            value = value[int(p)]
        elif isinstance(value, dict) and p in value:
            value = value[p]
        else:
            raise Broken(f"{s}: no {p!r}")
    return (value,)


def _unescape(s: str) -> str:
    return s[1:] if s.startswith("$$") else s


# Numbers JSON cannot write, made by {"$number": name} in wrapper cases.
_NUMBERS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def substitute(v: Any, names: Dict[str, Any], wrapper: bool = False) -> Any:
    """``v`` with references, ``$$`` escapes, ``$repeat`` and ``$now`` (now
    plus an offset, in milliseconds since the epoch) replaced (and
    ``$number`` in wrapper cases)."""
    if isinstance(v, str):
        ref = reference(v, names)
        return ref[0] if ref is not None else _unescape(v)
    if isinstance(v, list):
        return [substitute(x, names, wrapper) for x in v]
    if isinstance(v, dict):
        if wrapper and list(v) == ["$number"]:
            if not isinstance(v["$number"], str) or v["$number"] not in _NUMBERS:
                raise Broken('$number takes "NaN", "Infinity" or "-Infinity"')
            return _NUMBERS[v["$number"]]
        if list(v) == ["$repeat"]:
            spec = v["$repeat"]
            if not (
                isinstance(spec, list)
                and len(spec) == 2
                and isinstance(spec[0], str)
                and isinstance(spec[1], int)
                and not isinstance(spec[1], bool)
                and spec[1] >= 0
            ):
                raise Broken("$repeat takes [string, count]")
            return spec[0] * spec[1]
        if list(v) == ["$now"]:
            offset = v["$now"]
            if not isinstance(offset, int) or isinstance(offset, bool):
                raise Broken("$now takes an integer offset in milliseconds")
            return _now_ms() + offset
        return {k: substitute(x, names, wrapper) for k, x in v.items()}
    return v


class Mismatch(Exception):
    """Where and why a value does not match its pattern."""


def matches(pattern: Any, actual: Any, names: Dict[str, Any], at: str = "") -> None:
    """Raise Mismatch unless ``actual`` matches ``pattern`` (README "Patterns")."""

    def fail(why: str) -> Mismatch:
        return Mismatch(f"at {at or '.'}: {why}")

    shown = json.dumps(actual)
    if isinstance(pattern, str):
        if pattern == "$any":
            if actual is None:
                raise fail("expected a value, got null")
            return
        ref = reference(pattern, names)
        if ref is not None:
            return matches(ref[0], actual, names, at)
        want = _unescape(pattern)
        if actual != want or not isinstance(actual, str):
            raise fail(f"expected {json.dumps(want)}, got {shown}")
        return
    if isinstance(pattern, dict) and list(pattern) == ["$len"]:
        if not isinstance(actual, (list, str)):
            raise fail(f"expected an array or string, got {shown}")
        if pattern["$len"] != len(actual) or not _is_number(pattern["$len"]):
            raise fail(f"expected length {pattern['$len']}, got {len(actual)}")
        return
    if isinstance(pattern, dict) and list(pattern) in (["$gte"], ["$lte"]):
        (key, bound), = pattern.items()
        bound = substitute(bound, names)
        if not _is_number(bound):
            raise Broken("the bound is not a number")
        if not _is_number(actual):
            raise fail(f"expected a number, got {shown}")
        if not (actual >= bound if key == "$gte" else actual <= bound):
            raise fail(f"expected {key} {bound}, got {actual}")
        return
    if isinstance(pattern, dict):
        if not isinstance(actual, dict):
            raise fail(f"expected an object, got {shown}")
        for k, p in pattern.items():
            if k not in actual:
                raise fail(f"no field {k!r}")
            matches(p, actual[k], names, f"{at}.{k}")
        return
    if isinstance(pattern, list):
        if not isinstance(actual, list):
            raise fail(f"expected an array, got {shown}")
        if len(pattern) != len(actual):
            raise fail(f"expected {len(pattern)} elements, got {len(actual)}")
        for i, (p, v) in enumerate(zip(pattern, actual)):
            matches(p, v, names, f"{at}.{i}")
        return
    if _is_number(pattern):
        if not (_is_number(actual) and float(pattern) == float(actual)):
            raise fail(f"expected {pattern}, got {shown}")
        return
    # true, false, null: the same JSON value.
    if type(pattern) is not type(actual) or pattern != actual:
        raise fail(f"expected {json.dumps(pattern)}, got {shown}")


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIMES = ("created_at", "updated_at", "ended_at", "timestamp")
# The delivery scenarios' times besides: an attempt's start, when a
# delivery is due next, when the earliest waiting one is.
_DELIVERY_TIMES = _TIMES + ("at", "next_attempt_at", "next_due")
# A request's headers that differ between runs: the time it was signed at
# and the signature (over the id, that time and the body).
_VARYING_HEADERS = ("webhook-timestamp", "webhook-signature")
VARIES = "<varies>"


def _request_headers(v: Any) -> Any:
    """A request's ``[name, value]`` headers with the varying values masked."""
    if not isinstance(v, list):
        return v
    return [
        [h[0], VARIES]
        if isinstance(h, list) and len(h) == 2 and h[0] in _VARYING_HEADERS
        else h
        for h in v
    ]


def _masked(op: str, key: str, v: Any, delivery: bool) -> Any:
    if key in (_DELIVERY_TIMES if delivery else _TIMES) and _is_number(v):
        return "<time>"
    if key == "next_cursor" and isinstance(v, str):
        return "<cursor>"
    if delivery and key == "body" and isinstance(v, str):
        # The notification's JSON, with the times of its session and event.
        return VARIES
    if delivery and key == "headers":
        return comparable(op, _request_headers(v), delivery)
    return comparable(op, v, delivery)


def comparable(op: str, v: Any, delivery: bool = False) -> Any:
    """An outcome with what differs between runs masked (README
    "Transcripts"); ``delivery``: of a delivery scenario, where the times
    of attempts and deliveries, a request's signature headers and its body
    are masked too."""
    if op == "duration" and _is_number(v):
        return "<duration>"
    if isinstance(v, str):
        return _UUID.sub("<uuid>", v)
    if isinstance(v, list):
        return [comparable(op, x, delivery) for x in v]
    if isinstance(v, dict):
        return {_UUID.sub("<uuid>", k): _masked(op, k, x, delivery) for k, x in v.items()}
    return v


def run_scenario(
    sessions: Sessions, path: Path, wrapper: bool = False, delivery: bool = False
) -> None:
    """Run every step of the scenario at ``path``; raise AssertionError
    naming the file, step, op, expectation and outcome of the first step
    that fails. Records the transcript as it goes. ``wrapper``: a wrapper
    case (README "Wrapper cases"): ``$number`` generators, an expected
    message is the whole message, and no transcript is kept. ``delivery``:
    a delivery scenario, kept in the delivery transcript, with its
    attempts' and deliveries' times masked too."""
    scenario = json.loads(path.read_text(encoding="utf-8"))
    steps = scenario.get("steps")
    if not isinstance(steps, list):
        raise Broken(f'{path.name}: no "steps" array')
    kept = DELIVERY_TRANSCRIPTS if delivery else TRANSCRIPTS
    transcript: List[Any] = [] if wrapper else kept.setdefault(path.name, [])
    names: Dict[str, Any] = {}
    for i, step in enumerate(steps):
        op = step.get("op")
        where = f"{path.name}, step {i} ({op})"
        if not isinstance(op, str):
            raise Broken(f'{where}: no "op"')
        try:
            args = substitute(step.get("args", []), names, wrapper)
            if not isinstance(args, list):
                raise Broken('"args" is not an array')
            ok, actual = call(sessions, op, args)
        except Broken as e:
            raise AssertionError(f"{where}: {e}") from e
        transcript.append([op, comparable(op, actual, delivery)])
        expect = step.get("expect") or {}
        shown = f"{'ok' if ok else 'error'} {json.dumps(actual)}"
        if ok and "ok" in expect and "error" not in expect:
            try:
                matches(expect["ok"], actual, names)
            except (Mismatch, Broken) as e:
                raise AssertionError(
                    f"{where}: {e}\n  expected: {json.dumps(expect)}\n  actual: {shown}"
                ) from None
        elif not ok and "error" in expect and "ok" not in expect:
            if actual["error"] != expect["error"]:
                raise AssertionError(f"{where}: expected error {expect['error']}, got {shown}")
            part = expect.get("message")
            if wrapper and actual["message"] != part:
                raise AssertionError(
                    f"{where}: expected the message {json.dumps(part)}, got {shown}"
                )
            if isinstance(part, str) and part not in actual["message"]:
                raise AssertionError(
                    f"{where}: expected a message containing {json.dumps(part)}, got {shown}"
                )
        else:
            raise AssertionError(f"{where}: expected {json.dumps(expect)}, got {shown}")
        if ok and isinstance(step.get("as"), str):
            names[step["as"]] = actual


def write_transcript(out_dir: Path, delivery: bool = False) -> Path:
    """Write the transcripts of the scenarios run to ``<out_dir>/python.json``
    (``delivery``: of the delivery scenarios, to ``python-delivery.json``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / (f"{HOST}-delivery.json" if delivery else f"{HOST}.json")
    kept = DELIVERY_TRANSCRIPTS if delivery else TRANSCRIPTS
    ordered = {k: kept[k] for k in sorted(kept)}
    path.write_text(json.dumps(ordered, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path

