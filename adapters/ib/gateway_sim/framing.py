"""The TWS API byte layer: the ``API\\0`` handshake and length-prefixed frames.

Every frame after the 4-byte magic is a big-endian ``uint32`` length followed by that many
bytes. The client opens with ``b"API\\0"`` and a frame holding ``"v{min}..{max}"`` and optional
connect options (``" +PACEAPI"``); the server answers one frame ``"{version}\\0{time}\\0"``. The
maximum frame is ``ibapi.const.MAX_MSG_LEN`` (16 MB - 1): a longer prefix means the stream is
garbage and the connection is closed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ibapi.const import MAX_MSG_LEN

MAGIC = b"API\0"
_LEN = struct.Struct(">I")


class ProtocolViolation(ValueError):
    """The byte stream cannot be a TWS API client: the connection must be closed."""


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What the client offered in its handshake."""

    min_version: int
    max_version: int
    options: str


def frame(payload: bytes) -> bytes:
    """``payload`` with its 4-byte length prefix."""
    return _LEN.pack(len(payload)) + payload


def handshake_reply(server_version: int, connection_time: str) -> bytes:
    """The server's first frame: negotiated version and connection time, NUL-terminated."""
    return frame(f"{server_version}\0{connection_time}\0".encode())


def parse_hello(payload: bytes) -> ClientHello:
    """Read the version-range frame that follows ``API\\0``."""
    text = payload.decode("ascii", errors="replace")
    head, _, options = text.partition(" ")
    if not head.startswith("v") or ".." not in head:
        raise ProtocolViolation(f"handshake: expected 'v<min>..<max>', got {text[:40]!r}")
    low, _, high = head[1:].partition("..")
    try:
        return ClientHello(int(low), int(high), options.strip())
    except ValueError:
        raise ProtocolViolation(f"handshake: bad version range {head[:40]!r}") from None


def negotiate(hello: ClientHello, server_min: int, server_max: int) -> int:
    """The version a real TWS picks: the lower of the two maxima, if the ranges overlap."""
    version = min(hello.max_version, server_max)
    if version < max(hello.min_version, server_min):
        raise ProtocolViolation(
            f"handshake: client range v{hello.min_version}..{hello.max_version} does not meet "
            f"the simulator's v{server_min}..{server_max}"
        )
    return version


class FrameReader:
    """Cuts length-prefixed frames out of a byte stream, in one pass per ``feed``."""

    __slots__ = ("_buf", "max_len")

    def __init__(self, max_len: int = MAX_MSG_LEN) -> None:
        self._buf = bytearray()
        self.max_len = max_len

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return every complete frame's payload, in order."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (size,) = _LEN.unpack_from(buf, pos)
            if size > self.max_len:
                raise ProtocolViolation(
                    f"frame length {size} exceeds the maximum {self.max_len} (16 MB)"
                )
            if end - pos - 4 < size:
                break
            out.append(bytes(buf[pos + 4 : pos + 4 + size]))
            pos += 4 + size
        if pos:
            del buf[:pos]
        return out

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)


def message_id(server_version: int, payload: bytes) -> int | None:
    """The message id of a client frame at ``server_version`` (None if unreadable)."""
    if server_version >= 201:
        return _LEN.unpack_from(payload)[0] if len(payload) >= 4 else None
    head, _, _ = payload.partition(b"\0")
    try:
        return int(head)
    except ValueError:
        return None
