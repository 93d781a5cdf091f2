"""Two changes to how wasmtime-py (50.0.1) converts component values, made
once on import. Both are narrow: other values convert as before.

1. Errors from host functions. wasmtime-py lowers a ``result`` without a
   tag, by the Python type of the value, and tries the ok case first. For
   ``result<option<versioned>, store-error>`` (the store's ``get``) every
   value fits the ok case (``option`` accepts any object), so no error could
   be returned, and the component needs one: an ``io`` error on a damaged
   snapshot makes it replay the history instead. A value wrapped in
   :class:`Err` is lowered as the err case.
2. ``list<u8>`` speed. wasmtime-py converts a byte list one element at a
   time through ctypes (about 1.6 µs a byte: a 64 KiB context would cost
   0.1 s per crossing). Bytes are converted here in one pass over the C
   array instead, using the element layout ctypes itself computed.
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable

from wasmtime import _ffi as ffi
from wasmtime.component import U8, ListType, ResultType


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
            # The array of n u8 values: each element its kind and its byte.
            image = bytearray(_VAL_SIZE * n)
            image[_KIND_AT::_VAL_SIZE] = _U8_KIND * n
            image[_VALUE_AT::_VAL_SIZE] = val
            ctypes.memmove(raw.data, bytes(image), len(image))
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
            return ctypes.string_at(c.of.list.data, _VAL_SIZE * n)[_VALUE_AT::_VAL_SIZE]
        finally:
            # u8 elements own nothing: the array is freed as it is.
            ffi.wasmtime_component_vallist_delete(ctypes.byref(c.of.list))

    return convert_from_c


def _install() -> None:
    if getattr(ResultType, "_agent_session_values", False):
        return
    ResultType.convert_to_c = _result_to_c(ResultType.convert_to_c)  # type: ignore[method-assign]
    ListType.convert_to_c = _list_to_c(ListType.convert_to_c)  # type: ignore[method-assign]
    ListType.convert_from_c = _list_from_c(ListType.convert_from_c)  # type: ignore[method-assign]
    ResultType._agent_session_values = True  # type: ignore[attr-defined]


_install()
