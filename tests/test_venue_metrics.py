"""``/metrics`` has what an operator alerts on for each venue's connection: up or down, for
how long, ready for orders or not (IB's 1100), reconnects, orders held back, the pacer's
queue. Against the IB Gateway simulator over loopback, through its fault injection."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from adapters.sim.venue import SimVenue
from engine.config import SimVenueConfig
from engine.metrics import VenueCollector
from tests.ib_venue_support import IBHarness, until


def scrape(venues: dict) -> dict[str, float]:
    """The venue samples a scrape shows, by ``name{venue}``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(VenueCollector(venues))
    text = generate_latest(registry).decode()
    return {
        f"{s.name}{{{s.labels['venue']}}}": s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_an_ib_venue_shows_its_connection_going_down_and_coming_back():
    async with IBHarness() as h:
        venues = {"IB": h.venue, "SIM": SimVenue("SIM", SimVenueConfig())}
        up = scrape(venues)
        assert up["tickwire_venue_connected{IB}"] == 1.0
        assert up["tickwire_venue_ready{IB}"] == 1.0
        assert up["tickwire_venue_down_seconds{IB}"] == 0.0
        assert up["tickwire_venue_reconnects_total{IB}"] == 0.0
        assert up["tickwire_venue_pacer_queued{IB}"] >= 0.0  # subscriptions may still wait
        assert not any(k.endswith("{SIM}") for k in up), "a venue without a connection"

        h.fault("daily_restart", seconds=1.0)  # the gateway cuts the socket and is away 1 s
        await until(lambda: not h.venue.connected, 5, "the drop noticed")
        await until(lambda: h.venue.down_since is not None, 5, "the outage noted")
        down = scrape(venues)
        assert down["tickwire_venue_connected{IB}"] == 0.0
        assert down["tickwire_venue_ready{IB}"] == 0.0
        await until(lambda: scrape(venues)["tickwire_venue_down_seconds{IB}"] > 0.1, 5, "down")

        assert await h.venue.wait_ready(15)
        back = scrape(venues)
        assert back["tickwire_venue_connected{IB}"] == 1.0
        assert back["tickwire_venue_ready{IB}"] == 1.0
        assert back["tickwire_venue_down_seconds{IB}"] == 0.0
        assert back["tickwire_venue_reconnects_total{IB}"] == 1.0


async def test_ib_1100_shows_as_connected_but_not_ready_for_orders():
    async with IBHarness() as h:
        h.fault("connectivity_lost", seconds=1.0)  # IB lost its servers; our socket stays up
        await until(lambda: h.venue.in_1100, 5, "1100")
        lost = scrape({"IB": h.venue})
        assert lost["tickwire_venue_connected{IB}"] == 1.0
        assert lost["tickwire_venue_ready{IB}"] == 0.0
        coid = h.strat.buy("AAPL", 1, 100.0)  # refused at once: the venue holds it back
        await until(lambda: h.kinds(coid), 5, "the refusal")
        assert scrape({"IB": h.venue})["tickwire_venue_orders_held_back_total{IB}"] == 1.0
        await until(lambda: not h.venue.in_1100, 5, "1102")
        assert scrape({"IB": h.venue})["tickwire_venue_ready{IB}"] == 1.0
