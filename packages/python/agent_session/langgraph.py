"""A LangGraph checkpointer on a session directory:
:class:`AgentSessionSaver`, a ``BaseCheckpointSaver`` of
``langgraph-checkpoint`` (an optional dependency: ``pip install
langgraph``), in place of ``InMemorySaver`` or ``SqliteSaver``::

    from agent_session.langgraph import AgentSessionSaver

    graph = builder.compile(checkpointer=AgentSessionSaver("/var/lib/agent-sessions"))

A thread is a session whose key is the thread id and whose mode is
``langgraph``, started (get-or-create) when the thread is first written.
Checkpoints and pending writes are events of its history (never
rewritten); every rule (which channel values a checkpoint has, which
writes are kept and in what order, what ``list`` returns, copies, drops)
is the session component's ``checkpoints`` interface. This module only
maps LangGraph's values onto it: the checkpoint and every value go
through the saver's serializer (``serde.dumps_typed``) and are stored as
the bytes it made, in the event when small and in the session's blob log
when above 16 KiB (up to 32 MiB each); the metadata is stored as JSON, as
``get_checkpoint_metadata`` makes it (without the legacy ``writes`` key).

The async methods run the sync ones on a worker thread of the saver's own
(calls into the component are serialized per process anyway).
"""

from __future__ import annotations

import functools
import random
from typing import (
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
    cast,
)

try:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        get_checkpoint_id,
        get_serializable_checkpoint_metadata,
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"agent_session.langgraph needs LangGraph's checkpoint package ({e}): "
        "pip install 'agent-session[langgraph]' (or langgraph)"
    ) from e

from ._adapters import Opened
from .sessions import PathLike, Sessions
from .types import ChannelValue, Key, SessionError
from .types import CheckpointTuple as StoredTuple
from .types import TypedValue

__all__ = ["AgentSessionSaver", "MODE"]

#: The mode of the sessions that hold LangGraph threads.
MODE = "langgraph"

R = TypeVar("R")


def _thread(thread_id: Any) -> str:
    # SqliteSaver and PostgresSaver store str(thread_id) too.
    return thread_id if isinstance(thread_id, str) else str(thread_id)


