"""A minimal asyncio HTTP/1.1 server answering ``GET /metrics`` (one request per connection)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from .metrics import CONTENT_TYPE

log = logging.getLogger("qtasks.prometheus")

#: A client gets this long to send its request head.
READ_TIMEOUT = 10.0
#: Largest accepted request head (a scrape sends a few hundred bytes).
MAX_HEAD = 16 * 1024

Render = Callable[[], Awaitable[str]]


class MetricsServer:
    """Serves ``render()`` at ``/metrics`` on ``host:port`` in the running event loop."""

    def __init__(self, render: Render, host: str, port: int) -> None:
        self._render = render
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def start(self) -> None:
        """Bind and listen; ``port`` then holds the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(
            self._handle, self.host, self.requested_port, limit=MAX_HEAD
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and end the connections still open."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for handler in list(self._handlers):
            handler.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        self._handlers.add(me)
        try:
            await self._respond(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: nothing to answer
        except Exception:
            log.exception("metrics request failed")
        finally:
            self._handlers.discard(me)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        except (TimeoutError, asyncio.LimitOverrunError):
            await self._send(writer, HTTPStatus.BAD_REQUEST, "bad request\n")
            return
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await self._send(writer, HTTPStatus.BAD_REQUEST, "bad request\n")
            return
        method, target = parts[0], parts[1]
        path = target.split("?", 1)[0]
        if path != "/metrics":
            await self._send(writer, HTTPStatus.NOT_FOUND, "not found: metrics are at /metrics\n")
        elif method not in ("GET", "HEAD"):
            await self._send(
                writer, HTTPStatus.METHOD_NOT_ALLOWED, "use GET\n", extra="Allow: GET, HEAD\r\n"
            )
        else:
            body = await self._render()
            await self._send(writer, HTTPStatus.OK, body, CONTENT_TYPE, head_only=method == "HEAD")

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: HTTPStatus,
        body: str,
        content_type: str = "text/plain; charset=utf-8",
        *,
        extra: str = "",
        head_only: bool = False,
    ) -> None:
        data = body.encode()
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(data)}\r\n"
            f"{extra}"
            "Connection: close\r\n\r\n"
        ).encode("latin-1")
        writer.write(head if head_only else head + data)
        await writer.drain()
