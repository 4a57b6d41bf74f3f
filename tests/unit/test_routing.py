"""Who a message nudges: `bot.routing.route` (R1.7, R2.1–R2.7).

Every rule is a row of a table over one directory of the crew, plus a hypothesis property over
random directories and texts. Pure: no I/O, no time.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crewbridge.bot.model import Message, Nudge
from crewbridge.bot.routing import Directory, Routing, mentions, route

MAX_HOPS = 8

# The crew every table row runs against. Workers live in `dm-<name>`; the sets are the
# channels of their *open* tasks (what `@all` must look at, R2.3).
CREW = Directory(
    general="general",
    admin="ops",
    topics=frozenset({"general", "webui", "web-ui", "backend"}),
    workers={
        "alice": frozenset({"webui"}),
        "bob": frozenset({"backend"}),
        "carol": frozenset({"webui", "backend"}),
        "data_eng": frozenset({"web-ui"}),
        "idle": frozenset(),  # a worker whose tasks are all done
    },
)
EVERY_LEAD = ["backend", "general", "web-ui", "webui"]
EVERY_BUSY_WORKER = ["alice", "bob", "carol", "data_eng"]


def person(channel: str, text: str, *, top_level: bool = True, author: str = "Dana",
           platform: str = "slack") -> Message:
    return Message(channel, author, False, platform, text, 0, top_level)


def agent(name: str, channel: str, text: str, *, hops: int = 0, top_level: bool = True
          ) -> Message:
    return Message(channel, name, True, "agent", text, hops, top_level)


def targets(r: Routing) -> list[str]:
    return sorted(n.agent for n in r.nudges)


@dataclass(frozen=True)
class Row:
    msg: Message
    nudged: list[str]
    notices: int = 0


ROWS: dict[str, Row] = {
    # R2.1 — a person's top-level message reaches the channel's lead, once.
    "r2_1-top-level-in-topic-nudges-lead": Row(person("webui", "hello"), ["webui"]),
    "r2_1-top-level-in-general-nudges-project-lead": Row(person("general", "hi"), ["general"]),
    "r2_1-lead-mentioned-too-is-still-once": Row(person("webui", "@webui @lead hi"), ["webui"]),
    "r2_1-thread-reply-does-not-nudge-lead": Row(person("webui", "ok", top_level=False), []),
    # R2.2 — explicit mentions.
    "r2_2-agent-mention-in-thread": Row(person("webui", "@alice look", top_level=False),
                                        ["alice"]),
    "r2_2-agent-mention-top-level-adds-lead": Row(person("webui", "@alice look"),
                                                  ["alice", "webui"]),
    "r2_2-lead-mention-in-thread": Row(person("backend", "@lead ping", top_level=False),
                                       ["backend"]),
    "r2_2-channel-mention-nudges-its-lead": Row(person("webui", "ask @backend",
                                                       top_level=False), ["backend"]),
    "r2_2-general-channel-mention": Row(person("webui", "@general fyi", top_level=False),
                                        ["general"]),
    "r2_2-worker-without-open-task-is-still-known": Row(
        person("webui", "@idle again?", top_level=False), ["idle"]),
    "r2_2-case-insensitive-upper": Row(person("webui", "@ALICE x", top_level=False), ["alice"]),
    "r2_2-case-insensitive-mixed": Row(person("webui", "@Alice x", top_level=False), ["alice"]),
    "r2_2-case-insensitive-channel": Row(person("webui", "@BackEnd x", top_level=False),
                                         ["backend"]),
    "r2_2-trailing-comma": Row(person("webui", "@alice, x", top_level=False), ["alice"]),
    "r2_2-trailing-period": Row(person("webui", "thanks @alice.", top_level=False), ["alice"]),
    "r2_2-trailing-colon": Row(person("webui", "@alice: x", top_level=False), ["alice"]),
    "r2_2-trailing-bang": Row(person("webui", "go @alice!", top_level=False), ["alice"]),
    "r2_2-trailing-question": Row(person("webui", "@alice?", top_level=False), ["alice"]),
    "r2_2-trailing-ellipsis": Row(person("webui", "@alice...", top_level=False), ["alice"]),
    "r2_2-in-parentheses": Row(person("webui", "(cc @alice)", top_level=False), ["alice"]),
    "r2_2-trailing-dash-is-punctuation": Row(person("webui", "@alice- x", top_level=False),
                                             ["alice"]),
    "r2_2-dash-belongs-to-name": Row(person("webui", "@web-ui x", top_level=False), ["web-ui"]),
    "r2_2-dash-name-with-period": Row(person("webui", "see @web-ui.", top_level=False),
                                      ["web-ui"]),
    "r2_2-underscore-belongs-to-name": Row(person("webui", "@data_eng x", top_level=False),
                                           ["data_eng"]),
    "r2_2-dash-name-is-not-its-prefix": Row(person("backend", "@web-ui x", top_level=False),
                                            ["web-ui"]),
    "r2_2-email-is-not-a-mention": Row(
        person("webui", "mail alice@example.com", top_level=False), []),
    "r2_2-word-at-word-is-not-a-mention": Row(person("webui", "foo@bar", top_level=False), []),
    "r2_2-path-at-is-not-a-mention": Row(person("webui", "npm i pkg/@alice", top_level=False),
                                         []),
    "r2_2-inline-code-is-not-a-mention": Row(
        person("webui", "use `@alice` here", top_level=False), []),
    "r2_2-fence-is-not-a-mention": Row(
        person("webui", "see\n```py\n@alice\ndef f(): ...\n```\n", top_level=False), []),
    "r2_2-unclosed-fence-is-code": Row(person("webui", "```\n@alice", top_level=False), []),
    "r2_2-mention-after-fence-counts": Row(
        person("webui", "```\n@bob\n```\n@alice", top_level=False), ["alice"]),
    "r2_2-unknown-name-one-notice": Row(person("webui", "@zed hi", top_level=False), [], 1),
    "r2_2-two-unknown-names-one-notice": Row(person("webui", "@zed @yan", top_level=False),
                                             [], 1),
    "r2_2-unknown-twice-one-notice": Row(person("webui", "@zed @ZED", top_level=False), [], 1),
    "r2_2-unknown-beside-known": Row(person("webui", "@zed @alice", top_level=False),
                                     ["alice"], 1),
    "r2_2-unknown-top-level-lead-still-nudged": Row(person("webui", "@zed hi"), ["webui"], 1),
    "r2_2-no-notice-for-agent-authors": Row(agent("webui", "webui", "use @decorator"), []),
    "r2_2-no-notice-for-worker-authors": Row(agent("alice", "webui", "@scope/pkg"), ["webui"]),
    # R2.3 — @all in a topic channel: its lead + workers whose open task is there.
    "r2_3-all-in-topic-reaches-workers-living-in-dm": Row(
        person("webui", "@all standup"), ["alice", "carol", "webui"]),
    "r2_3-all-in-other-topic": Row(person("backend", "@all"), ["backend", "bob", "carol"]),
    "r2_3-all-in-dash-topic": Row(person("web-ui", "@all"), ["data_eng", "web-ui"]),
    "r2_3-all-in-thread-too": Row(person("webui", "@all", top_level=False),
                                  ["alice", "carol", "webui"]),
    "r2_3-all-upper-case": Row(person("webui", "@ALL!"), ["alice", "carol", "webui"]),
    "r2_3-all-by-the-lead-skips-the-lead": Row(agent("webui", "webui", "@all go"),
                                               ["alice", "carol"]),
    # R2.4 — @all in general: every lead and every worker with an open task.
    "r2_4-all-in-general": Row(person("general", "@all release"),
                               EVERY_LEAD + EVERY_BUSY_WORKER),
    "r2_4-all-in-general-by-project-lead": Row(
        agent("general", "general", "@all"), [x for x in EVERY_LEAD if x != "general"]
        + EVERY_BUSY_WORKER),
    # R2.5 — each agent at most once, never the author.
    "r2_5-all-plus-repeats-once-each": Row(person("general", "@all @webui @webui @alice"),
                                           EVERY_LEAD + EVERY_BUSY_WORKER),
    "r2_5-topic-all-plus-repeats": Row(person("webui", "@all @alice @ALICE @lead"),
                                       ["alice", "carol", "webui"]),
    "r2_5-repeat-mention-once": Row(person("webui", "@bob @bob, @Bob.", top_level=False),
                                    ["bob"]),
    "r2_5-agent-never-nudges-itself": Row(agent("alice", "webui", "@alice @webui done",
                                                top_level=False), ["webui"]),
    "r2_6-lead-output-mentions-worker": Row(agent("webui", "webui", "@alice please fix it"),
                                            ["alice"]),
    "r2_6-lead-own-top-level-output-nudges-nobody": Row(agent("webui", "webui", "done"), []),
    # R1.7 — a person's message in dm-<name> reaches <name> only.
    "r1_7-dm-reaches-its-worker": Row(person("dm-alice", "hi"), ["alice"]),
    "r1_7-dm-all-reaches-only-its-worker": Row(person("dm-alice", "@all hi"), ["alice"]),
    "r1_7-dm-mention-reaches-only-its-worker": Row(person("dm-alice", "@webui @bob x"),
                                                   ["alice"]),
    "r1_7-dm-thread-reply-reaches-its-worker": Row(person("dm-alice", "x", top_level=False),
                                                   ["alice"]),
    "r1_7-dm-never-spawns-a-lead": Row(person("dm-idle", "@lead wake up"), ["idle"]),
    # R6.4 — the admin channel is for commands; it nudges nobody.
    "r6_4-admin-channel-nudges-nobody": Row(person("ops", "@all status"), []),
    "r6_4-admin-channel-mention-nudges-nobody": Row(person("ops", "@alice @zed"), []),
    "r6_4-admin-channel-agent-post-nudges-nobody": Row(agent("webui", "ops", "@alice"), []),
}


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_r2_routing_table(row: Row) -> None:
    """R1.7, R2.1–R2.6: the agents a message nudges and the notices it leaves."""
    r = route(row.msg, CREW, MAX_HOPS)
    assert targets(r) == sorted(row.nudged)
    assert len(r.notices) == row.notices
    for n in r.notices:
        assert n.channel == row.msg.channel


def test_r2_2_unknown_name_notice_names_it_and_goes_to_the_sender_channel() -> None:
    """R2.2: one short notice naming the unknown name, in the channel the sender wrote in."""
    r = route(person("webui", "@zed @Yan @zed hi", top_level=False), CREW, MAX_HOPS)
    assert r.nudges == ()
    (notice,) = r.notices
    assert notice.channel == "webui"
    assert "@zed" in notice.text and "@yan" in notice.text
    assert notice.text.count("@zed") == 1
    assert r.unknown == ("zed", "yan")


@pytest.mark.parametrize(("hops", "nudged", "notices"), [
    (0, ["alice"], 0),
    (MAX_HOPS - 1, ["alice"], 0),
    (MAX_HOPS, [], 1),
    (MAX_HOPS + 5, [], 1),
], ids=["first-hop", "last-allowed-hop", "at-limit", "past-limit"])
def test_r2_6_hop_limit(hops: int, nudged: list[str], notices: int) -> None:
    """R2.6: an agent chain stops after max_hops hops with exactly one notice in the channel."""
    r = route(agent("webui", "webui", "@alice and @bob go", hops=hops, top_level=False),
              Directory("general", "ops", frozenset({"general", "webui"}),
                        {"alice": frozenset({"webui"})}), MAX_HOPS)
    assert targets(r) == nudged
    assert len(r.notices) == notices
    assert all(n.channel == "webui" for n in r.notices)
    assert all(n.hops == hops + 1 for n in r.nudges)


@pytest.mark.parametrize("max_hops", [1, 2, 3, 8, 20])
def test_r2_6_hop_limit_follows_config(max_hops: int) -> None:
    """R2.6: the limit is the configured number of hops, not a constant."""
    below = route(agent("webui", "webui", "@alice", hops=max_hops - 1), CREW, max_hops)
    at = route(agent("webui", "webui", "@alice", hops=max_hops), CREW, max_hops)
    assert [(n.agent, n.hops) for n in below.nudges] == [("alice", max_hops)]
    assert below.notices == ()
    assert at.nudges == ()
    assert len(at.notices) == 1


def test_r2_6_person_message_restarts_the_hop_count() -> None:
    """R2.6: hops count agent-to-agent nudges since the last person; a person's nudge is 0."""
    r = route(person("webui", "@alice @bob"), CREW, MAX_HOPS)
    assert {n.hops for n in r.nudges} == {0}


