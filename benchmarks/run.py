"""`make bench`: run the pytest-benchmark suites and the latency harness, then write
benchmarks/RESULTS.md with the machine, the figures, the ratios to the anchors measured in the
same run, and each target's verdict."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numba
import numpy as np
import pytest

from benchmarks import anchors, gateway_sim, harness, ib_venue, journal, wire_interleaved

HERE = Path(__file__).resolve().parent


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _suites() -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        code = pytest.main(
            [str(HERE), "-q", "-p", "no:cacheprovider", f"--benchmark-json={out}",
             "--benchmark-disable-gc", "--benchmark-min-rounds=20"]
        )  # fmt: skip
        if code != 0:
            raise SystemExit(f"benchmark suites failed (pytest exit {code})")
        data = json.loads(out.read_text())
    res = {}
    for b in data["benchmarks"]:
        if b["stats"] is None:  # skipped (an anchor that is not installed)
            continue
        per = b["extra_info"].get("messages_per_round", 1)
        res[b["name"]] = {
            "median_ns": b["stats"]["median"] * 1e9 / per,
            "min_ns": b["stats"]["min"] * 1e9 / per,
            "per_round": per,
        }
    return res


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> int:
    suites = _suites()
    rtt = anchors.loopback_rtt_ns()
    rtt_p50, rtt_p99 = np.percentile(rtt, [50, 99])
    # Three runs per read size; the one with the median tick-to-order p99 is reported (with
    # the other two's): one burst of a neighbour's load in a 0.3 s run moves a p99 of ~800
    # orders by tens of µs.
    lat, runs_p99 = {}, {}
    for b, n in ((16, 12000), (100, 3000)):
        runs = sorted(
            (harness.run(n_batches=n, batch=b) for _ in range(3)),
            key=lambda r: _stage(r, "tick_to_order").p99,
        )
        lat[b] = runs[1]
        runs_p99[b] = [_stage(r, "tick_to_order").p99 for r in runs]
    jitter = {b: anchors.fixed_work_ns(_stage(r, "tick_to_order").p50) for b, r in lat.items()}
    with tempfile.TemporaryDirectory() as tmp:
        journaled = harness.run(n_batches=12000, batch=16, journal=f"{tmp}/bench.twj")
        jt = {p: journal.journal_throughput(f"{tmp}/{p}.twj", 50_000 if p != "always" else 2_000, p)
              for p in ("never", "batch", "always")}  # fmt: skip
        restart = journal.recovery_rate(f"{tmp}/bench.twj")
    sim = [gateway_sim.measure(v) for v in (176, 225)]
    wire = [wire_interleaved.measure(v) for v in (176, 225)]
    ibv = ib_venue.run()
    ib_venue.ENGINE_OPTIONS["busy_poll"] = True  # the opt-in low-latency setting, same run
    try:
        ibv_busy = ib_venue.run()
    finally:
        ib_venue.ENGINE_OPTIONS["busy_poll"] = False
    ibv_pinned = ibv_recipe = None
    if ib_venue.pinned_cpus() is not None:  # the other opt-in: engine and gateway apart
        ib_venue.ENGINE_OPTIONS["pin"] = True
        try:
            ibv_pinned = ib_venue.run()
            # Both: the low-latency deployment (a spinning engine on a core of its own).
            ib_venue.ENGINE_OPTIONS["busy_poll"] = True
            ibv_recipe = ib_venue.run()
        finally:
            ib_venue.ENGINE_OPTIONS.update(pin=False, busy_poll=False)

    obj = suites["test_object_ring_write_drain"]["median_ns"]
    arr = suites["test_array_ring_batch_write_read"]["median_ns"]
    dq = suites["test_anchor_deque"]["median_ns"]
    aq = suites["test_anchor_asyncio_queue"]["median_ns"]
    pipe_ns = suites["test_pipeline_with_strategies"]["median_ns"]
    book_ns = suites["test_pipeline_book_only"]["median_ns"]
    pipe_rate = 1e9 / pipe_ns
    kern = suites["test_book_kernel_throughput"]["median_ns"]
    ibr = suites["test_book_kernel_ib_rows"]["median_ns"]
    l2 = suites["test_l2book_apply_batch"]["median_ns"]
    nt_present = "test_anchor_nautilus_apply_delta" in suites
    nt = suites["test_anchor_nautilus_apply_delta"]["median_ns"] if nt_present else float("nan")
    r1 = suites["test_risk_check_order_single"]["median_ns"]
    r64 = suites["test_risk_check_batch_64"]["median_ns"]
    rref = suites["test_anchor_reference_model_check"]["median_ns"]

    lines = [
        "# tickwire benchmark results",
        "",
        "Written by `make bench` (benchmarks/run.py). Machines here are shared and noisy: read",
        "the ratios to the anchors measured in the same run before the absolute figures.",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {_cpu()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()} ({sys.implementation.name}), numpy "
        f"{np.__version__}, numba {numba.__version__}",
        "",
        "## Rings (per message, write + drain, from Python)",
        "",
        "| what | median ns/msg | vs deque anchor | target |",
        "|---|---|---|---|",
        f"| ObjectRing (order flow: claim, 4 fields, handler per message) | {obj:.0f} | "
        f"{obj / dq:.2f}x | <= 150 ns: {_verdict(obj <= 150)} |",
        f"| ArrayRing (market data: 256-row batch write + view read) | {arr:.1f} | "
        f"{arr / dq:.2f}x | <= 150 ns: {_verdict(arr <= 150)} |",
        f"| anchor: collections.deque append/popleft + handler | {dq:.0f} | 1.00x | |",
        f"| anchor: asyncio.Queue put_nowait/get_nowait + handler | {aq:.0f} | {aq / dq:.2f}x | |",
        "",
        "## Synthetic pipeline (book kernel, SMA + market maker, risk gate, router, sim venue)",
        "",
        "| what | updates/s | ns/update | target |",
        "|---|---|---|---|",
        f"| with both strategies | {pipe_rate:,.0f} | {pipe_ns:.0f} | >= 200,000/s: "
        f"{_verdict(pipe_rate >= 200_000)} |",
        f"| book only (anchor for the strategies' cost) | {1e9 / book_ns:,.0f} | {book_ns:.0f} | |",
        "",
        "## Book kernel (hotpath.book) and L2Book",
        "",
        "| what | ns/update | rate | vs NautilusTrader apply_delta | target |",
        "|---|---|---|---|---|",
        f"| book kernel, price-level updates batched | {kern:.1f} | {1e9 / kern / 1e6:.0f} M/s | "
        f"{nt / kern:.0f}x | >= 30 M/s: {_verdict(1e9 / kern >= 30e6)} |",
        f"| book kernel, IB position rows | {ibr:.1f} | {1e9 / ibr / 1e6:.1f} M/s | | |",
        f"| L2Book.apply_batch incl. building inputs | {l2:.0f} | | {nt / l2:.1f}x | >= 3x: "
        f"{_verdict(nt / l2 >= 3)} |",
        f"| anchor: NautilusTrader OrderBook.apply_delta from Python | {nt:.0f} | | 1.0x | |"
        if nt_present
        else "| anchor: NautilusTrader not installed (pip install -e '.[anchors]') | | | | |",
        "",
        "## Risk kernels (hotpath.risk: 30 checks + state updates)",
        "",
        "| what | ns/order | vs plain-Python model | target |",
        "|---|---|---|---|",
        f"| check_order, one order incl. dispatch | {r1:.0f} | {r1 / rref:.2f}x | <= 2,000 ns: "
        f"{_verdict(r1 <= 2000)} |",
        f"| check_batch, 64 orders | {r64:.0f} | {r64 / rref:.3f}x | <= 100 ns: "
        f"{_verdict(r64 <= 100)} |",
        f"| anchor: plain-Python model of the same checks | {rref:.0f} | 1.00x | |",
        "",
        "## Latency harness (per-stage ns stamps; venue answers 20 µs later via loop timers)",
        "",
        f"Anchor: uvloop loopback TCP round trip, 64 B: p50 {rtt_p50 / 1e3:.1f} µs, "
        f"p99 {rtt_p99 / 1e3:.1f} µs (n={len(rtt)}).",
        "",
    ]
    for batch, r in lat.items():
        lines += [
            f"### {batch} updates per socket read: {r.updates_per_s:,.0f} updates/s, "
            f"{r.orders} orders, {r.fills} fills",
            "",
            "| stage | n | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in r.stages:
            lines.append(
                f"| {s.stage} | {s.count} | {s.p50 / 1e3:.1f} | {s.p90 / 1e3:.1f} | "
                f"{s.p99 / 1e3:.1f} | {s.p999 / 1e3:.1f} | {s.max / 1e3:.1f} |"
            )
        ttl = _stage(r, "tick_to_order")
        j50, j99 = np.percentile(jitter[batch], [50, 99])
        lines += [
            "",
            f"tick-to-order p99 {ttl.p99 / 1e3:.1f} µs (the median of three runs: "
            + ", ".join(f"{p / 1e3:.1f}" for p in runs_p99[batch])
            + f" µs) = {ttl.p99 / rtt_p99:.2f}x the loopback RTT p99; target <= 50 µs: "
            f"{_verdict(ttl.p99 <= 50_000)}",
            "",
            f"Machine anchor: a fixed piece of pure-Python work sized like this p50 takes p50 "
            f"{j50 / 1e3:.1f} µs, p99 {j99 / 1e3:.1f} µs ({j99 / j50:.2f}x) here, now; "
            f"tick-to-order's p99 is {ttl.p99 / ttl.p50:.2f}x its p50.",
            "",
        ]
    lines += _oms_lines(lat[16], journaled, jt, restart)
    lines += _ib_lines(suites, sim, wire)
    lines += _ib_venue_lines(ibv, rtt_p50, rtt_p99)
    lines += _ib_venue_variant_lines(ibv_busy, "`[engine] busy_poll = true`")
    if ibv_pinned is not None and ibv_recipe is not None:
        cpus = ib_venue.pinned_cpus()
        apart = f"the engine on CPU {cpus[0]}, the simulator on CPU {cpus[1]}"
        lines += _ib_venue_variant_lines(ibv_pinned, f"`cpu_affinity`: {apart}")
        lines += _ib_venue_variant_lines(
            ibv_recipe,
            f"both `busy_poll = true` and `cpu_affinity` ({apart}): the low-latency "
            "deployment, a spinning engine on a core of its own",
        )
    text = "\n".join(lines)
    (HERE / "RESULTS.md").write_text(text)
    print(text)
    return 0


def _stage(r: harness.HarnessResult, name: str):
    return next(s for s in r.stages if s.stage == name)


def _oms_lines(plain, journaled, jt: dict[str, dict], restart: dict) -> list[str]:
    """Issue 6: risk gate + OMS + router + journal append per order, and journal throughput."""

    def stage(r, name: str):
        return next(s for s in r.stages if s.stage == name)

    op = stage(journaled, "order_path")
    base = stage(plain, "order_path")
    lines = [
        "## Order path: risk gate + OMS + router + journal append (+ sim venue's submit)",
        "",
        "Per order, from the strategy's order (`ts_created`) to the venue's submit (`ts_sent`),",
        "the demo pipeline at 16 updates per read; the journal on (batch fsync) and off.",
        "",
        "| run | orders | p50 µs | p90 µs | p99 µs | p99.9 µs | target |",
        "|---|---|---|---|---|---|---|",
        f"| journal on | {op.count} | {op.p50 / 1e3:.1f} | {op.p90 / 1e3:.1f} | "
        f"{op.p99 / 1e3:.1f} | {op.p999 / 1e3:.1f} | p50 <= 15, p99 <= 50 µs: "
        f"{_verdict(op.p50 <= 15_000 and op.p99 <= 50_000)} |",
        f"| journal off (anchor) | {base.count} | {base.p50 / 1e3:.1f} | {base.p90 / 1e3:.1f} | "
        f"{base.p99 / 1e3:.1f} | {base.p999 / 1e3:.1f} | |",
        "",
        "### Journal throughput (`benchmarks/journal.py`, order/ack/fill mix, one record per call)",
        "",
        "| fsync policy | events/s | append p50 µs | append p99 µs |",
        "|---|---|---|---|",
    ]
    for policy, r in jt.items():
        lines.append(
            f"| {policy} | {r['events_per_s']:,.0f} | {r['p50_ns'] / 1e3:.1f} | "
            f"{r['p99_ns'] / 1e3:.1f} |"
        )
    rate = restart["records_per_s"]
    per_byte = (restart["read_s"] + restart["replay_s"]) / max(restart["bytes"], 1)
    lines += [
        "",
        "### Restart: the engine rebuilt from the journal of the run above (`engine.recovery`)",
        "",
        "A start reads the whole journal and replays every record: its time grows with the",
        "journal (it is never compacted), here measured on this run's file.",
        "",
        "| records | MiB | read s | replay s | records/s | seconds per 100 MiB |",
        "|---|---|---|---|---|---|",
        f"| {restart['records']:,} | {restart['bytes'] / 2**20:.1f} | {restart['read_s']:.3f} | "
        f"{restart['replay_s']:.3f} | {rate:,.0f} | {per_byte * 100 * 2**20:.1f} |",
    ]
    return [*lines, ""]


def _ib_lines(
    suites: dict[str, dict],
    sim: list[gateway_sim.SimThroughput],
    wire: list[wire_interleaved.Interleaved],
) -> list[str]:
    """The IB wire sections: hot decode, order encode, and the gateway simulator."""

    def ns(name: str) -> float:
        return suites[name]["median_ns"] if name in suites else float("nan")

    lines = [
        "## IB hot inbound decode (Numba kernel: frames cut and decoded into rows, per message)",
        "",
        "| stream | ours ns/msg | msgs/s | ibapi Decoder | vs ibapi | ib_async | vs ib_async | "
        "target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, ours, ib, ia in (
        ("text v176", "test_hot_decode_text_v176", "test_anchor_ibapi_text_v176",
         "test_anchor_ib_async_text_v176"),
        ("protobuf v225", "test_hot_decode_protobuf_v225", "test_anchor_ibapi_protobuf_v225", ""),
    ):  # fmt: skip
        o, i, a = ns(ours), ns(ib), ns(ia) if ia else float("nan")
        ok = 1e9 / o >= 2e6 and i / o >= 8 and (not ia or a / o >= 2)
        lines.append(
            f"| {label} | {o:.0f} | {1e9 / o:,.0f} | {i:.0f} ns | {i / o:.1f}x | "
            f"{'' if not ia else f'{a:.0f} ns'} | {'' if not ia else f'{a / o:.1f}x'} | "
            f">= 2M/s, >= 8x ibapi, >= 2x ib_async: {_verdict(ok)} |"
        )
    lines += [
        "",
        "## IB order encode (ours vs EClient.placeOrder, same run)",
        "",
        "Each call a new order id, quantity, limit price and orderRef (a client order id, as the",
        "venue sends), one LMT DAY stock shape.",
        "",
        "| server version | path | ours ns | EClient ns | vs EClient | ib_async ns | vs ib_async "
        "| target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ia = ns("test_anchor_ib_async_place_order")
    for v in (176, 225):
        e = ns(f"test_anchor_eclient_place_order[{v}]")
        for path, name in (
            ("generic `encode_place_order`", f"test_encode_place_order_template[{v}]"),
            ("prepared `PlaceOrderTemplate.encode`", f"test_prepared_place_order_encode[{v}]"),
        ):
            o = ns(name)
            ia_cells = f"{ia:.0f} | {ia / o:.1f}x" if v == 176 else "| "
            ok = o <= 3000 and e / o >= 10 and (v != 176 or ia / o >= 8)
            lines.append(
                f"| {v} | {path} | {o:.0f} | {e:.0f} | {e / o:.1f}x | {ia_cells} | "
                f"<= 3 µs, >= 10x EClient, >= 8x ib_async (178 only): {_verdict(ok)} |"
            )
    lines += ["", *wire_interleaved.lines(wire)]
    lines += [
        "",
        "`IBVenue` sends orders without extras through the prepared path (a template per order",
        "shape and contract); orders with extras (stop, trail, display, good-till, parent, OCA)",
        "through the generic encoder, which checks the whole shape on every call.",
        "",
        "## IB Gateway simulator: market-data messages/s delivered to one client",
        "",
        "L1 + 10 rows of depth + tick-by-tick BidAsk on one instrument, simulator in its own",
        "process; the anchor is the official ibapi Decoder on the same frames.",
        "",
        "| server version | messages/s | ibapi Decoder msgs/s | target |",
        "|---|---|---|---|",
    ]
    for r in sim:
        lines.append(
            f"| {r.server_version} | {r.per_s:,.0f} | {r.ibapi_decode_per_s:,.0f} | "
            f">= 100,000/s: {_verdict(r.per_s >= 100_000)} |"
        )
    return [*lines, ""]


def _latency_row(label: str, s, anchor_ns: float, target: str) -> str:
    """A table row: the label cells, n, p50/p99/p99.9 in µs, p99 over the anchor, target."""
    return (
        f"| {label} | {s.count} | {s.p50 / 1e3:.1f} | {s.p99 / 1e3:.1f} | "
        f"{s.p999 / 1e3:.1f} | {s.p99 / anchor_ns:.1f}x | {target} |"
    )


def _ib_venue_lines(r: ib_venue.IBVenueResult, rtt_p50: float, rtt_p99: float) -> list[str]:
    """IBVenue end to end over loopback against the simulator in its own process."""
    q, f = r.quiet, r.flood
    anchor = r.anchor_p99_ns

    def row(what: str, span: str, s, target: str = "") -> str:
        return _latency_row(f"{what} | {span}", s, anchor, target)

    v = r.verdicts()
    flood_ok = v["cancel_flood"] and v["flood_rate"]
    lines = [
        "## IB venue end to end (IBVenue <-> gateway simulator in its own process, loopback TCP)",
        "",
        "One far-from-market limit buy at a time on AAPL, sent from `on_book`, cancelled once",
        "acknowledged; orders >= 55 ms apart so the 45 msg/s pacer never queues (risk gate",
        "`venue_msgs_per_s` 40). Stamps are the engine's `LiveClock`: market data's `ts_recv`",
        "where `IBVenue` takes it (`read -> ts_recv` below is what it leaves out; `read` is a",
        "probe at the entry of `data_received`), `ts_sent` in `IBVenue.submit` just before the",
        "pacer and the socket write, an event's `ts_recv` in `IBVenue._emit` after ibapi decoded",
        "its frame; a cancel is stamped just before `IBVenue._send_cancel` encodes it. p99.9 of",
        f"{ib_venue.SAMPLES} samples lies between their two slowest.",
        f"The engine as shipped for IB ({ib_venue._options()}): `keep_warm` re-runs the order",
        "path dry every ~1 ms while idle (nothing sent or changed).",
        "",
        f"Anchor: uvloop loopback TCP echo between two processes, 64 B: p50 "
        f"{r.anchor_p50_ns / 1e3:.1f} µs, p99 {anchor / 1e3:.1f} µs (n={r.anchor_n}); in one "
        f"process (above): p50 {rtt_p50 / 1e3:.1f} µs, p99 {rtt_p99 / 1e3:.1f} µs.",
        "",
    ]
    for ph in (q, f):
        lines.append(
            f"- {ph.name}: {ph.instruments} instruments x {ph.events_per_second:,.0f} events/s "
            f"(L1 + 10 rows of depth + tick-by-tick AllLast): {ph.md_frames_per_s:,.0f} "
            f"market-data messages/s reached the venue ({ph.md_rows_per_s:,.0f} rows/s; "
            f"{ph.reads_per_s:,.0f} socket reads/s of {ph.bytes_per_read / 1024:.1f} KiB); "
            f"orders queued by the pacer {ph.queued}, lost {ph.lost}, rejected "
            f"{len(ph.rejected)}; the engine's {ph.loop}"
        )
    lines += [
        "",
        "| what | from -> to | n | p50 µs | p99 µs | p99.9 µs | p99 vs anchor p99 | target |",
        "|---|---|---|---|---|---|---|---|",
        row("tick-to-wire", "md `ts_recv` -> order `ts_sent`", q["tick_to_wire"],
            f"<= 200 µs: {_verdict(v['tick_to_wire'])}"),
        row("tick-to-write", "md `ts_recv` -> socket write returned", q["tick_to_write"]),
        row("read-to-wire", "`data_received` entry -> order `ts_sent`", q["read_to_wire"]),
        row("read -> ts_recv", "`data_received` entry -> md `ts_recv`",
            q["decode_before_stamp"]),
        row("order -> ack", "`ts_sent` -> ACCEPTED `ts_recv`", q["order_ack"],
            f"<= 2 ms: {_verdict(v['order_ack'])}"),
        row("cancel", "cancel encode -> CANCELLED `ts_recv`", q["cancel"]),
        row(f"cancel, flood {f.md_frames_per_s / 1e3:,.0f}k msgs/s",
            "cancel encode -> CANCELLED `ts_recv`", f["cancel"],
            f"<= 500 µs at >= 100k msgs/s: {_verdict(flood_ok)}"),
        row("order -> ack, flood", "`ts_sent` -> ACCEPTED `ts_recv`", f["order_ack"]),
        row("tick-to-wire, flood", "md `ts_recv` -> order `ts_sent`", f["tick_to_wire"]),
        row("read-to-wire, flood", "`data_received` entry -> order `ts_sent`",
            f["read_to_wire"]),
    ]  # fmt: skip
    return [*lines, ""]


def _ib_venue_variant_lines(r: ib_venue.IBVenueResult, setting: str) -> list[str]:
    """The same end-to-end run with an opt-in ``setting``: ``busy_poll`` (the loop polls its
    sockets without sleeping, at the cost of a core) or ``cpu_affinity`` (the engine and the
    simulator pinned to different CPUs); its own anchor, measured just before (pinned alike)."""
    q, f = r.quiet, r.flood
    anchor = r.anchor_p99_ns
    v = r.verdicts()

    def row(what: str, s, target: str = "") -> str:
        return _latency_row(what, s, anchor, target)

    return [
        f"### The same run with {setting}",
        "",
        f"Anchor (two-process echo, measured just before): p50 {r.anchor_p50_ns / 1e3:.1f} µs, "
        f"p99 {anchor / 1e3:.1f} µs. Flood: {f.md_frames_per_s:,.0f} market-data messages/s "
        "reached the venue.",
        "",
        "| what | n | p50 µs | p99 µs | p99.9 µs | p99 vs anchor p99 | target |",
        "|---|---|---|---|---|---|---|",
        row("tick-to-wire", q["tick_to_wire"], f"<= 200 µs: {_verdict(v['tick_to_wire'])}"),
        row("order -> ack", q["order_ack"], f"<= 2 ms: {_verdict(v['order_ack'])}"),
        row("cancel", q["cancel"]),
        row(f"cancel, flood {f.md_frames_per_s / 1e3:,.0f}k msgs/s", f["cancel"],
            f"<= 500 µs at >= 100k msgs/s: {_verdict(v['cancel_flood'] and v['flood_rate'])}"),
        row("tick-to-wire, flood", f["tick_to_wire"]),
        "",
        f"- quiet, the engine's {q.loop}",
        f"- flood, the engine's {f.loop}",
        "",
    ]  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
