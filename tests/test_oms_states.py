"""The OMS order state machine: every legal and illegal transition, duplicates, out-of-order
events (a property test over shuffled and repeated venue histories), the strategy's requests,
ids across restarts, recovery, and the engine dropping what the OMS says is not news."""

from __future__ import annotations

import itertools
import logging
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_sim_venue import ASK, BID, Harness, standard_book

from engine import orders
from engine.config import SimVenueConfig
from engine.messages import NO_PRICE, EventKind, OrderEvent
from engine.orders import (
    ON_CANCEL_REQUEST,
    ON_MODIFY_REQUEST,
    Order,
    OrderState,
    OrderTracker,
    Outcome,
    refused_by_gate,
)
from engine.risk_gate import Verdict
from hotpath import risk as rk

S = OrderState
K = EventKind
R = Outcome  # the results of OrderTracker.apply
QTY = 10
PARTIAL = 4  # filled lots of the PARTIALLY_FILLED fixture
BASE = 1_700_000_000

# ---- fixtures: an order in each state, reached through the tracker's own paths --------------


def event(kind: EventKind, coid: int, **fields) -> OrderEvent:
    ev = OrderEvent()
    ev.kind = kind
    ev.client_order_id = coid
    for name, value in fields.items():
        setattr(ev, name, value)
    return ev


def fill(coid: int, lots: int, exec_id: str, cum: int = 0) -> OrderEvent:
    return event(K.FILL, coid, fill_lots=lots, exec_id=exec_id, cum_lots=cum)


def new_order(tr: OrderTracker) -> Order:
    order = Order(tr.next_id(), 0, 0, 1, 1, 0, QTY, 100)
    tr.add(order)
    return order


def order_in(state: OrderState) -> tuple[OrderTracker, Order]:
    """A tracker holding one order of QTY lots in ``state``."""
    tr = OrderTracker(session_base=BASE)
    order = new_order(tr)
    coid = order.client_order_id
    if state is S.INITIALIZED:
        return tr, order
    tr.submitted(order)
    steps = {
        S.SUBMITTED: [],
        S.ACCEPTED: [event(K.ACCEPTED, coid)],
        S.PENDING_CANCEL: [event(K.ACCEPTED, coid)],
        S.PENDING_MODIFY: [event(K.ACCEPTED, coid)],
        S.PARTIALLY_FILLED: [event(K.ACCEPTED, coid), fill(coid, PARTIAL, "p0")],
        S.FILLED: [event(K.ACCEPTED, coid), fill(coid, QTY, "f0")],
        S.CANCELLED: [event(K.ACCEPTED, coid), event(K.CANCELLED, coid)],
        S.REJECTED: [event(K.REJECTED, coid)],
        S.EXPIRED: [event(K.ACCEPTED, coid), event(K.EXPIRED, coid)],
    }[state]
    for ev in steps:
        assert tr.apply(ev) == R.APPLIED
    if state is S.PENDING_CANCEL:
        assert tr.request_cancel(order)
    elif state is S.PENDING_MODIFY:
        assert tr.request_modify(order)
    assert order.state is state
    return tr, order


def probe(kind: EventKind, order: Order) -> OrderEvent:
    """The event of ``kind`` each transition test applies: a new fill of 2 lots, a modify to
    12 lots at 101, plain statuses."""
    coid = order.client_order_id
    if kind is K.FILL:
        return fill(coid, 2, "new-exec", order.filled_lots + 2)
    if kind is K.MODIFIED:
        return event(kind, coid, qty_lots=12, price_ticks=101)
    return event(kind, coid, reason="because")


