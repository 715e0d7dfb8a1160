"""``ClientSession``'s own orderStatus decode against ibapi's ``Decoder``: for the same frame the
wrapper gets the same calls with the same arguments, at text (176) and protobuf versions; frames
it does not take (unusual or broken) are left to ibapi, which decodes them as before."""

from __future__ import annotations

import random
import struct
from decimal import Decimal
from typing import Any

import pytest
from ibapi import comm
from ibapi.decoder import Decoder
from ibapi.server_versions import MAX_CLIENT_VER
from ibapi.wrapper import EWrapper

from adapters.ib.connection import ClientSession
from adapters.ib.gateway_sim.responses import ResponseEncoder
from tests.ib_sim_support import record_order_status_parses

_LEN = struct.Struct(">I")
STATUSES = ["Submitted", "PreSubmitted", "Cancelled", "ApiCancelled", "Filled", "Inactive",
            "PendingCancel", "Ünïcødé"]  # fmt: skip


class Recorder(EWrapper):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def orderStatus(self, *args: Any) -> None:
        self.calls.append(("orderStatus", args))

    def orderStatusProtoBuf(self, proto: Any) -> None:
        self.calls.append(("orderStatusProtoBuf", (proto.SerializeToString(),)))

    def error(self, *args: Any) -> None:
        self.calls.append(("error", args))


def _session(version: int) -> tuple[ClientSession, Recorder]:
    rec = Recorder()
    s = ClientSession(rec, 1, max_version=version)
    s.state.server_version = version
    s.decoder = Decoder(rec, version)
    return s, rec


def _reference(version: int, payload: bytes) -> list[tuple[str, tuple[Any, ...]]]:
    """What ibapi's Decoder alone makes of one frame's payload (as ``EClient.run`` feeds it)."""
    rec = Recorder()
    dec = Decoder(rec, version)
    try:
        if version >= 201:
            msg_id = _LEN.unpack_from(payload)[0]
            if msg_id > 200:
                dec.processProtoBuf(payload[4:], msg_id - 200)
            else:
                dec.interpret(comm.read_fields(payload[4:]), msg_id)
        else:
            fields = comm.read_fields(payload)
            dec.interpret(fields[1:], int(fields[0]))
    except Exception:
        pass
    return rec.calls


def _random_status(rng: random.Random) -> tuple[Any, ...]:
    qty = rng.choice([Decimal(rng.randrange(0, 10_000)), Decimal(rng.randrange(1, 10**6)) / 1000])
    return (
        rng.randrange(0, 2**31 - 1),
        rng.choice(STATUSES),
        qty,
        rng.choice([Decimal(0), Decimal(rng.randrange(1, 500))]),
        rng.choice([0.0, round(rng.uniform(0.01, 5000), rng.randrange(0, 6)), rng.uniform(0, 1e4)]),
        rng.randrange(0, 2**40),
        rng.choice([0, rng.randrange(1, 10**6)]),
        rng.choice([0.0, rng.uniform(0.01, 5000)]),
        rng.randrange(0, 1000),
        rng.choice(["", "locate", "child,trigger", "ö"]),
        rng.choice([0.0, rng.uniform(0, 500)]),
    )


@pytest.mark.parametrize("version", [176, MAX_CLIENT_VER], ids=lambda v: f"v{v}")
def test_random_order_status_matches_ibapi(version: int, monkeypatch) -> None:
    rng = random.Random(version)
    enc = ResponseEncoder(version, True)
    ibapi_calls = 0
    original = (Decoder.processOrderStatusMsg, Decoder.processOrderStatusMsgProtoBuf)

    def spy(which: int):
        def run(self, *args):
            nonlocal ibapi_calls
            ibapi_calls += 1
            return original[which](self, *args)

        return run

    monkeypatch.setattr(Decoder, "processOrderStatusMsg", spy(0))
    monkeypatch.setattr(Decoder, "processOrderStatusMsgProtoBuf", spy(1))
    s, rec = _session(version)
    for _ in range(400):
        payload = enc.order_status(*_random_status(rng))[4:]
        rec.calls.clear()
        s._dispatch(payload)
        got = list(rec.calls)
        before = ibapi_calls
        assert got == _reference(version, payload)
        ibapi_calls = before
        assert got and got[-1][0] == "orderStatus"
    assert ibapi_calls == 0, "well-formed frames never reach ibapi's decoder"


