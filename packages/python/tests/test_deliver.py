"""The webhook sender of the Python package (``_deliver.py``, ``open_sessions(
webhooks=...)``, ``python -m agent_session.deliver``) against a real HTTP
receiver on 127.0.0.1: signatures, order, retries, the address policy at
the address dialled, redirects, 410, ``Retry-After``, timeouts. Every wait
is bounded."""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from agent_session import (
    Delivery,
    SessionError,
    Sessions,
    Webhooks,
    open_sessions,
    open_sessions_async,
)
from agent_session._deliver import Connections, Failed, Refused, Request, Response, send

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PACKAGE = Path(__file__).resolve().parents[1]
WAIT = 15.0

# What a receiver answers its n-th request (from 0) with: a status and
# headers, or HANG (no answer until the receiver closes).
Reply = Callable[[int], Tuple[int, Dict[str, str]]]
HANG: Tuple[int, Dict[str, str]] = (0, {})


class Received:
    def __init__(self, headers: Dict[str, str], body: bytes) -> None:
        self.headers = headers
        self.body = body
        self.at = time.time()

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)

    def verify(self, secret: str = SECRET) -> None:
        """The Standard Webhooks signature, checked by hand."""
        key = base64.b64decode(secret.removeprefix("whsec_"))
        signed = f"{self.id}.{self.headers['webhook-timestamp']}.".encode() + self.body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        signatures = self.headers["webhook-signature"].split()
        assert f"v1,{expected}" in signatures, (signatures, expected)


class Receiver:
    """An HTTP server on 127.0.0.1 recording every POST. HTTP/1.0 (a
    connection per request) unless ``keep_alive``: then HTTP/1.1, a
    connection closed by the receiver after ``idle_s`` without a request."""

    def __init__(self, reply: Reply, keep_alive: bool = False, idle_s: float = 10.0) -> None:
        self.requests: List[Received] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"
            timeout = idle_s

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    n = len(receiver.requests)
                    receiver.requests.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body)
                    )
                status, headers = reply(n)
                if (status, headers) == HANG:
                    receiver._release.wait(WAIT)
                    return
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def process_request(self, request: Any, client_address: Any) -> None:
                with receiver._lock:
                    receiver.connections += 1
                super().process_request(request, client_address)

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/hooks"

    def wait_for(self, n: int) -> List[Received]:
        until(lambda: len(self.requests) >= n, f"{n} requests")
        return list(self.requests)

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


