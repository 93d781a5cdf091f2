"""The webhook sender of a Python process: the loop around the component's
``delivery`` interface. The component claims what is due (one sender per
root at a time, across processes and hosts, under the root's sender lock),
checks each notification's event, signs, and decides what every answer
means; this module only makes the HTTP requests and reports what came back
(``packages/node/src/deliver.js`` is this module in JavaScript):

- ``http.client``, which never follows a redirect (a 3xx is the receiver's
  answer) and uses no proxy;
- a connection that resolves the endpoint's name itself and dials only the
  addresses the component's ``check-address`` allows, so the address
  actually dialled is the one checked (a name resolving to loopback is
  refused; so is one that resolves differently on a second look);
- a deadline from the start of the request to the response head;
- connections kept alive for the next request to the same endpoint (the
  policy was applied when each was dialled; see ``Connections``).
"""

from __future__ import annotations

import atexit
import heapq
import http.client
import itertools
import logging
import math
import os
import select
import socket
import ssl
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union
from urllib.parse import urlsplit

from wasmtime.component import Variant

from ._runtime import DELIVERY, VERSION, Runtime, record
from .types import Attempt, Delivery, SessionError

#: The defaults of the Rust host's ``deliver``.
DEFAULT_TIMEOUT_MS = 15_000
DEFAULT_CONCURRENCY = 16
DEFAULT_POLL_MS = 1000
#: Looks made to pick up what this process just queued come at most this
#: often (a look lists the outbox).
KICK_MS = 10
USER_AGENT = f"agent-session/{VERSION}"
#: At most this much of a response body is read (and thrown away) before
#: the connection is closed.
_BODY_READ = 64 * 1024

log = logging.getLogger("agent_session")

# --- what a request came to (the WIT `answer`) ---


@dataclass(frozen=True)
class Request:
    """A request the component handed out: POST ``body`` to ``url`` with
    ``headers`` (the Standard Webhooks signature among them); its answer is
    recorded under ``id``."""

    id: str
    url: str
    headers: Tuple[Tuple[str, str], ...]
    body: str


@dataclass(frozen=True)
class Response:
    """An HTTP answer (a redirect is one: it is not followed)."""

    status: int
    retry_after: Optional[str]


@dataclass(frozen=True)
class Refused:
    """The address policy refused every address the endpoint's name
    resolved to: nothing was sent."""

    reason: str


@dataclass(frozen=True)
class Failed:
    """No answer: the connection failed, or the request timed out."""

    error: str


Answer = Union[Response, Refused, Failed]
#: Why ``address`` may not be dialled for ``host``, or None if it may.
CheckAddress = Callable[[str, str], Optional[str]]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- one request ---


class _Refusal(Exception):
    """The address policy refused every address: told apart from a failure
    to connect."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Deadline:
    """The time allowed for a request. A socket timeout bounds each read,
    not their sum (a receiver sending its head a byte a second would never
    time out), so the connection is shut down when the time is up (by the
    one ``_Watchdog`` thread of the process, not a timer thread per
    request); whatever fails after that is a timeout."""

    def __init__(self, timeout_ms: int) -> None:
        self.at = time.monotonic() + timeout_ms / 1000
        self._guard = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self.expired = False
        self.done = False
        _watchdog.add(self)

    def remaining(self) -> float:
        """Seconds left; raises ``TimeoutError`` when none are."""
        left = self.at - time.monotonic()
        if left <= 0 or self.expired:
            raise TimeoutError("the deadline passed")
        return left

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down when the time is up. The socket stays the
        caller's, who closes it only after :meth:`unwatch` or
        :meth:`cancel` (so that the shutdown never meets a descriptor
        reused meanwhile). A shutdown through a duplicate of the
        connection's socket ends the one connection, also once TLS has
        taken over the original or http.client has let go of it while a
        response is read."""
        with self._guard:
            if self.expired:
                raise TimeoutError("the deadline passed")
            self._sock = sock

    def unwatch(self) -> None:
        """Forget the socket watched: it may be closed now."""
        with self._guard:
            self._sock = None

    def expire(self) -> None:
        with self._guard:
            if self.done:
                return
            self.expired = True
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cancel(self) -> bool:
        """No shutdown from now on; returns whether the time ran out (the
        connection was shut down then, or is about to fail)."""
        with self._guard:
            self.done = True
            self._sock = None
            return self.expired