# (state, event) -> (outcome, state after, filled lots after) for every legal pair, written out
# by hand: the independent statement of the table the tests compare the code against.
A, LATE, DUP, OLD = R.APPLIED, R.LATE_FILL, R.DUPLICATE, R.STALE
LEGAL: dict[tuple[OrderState, EventKind], tuple[Outcome, OrderState, int]] = {
    (S.INITIALIZED, K.REJECTED): (A, S.REJECTED, 0),
    (S.INITIALIZED, K.CANCEL_REJECTED): (A, S.INITIALIZED, 0),
    (S.INITIALIZED, K.COMMISSION): (A, S.INITIALIZED, 0),
    (S.SUBMITTED, K.SUBMITTED): (DUP, S.SUBMITTED, 0),
    (S.SUBMITTED, K.ACCEPTED): (A, S.ACCEPTED, 0),
    (S.SUBMITTED, K.REJECTED): (A, S.REJECTED, 0),
    (S.SUBMITTED, K.CANCELLED): (A, S.CANCELLED, 0),
    (S.SUBMITTED, K.EXPIRED): (A, S.EXPIRED, 0),
    (S.SUBMITTED, K.MODIFIED): (A, S.ACCEPTED, 0),
    (S.SUBMITTED, K.FILL): (A, S.PARTIALLY_FILLED, 2),
    (S.SUBMITTED, K.CANCEL_REJECTED): (A, S.SUBMITTED, 0),
    (S.SUBMITTED, K.COMMISSION): (A, S.SUBMITTED, 0),
    (S.ACCEPTED, K.SUBMITTED): (OLD, S.ACCEPTED, 0),
    (S.ACCEPTED, K.ACCEPTED): (DUP, S.ACCEPTED, 0),
    (S.ACCEPTED, K.REJECTED): (A, S.REJECTED, 0),
    (S.ACCEPTED, K.CANCELLED): (A, S.CANCELLED, 0),
    (S.ACCEPTED, K.EXPIRED): (A, S.EXPIRED, 0),
    (S.ACCEPTED, K.MODIFIED): (A, S.ACCEPTED, 0),
    (S.ACCEPTED, K.FILL): (A, S.PARTIALLY_FILLED, 2),
    (S.ACCEPTED, K.CANCEL_REJECTED): (A, S.ACCEPTED, 0),
    (S.ACCEPTED, K.COMMISSION): (A, S.ACCEPTED, 0),
    (S.PENDING_CANCEL, K.SUBMITTED): (OLD, S.PENDING_CANCEL, 0),
    (S.PENDING_CANCEL, K.ACCEPTED): (DUP, S.PENDING_CANCEL, 0),  # accepted before the request
    (S.PENDING_CANCEL, K.REJECTED): (A, S.REJECTED, 0),
    (S.PENDING_CANCEL, K.CANCELLED): (A, S.CANCELLED, 0),
    (S.PENDING_CANCEL, K.EXPIRED): (A, S.EXPIRED, 0),
    (S.PENDING_CANCEL, K.MODIFIED): (A, S.PENDING_CANCEL, 0),
    (S.PENDING_CANCEL, K.FILL): (A, S.PENDING_CANCEL, 2),
    (S.PENDING_CANCEL, K.CANCEL_REJECTED): (A, S.ACCEPTED, 0),
    (S.PENDING_CANCEL, K.COMMISSION): (A, S.PENDING_CANCEL, 0),
    (S.PENDING_MODIFY, K.SUBMITTED): (OLD, S.PENDING_MODIFY, 0),
    (S.PENDING_MODIFY, K.ACCEPTED): (DUP, S.PENDING_MODIFY, 0),
    (S.PENDING_MODIFY, K.REJECTED): (A, S.REJECTED, 0),
    (S.PENDING_MODIFY, K.CANCELLED): (A, S.CANCELLED, 0),
    (S.PENDING_MODIFY, K.EXPIRED): (A, S.EXPIRED, 0),
    (S.PENDING_MODIFY, K.MODIFIED): (A, S.ACCEPTED, 0),
    (S.PENDING_MODIFY, K.FILL): (A, S.PENDING_MODIFY, 2),
    (S.PENDING_MODIFY, K.CANCEL_REJECTED): (A, S.ACCEPTED, 0),
    (S.PENDING_MODIFY, K.COMMISSION): (A, S.PENDING_MODIFY, 0),
    (S.PARTIALLY_FILLED, K.SUBMITTED): (OLD, S.PARTIALLY_FILLED, PARTIAL),
    (S.PARTIALLY_FILLED, K.ACCEPTED): (OLD, S.PARTIALLY_FILLED, PARTIAL),
    (S.PARTIALLY_FILLED, K.REJECTED): (A, S.REJECTED, PARTIAL),  # IB: Inactive after a fill
    (S.PARTIALLY_FILLED, K.CANCELLED): (A, S.CANCELLED, PARTIAL),
    (S.PARTIALLY_FILLED, K.EXPIRED): (A, S.EXPIRED, PARTIAL),
    (S.PARTIALLY_FILLED, K.MODIFIED): (A, S.PARTIALLY_FILLED, PARTIAL),
    (S.PARTIALLY_FILLED, K.FILL): (A, S.PARTIALLY_FILLED, PARTIAL + 2),
    (S.PARTIALLY_FILLED, K.CANCEL_REJECTED): (A, S.PARTIALLY_FILLED, PARTIAL),
    (S.PARTIALLY_FILLED, K.COMMISSION): (A, S.PARTIALLY_FILLED, PARTIAL),
    (S.FILLED, K.SUBMITTED): (OLD, S.FILLED, QTY),
    (S.FILLED, K.ACCEPTED): (OLD, S.FILLED, QTY),  # IB's openOrder after execDetails
    (S.FILLED, K.FILL): (LATE, S.FILLED, QTY + 2),  # an overfill: real, applied, logged
    (S.FILLED, K.CANCEL_REJECTED): (A, S.FILLED, QTY),  # the cancel lost the race
    (S.FILLED, K.COMMISSION): (A, S.FILLED, QTY),
    (S.CANCELLED, K.SUBMITTED): (OLD, S.CANCELLED, 0),
    (S.CANCELLED, K.ACCEPTED): (OLD, S.CANCELLED, 0),
    (S.CANCELLED, K.CANCELLED): (DUP, S.CANCELLED, 0),
    (S.CANCELLED, K.FILL): (LATE, S.CANCELLED, 2),  # a fill that raced the cancel
    (S.CANCELLED, K.CANCEL_REJECTED): (A, S.CANCELLED, 0),
    (S.CANCELLED, K.COMMISSION): (A, S.CANCELLED, 0),
    (S.REJECTED, K.SUBMITTED): (OLD, S.REJECTED, 0),
    (S.REJECTED, K.ACCEPTED): (OLD, S.REJECTED, 0),
    (S.REJECTED, K.REJECTED): (DUP, S.REJECTED, 0),
    (S.REJECTED, K.FILL): (LATE, S.REJECTED, 2),
    (S.REJECTED, K.CANCEL_REJECTED): (A, S.REJECTED, 0),
    (S.REJECTED, K.COMMISSION): (A, S.REJECTED, 0),
    (S.EXPIRED, K.SUBMITTED): (OLD, S.EXPIRED, 0),
    (S.EXPIRED, K.ACCEPTED): (OLD, S.EXPIRED, 0),
    (S.EXPIRED, K.EXPIRED): (DUP, S.EXPIRED, 0),
    (S.EXPIRED, K.FILL): (LATE, S.EXPIRED, 2),
    (S.EXPIRED, K.CANCEL_REJECTED): (A, S.EXPIRED, 0),
    (S.EXPIRED, K.COMMISSION): (A, S.EXPIRED, 0),
}
ILLEGAL = sorted(
    (s, k) for s in OrderState for k in EventKind if (s, k) not in LEGAL
)  # fmt: skip


