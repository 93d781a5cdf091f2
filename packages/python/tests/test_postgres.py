"""The Python host on PostgreSQL: the session component
(``agent_session_guest.wasm``) with ``store`` and ``notify`` in Python
(``agent_session/_postgres.py``), on the Rust host's tables.

Needs a server: ``AGENT_SESSION_TEST_POSTGRES`` (a URL whose user may
create databases; ``scripts/test.sh`` sets it). Without it these tests
fail, they do not skip. Each run makes a database of its own, its schema
made by the Rust CLI (``$AGENT_SESSION_CLI``, else
``target/release/agent-session``), and drops it at the end."""

import json
import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator, List

import psycopg
import pytest

from agent_session import Key, SessionError, TypedValue, Webhooks, open_sessions
from agent_session import _postgres
from agent_session.langgraph import AgentSessionSaver
from agent_session.openai_agents import AgentSession
from test_langgraph_conformance import run_conformance

REPO = Path(__file__).resolve().parents[3]
PG_STORE_RS = REPO / "host" / "src" / "pg_store.rs"
MiB = 1024 * 1024


def _server() -> str:
    url = os.environ.get("AGENT_SESSION_TEST_POSTGRES")
    if not url:
        pytest.fail(
            "AGENT_SESSION_TEST_POSTGRES is not set: the PostgreSQL tests need a server "
            "(scripts/test.sh starts one and sets it)"
        )
    return url


def _cli() -> str:
    cli = os.environ.get("AGENT_SESSION_CLI") or str(REPO / "target" / "release" / "agent-session")
    if not Path(cli).is_file():
        pytest.fail(f"the Rust CLI {cli} is not built (cargo build --release -p agent-session-host)")
    return cli


def _database_url(server: str, name: str) -> str:
    base, sep, query = server.partition("?")
    head = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    return f"{head}/{name}{sep}{query}"


