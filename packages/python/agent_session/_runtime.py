"""The session-on-root component in wasmtime-py: load it (once per
process, through the compiled-component cache of ``_cache.py``), grant it
the directory as the ``root`` capability, call the exported ``sessions``,
``conversations``, ``checkpoints`` and ``delivery`` functions.

The component is the session component with the directory store linked in
(the one implementation of the on-disk format, the same code the Rust host
links natively): this package holds no storage code of its own.

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
from typing import Any, Dict, Optional, Tuple

from wasmtime import Engine, Store, WasiConfig
from wasmtime.component import Component, Func, Instance, Linker, Record

from ._cache import Origin, load
from ._root import ROOT, Root, root_imports

PACKAGE = "agent:session"
VERSION = "0.4.0"
SESSIONS = f"{PACKAGE}/sessions@{VERSION}"
CONVERSATIONS = f"{PACKAGE}/conversations@{VERSION}"
CHECKPOINTS = f"{PACKAGE}/checkpoints@{VERSION}"
DELIVERY = f"{PACKAGE}/delivery@{VERSION}"

_engine = Engine()
# Components by (path, mtime, size), with where each came from: loaded once
# per process (from the on-disk cache, see _cache.py, or compiled), again if
# the file changed.
_compiled: Dict[Tuple[str, int, int], Tuple[Component, Origin]] = {}
_compile_lock = threading.Lock()
# wasmtime-py's value conversion keeps module-level state (the set of classes
# a variant case accepts, the exception of a failed host call): two threads
# calling at once broke each other's values, and wasmtime even aborted the
# process in its trap handling. So calls into any instance are serialized
# per process.
_calls = threading.Lock()


def _key(path: str) -> Tuple[str, int, int]:
    st = os.stat(path)
    return os.path.realpath(path), st.st_mtime_ns, st.st_size


def compiled(path: str) -> Component:
    """The component at ``path``, loaded once per process."""
    key = _key(path)
    with _compile_lock:
        loaded = _compiled.get(key)
        if loaded is None:
            loaded = _compiled[key] = load(_engine, path)
        return loaded[0]


def origin(path: str) -> Optional[Origin]:
    """Where this process got the component at ``path`` from, if it has it."""
    with _compile_lock:
        loaded = _compiled.get(_key(path))
    return None if loaded is None else loaded[1]


def record(**fields: Any) -> Record:
    """A WIT record value; ``snake_case`` names become the WIT's kebab-case."""
    r = Record()
    for name, value in fields.items():
        setattr(r, name.replace("_", "-"), value)
    return r


class Runtime:
    """One instance of the component over ``root``; calls are serialized per
    process (see ``_calls``).

    The instance is reused: it keeps the directory store's in-memory index
    and this process's notification intake segment between calls. After a
    trap it is dropped, with the locks it held, and the next call
    instantiates again.
    """

    def __init__(
        self,
        component: Component,
        root: Any,
        durable: bool = True,
        imports: Optional[Dict[str, Dict[str, Any]]] = None,
    ) -> None:
        # ``root``: the directory (``Root``), or what ``imports`` is made
        # over (the PostgreSQL store of ``_postgres.py``, for the session
        # component that imports ``store`` and ``notify``); either has
        # ``release_locks()`` and ``close()``.
        self._component = component
        self._root = root
        self._linker = Linker(_engine)
        self._linker.add_wasip2()
        if imports is None:
            imports = {ROOT: root_imports(root, durable)}
        with self._linker.root() as linker_root:
            for interface, fns in imports.items():
                with linker_root.add_instance(interface) as instance:
                    for name, fn in fns.items():
                        instance.add_func(name, fn)
        self._live: Optional[Tuple[Store, Instance, Dict[Tuple[str, str], Func]]] = None

    def reset(self) -> None:
        """Drop the instance and the locks it holds (its intake segment: a
        sender may then take it in); the next call starts a new one."""
        with _calls:
            self._live = None
            self._root.release_locks()

    def close(self) -> None:
        """Drop the instance and close the root, for good: for a runtime
        with a root of its own (the webhook sender's, see ``_deliver.py``)."""
        with _calls:
            self._live = None
            self._root.close()

    def _instantiate(self) -> Tuple[Store, Instance, Dict[Tuple[str, str], Func]]:
        store = Store(_engine)
        # Grants nothing but clocks and randomness: no preopens, env or args.
        store.set_wasi(WasiConfig())
        instance = self._linker.instantiate(store, self._component)
        return store, instance, {}

    def call(self, name: str, *args: Any) -> Any:
        """Call the exported ``sessions`` function ``name`` (WIT name)."""
        return self.call_in(SESSIONS, name, *args)

    def call_in(self, interface: str, name: str, *args: Any) -> Any:
        """Call the function ``name`` (WIT name) of the exported
        ``interface`` (``SESSIONS``, ``CONVERSATIONS``, ``CHECKPOINTS`` or
        ``DELIVERY``)."""
        with _calls:
            if self._live is None:
                self._live = self._instantiate()
            store, instance, funcs = self._live
            func = funcs.get((interface, name))
            if func is None:
                exported = instance.get_export_index(store, interface)
                index = (
                    instance.get_export_index(store, name, exported)
                    if exported is not None
                    else None
                )
                func = instance.get_func(store, index) if index is not None else None
                if func is None:
                    raise LookupError(f"the component exports no {interface}#{name}")
                funcs[(interface, name)] = func
            try:
                result = func(store, *args)
                func.post_return(store)
            except BaseException:
                self._live = None
                self._root.release_locks()
                raise
            return result
