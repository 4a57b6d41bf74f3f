"""The bot's Prometheus metrics (R14.3): a registry per App, its counters, and what is read
of the bot's state at each scrape.

Two kinds of metric, kept apart on purpose. A *counter* is kept only for what happens and
leaves no trace to count later: an inbound event, an attempt to send a post, a turn's
duration. Everything the bot already knows — the outbox, the agents, the breakers, the
pending approvals, the cost so far, which platforms are up — is *read at scrape* into a
`Snapshot` and turned into metric families by the pure `families`, so a gauge can never
drift from the state it reports, and costs nothing between scrapes.

The registry is the App's own, never prometheus-client's global one: tests run many Apps in
one process, and each must report its own numbers.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crewbridge.bot.outbox import PostOutcome
from crewbridge.bridges.base import BridgeEvent, Inbound
from crewbridge.supervisor.breaker import BreakerState
from crewbridge.supervisor.ports import TurnUsage
from crewbridge.supervisor.resolve import RunState

if TYPE_CHECKING:
    from crewbridge.bot.app import App

PREFIX = "crewbridge"
TURN_BUCKETS_S = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1800)
"""From a one-line answer to the default `turn_timeout_s` (900 s) and beyond it."""


@dataclass(frozen=True)
class Snapshot:
    """What a scrape reads of the bot's state (empty while the bot is starting)."""

    platforms: Mapping[str, bool] = field(default_factory=dict)  # platform -> connected
    outbox_pending: int = 0
    agents: Mapping[str, int] = field(default_factory=dict)  # state label -> agents in it
    breakers_open: int = 0
    approvals_pending: int = 0


def state_label(state: str) -> str:
    """A `status` state as a label value: "waiting for a slot" -> "waiting_for_a_slot"."""
    return state.replace(" ", "_")


def families(s: Snapshot) -> list[Metric]:
    """The read-at-scrape metrics of one snapshot. Every run state is listed, at 0 when no
    agent is in it, so a dashboard's series do not come and go."""
    up = GaugeMetricFamily(f"{PREFIX}_platform_up",
                           "1 while the platform's connection is up (R6.3), else 0",
                           labels=["platform"])
    for platform, connected in sorted(s.platforms.items()):
        up.add_metric([platform], 1 if connected else 0)
    agents = GaugeMetricFamily(f"{PREFIX}_agents", "Agents by state, as admin status shows "
                               "them (R6.4)", labels=["state"])
    for state, n in sorted(({str(r): 0 for r in RunState} | dict(s.agents)).items()):
        agents.add_metric([state], n)
    return [
        up,
        GaugeMetricFamily(f"{PREFIX}_outbox_pending", "Posts, edits and reactions waiting "
                          "to be sent (R8.3)", value=s.outbox_pending),
        agents,
        GaugeMetricFamily(f"{PREFIX}_breakers_open", "Circuit breakers not closed: open or "
                          "on a trial start (R4.6)", value=s.breakers_open),
        GaugeMetricFamily(f"{PREFIX}_approvals_pending", "Tool requests waiting for a "
                          "person's decision (R13.1)", value=s.approvals_pending),
    ]


class _ReadAtScrape(Collector):
    """Yields the families of the snapshot `Metrics.scrape` read just before."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def collect(self) -> Iterable[Metric]:
        return families(self.snapshot)


class Metrics:
    """One App's registry: its counters, fed by one-line hooks, and the read-at-scrape rest."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._inbound = Counter(f"{PREFIX}_inbound_messages", "Events people's messages "
                                "arrived in, by platform (re-deliveries included)",
                                ["platform"], registry=self.registry)
        self._posts = Counter(f"{PREFIX}_posts", "Attempts to send a post, edit or reaction, "
                              "by platform and outcome (R8.3)", ["platform", "outcome"],
                              registry=self.registry)
        self._turns = Histogram(f"{PREFIX}_turn_seconds", "How long agents' turns took, "
                                "as the agent reported", buckets=TURN_BUCKETS_S,
                                registry=self.registry)
        # A counter of this process, not the store's sums: retention deletes old usage rows
        # (R14.6), and a total that went down would read as a counter reset.
        self._cost = Counter(f"{PREFIX}_cost_usd", "What the agents' turns cost since the "
                             "bot started, by the channel they answered in (R13.8)",
                             ["channel"], registry=self.registry)
        self._read = _ReadAtScrape()
        self.registry.register(self._read)

    def saw(self, event: BridgeEvent) -> None:
        if isinstance(event, Inbound):
            self._inbound.labels(event.platform).inc()

    def posted(self, platform: str, outcome: PostOutcome) -> None:
        self._posts.labels(platform, outcome).inc()

    def turn_ended(self, usage: TurnUsage, channel: str) -> None:
        if usage.duration_s is not None:
            self._turns.observe(usage.duration_s)
        self._cost.labels(channel).inc(max(0.0, usage.cost_usd))

    async def scrape(self, read: Callable[[], Awaitable[Snapshot]]) -> bytes:
        """The Prometheus text of every metric, the state read now by `read`. Each platform's
        counters are listed from the first scrape on, at 0 until something happens."""
        snapshot = await read()
        for platform in snapshot.platforms:
            self._inbound.labels(platform)
            for outcome in PostOutcome:
                self._posts.labels(platform, outcome)
        self._read.snapshot = snapshot
        return generate_latest(self.registry)


async def read_snapshot(app: App) -> Snapshot:
    """What the App's store, supervisor and outage tracker say now; nothing while starting."""
    if not app.ready.is_set():
        return Snapshot()
    statuses = await app.supervisor.status()
    healths = await app.store.healths()
    return Snapshot(
        platforms={p: not app.outages.is_down(p) for p in app.bridges},
        outbox_pending=await app.store.pending_count(),
        agents=Tally(state_label(s.state) for s in statuses),
        breakers_open=sum(h.state is not BreakerState.CLOSED for h in healths.values()),
        approvals_pending=await app.store.pending_approval_count())