def until(ok: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = ok()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(0.02)


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: List[Receiver] = []

    def make(reply: Reply, **options: Any) -> Receiver:
        r = Receiver(reply, **options)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def opened() -> Iterator[Callable[..., Sessions]]:
    """open_sessions, closed (senders stopped) after the test."""
    made: List[Sessions] = []

    def make(directory: Path, **kwargs: Any) -> Sessions:
        kwargs.setdefault("durable", False)
        kwargs.setdefault("webhook_allow", ["127.0.0.1", "localhost"])
        s = open_sessions(directory, **kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def status(code: int, **headers: str) -> Reply:
    return lambda _: (code, dict(headers))


def sender(
    allow: Sequence[str] = ("127.0.0.1",), schedule: Sequence[int] = (100,), timeout_ms: int = 5000
) -> Webhooks:
    return Webhooks(
        deliver=True,
        allow=list(allow),
        retry_schedule_ms=list(schedule),
        timeout_ms=timeout_ms,
        poll_ms=50,
    )


def hook(sessions: Sessions, url: str, *kinds: str) -> None:
    sessions.set_webhook(url=url, secret=SECRET, event_kinds=list(kinds))


def settled(sessions: Sessions, n: int) -> Tuple[Delivery, ...]:
    def done() -> Optional[Tuple[Delivery, ...]]:
        ds = sessions.deliveries()
        if len(ds) >= n and all(d.state != "pending" for d in ds):
            return ds
        return None

    return until(done, f"{n} deliveries settled")  # type: ignore[no-any-return]


def attempted(sessions: Sessions) -> Delivery:
    """The first delivery, once it has an attempt."""
    return until(  # type: ignore[no-any-return]
        lambda: next((d for d in sessions.deliveries() if d.attempts), None), "an attempt"
    )


# --- open_sessions(webhooks=...) ---


def test_a_lifecycle_arrives_once_in_order_and_signed(
    tmp_path: Path, receivers: Callable[[Reply], Receiver], opened: Callable[..., Sessions]
) -> None:
    rx = receivers(status(204))
    sessions = opened(tmp_path, webhooks=sender())
    hook(sessions, rx.url())
    s = sessions.start("lifecycle")
    sessions.iterate(s.id)
    sessions.complete(s.id, {"ok": True})

    got = rx.wait_for(2)
    ds = settled(sessions, 2)
    assert [d.state for d in ds] == ["delivered", "delivered"]
    assert [r.json()["type"] for r in got] == ["session.started", "session.completed"]
    assert all(r.json()["data"]["session"]["id"] == s.id for r in got)
    for r in got:
        r.verify()
        assert r.headers["user-agent"] == "agent-session/0.4.0"
        assert r.headers["content-type"].startswith("application/json")
    assert {r.id for r in got} == {d.id for d in ds}
    assert ds[0].attempts[0].status == 204 and not ds[0].attempts[0].refused
    # Nothing arrives twice, also after the sender stops.
    time.sleep(0.3)
    sessions.stop_delivering()
    assert len(rx.requests) == 2


def test_500_500_200_is_delivered_on_the_third_attempt_with_one_id(
    tmp_path: Path, receivers: Callable[[Reply], Receiver], opened: Callable[..., Sessions]
) -> None:
    rx = receivers(lambda n: (500 if n < 2 else 200, {}))
    sessions = opened(tmp_path, webhooks=sender(schedule=[50, 50, 50]))
    hook(sessions, rx.url(), "session.started")
    sessions.start("flaky receiver")
    (d,) = settled(sessions, 1)
    assert d.state == "delivered"
    assert [a.status for a in d.attempts] == [500, 500, 200]
    assert d.attempts[0].error is not None and "500" in d.attempts[0].error
    assert len(rx.requests) == 3
    assert {r.id for r in rx.requests} == {d.id}
    for r in rx.requests:
        r.verify()


def test_a_refused_delivery_stays_pending_and_a_sender_allowed_takes_it_over(
    tmp_path: Path, receivers: Callable[[Reply], Receiver], opened: Callable[..., Sessions]
) -> None:
    rx = receivers(status(200))
    strict = opened(tmp_path, webhooks=sender(allow=[], schedule=[3_600_000]))
    hook(strict, rx.url(), "session.started")
    strict.start("refused")
    d = attempted(strict)
    assert d.state == "pending"
    assert d.attempts[0].refused
    assert d.attempts[0].error is not None and "loopback" in d.attempts[0].error
    assert d.next_attempt_at > time.time() * 1000 + 60_000, "retried in an hour"
    assert rx.connections == 0
    strict.stop_delivering()

    # Another sender, allowed to dial it: sent at once, not in an hour.
    allowing = opened(tmp_path, webhooks=sender(allow=["127.0.0.1"], schedule=[3_600_000]))
    (d,) = settled(allowing, 1)
    assert d.state == "delivered"
    assert [(a.refused, a.status) for a in d.attempts] == [(True, None), (False, 200)]
    rx.requests[0].verify()


def test_a_name_resolving_to_loopback_is_refused_without_a_connection(
    tmp_path: Path, receivers: Callable[[Reply], Receiver], opened: Callable[..., Sessions]
) -> None:
    rx = receivers(status(200))
    # 127.0.0.1 is not allowed to this sender: the name is checked at the
    # address it resolves to.
    sessions = opened(tmp_path, webhooks=sender(allow=[], schedule=[3_600_000]))
    hook(sessions, rx.url("localhost"), "session.started")
    sessions.start("by name")
    d = attempted(sessions)
    assert (d.state, d.attempts[0].refused) == ("pending", True)
    assert d.attempts[0].error is not None and "loopback" in d.attempts[0].error
    assert rx.connections == 0


def test_a_redirect_is_an_answer_not_followed(
    tmp_path: Path, receivers: Callable[[Reply], Receiver], opened: Callable[..., Sessions]
) -> None:
    target = receivers(status(200))
    redirecting = receivers(status(302, location=target.url()))
    sessions = opened(tmp_path, webhooks=sender(schedule=[3_600_000]))
    hook(sessions, redirecting.url(), "session.started")
    sessions.start("redirected")
    d = attempted(sessions)
    assert d.state == "pending"
    assert d.attempts[0].status == 302
    assert d.attempts[0].error is not None and "not followed" in d.attempts[0].error
    assert len(redirecting.requests) == 1
    assert target.connections == 0


def test_410_fails_the_delivery_and_disables_the_endpoint(
    tmp_path: Path, receivers: Callable[[Reply], Receiver], opened: Callable[..., Sessions]
) -> None:
    rx = receivers(status(410))
    sessions = opened(tmp_path, webhooks=sender())
    hook(sessions, rx.url(), "session.started")
    sessions.start("gone")
    (d,) = settled(sessions, 1)
    assert d.state == "failed"
    assert d.reason is not None and "410" in d.reason
    config = sessions.get_webhook()
    assert config is not None and not config.enabled
    assert len(rx.requests) == 1


def test_an_empty_schedule_gives_up_after_the_first_attempt(
    tmp_path: Path, receivers: Callable[[Reply], Receiver], opened: Callable[..., Sessions]
) -> None:
    rx = receivers(status(500))
    sessions = opened(tmp_path, webhooks=sender(schedule=[]))
    hook(sessions, rx.url(), "session.started")
    sessions.start("no retries")
    (d,) = settled(sessions, 1)
    assert (d.state, [a.status for a in d.attempts]) == ("failed", [500])
    assert d.reason == "gave up after 1 attempt"


def test_retry_after_is_honoured(
    tmp_path: Path, receivers: Callable[[Reply], Receiver], opened: Callable[..., Sessions]
) -> None:
    rx = receivers(lambda n: (429, {"retry-after": "2"}) if n == 0 else (200, {}))
    # The schedule says 100 ms; the endpoint asks for 2 s.
    sessions = opened(tmp_path, webhooks=sender(schedule=[100]))
    hook(sessions, rx.url(), "session.started")
    sessions.start("busy")
    (d,) = settled(sessions, 1)
    assert [a.status for a in d.attempts] == [429, 200]
    assert d.attempts[1].at - d.attempts[0].at >= 2000


def test_a_receiver_that_never_answers_times_out(
    tmp_path: Path, receivers: Callable[[Reply], Receiver], opened: Callable[..., Sessions]
) -> None:
    rx = receivers(lambda _: HANG)
    sessions = opened(tmp_path, webhooks=sender(schedule=[3_600_000], timeout_ms=300))
    hook(sessions, rx.url(), "session.started")
    sessions.start("hung up on")
    d = attempted(sessions)
    assert d.attempts[0].error is not None and "timed out" in d.attempts[0].error
    assert 250 <= d.attempts[0].duration_ms < 3000


def test_stopping_finishes_the_attempts_in_flight(
    tmp_path: Path, receivers: Callable[[Reply], Receiver], opened: Callable[..., Sessions]
) -> None:
    answer = threading.Event()

    def slow(_: int) -> Tuple[int, Dict[str, str]]:
        answer.wait(WAIT)
        return 200, {}

    rx = receivers(slow)
    sessions = opened(tmp_path, webhooks=sender())
    hook(sessions, rx.url(), "session.started")
    sessions.start("in flight")
    rx.wait_for(1)
    threading.Timer(0.3, answer.set).start()
    started = time.monotonic()
    sessions.close()
    assert time.monotonic() - started >= 0.2, "close waited for the answer"
    (d,) = sessions.deliveries()
    assert (d.state, [a.status for a in d.attempts]) == ("delivered", [200])


def test_one_sender_per_directory(
    tmp_path: Path, receivers: Callable[[Reply], Receiver], opened: Callable[..., Sessions]
) -> None:
    rx = receivers(status(200))
    first = opened(tmp_path, webhooks=sender())
    second = opened(tmp_path, webhooks=sender())
    hook(first, rx.url())
    for i in range(5):
        s = second.start(f"s{i}")
        second.complete(s.id)
    ds = settled(first, 10)
    assert all(d.state == "delivered" for d in ds)
    time.sleep(0.3)
    assert sorted(r.id for r in rx.requests) == sorted(d.id for d in ds), "each once"
    # The second waits its turn, and delivers once the first stops.
    first.stop_delivering()
    s = first.start("after the first stopped")
    until(lambda: len(rx.requests) == 11, "the second sender's delivery")


def test_webhooks_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(SessionError) as e:
        open_sessions(tmp_path, webhooks=Webhooks(deliver=True, concurrency=0))
    assert e.value.code == "invalid-input" and "concurrency" in e.value.message
    with pytest.raises(SessionError) as e:
        open_sessions(tmp_path, webhooks=Webhooks(deliver=True, retry_schedule_ms=[-1]))
    assert e.value.code == "invalid-input"
    with pytest.raises(SessionError) as e:
        open_sessions(tmp_path, webhooks=Webhooks(deliver=True, allow=["not a rule/99"]))
    assert e.value.code == "invalid-input"
    with pytest.raises(TypeError):
        open_sessions(tmp_path, webhooks={"deliver": True})  # type: ignore[arg-type]


def test_the_async_api_delivers_too(
    tmp_path: Path, receivers: Callable[[Reply], Receiver]
) -> None:
    rx = receivers(status(200))

    async def main() -> Tuple[Delivery, ...]:
        async with await open_sessions_async(
            tmp_path, durable=False, webhook_allow=["127.0.0.1"], webhooks=sender()
        ) as sessions:
            await sessions.set_webhook(url=rx.url(), secret=SECRET, event_kinds=["session.started"])
            await sessions.start("async")
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                ds = await sessions.deliveries()
                if ds and ds[0].state == "delivered":
                    return ds
                await asyncio.sleep(0.02)
            raise AssertionError("not delivered")

    (d,) = asyncio.run(asyncio.wait_for(main(), WAIT + 5))
    assert d.attempts[0].status == 200
    rx.requests[0].verify()


# --- send ---


def request(url: str) -> Request:
    return Request(id="msg_1", url=url, headers=(("content-type", "application/json"),), body="{}")


def anything(_host: str, _address: str) -> Optional[str]:
    return None


def test_send_checks_a_literal_address_and_connects_to_none_refused(
    receivers: Callable[[Reply], Receiver],
) -> None:
    rx = receivers(status(200))
    asked: List[Tuple[str, str]] = []

    def refuse(host: str, address: str) -> Optional[str]:
        asked.append((host, address))
        return "not this one"

    _, _, answer = send(request(rx.url()), 5000, refuse)
    assert answer == Refused("not this one")
    assert asked == [("127.0.0.1", "127.0.0.1")]
    assert rx.connections == 0
    _, _, answer = send(request(rx.url()), 5000, anything)
    assert answer == Response(200, None)


def test_send_says_could_not_connect() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens there now.
    _, _, answer = send(request(f"http://127.0.0.1:{port}/"), 5000, anything)
    assert isinstance(answer, Failed) and "connect" in answer.error


def test_send_times_out_on_a_head_sent_a_byte_at_a_time() -> None:
    # Every read gets a byte within any per-read timeout: only a deadline
    # for the whole head stops it.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nx-slow: " + b"a" * 100:
                if stop.wait(0.05):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    t = threading.Thread(target=drip, daemon=True)
    t.start()
    try:
        started = time.monotonic()
        _, duration_ms, answer = send(request(f"http://127.0.0.1:{port}/"), 500, anything)
        assert isinstance(answer, Failed) and "timed out" in answer.error, answer
        assert time.monotonic() - started < 2.0
        assert 400 <= duration_ms < 2000
    finally:
        stop.set()
        t.join(5)
        listener.close()


def test_send_keeps_a_connection_for_the_next_request_checked_when_dialled(
    receivers: Callable[..., Receiver],
) -> None:
    rx = receivers(status(200), keep_alive=True)
    asked: List[str] = []

    def check(_host: str, address: str) -> Optional[str]:
        asked.append(address)
        return None

    kept = Connections()
    try:
        for _ in range(3):
            _, _, answer = send(request(rx.url()), 5000, check, kept)
            assert answer == Response(200, None)
    finally:
        kept.close()
    assert rx.connections == 1
    assert asked == ["127.0.0.1"]
    assert len(rx.requests) == 3


def test_send_keeps_no_connection_the_receiver_ends(
    receivers: Callable[..., Receiver],
) -> None:
    # HTTP/1.0: the receiver closes the connection after its answer.
    rx = receivers(status(200))
    kept = Connections()
    try:
        for _ in range(2):
            _, _, answer = send(request(rx.url()), 5000, anything, kept)
            assert answer == Response(200, None)
    finally:
        kept.close()
    assert rx.connections == 2


def test_send_dials_again_when_a_kept_connection_was_closed_or_idled(
    receivers: Callable[..., Receiver],
) -> None:
    # The receiver closes a connection idle for 0.2 s: seen before it is
    # used, so the request goes on a new one.
    rx = receivers(status(200), keep_alive=True, idle_s=0.2)
    kept = Connections()
    try:
        assert send(request(rx.url()), 5000, anything, kept)[2] == Response(200, None)
        time.sleep(0.6)
        assert send(request(rx.url()), 5000, anything, kept)[2] == Response(200, None)
        assert rx.connections == 2
    finally:
        kept.close()
    # One idle for longer than the pool keeps them is not used either.
    rx = receivers(status(200), keep_alive=True)
    kept = Connections(idle_s=0.1)
    try:
        assert send(request(rx.url()), 5000, anything, kept)[2] == Response(200, None)
        time.sleep(0.2)
        assert send(request(rx.url()), 5000, anything, kept)[2] == Response(200, None)
        assert rx.connections == 2
    finally:
        kept.close()


def test_send_keeps_no_connection_after_a_timeout(receivers: Callable[..., Receiver]) -> None:
    rx = receivers(lambda n: HANG if n == 0 else (200, {}), keep_alive=True)
    kept = Connections()
    try:
        _, _, answer = send(request(rx.url()), 300, anything, kept)
        assert isinstance(answer, Failed) and "timed out after 300 ms" in answer.error
        _, _, answer = send(request(rx.url()), 5000, anything, kept)
        assert answer == Response(200, None)
    finally:
        kept.close()
    assert rx.connections == 2


def test_send_refuses_what_is_not_an_http_url() -> None:
    _, _, answer = send(request("ftp://example.com/x"), 1000, anything)
    assert isinstance(answer, Failed)


# --- python -m agent_session.deliver ---


def cli(*args: str) -> List[str]:
    return [sys.executable, "-m", "agent_session.deliver", *args]


def cli_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE), env.get("PYTHONPATH")]))
    return env