def test_the_code_table_is_the_documented_table_and_matches_the_hand_written_one() -> None:
    doc = orders.__doc__
    header = re.search(r"^ {4}state {12}(SUBMITTED.*)$", doc, re.M)
    assert header is not None
    assert header.group(1).split() == [
        "SUBMITTED", "ACCEPTED", "REJECTED", "CANCELLED", "EXPIRED", "MODIFIED", "FILL",
        "CXL_REJ", "COMM",
    ]  # fmt: skip
    assert [k.name for k in EventKind][:7] == header.group(1).split()[:7]
    for state in OrderState:
        line = re.search(rf"^ {{4}}{state.name} +(.*)$", doc, re.M)
        assert line is not None, state
        names = [orders.ACTION_NAMES[a] for a in orders._TABLE[state]]
        assert line.group(1).split() == names, state
    bad = orders.ACTION_NAMES.index("bad")
    coded_illegal = {
        (s, k) for s in OrderState for k in EventKind if orders._TABLE[s][int(k)] == bad
    }
    assert coded_illegal == set(ILLEGAL)


@pytest.mark.parametrize(("state", "kind"), sorted(LEGAL), ids=lambda x: x.name)
def test_legal_transition(state: OrderState, kind: EventKind) -> None:
    tr, order = order_in(state)
    outcome, after, filled = LEGAL[(state, kind)]
    before = (tr.duplicates, tr.stale)
    assert tr.apply(probe(kind, order)) == outcome
    assert tr.order is order
    assert order.state is after
    assert order.filled_lots == filled
    assert tr.illegal == 0 and tr.illegal_by == {}
    assert (tr.duplicates - before[0], tr.stale - before[1]) == (
        int(outcome == DUP), int(outcome == OLD)
    )  # fmt: skip
    assert tr.late_fills == int(outcome == LATE)
    # Open orders are among the open ones, finished ones in the history, never both.
    coid = order.client_order_id
    assert (coid in tr.open) == order.is_open == (after not in orders.FINAL)
    assert (coid in tr.finished) == (not order.is_open)
    assert (order in tr.open_for(0, 0)) == order.is_open
    if kind is K.MODIFIED and outcome == A:
        assert (order.qty_lots, order.price_ticks) == (12, 101)
    if kind in (K.CANCELLED, K.REJECTED, K.EXPIRED) and outcome == A:
        assert order.reason == "because"


@pytest.mark.parametrize(("state", "kind"), ILLEGAL, ids=lambda x: x.name)
def test_illegal_transition_is_reported_and_not_applied(
    state: OrderState, kind: EventKind, caplog: pytest.LogCaptureFixture
) -> None:
    tr, order = order_in(state)
    fields = {s: getattr(order, s) for s in Order.__slots__ if s != "exec_ids"}
    execs = set(order.exec_ids or ())
    with caplog.at_level(logging.WARNING, logger="engine.orders"):
        assert tr.apply(probe(kind, order)) == R.ILLEGAL
    assert {s: getattr(order, s) for s in Order.__slots__ if s != "exec_ids"} == fields
    assert set(order.exec_ids or ()) == execs
    assert tr.illegal == 1
    assert tr.illegal_by == {(state, kind): 1}
    assert (tr.duplicates, tr.stale, tr.late_fills) == (0, 0, 0)
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = record.getMessage()
    assert str(order.client_order_id) in message
    assert state.name in message and kind.name in message