def _text_body(fields: list[bytes]) -> bytes:
    return b"3\0" + b"".join(f + b"\0" for f in fields)


GOOD = [b"17", b"Cancelled", b"0", b"100", b"0", b"123456", b"0", b"0", b"11", b"", b"0"]


@pytest.mark.parametrize(
    "fields",
    [
        GOOD,
        GOOD[:-1],  # one field short
        [*GOOD, b"extra"],
        [b"", *GOOD[1:]],  # empty order id
        [*GOOD[:2], b"", *GOOD[3:]],  # empty filled
        [*GOOD[:2], b"2147483647", *GOOD[3:]],  # unset filled
        [*GOOD[:3], b"9223372036854775807", *GOOD[4:]],
        [*GOOD[:4], b"Infinity", *GOOD[5:]],
        [*GOOD[:4], b"", *GOOD[5:]],  # empty price
        [b"x17", *GOOD[1:]],  # not a number
        [*GOOD[:2], b"1e", *GOOD[3:]],
        [GOOD[0], b"\xff\xfe", *GOOD[2:]],  # not UTF-8
        [*GOOD[:9], b"\xc3", GOOD[10]],
    ],
)
def test_unusual_text_frames_decode_as_ibapi_does(fields: list[bytes]) -> None:
    s, rec = _session(176)
    payload = _text_body(fields)
    s._dispatch(payload)
    assert rec.calls == _reference(176, payload)


def test_protobuf_with_fields_missing_decodes_as_ibapi_does() -> None:
    from ibapi.protobuf.OrderStatus_pb2 import OrderStatus

    rng = random.Random(5)
    names = [f.name for f in OrderStatus.DESCRIPTOR.fields]
    full = dict(zip(names, _random_status(rng), strict=True))
    full["filled"], full["remaining"] = str(full["filled"]), str(full["remaining"])
    s, rec = _session(MAX_CLIENT_VER)
    for k in range(60):
        kept = {n: v for n, v in full.items() if rng.random() < 0.6 or k == 0}
        body = OrderStatus(**kept).SerializeToString()
        payload = _LEN.pack(203) + body
        rec.calls.clear()
        s._dispatch(payload)
        assert rec.calls == _reference(MAX_CLIENT_VER, payload)
    rec.calls.clear()
    s._dispatch(_LEN.pack(203) + b"\x0a\xff")  # truncated: ibapi's decoder reports it
    assert rec.calls == _reference(MAX_CLIENT_VER, _LEN.pack(203) + b"\x0a\xff")


@pytest.mark.parametrize("version", [176, 200, MAX_CLIENT_VER], ids=lambda v: f"v{v}")
def test_warm_receive_goes_the_answers_way_and_calls_no_one(version: int, monkeypatch) -> None:
    """The keep-warm dry run of an order answer: its made-up orderStatus is one ibapi decodes
    to the same arguments our parse gives; it is cut by a scratch decoder (a frame the session
    is halfway through receiving is not disturbed) and no callback is made."""
    parses = record_order_status_parses(monkeypatch)
    rec = Recorder()
    rows: list[int] = []
    s = ClientSession(rec, 1, max_version=version, on_rows=lambda r, raw: rows.append(len(r)))
    s.order_ids_from = 4096
    s.receive(b"\0\0\0\x1a" + f"{version}\0".encode() + b"20250602 10:00:00 EST\0")
    assert s.hot is not None
    rec.calls.clear()
    answer = ResponseEncoder(version, True).order_status(
        5001, "Cancelled", Decimal(0), Decimal(1), 0.0, 99, 0, 0.0, 5, "", 0.0
    )
    s.receive(answer[:7])  # a read that ends mid-frame
    for _ in range(3):
        s.warm_receive(5000)
    assert rec.calls == [] and rows == []
    assert s.hot.buffered == 7
    frame = ClientSession._order_status_frame(version, 5000)
    expected = [c for c in _reference(version, frame[4:]) if c[0] == "orderStatus"]
    assert [("orderStatus", p) for p in parses] == expected * 3  # the fast parse took it
    assert expected[0][1][:2] == (5000, "Submitted")
    s.receive(answer[7:])  # the real answer, intact
    assert [c[1][:2] for c in rec.calls if c[0] == "orderStatus"] == [(5001, "Cancelled")]
