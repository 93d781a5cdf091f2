"""Two changes to how wasmtime-py (50.0.1) converts component values, made
once on import. Both are narrow: other values convert as before.

1. Errors from host functions. wasmtime-py lowers a ``result`` without a
   tag, by the Python type of the value, and tries the ok case first. For
   ``result<option<entry-info>, failure>`` (``root``'s ``stat``) every value
   fits the ok case (``option`` accepts any object), so no error could be
   returned, and the component needs them (a refused or unreadable file is
   a ``failure``, not an absent one). A value wrapped in :class:`Err` is
   lowered as the err case.
2. ``list<u8>`` speed. wasmtime-py converts a byte list one element at a
   time through ctypes (about 1.6 µs a byte: a 64 KiB context would cost
   0.1 s per crossing). Bytes are converted here in one pass over the C
   array instead, using the element layout ctypes itself computed.
3. Type reflection. wasmtime-py reads a function's type from the C API on
   every call, and every record's fields and every variant's cases again
   for every value (about 50 µs of a ``root`` call that does 10 µs of work;
   an append makes about ten). Types never change, so a function's
   parameter and result types are kept per host function and per exported
   ``Func``, and each type keeps its fields and cases once read.
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable, Dict, List, Tuple

from wasmtime import _ffi as ffi
from wasmtime.component import _linker
from wasmtime.component._enter import catch_exceptions, enter_wasm
from wasmtime.component._func import Func
from wasmtime.component._types import (
    U8,
    FuncType,
    ListType,
    OptionType,
    RecordType,
    ResultType,
    VariantType,
)


class Err:
    """The err case of a host function's ``result``, holding ``payload``."""

    def __init__(self, payload: Any) -> None:
        self.payload = payload


def _result_to_c(original: Callable[..., None]) -> Callable[..., None]:
    def convert_to_c(self: ResultType, store: Any, val: Any, ptr: Any) -> None:
        if not isinstance(val, Err):
            return original(self, store, val, ptr)
        raw = None
        err_ty = self.err
        if err_ty is not None:
            payload = ffi.wasmtime_component_val_t()
            err_ty.convert_to_c(store, val.payload, ctypes.pointer(payload))
            raw = ffi.wasmtime_component_val_new(ctypes.byref(payload))
        ptr.contents.kind = ffi.WASMTIME_COMPONENT_RESULT
        ptr.contents.of.result.is_ok = False
        ptr.contents.of.result.val = raw
        return None

    return convert_to_c


_VAL_SIZE = ctypes.sizeof(ffi.wasmtime_component_val_t)
_KIND_AT = ffi.wasmtime_component_val_t.kind.offset
_VALUE_AT = ffi.wasmtime_component_val_t.of.offset
_U8_KIND = bytes([ffi.WASMTIME_COMPONENT_U8.value])


def _list_to_c(original: Callable[..., None]) -> Callable[..., None]:
    def convert_to_c(self: ListType, store: Any, val: Any, ptr: Any) -> None:
        if not (isinstance(val, bytes) and isinstance(self.element, U8)):
            return original(self, store, val, ptr)
        n = len(val)
        raw = ffi.wasmtime_component_vallist_t()
        ffi.wasmtime_component_vallist_new_uninit(raw, n)
        if n:
            # The array of n u8 values, written in place: each element its
            # kind and its byte (no image of the array in Python: for a
            # value of several MiB that would be 32 bytes per byte, twice).
            size = _VAL_SIZE * n
            address = ctypes.cast(raw.data, ctypes.c_void_p).value or 0
            ctypes.memset(address, 0, size)
            array = memoryview((ctypes.c_char * size).from_address(address)).cast("B")
            array[_KIND_AT::_VAL_SIZE] = _U8_KIND * n
            array[_VALUE_AT::_VAL_SIZE] = val
            array.release()
        ptr.contents.kind = ffi.WASMTIME_COMPONENT_LIST
        ptr.contents.of.list = raw
        return None

    return convert_to_c


def _list_from_c(original: Callable[..., Any]) -> Callable[..., Any]:
    def convert_from_c(self: ListType, c: Any) -> Any:
        if not isinstance(self.element, U8):
            return original(self, c)
        assert c.kind == ffi.WASMTIME_COMPONENT_LIST.value
        n = c.of.list.size
        try:
            if n == 0:
                return b""
            address = ctypes.cast(c.of.list.data, ctypes.c_void_p).value or 0
            array = memoryview((ctypes.c_char * (_VAL_SIZE * n)).from_address(address)).cast("B")
            try:
                return array[_VALUE_AT::_VAL_SIZE].tobytes()
            finally:
                array.release()
        finally:
            # u8 elements own nothing: the array is freed as it is.
            ffi.wasmtime_component_vallist_delete(ctypes.byref(c.of.list))

    return convert_from_c