def test_r2_7_nudge_names_sender_platform_channel_then_text() -> None:
    """R2.7: who, on which platform, in which channel — then the text."""
    text = "please look at the login page"
    r = route(person("webui", f"@alice {text}", author="Dana Scully", platform="matrix",
                     top_level=False), CREW, MAX_HOPS)
    (n,) = r.nudges
    assert n.text.endswith(f"@alice {text}")
    head = n.text[: -len(f"@alice {text}")]
    i_sender, i_platform, i_channel = (head.index("Dana Scully"), head.index("matrix"),
                                       head.index("#webui"))
    assert i_sender < i_platform < i_channel


def test_r2_7_agent_nudge_names_the_agent_as_sender() -> None:
    """R2.7: an agent-to-agent nudge says which agent asked."""
    (n,) = route(agent("webui", "webui", "@alice fix it"), CREW, MAX_HOPS).nudges
    assert n.agent == "alice"
    assert "webui" in n.text and "agent" in n.text and n.text.endswith("@alice fix it")


@pytest.mark.parametrize("msg", [
    person("webui", "@all"), person("dm-alice", "x"), agent("webui", "backend", "@bob x"),
], ids=["topic", "dm", "agent-post-elsewhere"])
def test_r2_7_nudge_origin_is_the_channel(msg: Message) -> None:
    """R2.7/R3.4: `Nudge.origin` is the channel the message was posted in (notices go there)."""
    r = route(msg, CREW, MAX_HOPS)
    assert r.nudges
    assert {n.origin for n in r.nudges} == {msg.channel}