def test_an_event_kind_that_is_not_one_is_illegal_not_a_crash() -> None:
    tr, order = order_in(S.ACCEPTED)
    ev = event(K.ACCEPTED, order.client_order_id)
    ev.kind = 99
    assert tr.apply(ev) == R.ILLEGAL
    assert order.state is S.ACCEPTED and tr.illegal_by == {(S.ACCEPTED, 99): 1}


def test_unknown_order_is_passed_on_and_counted() -> None:
    tr = OrderTracker(session_base=BASE)
    assert tr.apply(fill(12345, 3, "x")) == R.UNKNOWN_ORDER
    assert tr.order is None and tr.unknown == 1 and tr.illegal == 0


# ---- the strategy's requests ----------------------------------------------------------------

CANCEL_REQUEST = {
    S.INITIALIZED: S.INITIALIZED,
    S.SUBMITTED: S.PENDING_CANCEL,
    S.ACCEPTED: S.PENDING_CANCEL,
    S.PENDING_CANCEL: S.PENDING_CANCEL,
    S.PENDING_MODIFY: S.PENDING_CANCEL,
    S.PARTIALLY_FILLED: S.PENDING_CANCEL,
}
MODIFY_REQUEST = {
    S.INITIALIZED: S.INITIALIZED,  # refused by the gate: the gate refuses its modify too
    S.SUBMITTED: S.PENDING_MODIFY,
    S.ACCEPTED: S.PENDING_MODIFY,
    S.PENDING_CANCEL: S.PENDING_CANCEL,
    S.PENDING_MODIFY: S.PENDING_MODIFY,
    S.PARTIALLY_FILLED: S.PENDING_MODIFY,
}


@pytest.mark.parametrize("state", list(OrderState), ids=lambda s: s.name)
def test_cancel_and_modify_requests(state: OrderState) -> None:
    for request, expected, table in (
        ("request_cancel", CANCEL_REQUEST, ON_CANCEL_REQUEST),
        ("request_modify", MODIFY_REQUEST, ON_MODIFY_REQUEST),
    ):
        tr, order = order_in(state)
        after = expected.get(state, state)  # a finished order stays finished
        assert getattr(tr, request)(order) == (after is not state)
        assert order.state is after
        assert (table[state] or state) is after


def test_pending_cancel_refused_goes_back_to_where_the_order_was() -> None:
    # Not yet accepted: back to SUBMITTED; an acceptance while pending is news once.
    tr, order = order_in(S.SUBMITTED)
    coid = order.client_order_id
    tr.request_cancel(order)
    assert tr.apply(event(K.CANCEL_REJECTED, coid)) == R.APPLIED
    assert order.state is S.SUBMITTED
    tr.request_cancel(order)
    assert tr.apply(event(K.ACCEPTED, coid)) == R.APPLIED
    assert order.state is S.PENDING_CANCEL and order.accepted
    assert tr.apply(event(K.ACCEPTED, coid)) == R.DUPLICATE
    assert tr.apply(event(K.CANCEL_REJECTED, coid)) == R.APPLIED
    assert order.state is S.ACCEPTED
    # Partly filled while the cancel was pending: back to PARTIALLY_FILLED.
    tr.request_cancel(order)
    assert tr.apply(fill(coid, 3, "e1")) == R.APPLIED
    assert order.state is S.PENDING_CANCEL
    assert tr.apply(event(K.CANCEL_REJECTED, coid)) == R.APPLIED
    assert order.state is S.PARTIALLY_FILLED and order.filled_lots == 3


def test_pending_modify_then_modified_takes_the_new_terms() -> None:
    tr, order = order_in(S.ACCEPTED)
    coid = order.client_order_id
    tr.request_modify(order)
    assert tr.apply(fill(coid, 2, "e1")) == R.APPLIED
    assert order.state is S.PENDING_MODIFY
    assert tr.apply(event(K.MODIFIED, coid, qty_lots=8, price_ticks=99)) == R.APPLIED
    assert (order.state, order.qty_lots, order.price_ticks) == (S.PARTIALLY_FILLED, 8, 99)
    # The same terms reported again are a duplicate; a modify to the filled size fills it.
    assert tr.apply(event(K.MODIFIED, coid, qty_lots=8, price_ticks=99)) == R.DUPLICATE
    tr.request_modify(order)
    assert tr.apply(event(K.MODIFIED, coid, qty_lots=2, price_ticks=99)) == R.APPLIED
    assert order.state is S.FILLED and coid in tr.finished
    # A modify with no quantity keeps the order's.
    tr2, other = order_in(S.PENDING_MODIFY)
    tr2.apply(event(K.MODIFIED, other.client_order_id, qty_lots=0, price_ticks=105))
    assert (other.state, other.qty_lots, other.price_ticks) == (S.ACCEPTED, QTY, 105)


def test_modify_then_cancel_then_modified_stays_pending_cancel() -> None:
    tr, order = order_in(S.ACCEPTED)
    tr.request_modify(order)
    tr.request_cancel(order)
    tr.request_modify(order)  # the cancel wins
    assert order.state is S.PENDING_CANCEL
    tr.apply(event(K.MODIFIED, order.client_order_id, qty_lots=6, price_ticks=100))
    assert order.state is S.PENDING_CANCEL and order.qty_lots == 6


