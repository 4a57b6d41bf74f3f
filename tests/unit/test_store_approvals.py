"""The store's approvals and the outbox's edits (R13.1-R13.4, R13.7): one decision wins, a
request asked again after a restart keeps its card, edits replace the waiting ones, and an
edit whose post never reached its room is dropped."""

from __future__ import annotations

from crewbridge.bot.approvals import Approval, ApprovalState
from crewbridge.bot.clock import FakeClock
from crewbridge.bot.model import PostKind, PostOp
from crewbridge.bot.outbox import Outbox
from crewbridge.bot.store import Store
from crewbridge.bot.store_outbox import NewPost, Said
from crewbridge.bridges.base import Button, RateLimited
from tests.integration.harness import Recorder
from tests.unit.test_store import db_path, store  # noqa: F401 (fixtures)


def request(request_id: str = "r-1", **kw: object) -> Approval:
    base = dict(id=0, agent="webui", channel="webui", thread=None, request_id=request_id,
                tool="Bash", input={"command": "touch x"}, rule="Bash(touch x)",
                askers=("bob",), deadline=2000.0)
    return Approval(**{**base, **kw})  # type: ignore[arg-type]


def card(a: Approval) -> Said:
    return Said("webui", "crewbridge", f"🔐 request {a.id}", (("slack", "C1"),),
                PostKind.CARD, buttons=(Button("allow", "Allow", "✅"),))


async def test_r13_1_a_request_is_stored_with_its_card(store: Store) -> None:  # noqa: F811
    a = await store.add_approval(request(), card, 1000.0)
    assert a.id == 1 and a.message is not None
    [post] = await store.pending_posts()
    assert post.text == "🔐 request 1" and post.buttons == (Button("allow", "Allow", "✅"),)
    assert await store.approval(1) == a
    assert await store.approval_of_request("webui", "r-1") == a
    await store.post_sent(post.id, ref="1700.1")
    assert await store.approval_of_ref("slack", "C1", "1700.1") == a


async def test_r13_3_one_decision_wins(store: Store) -> None:  # noqa: F811
    a = await store.add_approval(request(), card, 1000.0)
    assert await store.settle_approval(a.id, ApprovalState.ALLOWED, "bob", "", 1001.0)
    assert not await store.settle_approval(a.id, ApprovalState.DENIED, "eve", "", 1002.0)
    got = await store.approval(a.id)
    assert got is not None and (got.state, got.decided_by) == (ApprovalState.ALLOWED, "bob")
    await store.reopen_approval(a.id)
    assert [p.id for p in await store.pending_approvals()] == [a.id]


async def test_r13_4_asked_again_after_a_restart_the_same_card_answers(
        store: Store) -> None:  # noqa: F811
    """R13.4: a pending request whose id is no longer live takes the new id; a live one
    (the same command asked twice at once) does not, nor one already decided."""
    a = await store.add_approval(request("r-1"), card, 1000.0)
    assert await store.rebind_approval("webui", "Bash", {"command": "touch x"}, "r-2",
                                       live={"r-1"}) is None
    again = await store.rebind_approval("webui", "Bash", {"command": "touch x"}, "r-2",
                                        live=set())
    assert again is not None and (again.id, again.request_id, again.deadline) == (
        a.id, "r-2", 2000.0)
    assert await store.rebind_approval("webui", "Bash", {"command": "rm x"}, "r-3",
                                       live=set()) is None
    await store.settle_approval(a.id, ApprovalState.DENIED, "bob", "", 1001.0)
    assert await store.rebind_approval("webui", "Bash", {"command": "touch x"}, "r-4",
                                       live=set()) is None


async def test_r13_1_always_allow_rules_per_channel(store: Store) -> None:  # noqa: F811
    await store.add_tool_rule("webui", "Bash(touch x)", "bob", 1.0)
    await store.add_tool_rule("webui", "Bash(touch x)", "eve", 2.0)
    await store.add_tool_rule("api", "Read", "bob", 3.0)
    assert await store.tool_rules() == {"webui": ("Bash(touch x)",), "api": ("Read",)}


