"""R14.3: the metrics' read-at-scrape families, the counters' hooks, and the /healthz
verdict — pure, without a server (tests/integration/test_health.py serves them)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from crewbridge.bot.http_health import HealthReport, Status
from crewbridge.bot.metrics import Metrics, Snapshot, families, state_label
from crewbridge.bot.outbox import PostOutcome
from crewbridge.bridges.base import ConnectionChanged, Inbound
from crewbridge.supervisor.ports import TurnUsage


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text, by name and sorted labels."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def scrape(metrics: Metrics, snapshot: Snapshot) -> dict:
    async def read() -> Snapshot:
        return snapshot
    return samples((await metrics.scrape(read)).decode())


SNAPSHOT = Snapshot(platforms={"slack": True, "matrix": False}, outbox_pending=3,
                    agents={"running": 2, "waiting_for_a_slot": 1}, breakers_open=1,
                    approvals_pending=4)

FAMILY_ROWS = {
    "r14_3-platform-up": ("crewbridge_platform_up", {"platform": "slack"}, 1),
    "r14_3-platform-down": ("crewbridge_platform_up", {"platform": "matrix"}, 0),
    "r14_3-outbox-pending": ("crewbridge_outbox_pending", {}, 3),
    "r14_3-agents-in-a-state": ("crewbridge_agents", {"state": "running"}, 2),
    "r14_3-agents-waiting-for-a-slot": ("crewbridge_agents", {"state": "waiting_for_a_slot"}, 1),
    "r14_3-every-run-state-listed": ("crewbridge_agents", {"state": "stopping"}, 0),
    "r14_3-breakers-open": ("crewbridge_breakers_open", {}, 1),
    "r14_3-approvals-pending": ("crewbridge_approvals_pending", {}, 4),
}


@pytest.mark.parametrize(("name", "labels", "value"), FAMILY_ROWS.values(),
                         ids=FAMILY_ROWS.keys())
async def test_r14_3_read_at_scrape_metrics_say_what_the_snapshot_says(
        name: str, labels: dict[str, str], value: float) -> None:
    """R14.3: each read-at-scrape metric, its labels and its value, as Prometheus parses it."""
    found = await scrape(Metrics(), SNAPSHOT)
    assert found[(name, tuple(sorted(labels.items())))] == value


def test_r14_3_families_of_an_empty_snapshot_are_all_there() -> None:
    """R14.3: a bot that is starting still lists every read-at-scrape family (at 0)."""
    names = {f.name for f in families(Snapshot())}
    assert names == {"crewbridge_platform_up", "crewbridge_outbox_pending", "crewbridge_agents",
                     "crewbridge_breakers_open", "crewbridge_approvals_pending"}


@pytest.mark.parametrize(("state", "label"), [
    ("running", "running"), ("cooling down", "cooling_down"),
    ("waiting for a slot", "waiting_for_a_slot")])
def test_r14_3_a_status_state_is_a_label_value(state: str, label: str) -> None:
    assert state_label(state) == label


async def test_r14_3_counters_count_their_events_and_list_each_platform_at_zero() -> None:
    """R14.3: the one-line hooks count inbound messages by platform (other events are not
    messages), post attempts by platform and outcome, and turn durations; every platform's
    series are there from the first scrape on, at 0."""
    metrics = Metrics()
    before = await scrape(metrics, SNAPSHOT)
    assert before[("crewbridge_inbound_messages_total", (("platform", "matrix"),))] == 0
    for outcome in PostOutcome:
        key = ("crewbridge_posts_total", (("outcome", str(outcome)), ("platform", "slack")))
        assert before[key] == 0
    metrics.saw(Inbound("slack", "C1", "U1", "alice", "hi", "e-1", 0.0))
    metrics.saw(ConnectionChanged("slack", False, 0.0))
    metrics.posted("slack", PostOutcome.SENT)
    metrics.posted("slack", PostOutcome.RETRIED)
    metrics.posted("slack", PostOutcome.RETRIED)
    metrics.turn_ended(TurnUsage(0.1, 1, 1, duration_s=3.0), "webui")
    metrics.turn_ended(TurnUsage(0.25, 1, 1), "webui")  # no duration given: not observed
    after = await scrape(metrics, SNAPSHOT)
    assert after[("crewbridge_inbound_messages_total", (("platform", "slack"),))] == 1
    assert after[("crewbridge_posts_total", (("outcome", "sent"), ("platform", "slack")))] == 1
    assert after[("crewbridge_posts_total", (("outcome", "retried"), ("platform", "slack")))] == 2
    assert after[("crewbridge_turn_seconds_count", ())] == 1
    assert after[("crewbridge_turn_seconds_sum", ())] == 3.0
    assert after[("crewbridge_turn_seconds_bucket", (("le", "5.0"),))] == 1
    assert after[("crewbridge_turn_seconds_bucket", (("le", "2.5"),))] == 0
    # R13.8: a counter of this process, which retention's deletions cannot lower (R14.6)
    assert after[("crewbridge_cost_usd_total", (("channel", "webui"),))] == pytest.approx(0.35)


async def test_r14_3_each_app_has_its_own_registry() -> None:
    """R14.3: two Apps in one process (as in the tests) count apart."""
    one, two = Metrics(), Metrics()
    one.posted("slack", PostOutcome.SENT)
    key = ("crewbridge_posts_total", (("outcome", "sent"), ("platform", "slack")))
    assert (await scrape(one, SNAPSHOT))[key] == 1
    assert (await scrape(two, SNAPSHOT))[key] == 0


HEALTH_ROWS = {
    "r14_3-all-well": (HealthReport(platforms={"slack": True, "matrix": True}),
                       200, Status.OK, []),
    "r14_3-a-platform-down": (HealthReport(platforms={"slack": True, "matrix": False}),
                              503, Status.DOWN, ["matrix"]),
    "r14_3-the-store-not-writable": (HealthReport(store_error="disk full",
                                                  platforms={"slack": True}),
                                     503, Status.DOWN, ["store"]),
    "r14_3-both": (HealthReport(store_error="x", platforms={"slack": False, "matrix": False}),
                   503, Status.DOWN, ["store", "matrix", "slack"]),
    "r14_3-starting": (HealthReport(starting=True), 503, Status.STARTING, []),
}


@pytest.mark.parametrize(("report", "code", "status", "down"), HEALTH_ROWS.values(),
                         ids=HEALTH_ROWS.keys())
def test_r14_3_healthz_is_200_only_when_the_store_and_every_platform_are_up(
        report: HealthReport, code: int, status: Status, down: list[str]) -> None:
    """R14.3: 200 when the store is writable and every platform connected; else 503, the
    JSON naming what is down."""
    body = report.body()
    assert (report.code, body["status"], body["down"]) == (code, status, down)
    for platform, up in report.platforms.items():
        assert body["platforms"][platform] == ("up" if up else "down")
    assert body["store"] == (report.store_error or "ok")
