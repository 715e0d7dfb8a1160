"""The synthetic pipeline: book kernel, both sample strategies, risk gate, router, sim venue."""

from __future__ import annotations

import uvloop

from benchmarks.harness import drive, pipeline_app, pregenerate

BATCH = 100
BATCHES = 200


def _prepared(strategies: bool):
    app = pipeline_app(strategies=strategies)
    # The engine's timers (breakers, day roll) need a loop to be set on; it never runs here:
    # the pipeline is driven synchronously, the venue answering inline.
    app.clock.bind(uvloop.new_event_loop())
    app.engine.start()
    app.feed.publish_snapshot(app.engine)
    drive(app, pregenerate(app, 300, BATCH))  # warm-up: kernels, quotes working, histories
    return app


def test_pipeline_with_strategies(benchmark):
    app = _prepared(strategies=True)
    rounds = iter(range(10**9))
    data = {k: pregenerate(app, BATCHES, BATCH) for k in range(2)}

    def go() -> None:
        drive(app, data[next(rounds) % 2])

    updates = sum(len(d) for d, _ in data[0])
    benchmark.extra_info["messages_per_round"] = updates
    benchmark.pedantic(go, rounds=20, warmup_rounds=2)
    assert app.engine.router.orders > 0


def test_pipeline_book_only(benchmark):
    """Anchor for the strategies' cost: the same data with no strategy subscribed."""
    app = _prepared(strategies=False)
    data = pregenerate(app, BATCHES, BATCH)
    updates = sum(len(d) for d, _ in data)
    benchmark.extra_info["messages_per_round"] = updates
    benchmark.pedantic(lambda: drive(app, data), rounds=20, warmup_rounds=2)