def test_r2_2_mentions_outside_code_in_order() -> None:
    """R2.2: the mention scanner: lower-cased, in order, code and addresses excluded."""
    text = "Hi @Alice, see `@bob` and @web-UI. mail x@y.org ```\n@carol\n``` @data_eng!"
    assert mentions(text) == ["alice", "web-ui", "data_eng"]


# --- bugs found: each test shows the behaviour SPEC asks for and fails today -------------


@pytest.mark.parametrize("msg, nudged", [
    (person("dm-alice", "hi", author="alice"), ["alice"]),
    (person("webui", "hello", author="webui"), ["webui"]),
    (person("webui", "@bob x", author="bob", top_level=False), ["bob"]),
], ids=["r1_7-dm", "r2_1-lead", "r2_2-mention"])
def test_r2_5_only_an_agent_own_message_is_excluded_not_a_person_with_its_name(
        msg: Message, nudged: list[str]) -> None:
    """R2.5: 'never by its own message' — a person who happens to be called like an agent
    (Slack display name `alice`) is not that agent; their message must reach it.
    (Found by this suite as an xfail; fixed in 196dda8.)"""
    assert targets(route(msg, CREW, MAX_HOPS)) == nudged


def test_r1_7_r2_6_lead_post_into_dm_channel_reaches_its_worker() -> None:
    """R1.7 + R2.6: `crewbridge post dm-alice "also fix the tests"` by lead webui reaches alice."""
    r = route(agent("webui", "dm-alice", "also fix the tests"), CREW, MAX_HOPS)
    assert targets(r) == ["alice"]


