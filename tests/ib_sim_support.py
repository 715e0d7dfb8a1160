"""Test support: a gateway simulator on a background loop, and the official ibapi client.

The client is ibapi's ``EClient`` + ``EReader`` exactly as IB ships them (its own socket and
reader thread); ``RecordingApp`` records every ``EWrapper`` callback so tests can wait for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ibapi.client import EClient
from ibapi.wrapper import EWrapper

from adapters.ib.gateway_sim.config import GatewaySimConfig, parse_gateway_config
from adapters.ib.gateway_sim.server import GatewaySimServer


class SentFrames:
    """Stands in for the socket connection of ibapi's EClient (and ib_async's Client): it keeps
    the frames they would send, length prefix included."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendMsg(self, msg: bytes) -> None:
        self.sent.append(msg)

    def isConnected(self) -> bool:
        return True


@dataclass(slots=True)
class Call:
    name: str
    args: tuple[Any, ...]
    #: ``time.monotonic()`` when the client's reader thread delivered the callback.
    at: float = field(default_factory=time.monotonic)


class RecordingApp(EWrapper, EClient):
    """The official client, recording every callback as a ``Call``."""

    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, self)
        self.calls: list[Call] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def _record(self, name: str, args: tuple[Any, ...]) -> None:
        with self._cond:
            self.calls.append(Call(name, args))
            self._cond.notify_all()

    def start(self, host: str, port: int, client_id: int) -> None:
        self.connect(host, port, client_id)
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()

    def run(self) -> None:
        try:
            super().run()
        except TypeError:
            # ibapi 10.46's ``EClient.run`` goes on decoding messages still queued after
            # ``disconnect()`` has cleared the server version, and compares None with an int:
            # a teardown race of the official client, not a fault of the server it talks to.
            if self.isConnected():
                raise

    def stop(self) -> None:
        self.disconnect()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait(
        self,
        name: str,
        pred: Callable[..., bool] = lambda *a: True,
        timeout: float = 5.0,
        since: int = 0,
    ) -> Call:
        """Wait for a callback ``name`` whose arguments satisfy ``pred``, among the callbacks
        from index ``since`` of ``calls`` on (``len(app.calls)`` earlier: only new ones)."""
        deadline = time.monotonic() + timeout
        seen = since
        with self._cond:
            while True:
                for call in self.calls[seen:]:
                    if call.name == name and pred(*call.args):
                        return call
                seen = len(self.calls)
                left = deadline - time.monotonic()
                if left <= 0:
                    names = [c.name for c in self.calls[-15:]]
                    raise AssertionError(f"no {name} callback within {timeout}s; last: {names}")
                self._cond.wait(left)

    def all(self, name: str) -> list[tuple[Any, ...]]:
        with self._cond:
            return [c.args for c in self.calls if c.name == name]

    def timed(self, name: str) -> list[Call]:
        """Every ``name`` callback so far as a ``Call`` (with its arrival time ``at``)."""
        with self._cond:
            return [c for c in self.calls if c.name == name]

    def errors(self) -> list[tuple[int, int, str]]:
        """(reqId, code, message) of every error callback so far."""
        return [(a[0], a[2], a[3]) for a in self.all("error")]


def record_callbacks(cls: type) -> type:
    """Make every ``EWrapper`` callback of ``cls`` call ``self._record(name, args)``."""

    def recorder(name: str) -> Callable[..., None]:
        def method(self: Any, *args: Any) -> None:
            self._record(name, args)

        method.__name__ = name
        return method

    for name in dir(EWrapper):
        if not name.startswith("_") and callable(getattr(EWrapper, name)):
            setattr(cls, name, recorder(name))
    return cls


record_callbacks(RecordingApp)


class SimThread:
    """A ``GatewaySimServer`` running on its own event loop in a daemon thread."""

    def __init__(self, config: GatewaySimConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = GatewaySimServer(config)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.stop())

    def __enter__(self) -> SimThread:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    @property
    def port(self) -> int:
        return self.server.port

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the simulator's loop and return its result."""

        async def run() -> Any:
            result = fn()
            self.server.flush()
            return result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def fault(self, action: str, **params: Any) -> None:
        self.call(lambda: self.server.core.fault(action, **params))


def sim_config(**sections: Any) -> GatewaySimConfig:
    """A simulator config on a free loopback port, with ``sections`` merged in.

    A table (``gateway={...}``) is merged into the defaults; an array (``faults=[...]``,
    ``instruments=[...]``) is taken as given.
    """
    data: dict[str, Any] = {"gateway": {"port": 0}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_gateway_config(data, "test")


@contextlib.contextmanager
def connected(sim: SimThread, client_id: int = 1) -> Iterator[RecordingApp]:
    """An official ibapi client connected to ``sim`` and past the handshake."""
    app = RecordingApp()
    app.start("127.0.0.1", sim.port, client_id)
    try:
        app.wait("nextValidId")
        app.wait("managedAccounts")
        yield app
    finally:
        app.stop()


def record_order_status_parses(monkeypatch: Any) -> list[tuple]:
    """The orderStatus arguments every ``ClientSession._parse_order_status`` call gives from
    now on, real or dry (``()`` when it leaves the frame to ibapi)."""
    from adapters.ib.connection import ClientSession

    seen: list[tuple] = []
    real = ClientSession._parse_order_status

    def parse(self: ClientSession, msg_id: int, body: bytes):
        out = real(self, msg_id, body)
        seen.append(out[0] if out is not None else ())
        return out

    monkeypatch.setattr(ClientSession, "_parse_order_status", parse)
    return seen
