"""Argument and result encryption: nothing a task carries reaches Redis in the clear.

The producer seals a task's arguments into one opaque argument (``broker_add_before``);
the worker opens them before the call (``task_executor_args_replace``, first, so that
argument conversion sees the real values) and seals the result
(``task_executor_run_task``); every read opens both again (``storage_get``, the one
read path). The cipher is a keyed stream from HMAC-SHA256 with a random nonce and an
authentication tag: enough for a test of the contract, with no dependency. A real
plugin would use an audited library (``cryptography``'s Fernet).

Inert until configured: it does nothing unless ``QTASKS_ENCRYPTION_KEY`` is set (an
installed plugin loads into every app in the environment).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any

from qtasks_hooks import hookimpl

MARK = "qtasks-enc:"


def _key() -> bytes | None:
    key = os.environ.get("QTASKS_ENCRYPTION_KEY")
    return hashlib.sha256(key.encode()).digest() if key else None


def _stream(key: bytes, nonce: bytes, size: int) -> bytes:
    blocks = []
    for counter in range((size + 31) // 32):
        blocks.append(hmac.digest(key, nonce + counter.to_bytes(8, "big"), "sha256"))
    return b"".join(blocks)[:size]


def seal(key: bytes, value: Any) -> str:
    data = json.dumps(value).encode()
    nonce = os.urandom(16)
    sealed = bytes(a ^ b for a, b in zip(data, _stream(key, nonce, len(data)), strict=True))
    tag = hmac.digest(key, nonce + sealed, "sha256")[:16]
    return MARK + base64.b64encode(nonce + tag + sealed).decode()


def unseal(key: bytes, text: str) -> Any:
    raw = base64.b64decode(text.removeprefix(MARK))
    nonce, tag, sealed = raw[:16], raw[16:32], raw[32:]
    if not hmac.compare_digest(tag, hmac.digest(key, nonce + sealed, "sha256")[:16]):
        raise ValueError("qtasks-encryption: a sealed value failed its check (wrong key?)")
    data = bytes(a ^ b for a, b in zip(sealed, _stream(key, nonce, len(sealed)), strict=True))
    return json.loads(data)


def _sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(MARK)


class Encryption:
    @hookimpl
    def broker_add_before(self, model: Any) -> Any:
        key = _key()
        if key is None:
            return None
        return model.model_copy(
            update={"args": (seal(key, [list(model.args), model.kwargs]),), "kwargs": {}}
        )

    @hookimpl(tryfirst=True)
    def task_executor_args_replace(self, args: Any, kw: Any) -> Any:
        key = _key()
        if key is None or kw or len(args) != 1 or not _sealed(args[0]):
            return None
        call_args, call_kw = unseal(key, args[0])
        return tuple(call_args), call_kw

    @hookimpl
    def task_executor_run_task(self, result: Any) -> Any:
        key = _key()
        return None if key is None else seal(key, result)

    @hookimpl
    def storage_get(self, result: Any) -> Any:
        key = _key()
        if key is None or result is None:
            return None
        update: dict[str, Any] = {}
        if len(result.args) == 1 and _sealed(result.args[0]) and not result.kwargs:
            call_args, call_kw = unseal(key, result.args[0])
            update["args"], update["kwargs"] = tuple(call_args), call_kw
        if _sealed(result.returning):
            update["returning"] = unseal(key, result.returning)
        return result.model_copy(update=update) if update else None


plugin = Encryption()