def test_a_fill_of_the_old_size_while_a_larger_modify_is_pending_keeps_the_order_open() -> None:
    # IB reports the execution before the modify's status: the venue may already work the order
    # at the new size, so filling the old size does not finish it.
    tr, order = order_in(S.ACCEPTED)
    coid = order.client_order_id
    assert tr.request_modify(order, 15) and order.pending_qty_lots == 15
    assert tr.apply(fill(coid, QTY, "e1")) == R.APPLIED
    assert order.state is S.PENDING_MODIFY and coid in tr.open
    assert tr.apply(event(K.MODIFIED, coid, qty_lots=15, price_ticks=100)) == R.APPLIED
    assert (order.state, order.qty_lots, order.pending_qty_lots) == (S.PARTIALLY_FILLED, 15, 0)
    assert tr.apply(fill(coid, 5, "e2")) == R.APPLIED
    assert order.state is S.FILLED and tr.illegal == 0 and tr.late_fills == 0


def test_a_modify_refused_once_fills_covered_the_old_size_finishes_the_order_filled() -> None:
    tr, order = order_in(S.ACCEPTED)
    coid = order.client_order_id
    tr.request_modify(order, 15)
    tr.apply(fill(coid, QTY, "e1"))
    assert order.state is S.PENDING_MODIFY
    assert tr.apply(event(K.CANCEL_REJECTED, coid)) == R.APPLIED  # the venue: it had filled
    assert (order.state, order.pending_qty_lots) == (S.FILLED, 0)
    assert coid in tr.finished and coid not in tr.open


def test_a_pending_modify_to_a_smaller_size_does_not_hold_the_order_open() -> None:
    tr, order = order_in(S.ACCEPTED)
    coid = order.client_order_id
    tr.request_modify(order, 6)
    assert tr.apply(fill(coid, QTY, "e1")) == R.APPLIED
    assert order.state is S.FILLED and order.pending_qty_lots == 0
    # The modify's answer comes too late: a modify of a finished order changes nothing.
    assert tr.apply(event(K.MODIFIED, coid, qty_lots=6, price_ticks=100)) == R.ILLEGAL


def test_the_pending_size_is_the_largest_asked_and_ends_with_the_answer() -> None:
    tr, order = order_in(S.ACCEPTED)
    coid = order.client_order_id
    tr.request_modify(order, 15)
    tr.request_modify(order, 12)  # both may still reach the venue: the larger one counts
    assert order.pending_qty_lots == 15
    tr.request_cancel(order)  # the modifies are still on their way
    tr.apply(fill(coid, QTY, "e1"))
    assert order.state is S.PENDING_CANCEL
    tr.apply(event(K.CANCELLED, coid))
    assert (order.state, order.filled_lots, order.pending_qty_lots) == (S.CANCELLED, QTY, 0)


def test_a_refusal_from_the_risk_gate_is_a_note_even_while_a_request_is_pending() -> None:
    for state in (S.PENDING_MODIFY, S.PENDING_CANCEL):
        tr, order = order_in(state)
        coid = order.client_order_id
        for code in (Verdict.OFF_TICK_GRID, Verdict.NOT_OWN_ORDER, Verdict.CANCEL_PENDING):
            refusal = event(K.CANCEL_REJECTED, coid, reason_code=int(code))
            assert refused_by_gate(refusal)
            assert tr.apply(refusal) == R.APPLIED
            assert order.state is state
        # A venue's refusal (no code, its own negative codes, IB's error codes) answers it.
        for code in (0, -1, 10147):
            assert not refused_by_gate(event(K.CANCEL_REJECTED, coid, reason_code=code))
        assert tr.apply(event(K.CANCEL_REJECTED, coid, reason_code=161)) == R.APPLIED
        assert order.state is S.ACCEPTED


def test_a_commission_counts_once_per_exec_id() -> None:
    tr, order = order_in(S.ACCEPTED)
    coid = order.client_order_id
    tr.apply(fill(coid, 3, "e1"))  # IB: the fee comes later, as a COMMISSION
    late = event(K.COMMISSION, coid, exec_id="e1", commission=1.5)
    assert tr.apply(late) == R.APPLIED
    assert tr.apply(late) == R.DUPLICATE
    carried = fill(coid, 2, "e2")
    carried.commission = 1.0  # the fee came with the fill
    assert tr.apply(carried) == R.APPLIED
    assert tr.apply(event(K.COMMISSION, coid, exec_id="e2", commission=1.0)) == R.DUPLICATE
    assert order.fee_ids == {"e1", "e2"} and tr.duplicates == 2
    # The rest fills; a commission for it after the order finished still counts, once.
    tr.apply(fill(coid, 5, "e3"))
    assert order.state is S.FILLED
    assert tr.apply(event(K.COMMISSION, coid, exec_id="e3", commission=2.0)) == R.APPLIED
    assert tr.apply(event(K.COMMISSION, coid, exec_id="e3", commission=2.0)) == R.DUPLICATE


