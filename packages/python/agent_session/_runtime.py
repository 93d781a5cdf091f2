"""The session component in wasmtime-py: compile (cached per process), link
the imported ``store`` and ``notify`` to Python, call the exported
``sessions`` functions.

Values cross as wasmtime-py's dynamic values: records are objects whose
attributes are the WIT field names (kebab-case), options are the value or
None, enums are strings, ``list<u8>`` is bytes, variants are
``Variant(tag, payload)``; a returned ``result`` is its ok value, or the
``Variant`` of its error. Host functions return errors as ``Err`` (see
``_values.py``).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from wasmtime import Engine, Store, WasiConfig
from wasmtime.component import Component, Func, Instance, Linker, Record, Variant

from ._values import Err
from .fs_store import FsStore, StoreError, io_error
from .outbox import Notification, Outbox, OutboxError

PACKAGE = "agent:session"
VERSION = "0.3.0"
SESSIONS = f"{PACKAGE}/sessions@{VERSION}"
STORE = f"{PACKAGE}/store@{VERSION}"
NOTIFY = f"{PACKAGE}/notify@{VERSION}"

_engine = Engine()
# Compiled components by (path, mtime, size): compiling takes ~0.5 s, and a
# rebuilt file is compiled again.
_compiled: Dict[Tuple[str, int, int], Component] = {}
_compile_lock = threading.Lock()
# wasmtime-py's value conversion keeps module-level state (the set of classes
# a variant case accepts, the exception of a failed host call): two threads
# calling at once broke each other's values, and wasmtime even aborted the
# process in its trap handling. So calls into any instance are serialized
# per process.
_calls = threading.Lock()


def compiled(path: str) -> Component:
    """The component at ``path``, compiled once per process."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_mtime_ns, st.st_size)
    with _compile_lock:
        component = _compiled.get(key)
        if component is None:
            component = Component.from_file(_engine, path)
            _compiled[key] = component
        return component


def record(**fields: Any) -> Record:
    """A WIT record value; ``snake_case`` names become the WIT's kebab-case."""
    r = Record()
    for name, value in fields.items():
        setattr(r, name.replace("_", "-"), value)
    return r


def _store_import(fs: FsStore) -> Dict[str, Callable[..., Any]]:
    def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
        def host(_ctx: Any, *args: Any) -> Any:
            try:
                return fn(*args)
            except StoreError as e:
                return Err(Variant(e.kind, e.message))
            except OSError as e:
                e2 = io_error(f"the store at {fs.root}", e)
                return Err(Variant(e2.kind, e2.message))

        return host

    def get(c: str, k: str) -> Optional[Record]:
        doc = fs.get(c, k)
        return None if doc is None else record(version=doc[0], data=doc[1])

    def scan(c: str, after: Optional[str], limit: int) -> List[Record]:
        return [record(key=k, summary=s) for k, s in fs.scan(c, after, limit)]

    return {
        "append": guarded(fs.append),
        "read": guarded(fs.read),
        "scan": guarded(scan),
        "reindex": guarded(fs.reindex),
        "keys": guarded(fs.keys),
        "get": guarded(get),
        "put": guarded(fs.put),
        "remove": guarded(fs.remove),
    }


def _enqueue(outbox: Outbox) -> Callable[..., Any]:
    def host(_ctx: Any, n: Any) -> Any:
        try:
            outbox.enqueue(
                Notification(
                    id=n.id,
                    session_id=getattr(n, "session-id"),
                    seq=n.seq,
                    url=n.url,
                    secret=n.secret,
                    kind=n.kind,
                    timestamp=n.timestamp,
                    body=n.body,
                )
            )
        except OutboxError as e:
            return Err(str(e))
        return None

    return host


class Runtime:
    """One instance of the component over ``fs`` and ``outbox``; calls are
    serialized per process (see ``_calls``).

    The component keeps nothing between calls, so the instance is reused;
    after a trap it is dropped and the next call instantiates again.
    """

    def __init__(self, component: Component, fs: FsStore, outbox: Outbox) -> None:
        self._component = component
        self._linker = Linker(_engine)
        self._linker.add_wasip2()
        with self._linker.root() as root:
            with root.add_instance(STORE) as store_import:
                for name, fn in _store_import(fs).items():
                    store_import.add_func(name, fn)
            with root.add_instance(NOTIFY) as notify_import:
                notify_import.add_func("enqueue", _enqueue(outbox))
        self._live: Optional[Tuple[Store, Instance, Dict[str, Func]]] = None

    def _instantiate(self) -> Tuple[Store, Instance, Dict[str, Func]]:
        store = Store(_engine)
        # Grants nothing but clocks and randomness: no preopens, env or args.
        store.set_wasi(WasiConfig())
        instance = self._linker.instantiate(store, self._component)
        return store, instance, {}

    def call(self, name: str, *args: Any) -> Any:
        """Call the exported ``sessions`` function ``name`` (WIT name)."""
        with _calls:
            if self._live is None:
                self._live = self._instantiate()
            store, instance, funcs = self._live
            func = funcs.get(name)
            if func is None:
                interface = instance.get_export_index(store, SESSIONS)
                index = instance.get_export_index(store, name, interface)
                func = instance.get_func(store, index) if index is not None else None
                if func is None:
                    raise LookupError(f"the component exports no {SESSIONS}#{name}")
                funcs[name] = func
            try:
                result = func(store, *args)
                func.post_return(store)
            except BaseException:
                self._live = None
                raise
            return result