class _Watchdog:
    """Expires the deadlines of every request of the process, on one
    daemon thread started at the first request. Deadlines are kept in a
    heap by when they expire; a cancelled one is dropped when it comes up."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: List[Tuple[float, int, _Deadline]] = []
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def add(self, deadline: _Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._seq), deadline))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="agent-session-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is deadline:
                # Sooner than the one the thread waits for.
                self._cond.notify()

    def _run(self) -> None:
        heap = self._heap
        while True:
            with self._cond:
                while True:
                    while heap and heap[0][2].done:
                        heapq.heappop(heap)
                    if not heap:
                        self._cond.wait()
                        continue
                    left = heap[0][0] - time.monotonic()
                    if left <= 0:
                        due = heapq.heappop(heap)[2]
                        break
                    self._cond.wait(left)
            due.expire()

    def _after_fork(self) -> None:
        # The thread is not in the child: started again at its first request.
        self._cond = threading.Condition(threading.Lock())
        self._heap = []
        self._thread = None


_watchdog = _Watchdog()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_watchdog._after_fork)


class _Connection(http.client.HTTPConnection):
    """An HTTP(S) connection that resolves its host itself and dials only
    the addresses ``check_address`` allows, in the order the resolver gave
    them. ``connected`` tells a failure to connect from a later one.

    It may carry several requests one after the other (see
    ``Connections``); ``begin`` gives each its deadline, and ``discard``
    (not http.client's own ``close``, which it calls itself) ends it once
    no deadline watches it."""

    def __init__(self, host: str, port: int, tls: bool, check_address: CheckAddress) -> None:
        super().__init__(host, port)
        # The Host header leaves out the scheme's own port.
        self.default_port = 443 if tls else 80
        self._tls = tls
        self._deadline: Optional[_Deadline] = None
        self._check_address = check_address
        # A duplicate of the socket dialled, for the deadline to shut down.
        self._watch: Optional[socket.socket] = None
        self.connected = False

    def begin(self, deadline: _Deadline) -> None:
        """The next request's deadline, for each read and write and for
        the connection as a whole."""
        self._deadline = deadline
        if self.sock is not None and self._watch is not None:
            deadline.watch(self._watch)
            self.sock.settimeout(deadline.remaining())

    def connect(self) -> None:
        host = self.host
        deadline = self._deadline
        assert deadline is not None, "begin() first"
        self._drop_watch()
        try:
            found = socket.getaddrinfo(host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise OSError(f"cannot resolve {host}: {e.strerror or e}") from None
        allowed = []
        refused: Optional[str] = None
        for family, kind, proto, _, address in found:
            # A scoped IPv6 address (fe80::1%eth0) is checked without its
            # zone; it is dialled with it.
            why = self._check_address(host, str(address[0]).split("%", 1)[0])
            if why is None:
                allowed.append((family, kind, proto, address))
            elif refused is None:
                refused = why
        if not allowed:
            if refused is not None:
                raise _Refusal(refused)
            raise OSError(f"{host} resolves to no address")
        errors: List[str] = []
        sock: Optional[socket.socket] = None
        for family, kind, proto, address in allowed:
            candidate = socket.socket(family, kind, proto)
            watch: Optional[socket.socket] = None
            try:
                candidate.settimeout(deadline.remaining())
                watch = candidate.dup()
                deadline.watch(watch)
                candidate.connect(address)
            except TimeoutError:
                deadline.unwatch()
                candidate.close()
                if watch is not None:
                    watch.close()
                raise
            except OSError as e:
                deadline.unwatch()
                candidate.close()
                if watch is not None:
                    watch.close()
                if deadline.expired:
                    raise TimeoutError("the deadline passed") from None
                errors.append(f"{address[0]}: {e.strerror or e}")
                continue
            sock, self._watch = candidate, watch
            break
        if sock is None:
            raise OSError("; ".join(errors))
        # As http.client's own connections: the head and the body go in
        # two writes, and on a kept-alive connection the second would wait
        # for the receiver's delayed acknowledgement of the first.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        if self._tls:
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.connected = True

    def idle(self) -> bool:
        """Whether a connection kept after a complete response can carry
        another request: it is open, and nothing has arrived on it since
        (the receiver closing it shows as something to read)."""
        sock = self.sock
        if sock is None:
            return False
        try:
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                return False
            return not _readable(sock)
        except (OSError, ValueError):
            return False

    def _drop_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            if self._deadline is not None:
                self._deadline.unwatch()
            watch.close()

    def discard(self) -> None:
        """Close the connection for good. (http.client's own ``close``,
        which it calls itself for a response that ends the connection,
        leaves the duplicate watched: the response may still be read.)"""
        try:
            self.close()
        finally:
            self._drop_watch()


def _readable(sock: socket.socket) -> bool:
    if _poll is not None:
        p = _poll()
        p.register(sock, select.POLLIN)
        return bool(p.poll(0))
    r, _, _ = select.select([sock], [], [], 0)
    return bool(r)


_poll = getattr(select, "poll", None)

Endpoint = Tuple[str, str, int]


class Connections:
    """Kept-alive connections, by endpoint (scheme, host, port), for the
    next request to the same endpoint. A connection is kept only after a
    response read to its end and not ``Connection: close``; never after an
    error or a timeout; it is taken again only if it has been idle for less
    than ``idle_s`` (2 s, before most servers close theirs: a request on a
    connection the server just closed fails) and nothing arrived on it
    meanwhile. The address policy was applied when each was dialled."""

    def __init__(self, most: int = DEFAULT_CONCURRENCY, idle_s: float = 2.0) -> None:
        self._most = max(1, most)
        self._idle_s = idle_s
        self._guard = threading.Lock()
        self._idle: Dict[Endpoint, List[Tuple[float, _Connection]]] = {}
        self._closed = False

    def take(self, endpoint: Endpoint) -> Optional[_Connection]:
        """The most recently used idle connection to ``endpoint``, or None."""
        stale: List[_Connection] = []
        taken: Optional[_Connection] = None
        with self._guard:
            kept = self._idle.get(endpoint)
            oldest = time.monotonic() - self._idle_s
            while kept:
                since, connection = kept.pop()
                if since > oldest:
                    taken = connection
                    break
                stale.append(connection)
            if kept is not None and not kept:
                del self._idle[endpoint]
        for connection in stale:
            connection.discard()
        if taken is not None and not taken.idle():
            taken.discard()
            return self.take(endpoint)
        return taken

    def give(self, endpoint: Endpoint, connection: _Connection) -> None:
        """Keep ``connection`` (idle now) for the next request, or close it."""
        with self._guard:
            if not self._closed:
                kept = self._idle.setdefault(endpoint, [])
                if len(kept) < self._most:
                    kept.append((time.monotonic(), connection))
                    return
        connection.discard()

    def prune(self) -> None:
        """Close the connections idle for ``idle_s`` or more."""
        stale: List[_Connection] = []
        with self._guard:
            oldest = time.monotonic() - self._idle_s
            for endpoint in list(self._idle):
                kept = self._idle[endpoint]
                fresh = [(since, c) for since, c in kept if since > oldest]
                stale.extend(c for since, c in kept if since <= oldest)
                if fresh:
                    self._idle[endpoint] = fresh
                else:
                    del self._idle[endpoint]
        for connection in stale:
            connection.discard()

    def close(self) -> None:
        """Close every idle connection; none is kept from now on."""
        with self._guard:
            self._closed = True
            idle, self._idle = self._idle, {}
        for kept in idle.values():
            for _, connection in kept:
                connection.discard()


def send(
    request: Request,
    timeout_ms: int,
    check_address: CheckAddress,
    connections: Optional[Connections] = None,
) -> Tuple[int, int, Answer]:
    """Make one request; never raises. Returns when it started
    (milliseconds since the epoch), how long it took to the response head
    (or the error), and what it came to. With ``connections``, a kept-alive
    connection to the endpoint is used if there is one, and the connection
    is kept after a complete response."""
    at = _now_ms()
    started = time.monotonic()

    def took() -> int:
        return round((time.monotonic() - started) * 1000)

    try:
        url = urlsplit(request.url)
        host = url.hostname
        port = url.port
    except ValueError as e:
        return at, took(), Failed(f"{request.url} is not a URL: {e}")
    if url.scheme not in ("http", "https") or not host:
        return at, took(), Failed(f"{request.url} is not an http(s) URL")
    tls = url.scheme == "https"
    endpoint = (url.scheme, host, port or (443 if tls else 80))
    deadline = _Deadline(timeout_ms)
    connection: Optional[_Connection] = None
    keep = False
    try:
        if connections is not None:
            connection = connections.take(endpoint)
        if connection is None:
            connection = _Connection(host, endpoint[2], tls, check_address)
        connection.begin(deadline)
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        body = request.body.encode()
        connection.putrequest("POST", target, skip_accept_encoding=True)
        for name, value in request.headers:
            connection.putheader(name, value)
        connection.putheader("user-agent", USER_AGENT)
        connection.putheader("content-length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        answer: Answer = Response(response.status, response.getheader("retry-after"))
        duration = took()
        # The body is not needed; a little is read so that a receiver
        # writing it is not cut off mid-write, within the same deadline.
        try:
            response.read(_BODY_READ)
            # Read to its end, and the receiver keeps the connection open.
            keep = response.isclosed() and connection.sock is not None
        except Exception:
            pass
        return at, duration, answer
    except _Refusal as e:
        return at, took(), Refused(e.reason)
    except Exception as e:
        if deadline.expired or isinstance(e, TimeoutError):
            return at, took(), Failed(f"timed out after {timeout_ms} ms")
        if connection is None or not connection.connected:
            return at, took(), Failed(f"could not connect: {e}")
        return at, took(), Failed(f"request failed: {e or type(e).__name__}")
    finally:
        # A connection the deadline may have shut down is not kept.
        if deadline.cancel():
            keep = False
        if connection is not None:
            if keep and connections is not None:
                connections.give(endpoint, connection)
            else:
                connection.discard()


# --- the component's side ---


def delivery(r: Any) -> Delivery:
    """A WIT ``delivery`` record as the API's :class:`Delivery`."""
    return Delivery(
        id=r.id,
        session_id=getattr(r, "session-id"),
        seq=r.seq,
        kind=r.kind,
        url=r.url,
        timestamp=r.timestamp,
        state=r.state,
        next_attempt_at=getattr(r, "next-attempt-at"),
        attempts=tuple(
            Attempt(
                at=t.at,
                duration_ms=getattr(t, "duration-ms"),
                status=t.status,
                error=t.error,
                refused=t.refused,
            )
            for t in r.attempts
        ),
        reason=r.reason,
    )


@dataclass(frozen=True)
class Due:
    """What a look for due deliveries found (the WIT ``due``)."""

    requests: Tuple[Request, ...]
    settled: Tuple[Delivery, ...]
    waiting: int
    next_due: Optional[int]


def _answer(answer: Answer) -> Variant:
    if isinstance(answer, Response):
        return Variant("response", record(status=answer.status, retry_after=answer.retry_after))
    if isinstance(answer, Refused):
        return Variant("refused", answer.reason)
    return Variant("failed", answer.error)


class DeliveryCalls:
    """The component's ``delivery`` functions on one :class:`Runtime`, with
    the API's values."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def _call(self, name: str, *args: Any) -> Any:
        result = self._runtime.call_in(DELIVERY, name, *args)
        if isinstance(result, Variant):
            raise SessionError(result.tag, str(result.payload))
        return result

    def start_sending(self, schedule_ms: Optional[Sequence[int]], allow: Sequence[str]) -> bool:
        schedule = None if schedule_ms is None else list(schedule_ms)
        return bool(self._call("start-sending", record(schedule_ms=schedule, allow=list(allow))))

    def claim_due(self, due_by: int, limit: int) -> Due:
        d = self._call("claim-due", max(0, due_by), limit)
        return Due(
            requests=tuple(
                Request(id=r.id, url=r.url, headers=tuple((k, v) for k, v in r.headers), body=r.body)
                for r in d.requests
            ),
            settled=tuple(delivery(s) for s in d.settled),
            waiting=d.waiting,
            next_due=getattr(d, "next-due"),
        )

    def check_address(self, host: str, address: str) -> Optional[str]:
        # result<_, string>: wasmtime-py gives None for ok, the string for err.
        why = self._runtime.call_in(DELIVERY, "check-address", host, address)
        return None if why is None else str(why)

    def record_answer(self, id: str, at: int, duration_ms: int, answer: Answer) -> Delivery:
        return delivery(self._call("record-answer", id, at, max(0, duration_ms), _answer(answer)))

    def stop_sending(self) -> None:
        self._runtime.call_in(DELIVERY, "stop-sending")

    def deliveries(self) -> Tuple[Delivery, ...]:
        return tuple(delivery(d) for d in self._call("deliveries"))

    def close(self) -> None:
        self._runtime.close()


# --- the loop ---


def empty_report() -> Dict[str, Any]:
    """What a pass did, as the Rust host's ``deliver --once --json`` says."""
    return {"delivered": 0, "failed": 0, "discarded": 0, "pending": 0, "next_due": None}


def _count(report: Dict[str, Any], d: Delivery) -> None:
    if d.state in ("delivered", "failed", "discarded"):
        report[d.state] += 1


Done = Tuple[Request, int, int, Answer]


class Deliverer:
    """The sender loop over the ``delivery`` functions of an instance of
    its own (``calls``; see ``sessions._open_deliverer`` for why its own).

    One background thread makes every call that changes what the instance
    holds (start-sending, claim-due, record-answer, stop-sending); the
    requests run on a pool of ``concurrency`` threads, which ask
    ``check-address`` (calls into the component are serialized per
    process, so that is safe). ``once`` runs a pass on the caller's thread
    instead, for a sender that is not running.
    """

    def __init__(
        self,
        calls: DeliveryCalls,
        *,
        allow: Sequence[str] = (),
        retry_schedule_ms: Optional[Sequence[int]] = None,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        concurrency: int = DEFAULT_CONCURRENCY,
        poll_ms: int = DEFAULT_POLL_MS,
    ) -> None:
        self._calls = calls
        self._allow = list(allow)
        # None: the component's default; empty: no retries.
        self._schedule_ms = None if retry_schedule_ms is None else list(retry_schedule_ms)
        self._timeout_ms = timeout_ms
        self._concurrency = max(1, concurrency)
        self._poll = poll_ms / 1000
        self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="agent-session-send")
        self._connections = Connections(self._concurrency)
        self._in_flight: Set["Future[Done]"] = set()
        self._sending = False
        self._cond = threading.Condition()
        self._stopping = False
        self._stopped = False
        self._stop_guard = threading.Lock()
        self._wake_at = math.inf
        self._last_look = -math.inf
        self._thread: Optional[threading.Thread] = None

    # -- becoming the sender --

    def acquire(self) -> bool:
        """Become the root's sender: True, or False while another process is."""
        if not self._sending:
            self._sending = self._calls.start_sending(self._schedule_ms, self._allow)
        return self._sending

    # -- running --

    def run(self) -> None:
        """Deliver until :meth:`stop`: what is due, what any process queues
        (looked for every ``poll_ms``), retries when due; waits its turn
        while another process is the root's sender. The thread is a daemon:
        it does not keep the process alive, but at exit the attempts in
        flight are finished and recorded (the pool's threads are joined
        first, then ``stop`` runs from ``atexit``)."""
        if self._thread is not None or self._stopping:
            return
        self._wake_at = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="agent-session-deliver", daemon=True)
        self._thread.start()
        atexit.register(self.stop)

    def kick(self) -> None:
        """Look soon: something may just have been queued by this process."""
        with self._cond:
            if not self._sending or self._stopping or self._thread is None:
                return
            at = max(time.monotonic(), self._last_look + KICK_MS / 1000)
            if at < self._wake_at:
                self._wake_at = at
                self._cond.notify()

    def _schedule(self, seconds: float) -> None:
        with self._cond:
            self._wake_at = min(self._wake_at, time.monotonic() + max(0.0, seconds))

    def _finished(self) -> List["Future[Done]"]:
        return [f for f in self._in_flight if f.done()]

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not (self._stopping or self._finished()):
                    left = self._wake_at - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(None if math.isinf(left) else left)
                stopping = self._stopping
            finished = self._finished()
            for f in finished:
                self._record(f)
            if stopping:
                break
            if finished:
                # The next notification of their sessions may go now;
                # looked for a few at a time while many are in flight (a
                # look costs something of its own besides its deliveries).
                busy = len(self._in_flight) > self._concurrency // 2
                self._schedule(0.002 if busy else 0)
            if time.monotonic() >= self._wake_at:
                self._look()
        # Stopping: what is in flight is finished and recorded first.
        for f in list(self._in_flight):
            f.exception()  # waits; `send` itself never raises
            self._record(f)
        self._release()

    def _look(self) -> None:
        with self._cond:
            # A kick from now on asks for another look.
            self._wake_at = math.inf
        next_look = self._poll
        # Kept-alive connections idle too long are closed (looked at least
        # every poll).
        self._connections.prune()
        try:
            if not self.acquire():
                self._schedule(next_look)
                return
            self._last_look = time.monotonic()
            room = self._concurrency - len(self._in_flight)
            if room > 0:
                due = self._calls.claim_due(_now_ms(), room)
                for request in due.requests:
                    self._attempt(request)
                if due.next_due is not None:
                    next_look = min(next_look, max(0, due.next_due - _now_ms()) / 1000)
        except SessionError as e:
            # Looked at again at the next poll (the disk may be full); what
            # is in flight goes on.
            log.warning("agent-session: delivering webhooks: %s", e)
        except Exception as e:
            # A trap dropped the instance, and with it the sender lock:
            # taken again at the next look. The attempts in flight are
            # made again by the claims.
            self._sending = False
            log.warning("agent-session: delivering webhooks: %s", e)
        self._schedule(next_look)

    def _attempt(self, request: Request) -> None:
        def make() -> Done:
            at, duration_ms, answer = send(
                request, self._timeout_ms, self._calls.check_address, self._connections
            )
            return request, at, duration_ms, answer

        try:
            future = self._pool.submit(make)
        except RuntimeError:
            # The interpreter is exiting (its pools take nothing new): not
            # made, so the next sender makes it.
            return
        self._in_flight.add(future)
        future.add_done_callback(self._wake)

    def _wake(self, _: "Future[Done]") -> None:
        with self._cond:
            self._cond.notify()

    def _record(self, future: "Future[Done]", report: Optional[Dict[str, Any]] = None) -> None:
        self._in_flight.discard(future)
        try:
            request, at, duration_ms, answer = future.result()
        except BaseException as e:  # not made (the pool was shut down at exit)
            log.warning("agent-session: a webhook request was not made: %s", e)
            return
        try:
            d = self._calls.record_answer(request.id, at, duration_ms, answer)
        except Exception as e:
            # Handed out again by the claims, to be attempted when due.
            log.warning("agent-session: recording delivery %s: %s", request.id, e)
            return
        if report is not None:
            _count(report, d)

    # -- one pass --

    def once(self) -> Dict[str, Any]:
        """Attempt what is due now, wait for those attempts, and report (as
        ``agent-session deliver --once --json``): ``delivered``,
        ``failed``, ``discarded``, ``pending`` and ``next_due``. Raises
        ``SessionError('conflict')`` while another process is the root's
        sender."""
        if self._thread is not None or self._stopping:
            raise RuntimeError("once() is for a sender that is not running")
        if not self.acquire():
            raise SessionError("conflict", "another sender is delivering from this root")
        report = empty_report()
        # What falls due after the pass began (a retry) waits for the next.
        due_by = _now_ms()
        # The calls into the component, one at a time, are what limits a
        # pass. So the next claim waits until a few slots are free (a claim
        # costs something of its own besides its deliveries), unless there
        # is nothing to record meanwhile.
        batch = max(1, self._concurrency // 4)
        while True:
            room = self._concurrency - len(self._in_flight)
            if room > 0:
                due = self._calls.claim_due(due_by, room)
                for d in due.settled:
                    _count(report, d)
                for request in due.requests:
                    self._attempt(request)
            if not self._in_flight:
                break
            # Recorded as they finish: a finished attempt may let the next
            # of its session go.
            recorded = 0
            while self._in_flight:
                done = next((f for f in self._in_flight if f.done()), None)
                if done is not None:
                    self._record(done, report)
                    recorded += 1
                    if len(self._in_flight) <= self._concurrency - batch:
                        break
                elif recorded:
                    break
                else:
                    wait(self._in_flight, return_when=FIRST_COMPLETED)
        left = self._calls.claim_due(due_by, 0)
        report["pending"] = left.waiting
        # RFC 3339, as every host's `deliver --once` says it.
        report["next_due"] = (
            None
            if left.next_due is None
            else datetime.fromtimestamp(left.next_due / 1000, timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        return report

    # -- stopping --

    def stop(self) -> None:
        """Stop: no new looks; the attempts in flight are finished and
        recorded first (each within the request timeout), then the root's
        sender lock is released and the instance closed. Idempotent."""
        with self._stop_guard:
            if self._stopped:
                return
            with self._cond:
                self._stopping = True
                self._cond.notify()
            atexit.unregister(self.stop)
            if self._thread is not None:
                self._thread.join()
            else:
                for f in list(self._in_flight):
                    f.exception()
                    self._record(f)
                self._release()
            self._stopped = True

    def _release(self) -> None:
        try:
            if self._sending:
                self._calls.stop_sending()
        except Exception as e:
            log.warning("agent-session: releasing the webhook sender lock: %s", e)
        finally:
            self._sending = False
            self._pool.shutdown(wait=False)
            self._connections.close()
            # The sender lock goes with the instance in any case.
            self._calls.close()