def test_r2_6_no_hop_limit_notice_when_nothing_would_be_nudged() -> None:
    """R2.6: the notice says a chain was stopped; a lead's plain answer at hop 8 stops nothing.

    The supervisor routes every batch of a turn with the hops of the nudge that started it,
    so today each 2 s flush of that turn leaves another "Stopped a chain" notice.
    """
    r = route(agent("webui", "webui", "Here is the fix.", hops=MAX_HOPS), CREW, MAX_HOPS)
    assert r.nudges == ()
    assert r.notices == ()


def test_r2_2_double_backtick_code_span_is_code() -> None:
    """R2.2 (routing docstring): mentions inside code spans are code, not mentions."""
    assert mentions("use ``@alice`` as a decorator") == []


# --- property --------------------------------------------------------------------------------

NAMES = st.text(alphabet="abcdefgh-_", min_size=1, max_size=6).filter(
    lambda s: s[0].isalpha() and s not in ("all", "lead"))


@st.composite
def crews(draw: st.DrawFn) -> Directory:
    topics = draw(st.frozensets(NAMES.filter(lambda s: not s.startswith("dm-")), max_size=5))
    topics = topics | {"general"}
    worker_names = draw(st.frozensets(NAMES, max_size=5).map(lambda s: s - topics - {"ops"}))
    workers = {w: draw(st.frozensets(st.sampled_from(sorted(topics)), max_size=3))
               for w in worker_names}
    return Directory("general", "ops", frozenset(topics - {"ops"}), workers)