def _kept(name: str, read: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``read(self)``, computed once per type object (types are immutable)."""
    slot = f"_agent_session_{name}"

    def kept(self: Any) -> Any:
        value = self.__dict__.get(slot)
        if value is None:
            value = read(self)
            self.__dict__[slot] = value
        return value

    return kept


# Parameter and result types of the host functions, by their slab index,
# with the function they were read for (a finalized index is reused).
_HOST_TYPES: Dict[int, Tuple[Any, List[Any], Any]] = {}


@ffi.wasmtime_component_func_callback_t
def _host_call(idx, context, ty_raw, args, nargs, results, nresults):  # type: ignore[no-untyped-def]
    # wasmtime-py's own `func_impl`, with the function's types read once.
    def run(store: Any) -> None:
        func = _linker.FUNCTIONS.get(idx or 0)
        types = _HOST_TYPES.get(idx or 0)
        if types is None or types[0] is not func:
            with FuncType._from_ptr(ty_raw, owner=store) as fty:
                types = (func, [ty for _, ty in fty.params], fty.result)
            _HOST_TYPES[idx or 0] = types
        _, param_tys, result_ty = types
        pyargs = [ty.convert_from_c(args[i]) for ty, i in zip(param_tys, range(nargs))]
        result = func(store, *pyargs)
        if result_ty is not None:
            result_ty.convert_to_c(store, result, results)

    return catch_exceptions(context, run)


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _host_finalize(idx):  # type: ignore[no-untyped-def]
    _HOST_TYPES.pop(idx or 0, None)
    _original_finalize(idx)


_original_finalize = _linker.func_finalize


def _func_call(self: Func, store: Any, *params: Any) -> Any:
    # wasmtime-py's `Func.__call__`, with the function's types read once.
    types = self.__dict__.get("_agent_session_types")
    if types is None:
        fty = self.type(store)
        types = ([ty for _, ty in fty.params], fty.result)
        self.__dict__["_agent_session_types"] = types
    param_tys, result_ty = types
    if len(params) != len(param_tys):
        raise TypeError(f"wrong number of parameters: given {len(params)}, expected {len(param_tys)}")
    param_capi = (ffi.wasmtime_component_val_t * len(params))()
    n = 0
    try:
        for ty, val in zip(param_tys, params):
            ty.convert_to_c(store, val, ctypes.pointer(param_capi[n]))
            n += 1
        result_space = None
        result_capi = None
        if result_ty is not None:
            result_space = ffi.wasmtime_component_val_t()
            result_capi = ctypes.byref(result_space)

        def run() -> Any:
            return ffi.wasmtime_component_func_call(
                ctypes.byref(self._func),
                store._context(),
                param_capi,
                n,
                result_capi,
                0 if result_ty is None else 1,
            )

        enter_wasm(run)
        if result_space is None:
            return None
        return result_ty.convert_from_c(result_space)
    finally:
        for i in range(n):
            ffi.wasmtime_component_val_delete(ctypes.byref(param_capi[i]))


def _install() -> None:
    if getattr(ResultType, "_agent_session_values", False):
        return
    ResultType.convert_to_c = _result_to_c(ResultType.convert_to_c)  # type: ignore[method-assign]
    ListType.convert_to_c = _list_to_c(ListType.convert_to_c)  # type: ignore[method-assign]
    ListType.convert_from_c = _list_from_c(ListType.convert_from_c)  # type: ignore[method-assign]
    for cls in (ResultType, OptionType, VariantType):
        cls._cases = _kept("cases", cls._cases)  # type: ignore[method-assign]
        cls._tagged = _kept("tagged", cls._tagged)  # type: ignore[method-assign]
    for cls, name in ((RecordType, "fields"), (ListType, "element"), (OptionType, "payload")):
        prop = getattr(cls, name, None)
        if isinstance(prop, property) and prop.fget is not None:
            setattr(cls, name, property(_kept(name, prop.fget)))
    _linker.func_impl = _host_call
    _linker.func_finalize = _host_finalize
    Func.__call__ = _func_call  # type: ignore[method-assign]
    ResultType._agent_session_values = True  # type: ignore[attr-defined]


_install()