# ---- duplicates and races -------------------------------------------------------------------


def test_duplicate_fill_by_exec_id_changes_nothing() -> None:
    tr, order = order_in(S.ACCEPTED)
    coid = order.client_order_id
    assert tr.apply(fill(coid, 3, "e1", 3)) == R.APPLIED
    assert tr.apply(fill(coid, 3, "e1", 3)) == R.DUPLICATE
    assert order.filled_lots == 3 and order.exec_ids == {"e1"} and tr.duplicates == 1
    assert tr.apply(fill(coid, 7, "e2", 10)) == R.APPLIED
    assert order.state is S.FILLED
    assert tr.apply(fill(coid, 7, "e2", 10)) == R.DUPLICATE  # not an overfill
    assert tr.apply(fill(coid, 3, "e1", 3)) == R.DUPLICATE
    assert order.filled_lots == QTY and tr.late_fills == 0


def test_fill_without_exec_id_falls_back_to_the_cumulative_quantity() -> None:
    tr, order = order_in(S.ACCEPTED)
    coid = order.client_order_id
    assert tr.apply(fill(coid, 3, "", 3)) == R.APPLIED
    assert tr.apply(fill(coid, 3, "", 3)) == R.DUPLICATE
    assert tr.apply(fill(coid, 2, "", 5)) == R.APPLIED
    assert tr.apply(fill(coid, 3, "", 3)) == R.DUPLICATE
    assert order.filled_lots == 5 and order.exec_ids is None


def test_fill_racing_a_cancel_is_applied_and_recorded() -> None:
    tr, order = order_in(S.ACCEPTED)
    coid = order.client_order_id
    tr.apply(fill(coid, 4, "e1"))
    tr.request_cancel(order)
    assert tr.apply(event(K.CANCELLED, coid)) == R.APPLIED
    assert tr.apply(fill(coid, 2, "e2")) == R.LATE_FILL
    assert (order.state, order.filled_lots) == (S.CANCELLED, 6)
    assert tr.apply(fill(coid, 2, "e2")) == R.DUPLICATE
    # The rest fills after all: the cancel took nothing, the order is FILLED.
    assert tr.apply(fill(coid, 4, "e3")) == R.LATE_FILL
    assert (order.state, order.filled_lots, tr.late_fills) == (S.FILLED, QTY, 2)
    assert coid in tr.finished and coid not in tr.open


def test_acceptance_after_fills_is_stale() -> None:
    tr, order = order_in(S.SUBMITTED)
    coid = order.client_order_id
    assert tr.apply(fill(coid, 4, "e1")) == R.APPLIED  # a fill implies accepted
    assert order.state is S.PARTIALLY_FILLED and order.accepted
    assert tr.apply(event(K.ACCEPTED, coid)) == R.STALE
    assert order.state is S.PARTIALLY_FILLED and tr.stale == 1


def test_venue_order_id_is_taken_from_applied_events_only() -> None:
    tr, order = order_in(S.SUBMITTED)
    coid = order.client_order_id
    tr.apply(event(K.ACCEPTED, coid, venue_order_id=7))  # IB: the order id
    f = fill(coid, 1, "e1")
    f.venue_order_id = 900001
    tr.apply(f)
    assert order.venue_order_id == 900001  # then the permId
    tr.apply(event(K.SUBMITTED, coid, venue_order_id=7))  # stale
    assert order.venue_order_id == 900001


# ---- out of order: any permutation of a venue history, with repeats -------------------------


@st.composite
def venue_histories(draw):
    """(qty, events in venue order, cancel requested): an acceptance, fills with exec ids, and
    either a last fill that completes the order or a cancel of the rest."""
    qty = draw(st.integers(2, 30))
    ends_filled = draw(st.booleans())
    total = qty if ends_filled else draw(st.integers(0, qty - 1))
    n_fills = min(draw(st.integers(1, 6)), total)
    cuts = []
    if n_fills > 1:
        points = st.integers(1, total - 1)
        cuts = sorted(
            draw(st.lists(points, min_size=n_fills - 1, max_size=n_fills - 1, unique=True))
        )
    bounds = [0, *cuts, total] if total else []
    lots = [b - a for a, b in itertools.pairwise(bounds)]
    history = [("ACCEPTED", 0, "", 0)]
    cum = 0
    for k, n in enumerate(lots):
        cum += n
        history.append(("FILL", n, f"x{k}", cum))
    if not ends_filled:
        history.append(("CANCELLED", 0, "", cum))
    return qty, history, draw(st.booleans())