@st.composite
def messages(draw: st.DrawFn, d: Directory) -> Message:
    known = sorted(d.topics | set(d.workers))
    word = st.one_of(
        st.sampled_from(known).map(lambda n: "@" + n),
        st.sampled_from(known).map(lambda n: "@" + n.upper()),
        NAMES.map(lambda n: "@" + n),
        st.sampled_from(["@all", "@lead", "@ALL", "x@y.z", "`@all`", "```\n@all\n```",
                         ",", ".", "!", ":", "hello", "\n"]),
    )
    text = "".join(draw(st.lists(st.tuples(word, st.sampled_from(["", " ", ", ", ".", "\n"]))
                                 .map("".join), max_size=8)))
    channels = [*sorted(d.topics), "ops", *(f"dm-{w}" for w in sorted(d.workers))]
    channel = draw(st.sampled_from(channels))
    is_agent = draw(st.booleans())
    author = draw(st.sampled_from(known)) if is_agent else draw(st.sampled_from(["Dana", "Eve"]))
    return Message(channel, author, is_agent, "agent" if is_agent else "slack", text,
                   draw(st.integers(0, MAX_HOPS + 2)) if is_agent else 0, draw(st.booleans()))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_r2_5_property_no_author_no_duplicates_only_known_agents(data: st.DataObject) -> None:
    """R2.5, R2.6, R2.2: for any crew and text, no nudge targets the author, no agent is
    nudged twice, every target is a known agent, and every nudge carries the origin channel."""
    d = data.draw(crews())
    msg = data.draw(messages(d))
    r = route(msg, d, MAX_HOPS)
    got = [n.agent for n in r.nudges]
    assert msg.author not in got
    assert len(got) == len(set(got))
    assert all(d.is_agent(a) for a in got)
    assert all(isinstance(n, Nudge) and n.origin == msg.channel for n in r.nudges)
    if msg.channel == "ops":
        assert r == Routing()
    if msg.author_is_agent:
        assert all(n.hops == msg.hops + 1 for n in r.nudges)
        assert msg.hops < MAX_HOPS or not r.nudges
    else:
        assert all(n.hops == 0 for n in r.nudges)
    assert len(r.notices) <= 1


@pytest.mark.parametrize(("text", "expected"), [
    ("[alice via slack in #webui] fix it\nplease", ("alice", "fix it\nplease")),
    ("[Ann Lee via matrix in #general] hi", ("Ann Lee", "hi")),
    ("[task #3 from bob in #webui] the login bug", ("bob", "the login bug")),
    ("no header", ("", "no header")),
    ("[not a header] x", ("", "[not a header] x")),
])
def test_r6_6_split_nudge_recovers_who_wrote_a_queued_message(text, expected):
    """R6.6: `queue` and `drop` name each message's sender from its nudge header (R2.7)."""
    from crewbridge.bot.routing import split_nudge

    assert split_nudge(text) == expected
