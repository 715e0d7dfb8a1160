"""IB receive path: ``HotDecoder`` (one ``hotpath.ibwire`` kernel call per read) side by side
with ibapi's ``Decoder`` and ib_async's ``Decoder`` on the same bytes.

The stream: ``N_MESSAGES`` market-data frames as IB Gateway sends them to a client watching a
few instruments (the gateway simulator's encoder): 40% tickPrice (bid/ask, 2-decimal prices,
round-lot sizes), 20% tickSize, 25% updateMktDepthL2 (mostly updates near the top), 15%
tick-by-tick bid/ask. Once as text at server version 176, once as protobuf at 225 (where
tick-by-tick is protobuf too). It arrives in 4096-byte reads (ibapi's own ``recv`` size),
cut anywhere, frames straddling reads.

1. ``test_hot_decode_text_v176`` / ``test_hot_decode_protobuf_v225``: ``HotDecoder.feed`` per
   read; rows stay in the preallocated output, as the book actor takes them.
2. ``test_anchor_ibapi_text_v176`` / ``test_anchor_ibapi_protobuf_v225``: ibapi as shipped:
   ``EReader``'s framing (``comm.read_msg``) and ``EClient.run``'s dispatch to
   ``Decoder.interpret`` / ``processProtoBuf``, into a wrapper whose callbacks (the
   ``*ProtoBuf`` ones included) do nothing. No reader thread or queue: cheaper than real use.
3. ``test_anchor_ib_async_text_v176``: ib_async's ``Client._onSocketHasData`` loop (decode,
   ``split("\\0")``, ``Decoder.interpret``) into a no-op wrapper; ib_async speaks text only, up
   to 178. Skipped when ib_async is not installed.

Every test records ``messages_per_round`` (frames), ``ns_per_message`` and
``messages_per_s`` (median); the anchors add ``speedup`` (their ns per message over ours, same
run, same encoding). Targets: ours >= 2,000,000 messages/s, >= 8x ibapi, >= 2x ib_async.
"""

from __future__ import annotations

import struct
from decimal import Decimal

import numpy as np
import pytest
from ibapi import comm
from ibapi.const import MAX_MSG_LEN
from ibapi.decoder import Decoder
from ibapi.server_versions import MIN_SERVER_VER_PROTOBUF
from ibapi.wrapper import EWrapper

from adapters.ib.decode import HotDecoder
from adapters.ib.gateway_sim.responses import ResponseEncoder

N_MESSAGES = 20_000
READ_BYTES = 4096
TEXT_VERSION = 176
PROTOBUF_VERSION = 225
MARKET_MAKERS = ("NSDQ", "ARCA", "BATS", "EDGX", "IEX", "NYSE")

_NS: dict[str, float] = {}  # ns per message, by test, for the anchors' ratios


def market_data(version: int, n: int = N_MESSAGES, seed: int = 7) -> bytes:
    """``n`` frames of a realistic market-data mix at ``version`` (protobuf where it applies)."""
    enc = ResponseEncoder(version, protobuf=True)
    rng = np.random.default_rng(seed)
    kinds = rng.choice(4, size=n, p=[0.40, 0.20, 0.25, 0.15]).tolist()
    req = rng.integers(1, 9, n).tolist()
    side = rng.integers(0, 2, n).tolist()
    lots = (rng.integers(1, 50, n) * 100).tolist()
    level = rng.geometric(0.35, n).tolist()
    move = rng.integers(-2, 3, n).tolist()
    mm = rng.integers(0, len(MARKET_MAKERS), n).tolist()
    op = rng.choice(3, size=n, p=[0.1, 0.8, 0.1]).tolist()
    mids = {r: 10_000 + 1_000 * r for r in range(1, 9)}  # cents
    out = []
    t = 1_700_000_000
    for k in range(n):
        r = req[k]
        mids[r] += move[k]
        bid, ask = mids[r] - 1, mids[r] + 1
        size = Decimal(lots[k])
        if kinds[k] == 0:
            tick_type = 1 if side[k] else 2
            price = (bid if side[k] else ask) / 100
            out.append(enc.tick_price(r, tick_type, price, size, 0))
        elif kinds[k] == 1:
            out.append(enc.tick_size(r, (0, 3, 5, 8)[lots[k] % 4], size))
        elif kinds[k] == 2:
            price = (bid - level[k] + 1 if side[k] else ask + level[k] - 1) / 100
            position = min(level[k] - 1, 9)
            out.append(
                enc.update_mkt_depth_l2(
                    r, position, MARKET_MAKERS[mm[k]], op[k], side[k], price, size, False
                )
            )
        else:
            t += 1
            out.append(
                enc.tick_by_tick_bid_ask(
                    r, t, bid / 100, ask / 100, size, Decimal(lots[n - 1 - k]), 0
                )
            )
    return b"".join(out)


def reads(stream: bytes) -> list[bytes]:
    return [stream[k : k + READ_BYTES] for k in range(0, len(stream), READ_BYTES)]


def _record(benchmark, name: str, per_round: int, ours: str | None = None) -> None:
    benchmark.extra_info["messages_per_round"] = per_round
    if not benchmark.stats:  # --benchmark-disable: nothing measured
        return
    ns = benchmark.stats.stats.median * 1e9 / per_round
    benchmark.extra_info["ns_per_message"] = ns
    benchmark.extra_info["messages_per_s"] = 1e9 / ns
    _NS[name] = ns
    if ours is not None and ours in _NS:
        benchmark.extra_info["speedup"] = ns / _NS[ours]