def run(qty: int, history: list[tuple[str, int, str, int]], cancel_requested: bool):
    tr = OrderTracker(session_base=BASE)
    order = Order(tr.next_id(), 0, 0, 1, 1, 0, qty, 100)
    tr.add(order)
    tr.submitted(order)
    if cancel_requested:
        tr.request_cancel(order)
    applied_fills = 0
    for kind, lots, exec_id, cum in history:
        ev = event(EventKind[kind], order.client_order_id, fill_lots=lots, exec_id=exec_id,
                   cum_lots=cum)  # fmt: skip
        outcome = tr.apply(ev)
        if kind == "FILL" and outcome in (R.APPLIED, R.LATE_FILL):
            applied_fills += 1
    return tr, order, applied_fills


@settings(max_examples=300, deadline=None)
@given(venue_histories(), st.data())
def test_any_permutation_with_repeats_ends_like_the_venue_history(case, data) -> None:
    qty, history, cancel_requested = case
    tr0, ref, ref_fills = run(qty, history, cancel_requested)
    assert ref.state is (S.FILLED if history[-1][0] == "FILL" else S.CANCELLED)
    assert ref.filled_lots == sum(e[1] for e in history)
    assert tr0.illegal == 0

    shuffled = data.draw(st.permutations(history))
    repeats = data.draw(st.lists(st.sampled_from(history), max_size=6))
    arrivals = list(shuffled)
    for ev in repeats:
        arrivals.insert(data.draw(st.integers(0, len(arrivals))), ev)
    tr, order, fills = run(qty, arrivals, cancel_requested)
    assert (order.state, order.filled_lots, fills) == (ref.state, ref.filled_lots, ref_fills)
    assert tr.illegal == 0
    assert (order.client_order_id in tr.open) is False


# ---- ids across restarts, recovery ----------------------------------------------------------


def test_ids_stay_unique_across_a_restart_in_the_same_second() -> None:
    first = OrderTracker(session_base=BASE)
    used = [first.next_id() for _ in range(5)]
    second = OrderTracker(session_base=BASE)  # restarted within the same second
    second.ensure_ids_above(max(used))
    fresh = [second.next_id() for _ in range(5)]
    assert min(fresh) > max(used)
    assert len(set(fresh)) == 5


def test_ensure_ids_above_never_moves_ids_back() -> None:
    tr = OrderTracker(session_base=BASE)
    a = tr.next_id()
    tr.ensure_ids_above(a - 100)
    b = tr.next_id()
    assert b == a + 1
    tr.ensure_ids_above(b + 1000)
    assert tr.next_id() == b + 1001


def test_restore_puts_open_and_finished_orders_where_they_belong() -> None:
    tr = OrderTracker(session_base=BASE)
    live = Order((BASE << 24) + 500, 1, 2, 1, 1, 0, QTY, 100)
    live.state, live.accepted, live.filled_lots = S.PARTIALLY_FILLED, True, 3
    live.exec_ids = {"a"}
    done = Order((BASE << 24) + 900, 1, 2, 1, 1, 0, QTY, 100)
    done.state = S.CANCELLED
    tr.restore(live)
    tr.restore(done)
    assert tr.get(live.client_order_id) is live and tr.open_for(1, 2) == [live]
    assert tr.finished[done.client_order_id] is done and tr.get(done.client_order_id) is None
    assert tr.next_id() > done.client_order_id
    # The restored order carries on through the state machine.
    assert tr.apply(fill(live.client_order_id, 3, "a")) == R.DUPLICATE
    assert tr.apply(fill(live.client_order_id, 7, "b")) == R.APPLIED
    assert live.state is S.FILLED and tr.open_for(1, 2) == []
    assert tr.apply(fill(done.client_order_id, 1, "c")) == R.LATE_FILL


# ---- the engine drops what is not news ------------------------------------------------------


def copy_event(engine, src: OrderEvent, **changes) -> None:
    ev = engine.events.claim()
    ev.clear()
    for name in OrderEvent.__slots__:
        setattr(ev, name, getattr(src, name))
    for name, value in changes.items():
        setattr(ev, name, value)


def counter(engine, name: str) -> float:
    return next(v for n, _, _, v in engine.counters() if n == name)


def test_engine_drops_duplicate_stale_and_illegal_events() -> None:
    h = Harness()
    standard_book(h)
    coid = h.buy(3)  # fills 3 at 400
    fills = h.strat.fills(coid)
    assert len(fills) == 1 and h.position().lots == 3
    assert h.order(coid).state is S.FILLED
    f = fills[0]
    src = OrderEvent()
    for name in OrderEvent.__slots__:
        setattr(src, name, getattr(f, name, getattr(src, name)))
    src.strategy_id = h.strat.id
    n_events = len(h.strat.events)
    risk_position = h.engine.risk.arrays.pst.copy()

    copy_event(h.engine, src)  # the same fill again
    copy_event(h.engine, src, kind=EventKind.ACCEPTED, fill_lots=0, exec_id="")  # stale
    copy_event(h.engine, src, kind=EventKind.MODIFIED, fill_lots=0, exec_id="")  # illegal
    h.engine.pump()
    assert h.position().lots == 3
    assert len(h.strat.events) == n_events
    assert (h.engine.risk.arrays.pst == risk_position).all()
    assert (counter(h.engine, "oms_duplicate_total"), counter(h.engine, "oms_stale_total"),
            counter(h.engine, "oms_illegal_total")) == (1, 1, 1)  # fmt: skip
    assert h.engine.fills == 1

    # A fill with a new exec id on the filled order is real: it is applied and passed on.
    copy_event(h.engine, src, exec_id="late-1", fill_lots=2)
    h.engine.pump()
    assert h.position().lots == 5
    assert [e.exec_id for e in h.strat.fills(coid)] == [f.exec_id, "late-1"]
    assert h.engine.tracker.late_fills == 1