def _create_database(prefix: str) -> str:
    server = _server()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True, connect_timeout=10) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop_database(name: str) -> None:
    with psycopg.connect(_server(), autocommit=True, connect_timeout=10) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cli(url: str, *args: str) -> Any:
    """The Rust CLI on ``url`` with ``--json``: its parsed output."""
    done = subprocess.run(
        [_cli(), "--store", url, "--json", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return json.loads(done.stdout) if done.stdout.strip() else None


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """A fresh database for this module, its schema made by the Rust CLI."""
    name = _create_database("agent_session_py")
    try:
        u = _database_url(_server(), name)
        cli(u, "list")
        yield u
    finally:
        _drop_database(name)


def test_the_schema_version_is_the_rust_hosts() -> None:
    found = re.findall(r"pub const SCHEMA_VERSION: i32 = (\d+);", PG_STORE_RS.read_text())
    assert len(found) == 1, "SCHEMA_VERSION is no longer declared as expected in pg_store.rs"
    assert int(found[0]) == _postgres.SCHEMA_VERSION, (
        "host/src/pg_store.rs changed its schema version: change agent_session/_postgres.py "
        "(its statements and SCHEMA_VERSION) with it"
    )


def test_a_database_without_the_schema_is_refused_and_left_alone() -> None:
    name = _create_database("agent_session_py_bare")
    try:
        bare = _database_url(_server(), name)
        with pytest.raises(SessionError) as e:
            open_sessions(bare)
        assert e.value.code == "storage"
        assert "schema version 0" in e.value.message
        assert "agent-session --store URL list" in e.value.message
        with psycopg.connect(bare, autocommit=True) as c:
            tables = c.execute(
                "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'agent_session%%'"
            ).fetchone()[0]
            assert tables == 0, "Python must not create the schema"
            # Another version than the package's (as a newer Rust host would
            # leave it) is refused too.
            c.execute("CREATE TABLE agent_session_schema (id int PRIMARY KEY, version int NOT NULL)")
            c.execute("INSERT INTO agent_session_schema VALUES (1, %s)", (_postgres.SCHEMA_VERSION + 1,))
        with pytest.raises(SessionError) as e:
            open_sessions(bare)
        assert f"schema version {_postgres.SCHEMA_VERSION + 1}" in e.value.message
    finally:
        _drop_database(name)


def test_an_unreachable_server_is_a_storage_error_naming_it_without_the_password() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SessionError) as e:
        open_sessions(f"postgres://ann:s3cret@127.0.0.1:{port}/db?connect_timeout=5")
    assert e.value.code == "storage"
    assert f"postgres://ann:***@127.0.0.1:{port}/db" in e.value.message
    assert "s3cret" not in e.value.message


def test_the_password_is_left_out_of_messages() -> None:
    assert _postgres.redact("postgres://ann:s3cret@h1:5432,h2/db?sslmode=require") == (
        "postgres://ann:***@h1:5432,h2/db?sslmode=require"
    )
    assert _postgres.redact("postgres://ann@h/db") == "postgres://ann@h/db"


def test_the_store_keeps_the_rust_stores_rules(url: str) -> None:
    """The import's semantics, called directly: positions, versions,
    conflicts, the index, as pg_store.rs has them."""
    store = _postgres.PgStore(url)
    fail = _postgres.StoreFailure
    try:
        store.append("pytest", "k1", 0, [b"a", b"b"], b"sum")
        with pytest.raises(fail) as e:
            store.append("pytest", "k1", 0, [b"x"], b"")
        assert e.value.code == "conflict" and "holds 2 records, not 0" in e.value.message
        with pytest.raises(fail) as e:
            store.append("pytest", "k2", 3, [b"x"], b"")
        assert e.value.code == "conflict"
        store.append("pytest", "k1", 2, [b"c"], b"sum2")
        assert store.read("pytest", "k1", 1, 10) == [b"b", b"c"]
        assert store.read("pytest", "absent", 0, 10) == []
        store.append("pytest", "k0", 0, [b"z"], b"")  # no summary: not in the index
        assert [(r.key, r.summary) for r in store.scan("pytest", None, 10)] == [("k1", b"sum2")]
        assert store.keys("pytest", None, 10) == ["k1", "k0"]
        assert store.keys("pytest", "k1", 10) == ["k0"]
        store.reindex("pytest", "k0", b"s0")
        assert [r.key for r in store.scan("pytest", None, 10)] == ["k1", "k0"]
        with pytest.raises(fail) as e:
            store.reindex("pytest", "nobody", b"s")
        assert e.value.code == "conflict"
        assert store.put("pytest", "k1", b"doc", 0, True) == 1
        with pytest.raises(fail) as e:
            store.put("pytest", "k1", b"doc", 0, True)
        assert e.value.code == "conflict"
        assert store.put("pytest", "k1", b"doc2", 1, False) == 2
        got = store.get("pytest", "k1")
        assert (got.version, got.data) == (2, b"doc2")
        with pytest.raises(fail) as e:
            store.put("pytest", "gone", b"late snapshot", 0, False)
        assert e.value.code == "conflict"
        with pytest.raises(fail) as e:
            store.remove("pytest", "k1", 2)
        assert e.value.code == "conflict"
        store.remove("pytest", "k1", 3)
        assert store.get("pytest", "k1") is None and store.read("pytest", "k1", 0, 10) == []
        store.remove("pytest", "never", 0)
        with pytest.raises(fail) as e:
            store.read("pytest", "../x", 0, 1)
        assert e.value.code == "invalid-key"
    finally:
        store.close()


def test_lifecycle_keys_and_items(url: str) -> None:
    with open_sessions(url) as sessions:
        s = sessions.start("write the parser", mode="developer", context={"repo": "x"})
        assert sessions.iterate(s.id, {"step": 1}).iteration == 1
        sessions.record_tool_call(s.id, name="ls", input={}, output=["a"], duration_ms=3)
        with pytest.raises(SessionError) as e:
            sessions.resume(s.id)
        assert e.value.code == "invalid-transition"
        assert sessions.pause(s.id, "lunch").status == "paused"
        assert sessions.resume(s.id).status == "active"
        done = sessions.complete(s.id, {"pr": 7})
        assert (done.status, done.result) == ("completed", {"pr": 7})
        kinds = [ev.kind for ev in sessions.events(s.id).events]
        assert kinds[0] == "start" and kinds[-1] == "complete" and "tool_call" in kinds
        # Enough events for snapshots (every 16): a document is written.
        t = sessions.start("long")
        for i in range(40):
            sessions.iterate(t.id, {"i": i})
        assert sessions.get(t.id).iteration == 40
        assert sessions.events(t.id, from_=0, limit=1000).events[-1].data == {
            "data": {"i": 39}, "iteration": 40
        }
        with psycopg.connect(url) as c:
            docs = c.execute(
                "SELECT version FROM agent_session_documents WHERE key = %s", (t.id,)
            ).fetchall()
        assert docs and docs[0][0] >= 1, "a snapshot document was written"

        # Keys: get-or-create, named by Key everywhere.
        k = sessions.start("support chat", key="conversation-42")
        assert sessions.start("ignored", key="conversation-42").id == k.id
        assert sessions.get(Key("conversation-42")).key == "conversation-42"
        sessions.add_items(Key("conversation-42"), [{"role": "user", "content": "hi"}, {"n": 2}])
        sessions.add_items(Key("conversation-42"), [{"n": 3}])
        assert sessions.items(Key("conversation-42"), limit=2) == [{"n": 2}, {"n": 3}]
        assert sessions.pop_item(Key("conversation-42")) == {"n": 3}
        sessions.clear_items(Key("conversation-42"))
        assert sessions.items(Key("conversation-42")) == []

        listed = sessions.list()
        assert {x.id for x in listed.sessions} >= {s.id, t.id, k.id}
        stats = sessions.stats()
        assert stats.by_status.get("completed", 0) >= 1 and stats.total >= 3
        sessions.delete(s.id)
        with pytest.raises(SessionError) as e:
            sessions.get(s.id)
        assert e.value.code == "not-found"
        assert sessions.rebuild_index(dry_run=True) is not None

        # The same rows, seen from a second connection (another "process").
        with open_sessions(url) as other:
            assert other.get(Key("conversation-42")).id == k.id


def test_checkpoint_values_in_the_blob_log_and_the_size_limit(url: str) -> None:
    with open_sessions(url) as sessions:
        sessions.start("big", key="big-values")
        two = os.urandom(2 * MiB)
        sessions.put_checkpoint(
            Key("big-values"), id="1", checkpoint=TypedValue("bytes", two),
            metadata={"step": 0}, channel_versions={"a": 1},
        )  # fmt: skip
        got = sessions.get_checkpoint(Key("big-values"))
        assert got is not None and got.checkpoint.bytes == two
        with psycopg.connect(url) as c:
            blobs = c.execute(
                "SELECT max(length(record)) FROM agent_session_log WHERE collection = 'blobs'"
            ).fetchone()[0]
        # A value is kept in records of at most 1 MiB, so no store call
        # carries more than wasmtime-py lets one host call copy (~2.6 MiB).
        assert blobs <= MiB, "a large value is split into records of at most 1 MiB"
        six = os.urandom(6 * MiB)
        sessions.put_checkpoint(
            Key("big-values"), id="2", parent_id="1", checkpoint=TypedValue("bytes", six),
            metadata={"step": 1}, channel_versions={"a": 2},
        )  # fmt: skip
        page = sessions.list_checkpoints(Key("big-values"))
        assert [c.id for c in page.checkpoints] == ["2", "1"]
        assert sessions.get_checkpoint(Key("big-values")).checkpoint.bytes == six
        assert sessions.get_checkpoint(Key("big-values"), "", "1").checkpoint.bytes == two
        # And an item of 6 MiB.
        item = {"output": "y" * (6 * MiB)}
        sessions.add_items(Key("big-values"), [item])
        assert sessions.items(Key("big-values"), 1) == [item]


def test_webhooks_queue_in_the_database_outbox(url: str) -> None:
    with pytest.raises(SessionError) as e:
        open_sessions(url, webhooks=Webhooks(deliver=True))
    assert e.value.code == "invalid-input" and "deliver" in e.value.message
    with open_sessions(url) as sessions:
        with pytest.raises(SessionError) as e:
            sessions.deliveries()
        assert e.value.code == "invalid-input"
        sessions.set_webhook(url="https://hooks.example.com/in", secret="whsec_" + "QUJD" * 8)
        try:
            s = sessions.start("notified")
            sessions.complete(s.id)
        finally:
            sessions.clear_webhook()
    with psycopg.connect(url) as c:
        rows = c.execute(
            "SELECT id, state, session_id, seq, record FROM agent_session_outbox "
            "WHERE session_id = %s ORDER BY seq",
            (s.id,),
        ).fetchall()
    assert [(r[1], r[3]) for r in rows] == [("pending", 0), ("pending", 1)]
    record = json.loads(rows[1][4])
    assert record["notification"]["kind"] == "session.completed"
    assert record["notification"]["id"] == rows[1][0]
    assert record["writer"].startswith("pg-") and record["attempts"] == []
    # The Rust CLI reads the rows Python queued.
    listed = cli(url, "deliveries")
    assert isinstance(listed, list)
    mine = [json.dumps(d) for d in listed if rows[0][0] in json.dumps(d) or rows[1][0] in json.dumps(d)]
    assert len(mine) == 2, listed


def test_sessions_cross_between_the_rust_cli_and_python(url: str) -> None:
    made = cli(url, "start", "from rust", "--key", "cross-1", "--context", '{"by": "rust"}')
    rust_id = made["id"]
    cli(url, "iterate", rust_id, "--data", '{"n": 1}')
    with open_sessions(url) as sessions:
        s = sessions.get(Key("cross-1"))
        assert (s.id, s.task, s.iteration, s.context) == (rust_id, "from rust", 1, {"by": "rust"})
        sessions.iterate(Key("cross-1"), {"n": 2})
        py = sessions.start("from python", key="cross-2")
        sessions.update_context(py.id, {"by": "python"})
        sessions.complete(py.id, {"ok": True})
    shown = cli(url, "show", rust_id)
    assert (shown["iteration"], shown["event_count"], shown["status"]) == (2, 3, "active")
    by_key = cli(url, "show", "cross-2", "--key")
    assert (by_key["id"], by_key["status"], by_key["result"]) == (py.id, "completed", {"ok": True})
    assert by_key["context"] == {"by": "python"}
    # And Rust continues the Python one's history at its position.
    cli(url, "iterate", "cross-1", "--key", "--data", '{"n": 3}')
    with open_sessions(url) as sessions:
        s = sessions.get(Key("cross-1"))
        assert (s.iteration, s.event_count) == (3, 4)
        assert sessions.events(rust_id).events[-1].data == {"data": {"n": 3}, "iteration": 3}


def test_the_frameworks_on_postgres(url: str) -> None:
    saver = AgentSessionSaver(url)
    from langgraph.checkpoint.base import empty_checkpoint

    cp = empty_checkpoint()
    cp["channel_values"] = {"a": "A" * 100_000}
    cp["channel_versions"] = {"a": 1}
    cfg = saver.put({"configurable": {"thread_id": "pg-thread", "checkpoint_ns": ""}}, cp,
                    {"source": "input", "step": -1}, {"a": 1})  # fmt: skip
    got = saver.get_tuple(cfg)
    assert got is not None and got.checkpoint["channel_values"] == {"a": "A" * 100_000}
    saver.close()
    session = AgentSession("pg-conversation", url)
    import asyncio

    async def run() -> List[Any]:
        await session.add_items([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
        assert await session.pop_item() == {"role": "assistant", "content": "yo"}
        return await session.get_items()

    assert asyncio.run(asyncio.wait_for(run(), timeout=60)) == [{"role": "user", "content": "hi"}]
    session.close()


def test_the_langgraph_conformance_suite_passes_on_postgres(
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = _create_database("agent_session_py_lg")
    try:
        u = _database_url(_server(), name)
        cli(u, "list")
        run_conformance(u, "AgentSessionSaver (agent-session, Python host, PostgreSQL)", "PostgreSQL", capsys)
    finally:
        _drop_database(name)