def test_the_cli_once_prints_the_report(
    tmp_path: Path, receivers: Callable[[Reply], Receiver], opened: Callable[..., Sessions]
) -> None:
    ok = receivers(status(200))
    sessions = opened(tmp_path)
    hook(sessions, ok.url())
    s = sessions.start("from the cli")
    sessions.complete(s.id)
    sessions.close()
    out = subprocess.run(
        cli("--dir", str(tmp_path), "--allow", "127.0.0.1", "--retry-schedule", "1h",
            "--timeout", "5s", "--poll", "50ms", "--once"),
        env=cli_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"delivered": 2, "failed": 0, "discarded": 0, "pending": 0, "next_due": None}
    assert [r.json()["type"] for r in ok.requests] == ["session.started", "session.completed"]
    for r in ok.requests:
        r.verify()

    # A refusal waits (pending, due in an hour).
    s = sessions.start("refused")
    sessions.close()
    out = subprocess.run(
        cli("--dir", str(tmp_path), "--retry-schedule", "1h", "--once"),
        env=cli_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert (report["delivered"], report["pending"]) == (0, 1), report
    due = datetime.fromisoformat(report["next_due"].replace("Z", "+00:00"))
    assert due.timestamp() > time.time() + 60

    # "": no retries, a failure is given up at once. The refused one too:
    # taken over (this sender allows the address), it goes to the endpoint
    # as set now.
    failing = receivers(status(500))
    hook(sessions, failing.url())
    sessions.start("no retries")
    sessions.close()
    out = subprocess.run(
        cli("--dir", str(tmp_path), "--allow", "127.0.0.1", "--retry-schedule", "", "--once"),
        env=cli_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"delivered": 0, "failed": 2, "discarded": 0, "pending": 0, "next_due": None}


def test_the_cli_once_fails_while_another_sender_holds_the_directory(
    tmp_path: Path, opened: Callable[..., Sessions]
) -> None:
    # The sender lock is taken by the time open_sessions returns.
    opened(tmp_path, webhooks=sender())
    out = subprocess.run(
        cli("--dir", str(tmp_path), "--once"),
        env=cli_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    assert "another sender" in out.stderr
    assert out.stdout == ""


def test_the_cli_delivers_until_sigterm_and_stops_cleanly(
    tmp_path: Path, receivers: Callable[[Reply], Receiver], opened: Callable[..., Sessions]
) -> None:
    rx = receivers(status(200))
    sessions = opened(tmp_path)
    hook(sessions, rx.url())
    child = subprocess.Popen(
        cli("--dir", str(tmp_path), "--allow", "127.0.0.1", "--poll", "50ms"),
        env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        s = sessions.start("while the cli runs")
        sessions.pause(s.id)
        sessions.close()
        rx.wait_for(2)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=WAIT) == 0, child.stderr.read() if child.stderr else ""
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    ds = settled(sessions, 2)
    assert [d.state for d in ds] == ["delivered", "delivered"]
    # The lock was released: a one-pass sender may run now.
    out = subprocess.run(
        cli("--dir", str(tmp_path), "--once"),
        env=cli_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


def test_the_cli_help_and_bad_flags() -> None:
    out = subprocess.run(cli("--help"), env=cli_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for flag in ("--dir", "--allow", "--retry-schedule", "--timeout", "--concurrency", "--poll", "--once"):
        assert flag in out.stdout
    out = subprocess.run(
        cli("--dir", "x", "--timeout", "5 seconds"),
        env=cli_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "duration" in out.stderr
