"""SIGKILL while orders are in flight, restart from the journal, reconcile: nothing lost, nothing
sent twice, positions equal the broker's.

Each seed is one run of the crash lab (``crash_support``): the gateway simulator is the broker
and outlives the engine; the engine trades with ``Churn`` through ``IBVenue`` until it is
killed at a seeded moment (half the seeds after a seeded time, half right after the journal
grows past a seeded size, i.e. just after an order or event was journaled), then starts again
from the same config and journal, reconciles, cancels what is left and writes what it ended
with. ``make soak`` runs many more seeds.
"""

from __future__ import annotations

import os
from collections import Counter
from decimal import Decimal

import pytest
from crash_support import FILL, crash_run

from engine.journal import EventRecord, OrderRecord

SEEDS = int(os.environ.get("TICKWIRE_CRASH_SEEDS", "50"))


def _check(run) -> dict[str, int]:
    ledger, outcome = run.ledger, run.outcome
    assert outcome["ready"], f"the restarted engine never became ready:\n{run.log[-3000:]}"

    # Nothing sent twice: each client order id reached the gateway at most once.
    refs = [ref for client, _, ref in ledger["received"] if client == 1]
    twice = {ref: n for ref, n in Counter(refs).items() if n > 1}
    assert not twice, f"orders sent more than once: {twice}"
    assert all(ref.isdigit() for ref in refs), "every order carries our client order id"

    # The journal the killed process left is a prefix of the journal after recovery (a torn
    # last record excepted), and the recovered journal is whole.
    before, after = run.journal_before.records, run.journal_after.records
    assert after[: len(before)] == before
    assert run.journal_after.corrupt_at is None
    assert run.journal_after.torn == 0

    # Every event the killed engine's strategy was told of had been journaled first.
    journaled = {
        (r.kind, r.client_order_id, r.exec_id) for r in before if isinstance(r, EventRecord)
    }
    told = {(kind, coid, exec_id) for kind, coid, exec_id, _, _ in run.seen}
    assert told <= journaled, f"told but not journaled: {sorted(told - journaled)[:5]}"

    # Every order the gateway received is known to the restarted engine, with its fills.
    orders = outcome["orders"]
    journal_orders = {r.client_order_id for r in after if isinstance(r, OrderRecord)}
    for o in ledger["orders"]:
        ref = o["order_ref"]
        assert int(ref) in journal_orders, f"order {ref} at the gateway is not in the journal"
        _, filled = orders[ref]
        assert Decimal(o["filled"]) == filled, f"order {ref}: gateway filled {o['filled']}"
    assert not outcome["open_left"], f"orders still open after cancel-all: {outcome['open_left']}"

    # No execution lost or doubled: the journal's fills are exactly the gateway's executions.
    fills = [r.exec_id for r in after if isinstance(r, EventRecord) and r.kind == FILL]
    doubled = {x: n for x, n in Counter(fills).items() if n > 1}
    assert not doubled, f"executions journaled twice: {doubled}"
    executions = {e["exec_id"] for e in ledger["executions"]}
    missing, extra = executions - set(fills), set(fills) - executions
    assert not missing and not extra, f"missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}"

    # Positions equal the broker's.
    broker = {p["symbol"]: Decimal(p["qty"]) for p in ledger["positions"]}
    for symbol, qty in outcome["positions"].items():
        assert Decimal(str(qty)) == broker.get(symbol, Decimal(0)), (
            f"{symbol}: engine {qty}, gateway {broker.get(symbol)}"
        )
    assert not outcome["recovery"]["differences"], outcome["recovery"]["differences"]
    in_flight = sum(1 for r in ledger["orders"] if r["status"] in ("PreSubmitted", "Submitted"))
    return {"orders": len(refs), "fills": len(fills), "in_flight": in_flight}


@pytest.mark.parametrize("seed", range(SEEDS))
def test_sigkill_while_trading_then_recover(tmp_path, seed):
    run = crash_run(tmp_path, seed)
    stats = _check(run)
    assert stats["orders"] > 0, f"seed {seed}: the engine sent no order before the kill"
