"""placeOrder encode, ours and the anchors timed in alternating blocks: ratios a slow moment of
the VM cannot skew.

pytest-benchmark times each encoder on its own, seconds apart. On the shared VM the speed of the
whole machine changes by ~1.6x from one moment to the next, so a ratio of two such figures can
be off by as much (seen: 9.2x where the same code gives 15x). Here every round times a block of
each encoder back to back, in a rotating order, and the ratio is taken within the round; the
report is the median over rounds. Same calls as ``test_ib_wire_bench``: a new order id,
quantity, limit price and orderRef each call, one LMT DAY stock shape.

``python -m benchmarks.wire_interleaved`` prints the table ``make bench`` writes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from adapters.ib.wire import clear_cache, prepare_place_order
from benchmarks.test_ib_wire_bench import (
    _contract,
    _eclient,
    _NullConnection,
    _order,
    eclient_call,
    generic_call,
    ib_async_call,
    prepared_call,
)

ROUNDS = 41
BLOCK = 400


@dataclass(frozen=True, slots=True)
class Interleaved:
    version: int
    ns: dict[str, float]  # median ns per call over rounds, by encoder
    ratios: dict[str, float]  # median over rounds of (anchor ns / ours ns), by "anchor/ours"


def _encoders(version: int) -> dict[str, Callable[[], object]]:
    contract, order = _contract(), _order()
    clear_cache()
    template = prepare_place_order(version, contract, order)
    out: dict[str, Callable[[], object]] = {
        "generic": generic_call(version, contract, order),
        "prepared": prepared_call(template.encode, order),
        "eclient": eclient_call(_eclient(version, _NullConnection()), contract, order),
    }
    if version == 176:
        try:
            client, out["ib_async"] = ib_async_call()
        except ImportError:
            pass
        else:
            client.conn = _NullConnection()
    return out


def measure(version: int, rounds: int = ROUNDS, block: int = BLOCK) -> Interleaved:
    encoders = _encoders(version)
    names = list(encoders)
    for fn in encoders.values():  # warm: the first call of a shape goes to ibapi
        for _ in range(block):
            fn()
    per_round: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter_ns
    for r in range(rounds):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]  # rotate who goes first
            fn = encoders[name]
            t0 = clock()
            for _ in range(block):
                fn()
            per_round[name].append((clock() - t0) / block)
    ns = {name: statistics.median(v) for name, v in per_round.items()}
    ratios = {}
    for anchor in ("eclient", "ib_async"):
        if anchor not in per_round:
            continue
        for ours in ("generic", "prepared"):
            ratios[f"{anchor}/{ours}"] = statistics.median(
                a / o for a, o in zip(per_round[anchor], per_round[ours], strict=True)
            )
    return Interleaved(version, ns, ratios)


def verdict(r: Interleaved, path: str) -> bool:
    """The issue's target for ``path`` ("generic" or "prepared"): <= 3 µs, >= 10x EClient,
    and at 176 >= 8x ib_async (at its 178)."""
    ok = r.ns[path] <= 3000 and r.ratios[f"eclient/{path}"] >= 10
    if r.version == 176 and f"ib_async/{path}" in r.ratios:
        ok = ok and r.ratios[f"ib_async/{path}"] >= 8
    return ok


def lines(results: list[Interleaved]) -> list[str]:
    out = [
        f"Interleaved: {ROUNDS} rounds, each timing {BLOCK} calls of every encoder back to back in "
        "a rotating order; ns are medians over rounds, each ratio the median of the rounds' own "
        "ratios (`python -m benchmarks.wire_interleaved`).",
        "",
        "| server version | path | ours ns | vs EClient | vs ib_async | target |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for path, label in (
            ("generic", "generic `encode_place_order`"),
            ("prepared", "prepared `PlaceOrderTemplate.encode`"),
        ):
            ia = r.ratios.get(f"ib_async/{path}")
            out.append(
                f"| {r.version} | {label} | {r.ns[path]:.0f} | "
                f"{r.ratios[f'eclient/{path}']:.1f}x | {'' if ia is None else f'{ia:.1f}x'} | "
                f"<= 3 µs, >= 10x EClient, >= 8x ib_async (178 only): "
                f"{'met' if verdict(r, path) else 'NOT met'} |"
            )
    return out


if __name__ == "__main__":
    print("\n".join(lines([measure(176), measure(225)])))