def venue_fill(h: Harness, coid: int, lots: int, ticks: int, exec_id: str) -> OrderEvent:
    """A buy fill of ``coid`` as a venue reports it (for ``copy_event``), the order's first."""
    src = OrderEvent()
    src.kind = EventKind.FILL
    src.strategy_id = h.strat.id
    src.instrument_id = h.es.id
    src.client_order_id = coid
    src.side = 1
    src.fill_lots = src.cum_lots = lots
    src.fill_price_ticks = ticks
    src.exec_id = exec_id
    return src


def test_engine_applies_a_fill_racing_a_cancel() -> None:
    h = Harness()
    h.book((BID, 390, 5), (ASK, 410, 5))
    coid = h.buy(4, 395)  # rests
    assert h.order(coid).state is S.ACCEPTED
    h.cancel(coid)
    assert h.order(coid).state is S.CANCELLED
    src = venue_fill(h, coid, 2, 395, "race-1")
    copy_event(h.engine, src)
    copy_event(h.engine, src)
    h.engine.pump()
    assert h.position().lots == 2
    assert len(h.strat.fills(coid)) == 1
    assert (h.order(coid).state, h.order(coid).filled_lots) == (S.CANCELLED, 2)
    assert counter(h.engine, "oms_duplicate_total") == 1


MS = 1_000_000


def test_engine_a_fill_ahead_of_a_larger_modifys_answer_does_not_finish_the_order() -> None:
    # IB's order of reports for a modify 5 -> 10 that the venue applied before the order
    # traded: the execution of 5 first, then the modify's status. The venue here answers 1 ms
    # after a request; the answers IB would send are written into the ring as IB's adapter does.
    h = Harness(SimVenueConfig(ack_latency_us=1000))
    h.book((BID, 390, 5), (ASK, 410, 5))
    coid = h.buy(5, 395)
    h.clock.advance_to(h.clock.now() + MS)
    order = h.order(coid)
    assert order.state is S.ACCEPTED
    h.modify(coid, qty=10)
    assert order.state is S.PENDING_MODIFY
    ist = h.engine.risk.arrays.ist[h.es.id]
    src = venue_fill(h, coid, 5, 395, "ib-1")
    copy_event(h.engine, src)
    h.engine.pump()
    assert order.state is S.PENDING_MODIFY and order.is_open
    assert (ist[rk.IS_OPEN_ORDERS], ist[rk.IS_OPEN_BUY]) == (1, 5)  # 5 more may fill
    copy_event(
        h.engine, src, kind=EventKind.MODIFIED, fill_lots=0, fill_price_ticks=NO_PRICE,
        exec_id="", qty_lots=10, price_ticks=395,
    )  # fmt: skip
    h.engine.pump()
    assert (order.state, order.qty_lots) == (S.PARTIALLY_FILLED, 10)
    copy_event(h.engine, src, exec_id="ib-2", cum_lots=10)
    h.engine.pump()
    assert order.state is S.FILLED and h.position().lots == 10
    assert h.strat.kinds(coid) == [
        EventKind.ACCEPTED, EventKind.FILL, EventKind.MODIFIED, EventKind.FILL,
    ]  # fmt: skip
    assert h.engine.tracker.illegal == 0 and h.engine.tracker.late_fills == 0
    assert (ist[rk.IS_OPEN_ORDERS], ist[rk.IS_OPEN_BUY]) == (0, 0)


def test_engine_a_modify_refused_because_the_order_filled_finishes_it_filled() -> None:
    h = Harness(SimVenueConfig(ack_latency_us=1000, fill_latency_us=0))
    h.book((BID, 390, 5), (ASK, 410, 5))
    coid = h.buy(5, 395)
    h.clock.advance_to(h.clock.now() + MS)
    h.modify(coid, qty=10)  # reaches the venue 1 ms from now
    h.book((ASK, 395, 5))  # meanwhile the order fills at its old size
    order = h.order(coid)
    assert (order.state, order.filled_lots) == (S.PENDING_MODIFY, 5)
    h.clock.advance_to(h.clock.now() + MS)  # the venue refuses the modify: nothing working
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED, EventKind.FILL, EventKind.CANCEL_REJECTED]
    assert order.state is S.FILLED and h.engine.tracker.get(coid) is None
    ist = h.engine.risk.arrays.ist[h.es.id]
    assert (ist[rk.IS_OPEN_ORDERS], ist[rk.IS_OPEN_BUY]) == (0, 0)