def _config(thread_id: Any, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


class AgentSessionSaver(BaseCheckpointSaver[str]):
    """LangGraph checkpoints in the sessions of a directory.

    ``sessions``: a directory (opened with :func:`open_sessions` and the
    ``open_options``, e.g. ``durable=False``; closed by :meth:`close`) or a
    :class:`Sessions` already open (left open). ``serde``: LangGraph's
    serializer (its ``JsonPlusSerializer`` by default).

    Beyond the base capabilities, ``delete_for_runs``, ``copy_thread``
    and ``prune`` (with their async twins) are implemented: a run's
    checkpoints are dropped in every ``langgraph`` session, a copy keeps
    the checkpoint ids, ``keep_latest`` keeps the latest checkpoint of each
    namespace, and ``delete`` (like ``delete_thread``) deletes the session.
    Failures of the store are :class:`~agent_session.SessionError`\\ s.
    """

    def __init__(
        self,
        sessions: Union[Sessions, PathLike],
        *,
        serde: Optional[SerializerProtocol] = None,
        **open_options: Any,
    ) -> None:
        super().__init__(serde=serde)
        self._opened = Opened(sessions, open_options)
        self.sessions = self._opened.sessions
        self._aio = self._opened.aio

    def close(self) -> None:
        """End the worker of the async methods, and close the sessions if
        this saver opened them."""
        self._opened.close()

    def __enter__(self) -> "AgentSessionSaver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the mapping ---

    def _typed(self, value: Any) -> TypedValue:
        type_, data = self.serde.dumps_typed(value)
        return TypedValue(type_, data)

    def _loaded(self, value: TypedValue) -> Any:
        return self.serde.loads_typed((value.type, value.bytes))

    def _written(self, thread_id: str, write: Callable[[Key], R]) -> R:
        """``write(Key(thread_id))``, starting the thread's session first if
        it has none (get-or-create: racing writers get one session)."""
        key = Key(thread_id)
        try:
            return write(key)
        except SessionError as e:
            if e.code != "not-found":
                raise
        self.sessions.start(f"LangGraph thread {thread_id}", key=thread_id, mode=MODE)
        return write(key)

    def _tuple(self, t: StoredTuple, thread_id: Any) -> CheckpointTuple:
        checkpoint = cast(
            Checkpoint,
            {
                **self._loaded(t.checkpoint),
                "channel_values": {c: self._loaded(v) for c, v in t.channel_values.items()},
            },
        )
        return CheckpointTuple(
            config=_config(thread_id, t.ns, t.id),
            checkpoint=checkpoint,
            metadata=t.metadata,  # type: ignore[arg-type]
            parent_config=(
                _config(thread_id, t.ns, t.parent_id) if t.parent_id is not None else None
            ),
            pending_writes=[(w.task_id, w.channel, self._loaded(w.value)) for w in t.pending_writes],
        )

    def _query(
        self,
        config: Optional[RunnableConfig],
        filter: Optional[Dict[str, Any]],
        before: Optional[RunnableConfig],
        limit: Optional[int],
    ) -> Optional[Dict[str, Any]]:
        """The arguments of ``list_checkpoints`` for ``list``; None if
        nothing can match (a limit of 0 or less)."""
        if limit is not None and limit <= 0:
            return None
        configurable = (config or {}).get("configurable") or {}
        thread_id = configurable.get("thread_id")
        query: Dict[str, Any] = {
            "ns": configurable.get("checkpoint_ns"),
            "id": configurable.get("checkpoint_id") or None,
            "before": get_checkpoint_id(before) if before else None,
            "metadata": filter or None,
            "limit": limit,
        }
        if thread_id is None:
            query["mode"] = MODE
        else:
            query["session"] = Key(_thread(thread_id))
            query["thread_id"] = thread_id
        return query

    def _page(
        self, query: Dict[str, Any], cursor: Optional[str]
    ) -> Tuple[List[CheckpointTuple], Optional[str]]:
        query = dict(query)
        thread_id = query.pop("thread_id", None)
        page = self.sessions.list_checkpoints(**query, cursor=cursor)
        tuples = [
            self._tuple(t, thread_id if thread_id is not None else (t.key or t.session_id))
            for t in page.checkpoints
        ]
        return tuples, page.next_cursor

    # --- sync ---

    def get_tuple(self, config: RunnableConfig) -> Optional[CheckpointTuple]:
        configurable = config["configurable"]
        thread_id = configurable["thread_id"]
        t = self.sessions.get_checkpoint(
            Key(_thread(thread_id)),
            configurable.get("checkpoint_ns", ""),
            get_checkpoint_id(config) or None,
        )
        return None if t is None else self._tuple(t, thread_id)

    def list(
        self,
        config: Optional[RunnableConfig],
        *,
        filter: Optional[Dict[str, Any]] = None,
        before: Optional[RunnableConfig] = None,
        limit: Optional[int] = None,
    ) -> Iterator[CheckpointTuple]:
        query = self._query(config, filter, before, limit)
        if query is None:
            return
        cursor: Optional[str] = None
        while True:
            tuples, cursor = self._page(query, cursor)
            yield from tuples
            if cursor is None:
                return

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        configurable = config["configurable"]
        thread_id = configurable["thread_id"]
        ns = configurable.get("checkpoint_ns", "")
        skeleton = checkpoint.copy()
        values: Dict[str, Any] = skeleton.pop("channel_values")  # type: ignore[misc]
        new_values = [
            ChannelValue(channel, version, self._typed(values[channel]) if channel in values else None)
            for channel, version in new_versions.items()
        ]
        stored = self._typed(skeleton)
        fields = dict(
            ns=ns,
            id=checkpoint["id"],
            parent_id=configurable.get("checkpoint_id") or None,
            checkpoint=stored,
            metadata=get_serializable_checkpoint_metadata(config, metadata),
            channel_versions=checkpoint["channel_versions"],
            new_values=new_values,
        )
        self._written(_thread(thread_id), lambda key: self.sessions.put_checkpoint(key, **fields))
        return _config(thread_id, ns, checkpoint["id"])

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[Tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        configurable = config["configurable"]
        fields = dict(
            ns=configurable.get("checkpoint_ns", ""),
            checkpoint_id=configurable["checkpoint_id"],
            task_id=task_id,
            task_path=task_path,
            writes=[(channel, self._typed(value)) for channel, value in writes],
        )
        self._written(
            _thread(configurable["thread_id"]),
            lambda key: self.sessions.put_writes(key, **fields),
        )

    def delete_thread(self, thread_id: str) -> None:
        try:
            self.sessions.delete(Key(_thread(thread_id)))
        except SessionError as e:
            if e.code != "not-found":
                raise

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.sessions.drop_runs(list(run_ids), mode=MODE)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        source = Key(_thread(source_thread_id))
        try:
            self.sessions.get(source)
        except SessionError as e:
            if e.code == "not-found":
                return  # nothing to copy
            raise
        self._written(
            _thread(target_thread_id),
            lambda target: self.sessions.copy_checkpoints(source, target),
        )

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}: keep_latest or delete")
        for thread_id in thread_ids:
            if strategy == "delete":
                self.delete_thread(thread_id)
                continue
            try:
                self.sessions.prune_checkpoints(Key(_thread(thread_id)))
            except SessionError as e:
                if e.code != "not-found":
                    raise

    def get_next_version(self, current: Optional[str], channel: None = None) -> str:
        # InMemorySaver's: strings that sort in version order.
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

    # --- async: the sync methods on the saver's worker thread ---

    async def _off(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        return await self._aio._run(functools.partial(fn, *args, **kwargs))

    async def aget_tuple(self, config: RunnableConfig) -> Optional[CheckpointTuple]:
        return await self._off(self.get_tuple, config)

    async def alist(
        self,
        config: Optional[RunnableConfig],
        *,
        filter: Optional[Dict[str, Any]] = None,
        before: Optional[RunnableConfig] = None,
        limit: Optional[int] = None,
    ) -> AsyncIterator[CheckpointTuple]:
        query = self._query(config, filter, before, limit)
        if query is None:
            return
        cursor: Optional[str] = None
        while True:
            tuples, cursor = await self._off(self._page, query, cursor)
            for t in tuples:
                yield t
            if cursor is None:
                return

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._off(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[Tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._off(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._off(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._off(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._off(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._off(self.prune, thread_ids, strategy=strategy)
