"""The ``store`` and ``notify`` capabilities over PostgreSQL, for the session
component (``agent_session_guest.wasm``, world ``session-component``), so
that Python keeps its sessions in the same database, tables and rows as
the Rust host (``agent-session --store postgres://...``).

MIRROR OF THE RUST HOST: every statement below mirrors
``host/src/pg_store.rs`` (the tables ``agent_session_keys``,
``agent_session_log``, ``agent_session_documents``, the schema version in
``agent_session_schema``) and ``host/src/outbox/pg.rs`` (the insert into
``agent_session_outbox`` and the writer's advisory lock). They must change
with them: when ``SCHEMA_VERSION`` there changes, change it here and the
statements with it (``tests/test_postgres.py`` fails until both agree).

This module never creates or migrates the schema: a database whose schema
version is not :data:`SCHEMA_VERSION` is refused, and the Rust CLI makes
it (``agent-session --store URL list`` once). It only implements the
imports; every decision (positions, conflicts, snapshots, notifications)
is the component's, as in the Rust host.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Callable, Dict, List, Optional, Sequence

from wasmtime.component import Record, Variant

from ._values import Err
from .types import SessionError

#: The schema this package reads and writes: ``SCHEMA_VERSION`` of
#: ``host/src/pg_store.rs``.
SCHEMA_VERSION = 3

PACKAGE = "agent:session"
VERSION = "0.4.0"
STORE = f"{PACKAGE}/store@{VERSION}"
NOTIFY = f"{PACKAGE}/notify@{VERSION}"

# The names and sizes the Rust stores accept (dir-store's `name` and
# `MAX_RECORD`), so data moves between them.
MAX_NAME = 64
MAX_RECORD = 64 * 1024 * 1024
_NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")

_I64_MAX = (1 << 63) - 1
#: How long opening a connection may take (pg_store.rs's CONNECT_TIMEOUT).
CONNECT_TIMEOUT_S = 10


def is_url(store: Any) -> bool:
    """Whether ``store`` names a PostgreSQL database (not a directory)."""
    return isinstance(store, str) and store.startswith(("postgres://", "postgresql://"))


def redact(url: str) -> str:
    """``url`` without its password, for messages (as pg_store.rs's ``redact``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = len(rest)
    for c in "/?":
        i = rest.find(c)
        if i != -1:
            end = min(end, i)
    authority = rest[:end]
    at = authority.rfind("@")
    if at == -1:
        return url
    user, colon, _ = authority[:at].partition(":")
    if not colon:
        return url
    return f"{scheme}://{user}:***@{rest[at + 1:]}"


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise SessionError(
            "storage",
            "PostgreSQL needs psycopg 3: pip install 'agent-session[postgres]' "
            "(or pip install 'psycopg[binary]')",
        ) from None
    return psycopg


class StoreFailure(Exception):
    """A ``store-error``: ``code`` is its case."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _record(**fields: Any) -> Record:
    r = Record()
    for name, value in fields.items():
        setattr(r, name.replace("_", "-"), value)
    return r


def _name(what: str, s: str) -> None:
    b = s.encode("utf-8", "surrogatepass")
    if not b or len(b) > MAX_NAME or not all(c in _NAME_BYTES for c in b):
        raise StoreFailure(
            "invalid-key",
            f"{what} {s[:80]!r} is not a valid name (1 to {MAX_NAME} of A-Z a-z 0-9 - _)",
        )


def _names(c: str, k: str) -> None:
    _name("collection", c)
    _name("key", k)


def _signed(n: int) -> int:
    if n > _I64_MAX:
        raise StoreFailure("invalid-key", f"position {n} is out of range")
    return n


def _nonempty(b: bytes) -> Optional[bytes]:
    return b if b else None


def schema_version(conn: Any) -> int:
    """The schema version of the database, 0 before the Rust host made it."""
    exists = conn.execute("SELECT to_regclass('agent_session_schema') IS NOT NULL").fetchone()[0]
    if not exists:
        return 0
    row = conn.execute("SELECT version FROM agent_session_schema").fetchone()
    return 0 if row is None else int(row[0])


class PgStore:
    """The ``store`` and ``notify`` imports on one database: a connection
    for the store, and one for the outbox writer (holding the advisory lock
    that says this writer lives), both opened when first needed again after
    :meth:`release_locks`.

    ``durable=False`` commits asynchronously (``synchronous_commit = off``);
    ``lock_timeout_ms`` bounds the wait for a row another writer holds
    (``lock_timeout``), past which the call is a ``conflict``.
    """

    def __init__(self, url: str, durable: bool = True, lock_timeout_ms: Optional[float] = None) -> None:
        self._pg = _psycopg()
        self.url = url
        self.path = redact(url)
        self._durable = durable
        self._lock_timeout_ms = lock_timeout_ms
        self._conn: Any = None
        self._writer: Any = None
        self._writer_name = ""
        conn = self._db()
        found = schema_version(conn)
        if found != SCHEMA_VERSION:
            self.close()
            newer = (
                "; this package knows version "
                f"{SCHEMA_VERSION} only: use a matching agent-session package"
                if found > SCHEMA_VERSION
                else f"; this package needs version {SCHEMA_VERSION} and does not create or "
                "migrate it: run `agent-session --store URL list` once with the Rust CLI "
                "(it creates and migrates the schema)"
            )
            raise SessionError(
                "storage",
                f"the database {self.path} has agent-session schema version {found}{newer}",
            )

    # --- connections ---

    def _connect(self) -> Any:
        try:
            # Bounded, as the Rust host's pool is (10 s), unless the URL says.
            extra = {} if "connect_timeout" in self.url else {"connect_timeout": CONNECT_TIMEOUT_S}
            conn = self._pg.connect(self.url, autocommit=True, **extra)
        except self._pg.Error as e:
            raise StoreFailure("io", f"connecting to {self.path}: {e}") from None
        if not self._durable:
            conn.execute("SET synchronous_commit = off")
        if self._lock_timeout_ms is not None:
            conn.execute(f"SET lock_timeout = {max(1, int(self._lock_timeout_ms))}")
        return conn

    def _db(self) -> Any:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = None
            self._conn = self._connect()
        return self._conn

    def release_locks(self) -> None:
        """Close the connections (and so end this writer); reopened when needed."""
        for conn in (self._conn, self._writer):
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
        self._conn = self._writer = None

    def close(self) -> None:
        self.release_locks()

    def _error(self, what: str, e: Exception) -> StoreFailure:
        errors = self._pg.errors
        if isinstance(e, (errors.UniqueViolation, errors.SerializationFailure)):
            return StoreFailure("conflict", f"{what}: another writer was first")
        if isinstance(e, errors.LockNotAvailable):
            return StoreFailure("conflict", f"{what}: another writer holds it (lock_timeout)")
        if isinstance(e, (errors.DiskFull, errors.ProgramLimitExceeded)):
            return StoreFailure("full", f"{what}: {e}")
        return StoreFailure("io", f"{what}: {e}")

    def _length_for_update(self, conn: Any, c: str, k: str) -> Optional[int]:
        row = conn.execute(
            "SELECT length FROM agent_session_keys WHERE collection = %s AND key = %s FOR UPDATE",
            (c, k),
        ).fetchone()
        return None if row is None else int(row[0])

    # --- store ---

    def append(self, c: str, k: str, seq: int, records: Sequence[bytes], summary: bytes) -> None:
        _names(c, k)
        for r in records:
            if len(r) > MAX_RECORD:
                raise StoreFailure(
                    "full", f"a record of {len(r)} bytes for {c}/{k} is larger than {MAX_RECORD}"
                )
        what = f"appending to {c}/{k}"
        conn = self._db()
        try:
            with conn.transaction():
                length = self._length_for_update(conn, c, k)
                if length is not None and length != seq:
                    raise StoreFailure("conflict", f"{c}/{k} holds {length} records, not {seq}")
                if length is None and seq != 0:
                    raise StoreFailure("conflict", f"{c}/{k} holds no records, not {seq}")
                end = _signed(seq + len(records))
                # A new key's row is inserted, not upserted: of two writers
                # creating it at once, the second meets the primary key.
                if length is None:
                    sql = (
                        "INSERT INTO agent_session_keys (collection, key, length, summary) "
                        "VALUES (%s, %s, %s, %s)"
                    )
                else:
                    sql = (
                        "UPDATE agent_session_keys SET length = %s, summary = %s "
                        "WHERE collection = %s AND key = %s"
                    )
                params = (c, k, end, _nonempty(summary)) if length is None else (end, _nonempty(summary), c, k)
                conn.execute(sql, params)
                conn.execute(
                    "INSERT INTO agent_session_log (collection, key, seq, record) "
                    "SELECT %s, %s, p, r FROM unnest(%s::bigint[], %s::bytea[]) AS t (p, r)",
                    (c, k, list(range(seq, end)), [bytes(r) for r in records]),
                )
        except StoreFailure:
            raise
        except self._pg.Error as e:
            raise self._error(what, e) from None

    def read(self, c: str, k: str, from_: int, limit: int) -> List[bytes]:
        _names(c, k)
        try:
            rows = self._db().execute(
                "SELECT record FROM agent_session_log "
                "WHERE collection = %s AND key = %s AND seq >= %s ORDER BY seq LIMIT %s",
                (c, k, _signed(from_), limit),
                binary=True,
            ).fetchall()
        except self._pg.Error as e:
            raise self._error(f"reading {c}/{k}", e) from None
        return [bytes(r[0]) for r in rows]

    def scan(self, c: str, after: Optional[str], limit: int) -> List[Record]:
        _name("collection", c)
        try:
            rows = self._db().execute(
                "SELECT key, summary FROM agent_session_keys "
                "WHERE collection = %s AND summary IS NOT NULL AND (%s::text IS NULL OR key < %s) "
                "ORDER BY key DESC LIMIT %s",
                (c, after, after, limit),
                binary=True,
            ).fetchall()
        except self._pg.Error as e:
            raise self._error(f"scanning the index of {c}", e) from None
        return [_record(key=r[0], summary=bytes(r[1])) for r in rows]

    def reindex(self, c: str, k: str, summary: bytes) -> None:
        _names(c, k)
        # Only a key with a history has an index entry; an empty summary
        # takes the key out of the index.
        try:
            changed = self._db().execute(
                "UPDATE agent_session_keys SET summary = %s "
                "WHERE collection = %s AND key = %s AND length > 0",
                (_nonempty(summary), c, k),
            ).rowcount
        except self._pg.Error as e:
            raise self._error(f"indexing {c}/{k}", e) from None
        if changed == 0 and summary:
            raise StoreFailure("conflict", f"{c}/{k} has no log to index")

    def keys(self, c: str, after: Optional[str], limit: int) -> List[str]:
        _name("collection", c)
        try:
            rows = self._db().execute(
                "SELECT key FROM agent_session_keys "
                "WHERE collection = %s AND length > 0 AND (%s::text IS NULL OR key < %s) "
                "ORDER BY key DESC LIMIT %s",
                (c, after, after, limit),
            ).fetchall()
        except self._pg.Error as e:
            raise self._error(f"listing {c}", e) from None
        return [r[0] for r in rows]

    def get(self, c: str, k: str) -> Optional[Record]:
        _names(c, k)
        try:
            row = self._db().execute(
                "SELECT version, data FROM agent_session_documents WHERE collection = %s AND key = %s",
                (c, k),
                binary=True,
            ).fetchone()
        except self._pg.Error as e:
            raise self._error(f"reading the document of {c}/{k}", e) from None
        return None if row is None else _record(version=int(row[0]), data=bytes(row[1]))

    def put(self, c: str, k: str, data: bytes, expected: int, durable: bool) -> int:
        _names(c, k)
        if len(data) > MAX_RECORD:
            raise StoreFailure(
                "full", f"a document of {len(data)} bytes for {c}/{k} is larger than {MAX_RECORD}"
            )
        what = f"writing the document of {c}/{k}"
        conn = self._db()
        try:
            with conn.transaction():
                if not durable:
                    conn.execute("SET LOCAL synchronous_commit = off")
                    # A snapshot written late, after its key was removed,
                    # must not bring the key back.
                    if self._length_for_update(conn, c, k) is None:
                        raise StoreFailure(
                            "conflict",
                            f"{c}/{k} does not exist; a non-durable document never creates it",
                        )
                version = _signed(expected + 1)
                if expected == 0:
                    changed = conn.execute(
                        "INSERT INTO agent_session_documents (collection, key, version, data) "
                        "VALUES (%s, %s, 1, %s) ON CONFLICT DO NOTHING",
                        (c, k, bytes(data)),
                    ).rowcount
                else:
                    changed = conn.execute(
                        "UPDATE agent_session_documents SET version = %s, data = %s "
                        "WHERE collection = %s AND key = %s AND version = %s",
                        (version, bytes(data), c, k, _signed(expected)),
                    ).rowcount
                if changed != 1:
                    raise StoreFailure(
                        "conflict", f"the document of {c}/{k} is not at version {expected}"
                    )
        except StoreFailure:
            raise
        except self._pg.Error as e:
            raise self._error(what, e) from None
        return expected + 1

    def remove(self, c: str, k: str, expected_length: int) -> None:
        _names(c, k)
        conn = self._db()
        try:
            with conn.transaction():
                n = self._length_for_update(conn, c, k)
                if n is not None and n != expected_length:
                    raise StoreFailure("conflict", f"{c}/{k} holds {n} records, not {expected_length}")
                for table in ("agent_session_log", "agent_session_documents", "agent_session_keys"):
                    conn.execute(f"DELETE FROM {table} WHERE collection = %s AND key = %s", (c, k))
        except StoreFailure:
            raise
        except self._pg.Error as e:
            raise self._error(f"removing {c}/{k}", e) from None

    # --- notify (outbox/pg.rs) ---

    def _new_writer(self) -> None:
        conn = self._connect()
        while True:
            # Random keys; in the unlikely case one is taken, another.
            key = int.from_bytes(secrets.token_bytes(8), "little", signed=True)
            if conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                break
        self._writer, self._writer_name = conn, f"pg-{key}"

    def enqueue(self, n: Any) -> None:
        nid = getattr(n, "id")
        if not nid or not all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in nid):
            raise ValueError(f"notification id {nid!r} is not a safe name (letters, digits, - and _)")
        timestamp = int(getattr(n, "timestamp"))
        seq = int(getattr(n, "seq"))
        notification = {
            "id": nid,
            "session_id": getattr(n, "session-id"),
            "seq": seq,
            "url": getattr(n, "url"),
            "secret": getattr(n, "secret"),
            "kind": getattr(n, "kind"),
            "timestamp": timestamp,
            "body": getattr(n, "body"),
        }
        raised = min(timestamp, _I64_MAX)
        # Through the writer's own connection, holding its lock; a broken
        # connection gets a new writer, once.
        for attempt in range(2):
            if self._writer is None or self._writer.closed or self._writer.broken:
                self._writer = None
                self._new_writer()
            # Delivery::queued_by's serde form.
            record = json.dumps(
                {
                    "notification": notification,
                    "state": "pending",
                    "next_attempt_at": timestamp,
                    "attempts": [],
                    "reason": None,
                    "writer": self._writer_name,
                },
                separators=(",", ":"),
                ensure_ascii=False,
            )
            try:
                self._writer.execute(
                    "INSERT INTO agent_session_outbox "
                    "(id, raised, state, next_attempt_at, record, session_id, seq) "
                    "VALUES (%s, %s, 'pending', %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                    (nid, raised, raised, record, notification["session_id"], min(seq, _I64_MAX)),
                )
                return
            except self._pg.OperationalError:
                if attempt == 0 and (self._writer.closed or self._writer.broken):
                    continue
                raise


def store_imports(store: PgStore) -> Dict[str, Dict[str, Callable[..., Any]]]:
    """Host functions of ``interface store`` and ``interface notify`` over
    ``store``, by interface and WIT name. Every failure is returned as the
    function's error (an exception would trap the component)."""

    def host(fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(_ctx: Any, *args: Any) -> Any:
            try:
                return fn(*args)
            except StoreFailure as e:
                return Err(Variant(e.code, e.message))
            except Exception as e:
                return Err(Variant("io", f"{store.path}: {type(e).__name__}: {e}"))

        return call

    def enqueue(_ctx: Any, n: Any) -> Any:
        try:
            store.enqueue(n)
            return None
        except Exception as e:
            return Err(f"queueing a notification: {e}")

    return {
        STORE: {
            "append": host(store.append),
            "read": host(store.read),
            "scan": host(store.scan),
            "reindex": host(store.reindex),
            "keys": host(store.keys),
            "get": host(store.get),
            "put": host(store.put),
            "remove": host(store.remove),
        },
        NOTIFY: {"enqueue": enqueue},
    }
