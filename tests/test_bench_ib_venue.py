"""The IB end-to-end benchmark's own bookkeeping, not its speed: what ``make bench`` reports
rests on its probes (the frames that reached the venue, one stamp per order and stage). A
short flood session against the simulator in its own process, as the benchmark runs it."""

from __future__ import annotations

from benchmarks import ib_venue


def test_a_short_flood_session_counts_what_reached_the_venue() -> None:
    ph = ib_venue.measure_flood(5, max_seconds=20.0)
    assert ph.lost == 0 and not ph.rejected
    assert {s.count for s in ph.stages.values()} == {5}  # each order stamped at every stage
    # The frames the decoder took: a frame makes at most two of the rows the venue saw.
    assert ph.md_rows_per_s > 1_000
    assert ph.md_frames_per_s >= ph.md_rows_per_s / 2
    assert ph.reads_per_s > 0 and ph.bytes_per_read > 0
    assert ph.loop.startswith("event loop lag")
