"""The thin asyncio layer: sockets, a periodic tick, and the control interface.

``GatewaySimServer`` listens on a loopback port, gives every connection a ``core.Session`` and
flushes what the core wants written after each read and each tick.

Streaming, it behaves like a gateway that serves its clients while it floods them:

- Market data is produced in slices of about ``market.slice_ms``; each slice is written at
  once and the loop reads the sockets before the next, so a request that arrives mid-flood is
  answered within about one slice, not after the whole tick's burst. Between instruments'
  turns within a slice the client sockets are polled (no read): a slice with a request waiting
  ends early, so a cancel waits for one turn of a few events, not for the slice.
- An order answer's short orderStatus is handed to the socket as soon as it is encoded, before
  the openOrder that goes with it (see ``GatewayCore.urgent``).
- Write-side flow control: each client's kernel send buffer is sized to
  ``gateway.send_buffer_kib`` and the transport's high-water mark to the same; past it the
  transport pauses the protocol, the core holds that client's market data back (conflated),
  and on resume brings it up to date. So a client that cannot keep up sees fresher, fewer
  updates instead of an ever older backlog, and an order answer never sits behind more than
  about two buffers' worth of market data.

During a simulated daily restart the listener is closed (clients see "connection refused", like
a stopped Gateway) or, with ``refuse = "accept_close"``, connections are accepted and closed at
once (like the socat relays in the Docker images).

The control interface is a JSON-lines TCP port: send ``{"action": "farm_blip", "seconds": 2}``
(any fault from ``config.FaultConfig``) or ``{"action": "status"}``; each line gets one JSON
reply ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. ``{"action": "ledger"}``
returns the gateway's own record of orders received, executions and positions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
from typing import Any

import orjson

from engine.process import pin_to_cpus, settle_heap

from ..sockets import write_through
from .config import GatewaySimConfig
from .core import NS, GatewayCore, Session

log = logging.getLogger("tickwire.gateway_sim")


class _ClientProtocol(asyncio.Protocol):
    __slots__ = ("server", "session", "transport")

    def __init__(self, server: GatewaySimServer) -> None:
        self.server = server
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio subclass
        core = self.server.core
        core.advance()
        if not core.accepting:
            transport.close()  # "accept_close" mode: the relay accepts, the gateway is down
            return
        peer = transport.get_extra_info("peername")
        self.session = core.open_session(f"{peer[0]}:{peer[1]}" if peer else "?")
        self.server.protocols[self.session] = self
        limit = self.server.config.gateway.send_buffer_kib * 1024
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limit)
            self.server.watch_input(self.session, sock.fileno())
        transport.set_write_buffer_limits(high=limit, low=limit // 4)  # type: ignore[attr-defined]

    def pause_writing(self) -> None:
        if self.session is not None:
            self.server.core.hold_market_data(self.session)

    def resume_writing(self) -> None:
        if self.session is not None:
            self.server.core.release_market_data(self.session)
            self.server.flush()

    def data_received(self, data: bytes) -> None:
        s = self.session
        if s is None:
            return
        core = self.server.core
        core.now_ns = max(core.now_ns, core.clock())
        s.receive(data)
        self.server.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        s = self.session
        if s is not None:
            self.server.protocols.pop(s, None)
            self.server.unwatch_input(s)
            self.server.core.connection_lost(s)


class GatewaySimServer:
    """Runs a ``GatewayCore`` on the event loop."""

    def __init__(self, config: GatewaySimConfig | None = None, core: GatewayCore | None = None):
        self.config = config or GatewaySimConfig()
        self.core = core or GatewayCore(self.config)
        self.protocols: dict[Session, _ClientProtocol] = {}
        self.host = self.config.gateway.host
        self.port = self.config.gateway.port
        self.control_port: int | None = None
        self._server: asyncio.Server | None = None
        self._control: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._was_down = False
        # Client sockets polled between instruments' turns of a market slice (see
        # ``GatewayCore.input_pending``); the event loop still does all the reading.
        self._input = select.poll()
        self._input_fds: dict[Session, int] = {}
        self.core.input_pending = self._input_pending
        self.core.urgent = self._write_now

    def watch_input(self, s: Session, fd: int) -> None:
        self._input_fds[s] = fd
        self._input.register(fd, select.POLLIN)

    def unwatch_input(self, s: Session) -> None:
        fd = self._input_fds.pop(s, None)
        if fd is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._input.unregister(fd)

    def _input_pending(self) -> bool:
        return bool(self._input_fds) and bool(self._input.poll(0))

    def _write_now(self, s: Session) -> None:
        """Send ``s``'s answers (not its streamed market data) now, an order answer before
        the rest of its handling is encoded. The transport would only send at the end of this
        callback (uvloop queues writes until then), so when it holds nothing unsent the bytes
        go straight to the socket; whatever the socket does not take goes through the
        transport as usual, in order."""
        proto = self.protocols.get(s)
        if proto is None or proto.transport is None or s.close_reason is not None:
            return
        out = s.take_answers()
        if not out:
            return
        write_through(proto.transport, self._input_fds.get(s, -1), out)

    async def start(self) -> None:
        """Listen on the configured host/port (port 0 picks one; see ``self.port``)."""
        await self._listen()
        cp = self.config.gateway.control_port
        if cp >= 0:
            self._control = await asyncio.start_server(self._control_client, self.host, cp)
            self.control_port = self._control.sockets[0].getsockname()[1]
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())
        log.info(
            "gateway simulator listening on %s:%d (server versions %d..%d)",
            self.host,
            self.port,
            self.config.gateway.min_server_version,
            self.config.gateway.max_server_version,
        )

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ClientProtocol(self), self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for server in (self._server, self._control):
            if server is not None:
                server.close()
        for proto in list(self.protocols.values()):
            if proto.transport is not None:
                proto.transport.close()
        for server in (self._server, self._control):
            if server is not None:
                await server.wait_closed()

    async def __aenter__(self) -> GatewaySimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def flush(self) -> None:
        """Write every session's pending output; close the ones that asked to be closed."""
        core = self.core
        dirty = core.dirty
        while dirty:
            s = dirty.pop()
            proto = self.protocols.get(s)
            if proto is None or proto.transport is None:
                continue
            out = s.take_output()
            if out:
                proto.transport.write(out)
            if s.close_reason is not None:
                proto.transport.close()

    async def _tick_loop(self) -> None:
        interval = self.config.market.tick_interval_ms / 1000
        budget = int(self.config.market.slice_ms * 1e6)
        warm_ns = int(self.config.market.keep_warm_ms * 1e6)
        warmed = 0
        core = self.core
        while True:
            await asyncio.sleep(interval)
            try:
                if warm_ns and (t := core.clock()) - warmed >= warm_ns:
                    warmed = t
                    core.warm_answers()
                while core.advance(budget_ns=budget):
                    if self._input_pending():
                        # A request is waiting: read it first, so its answer is written
                        # ahead of this slice's market data.
                        await asyncio.sleep(0)
                    self.flush()
                    # Let the loop read the sockets (a cancel) before the next slice.
                    await asyncio.sleep(0)
                self.flush()
                await self._track_restart()
            except Exception:  # one bad tick must not stop the gateway
                log.exception("gateway simulator tick failed")

    async def _track_restart(self) -> None:
        core = self.core
        down = not core.accepting
        if down and not self._was_down and core.refuse_mode == "refuse":
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None
        elif not down and self._was_down and self._server is None:
            await self._listen()
            core.log_event(None, "restart complete: accepting connections again")
        self._was_down = down

    async def _control_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as e:  # EOF, maybe after a last line
                    if not e.partial.strip():
                        break
                    line = e.partial
                except asyncio.LimitOverrunError:
                    # longer than the stream's buffer limit: skip it, answer, keep serving
                    await _skip_line(reader)
                    line = b""
                if line:
                    reply = self.control(line)
                else:
                    reply = {"ok": False, "error": "command line too long"}
                writer.write(orjson.dumps(reply) + b"\n")
                self.flush()
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def control(self, line: bytes | str) -> dict[str, Any]:
        """Run one control command (a JSON object with ``action``) and describe the result."""
        try:
            try:
                cmd = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise ValueError(f"not valid JSON: {e}") from None
            if not isinstance(cmd, dict) or "action" not in cmd:
                raise ValueError('expected a JSON object with an "action" key')
            action = cmd.pop("action")
            self.core.advance()
            if action == "status":
                return {"ok": True, **self.core.status()}
            if action == "ledger":
                return {"ok": True, **self.core.ledger()}
            self.core.fault(action, **cmd)
            return {"ok": True, **self.core.status()}
        except (ValueError, TypeError, AttributeError) as e:
            return {"ok": False, "error": str(e)}


async def _skip_line(reader: asyncio.StreamReader) -> None:
    """Drop the rest of an over-long line, through its newline."""
    while True:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as e:
            await reader.readexactly(e.consumed)


async def serve_forever(config: GatewaySimConfig, duration_s: float | None = None) -> None:
    """Run a simulator until cancelled (or for ``duration_s``)."""
    pin_to_cpus(config.gateway.cpu_affinity, config.source, "gateway.cpu_affinity")
    async with GatewaySimServer(config) as server:
        # A gateway process runs for days: what start-up built (the universe, ibapi, the
        # encoders' templates) stays, so the collector need not walk it again and again.
        settle_heap()
        print(
            f"gateway simulator on {server.host}:{server.port}"
            + (f", control on {server.control_port}" if server.control_port else ""),
            flush=True,
        )
        if duration_s is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration_s)


__all__ = ["NS", "GatewaySimServer", "serve_forever"]