# -- ours ---------------------------------------------------------------------------------------


def _bench_ours(benchmark, version: int, name: str) -> None:
    chunks = reads(market_data(version))
    decoder = HotDecoder(version, capacity=4096)
    decoder.feed(chunks[0])  # kernel loaded, buffers touched
    decoder = HotDecoder(version, capacity=4096)
    counts = {"frames": 0, "rows": 0}

    def go() -> None:
        frames = rows = 0
        for chunk in chunks:
            batch = decoder.feed(chunk)
            frames += batch.frames
            rows += len(batch.rows)
            assert not batch.cold and not batch.malformed and not batch.more
        counts["frames"], counts["rows"] = frames, rows

    benchmark.pedantic(go, rounds=100, warmup_rounds=5)
    assert counts["frames"] == N_MESSAGES and decoder.buffered == 0
    _record(benchmark, name, N_MESSAGES)


def test_hot_decode_text_v176(benchmark):
    _bench_ours(benchmark, TEXT_VERSION, "ours_text")


def test_hot_decode_protobuf_v225(benchmark):
    _bench_ours(benchmark, PROTOBUF_VERSION, "ours_protobuf")


# -- ibapi --------------------------------------------------------------------------------------


class _IbapiNoOp(EWrapper):
    """Callbacks that do nothing (the base class would log each one)."""

    def tickPrice(self, reqId, tickType, price, attrib):
        pass

    def tickSize(self, reqId, tickType, size):
        pass

    def updateMktDepthL2(self, *args):
        pass

    def tickByTickBidAsk(self, *args):
        pass

    def tickPriceProtoBuf(self, proto):
        pass

    def tickSizeProtoBuf(self, proto):
        pass

    def updateMarketDepthL2ProtoBuf(self, proto):
        pass

    def tickByTickDataProtoBuf(self, proto):
        pass


def _ibapi_round(chunks: list[bytes], decoder: Decoder, version: int) -> int:
    """EReader.run's framing and EClient.run's dispatch, minus the thread and the queue."""
    n = 0
    buf = b""
    for data in chunks:
        buf += data
        while len(buf) > 0:
            (_, msg, buf) = comm.read_msg(buf)
            if not msg:
                break
            text = msg
            if len(text) > MAX_MSG_LEN:
                raise AssertionError("no oversized frames in this stream")
            if version >= MIN_SERVER_VER_PROTOBUF:
                msg_id = int.from_bytes(text[:4], "big")
                text = text[4:]
            else:
                msg_id = int(text[: text.index(b"\0")])
                text = text[text.index(b"\0") + len(b"\0") :]
            if msg_id > 200:
                decoder.processProtoBuf(text, msg_id - 200)
            else:
                decoder.interpret(comm.read_fields(text), msg_id)
            n += 1
    return n


def _bench_ibapi(benchmark, version: int, name: str, ours: str) -> None:
    chunks = reads(market_data(version))
    decoder = Decoder(_IbapiNoOp(), version)
    counts = {"frames": 0}

    def go() -> None:
        counts["frames"] = _ibapi_round(chunks, decoder, version)

    benchmark.pedantic(go, rounds=5, warmup_rounds=1)
    assert counts["frames"] == N_MESSAGES
    _record(benchmark, name, N_MESSAGES, ours)


def test_anchor_ibapi_text_v176(benchmark):
    _bench_ibapi(benchmark, TEXT_VERSION, "ibapi_text", "ours_text")


def test_anchor_ibapi_protobuf_v225(benchmark):
    _bench_ibapi(benchmark, PROTOBUF_VERSION, "ibapi_protobuf", "ours_protobuf")


# -- ib_async -----------------------------------------------------------------------------------


class _IbAsyncNoOp:
    """The wrapper methods ib_async's Decoder calls for this stream."""

    def priceSizeTick(self, *args):
        pass

    def tickSize(self, *args):
        pass

    def updateMktDepthL2(self, *args):
        pass

    def tickByTickBidAsk(self, *args):
        pass


def _ib_async_round(chunks: list[bytes], decoder) -> int:
    """ib_async's ``Client._onSocketHasData``, as written (without its logging hooks)."""
    n = 0
    data_buf = b""
    for data in chunks:
        data_buf += data
        while True:
            if len(data_buf) <= 4:
                break
            msg_end = 4 + struct.unpack(">I", data_buf[:4])[0]
            if len(data_buf) < msg_end:
                break
            msg = data_buf[4:msg_end].decode(errors="backslashreplace")
            data_buf = data_buf[msg_end:]
            fields = msg.split("\0")
            fields.pop()
            decoder.interpret(fields)
            n += 1
    return n


def test_anchor_ib_async_text_v176(benchmark):
    ib_async_decoder = pytest.importorskip("ib_async.decoder", reason="ib_async not installed")
    chunks = reads(market_data(TEXT_VERSION))
    decoder = ib_async_decoder.Decoder(_IbAsyncNoOp(), TEXT_VERSION)
    counts = {"frames": 0}

    def go() -> None:
        counts["frames"] = _ib_async_round(chunks, decoder)

    benchmark.pedantic(go, rounds=5, warmup_rounds=1)
    assert counts["frames"] == N_MESSAGES
    _record(benchmark, "ib_async_text", N_MESSAGES, "ours_text")
