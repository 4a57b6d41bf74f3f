"""The store's per-worker task look-up (R3.3, R7.1): what a worker works on, in one query."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crewbridge.bot.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "db.sqlite")
    yield s
    await s.close()


async def test_r3_3_latest_task_prefers_the_newest_open_one(store: Store) -> None:
    assert await store.latest_task_of("alice") is None
    first = await store.create_task("one", "webui", "alice", "webui", 1.0)
    second = await store.create_task("two", "backend", "alice", "webui", 2.0)
    await store.create_task("other", "webui", "bob", "webui", 3.0)
    assert await store.latest_task_of("alice") == second
    await store.finish_task(second.id, 4.0)
    assert await store.latest_task_of("alice") == first  # open beats newer but done
    await store.finish_task(first.id, 5.0)
    latest = await store.latest_task_of("alice")
    assert latest is not None and (latest.id, latest.status) == (second.id, "done")


async def test_r3_3_latest_task_is_an_indexed_look_up(store: Store) -> None:
    """Issue 8 item 6: starting a worker must not scan every task ever."""
    plan = await store._all("EXPLAIN QUERY PLAN SELECT id FROM tasks WHERE assignee = ? "
                            "ORDER BY status = 'open' DESC, id DESC LIMIT 1", ("alice",))
    assert any("tasks_assignee" in str(row) for row in plan), plan