async def test_r13_7_an_edit_replaces_the_edits_still_waiting(store: Store) -> None:  # noqa: F811
    [mid] = await store.add_said([card(request())], 1.0)
    edits = [NewPost("slack", "C1", f"⏳ {i}s", PostKind.STATUS, message=mid, op=PostOp.EDIT)
             for i in (3, 6, 9)]
    for e in edits:
        await store.add_changes([e], 2.0)
    assert [(p.op, p.text) for p in await store.pending_posts()] == [
        (PostOp.POST, "🔐 request 0"), (PostOp.EDIT, "⏳ 9s")]
    await store.add_changes([NewPost("slack", "C1", "", PostKind.STATUS, message=mid,
                                     op=PostOp.DELETE)], 3.0)
    assert [p.op for p in await store.pending_posts()] == [PostOp.POST, PostOp.DELETE]


class Limited(Recorder):
    async def edit(self, room: str, ref: str, post: object) -> None:  # type: ignore[override]
        raise RateLimited(30)


async def test_r13_7_the_outbox_edits_in_order_and_drops_what_it_cannot(
        store: Store) -> None:  # noqa: F811
    """R13.3/R13.7: an edit follows its post in the room's order and names the post's id
    there; one for a message never shown in the room is dropped; a status edit the platform
    refuses for now is dropped (the next replaces it), a card's waits for its retry."""
    slack = Recorder(platform="slack")
    outbox = Outbox(store, {"slack": slack}, FakeClock())
    await outbox.add([card(request())])
    mid = (await store.pending_posts())[0].message
    await outbox.add_changes([NewPost("slack", "C1", "✅ allowed", PostKind.CARD, message=mid,
                                      op=PostOp.EDIT),
                              NewPost("slack", "C1", "👀", message=mid, op=PostOp.REACT),
                              NewPost("slack", "C2", "lost", message=mid, op=PostOp.EDIT)])
    assert await outbox.drain(5)
    assert [(room, ref, p.text) for room, ref, p in slack.edits] == [
        ("C1", "slack-1", "✅ allowed")]
    assert slack.reactions == [("C1", "slack-1", "👀", True)]
    assert await store.pending_posts() == []
    limited = Limited(platform="slack")
    outbox = Outbox(store, {"slack": limited}, FakeClock())
    await outbox.add_changes([
        NewPost("slack", "C1", "⏳ 3s", PostKind.STATUS, message=mid, op=PostOp.EDIT)])
    assert await outbox.drain(5) and await store.pending_posts() == []
    await outbox.add_changes([
        NewPost("slack", "C1", "✅", PostKind.CARD, message=mid, op=PostOp.EDIT)])
    await outbox.drain(0.2)
    [waiting] = await store.pending_posts()
    assert waiting.text == "✅" and waiting.attempts == 1
    await outbox.stop()


async def test_r13_7_a_reaction_does_not_hold_the_answer_behind_the_rooms_pace(
        store: Store) -> None:  # noqa: F811
    """R13.7: the room's pace (Slack's one message a second) is for new messages: the 👀 on
    a person's message does not make the answer after it wait another second."""
    clock = FakeClock(start=1000.0)
    slack = Recorder(platform="slack", post_interval_s=1.0)
    outbox = Outbox(store, {"slack": slack}, clock)
    [mid] = await store.add_said([card(request())], clock.now())
    outbox.stored([card(request())])
    assert await outbox.drain(2) and len(slack.sent) == 1
    await clock.advance(1.0)
    await outbox.add_changes([NewPost("slack", "C1", "👀", message=mid, op=PostOp.REACT)])
    await outbox.add([card(request("r-2"))])
    assert await outbox.drain(2), "the answer waited behind the reaction's pace"
    assert len(slack.sent) == 2 and slack.reactions == [("C1", "slack-1", "👀", True)]
    await outbox.stop()
