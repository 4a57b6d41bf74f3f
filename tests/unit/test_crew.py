"""Who the crew is and how agents start: `bot.crew.Crew` (R2.1, R3.3, R7.1, R7.2).

Pure: a config and the crew's channels and tasks in, specs, problems and homes out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crewbridge.bot.config import (
    AdminConfig,
    BotConfig,
    ChannelConfig,
    Config,
    ConsoleConfig,
    Threads,
)
from crewbridge.bot.crew import Crew, lead_prompt, worker_name, worker_prompt
from crewbridge.bot.model import ChannelKind
from crewbridge.bot.store import TaskRow
from crewbridge.bot.store_threads import ThreadRow
from crewbridge.supervisor.ports import (
    AgentConfig,
    AgentKind,
    AgentSpec,
    PermissionMode,
    ToolPolicy,
)

AGENT = AgentConfig(command=("fake",), workdir="/work")
CONFIG = Config(Path("c.toml"), BotConfig(), AGENT,
                (ChannelConfig("webui", prompt="Be brief.", workdir=Path("/web"),
                               command=("lead-cmd",), env={"K": "v"}),
                 ChannelConfig("backend")),
                AdminConfig(), None, None, ConsoleConfig())
CHANNELS = {"general": ChannelKind.GENERAL, "ops": ChannelKind.ADMIN,
            "webui": ChannelKind.TOPIC, "backend": ChannelKind.TOPIC, "dm-alice": ChannelKind.DM}


def task(id_: int, channel: str, assignee: str = "alice", status: str = "open") -> TaskRow:
    return TaskRow(id_, "s", channel, assignee, status, "webui")


def crew() -> Crew:
    return Crew(CONFIG, CHANNELS, workers=["alice", "idle"],
                open_tasks=[task(1, "webui"), task(2, "backend"), task(3, "webui")])


def test_r2_3_workers_index_is_the_channels_of_open_tasks() -> None:
    c = crew()
    assert dict(c.workers) == {"alice": frozenset({"webui", "backend"}), "idle": frozenset()}
    assert c.directory.topics == frozenset({"general", "webui", "backend"})


def test_r4_7_index_follows_tasks_without_a_rebuild() -> None:
    """Issue 8 item 6: the directory routing reads is updated in place, not rebuilt."""
    c = crew()
    directory = c.directory
    c.task_closed("alice", "webui")
    assert c.workers["alice"] == frozenset({"webui", "backend"})  # task 3 is still open there
    c.task_closed("alice", "webui")
    c.task_closed("alice", "backend")
    assert not c.has_open_task("alice") and c.is_worker("alice")
    c.task_opened("bob", "backend")
    assert directory.workers["bob"] == frozenset({"backend"}) and c.directory is directory
    c.add_channel("dm-bob", ChannelKind.DM)
    assert c.directory is directory  # a DM channel has no lead: routing's view is unchanged
    assert c.add_channel("docs", ChannelKind.TOPIC)
    assert "docs" in c.directory.topics and not c.add_channel("docs", ChannelKind.TOPIC)


def test_r3_3_lead_spec_from_its_channel_config() -> None:
    assert crew().spec_for("webui", None) == AgentSpec(
        "webui", AgentKind.LEAD, "webui", None, lead_prompt("webui", False, "Be brief."),
        "/web", ("lead-cmd",), {"K": "v"}, policy=ToolPolicy(approvals=True))
    general = crew().spec_for("general", None)
    assert general is not None and general.prompt == lead_prompt("general", True, "")
    assert general.workdir == "/work" and general.command == ("fake",)
    assert "the project lead" in general.prompt


@pytest.mark.parametrize(("latest", "task_id", "workdir"), [
    (task(3, "webui"), 3, "/web"),  # R7.1: works in its task's channel's directory
    (task(2, "backend", status="done"), 2, "/work"),  # no open task: its newest, default dir
    (None, None, "/work"),
])
def test_r3_3_worker_spec_from_its_latest_task(latest: TaskRow | None, task_id: int | None,
                                               workdir: str) -> None:
    assert crew().spec_for("alice", latest) == AgentSpec(
        "alice", AgentKind.WORKER, "dm-alice", task_id, worker_prompt("alice"), workdir,
        ("fake",), {}, policy=ToolPolicy(approvals=True))


def test_r13_1_always_allowed_rules_join_the_channels_allowed_tools() -> None:
    """R13.1: a rule "Always allow" added for a channel is on its agents' command lines,
    after the config's own and only once."""
    c = crew()
    c.tool_rules = {"webui": ("Bash(touch x)",), "backend": ("Read",)}
    spec = c.spec_for("webui", None)
    assert spec is not None and spec.policy.allowed_tools == ("Bash(touch x)",)
    assert "--permission-prompt-tool" in spec.policy.flags()


def test_r3_3_unknown_agent_has_no_spec() -> None:
    assert crew().spec_for("nobody", None) is None


@pytest.mark.parametrize(("subject", "channel", "assignee", "problem"), [
    ("fix", "webui", "carol", None),
    ("fix", "general", "carol", None),
    ("fix", "webui", "Carol!", "'Carol!' cannot be a worker name"),
    ("fix", "webui", "all", "'all' cannot be a worker name"),
    ("fix", "webui", "lead", "'lead' cannot be a worker name"),
    ("fix", "webui", "ops", "'ops' cannot be a worker name"),
    ("fix", "webui", "backend", "backend is a channel's lead; workers need their own names"),
    ("fix", "ops", "carol", "tasks belong to topic channels; #ops is not one"),
    ("fix", "dm-alice", "carol", "tasks belong to topic channels; #dm-alice is not one"),
    ("fix", "nowhere", "carol", "tasks belong to topic channels; #nowhere is not one"),
    ("  ", "webui", "carol", "a task needs a subject"),
])
def test_r7_2_task_rules(subject: str, channel: str, assignee: str, problem: str | None) -> None:
    assert crew().task_problem(subject, channel, assignee) == problem


def test_r7_2_worker_name_as_typed() -> None:
    assert worker_name("@Carol") == "carol"


@pytest.mark.parametrize(("agent", "latest", "home"), [
    (None, None, "general"),  # the host's shell
    ("webui", None, "webui"),  # a lead: its own channel
    ("alice", task(3, "backend"), "backend"),  # a worker: its open task's channel
    ("alice", task(3, "backend", status="done"), "general"),
    ("alice", None, "general"),
])
def test_r7_2_home_channel(agent: str | None, latest: TaskRow | None, home: str) -> None:
    assert crew().home_channel(agent, latest) == home


# --- threads and forks (R12.2, R12.3) ---------------------------------------------------------

SHARED = Config(Path("c.toml"), BotConfig(), AGENT,
                (ChannelConfig("webui", threads=Threads.SHARED),), AdminConfig(), None, None,
                ConsoleConfig())


@pytest.mark.parametrize(("config", "thread", "agent"), [
    (CONFIG, ThreadRow(1, "webui", 4, 10, owner="alice", task_id=3), "alice"),  # a task's
    (CONFIG, ThreadRow(2, "webui", 5, 11), "webui/5"),  # threads = "fork", the default
    (CONFIG, ThreadRow(3, "general", 1, 12), "general/1"),  # the general channel's lead too
    (SHARED, ThreadRow(4, "webui", 6, 13), "webui"),  # threads = "shared": the lead
    (SHARED, ThreadRow(5, "webui", 7, 14, owner="webui/7"), "webui/7"),  # a fork stays
    (CONFIG, ThreadRow(6, "dm-alice", 1, 15), "alice"),  # a thread in a worker's DM
    (CONFIG, ThreadRow(7, "ops", 1, 16), None),  # the admin channel has no agent
], ids=["r12_4-task", "r12_3-fork", "r12_3-general", "r12_2-shared", "r12_3-owned",
        "r12_2-dm", "r6_4-admin"])
def test_r12_2_whom_a_reply_in_a_thread_reaches(config: Config, thread: ThreadRow,
                                               agent: str | None) -> None:
    assert Crew(config, CHANNELS, workers=["alice"]).thread_agent(thread) == agent


@pytest.mark.parametrize(("name", "fork"), [
    ("webui/3", ("webui", 3)), ("general/12", ("general", 12)), ("webui", None),
    ("nosuch/3", None), ("webui/0", None), ("alice/1", None), ("webui/3/4", None)])
def test_r12_3_fork_names(name: str, fork: tuple[str, int] | None) -> None:
    assert crew().fork_of(name) == fork


def test_r12_3_a_fork_starts_as_its_lead_forked_from_the_leads_session() -> None:
    """R12.3: the lead's command, prompt and working directory (sessions are found per
    project directory), kind FORK, its thread, and the lead's session to fork from; its
    home and its tasks' channel is the lead's channel."""
    c = crew()
    lead = c.spec_for("webui", None)
    spec = c.fork_spec("webui/3", 42, "lead-session")
    assert lead is not None and spec is not None
    assert (spec.kind, spec.channel, spec.thread, spec.fork_from) == (
        AgentKind.FORK, "webui", 42, "lead-session")
    assert (spec.workdir, spec.command, spec.env) == (lead.workdir, lead.command, lead.env)
    assert spec.prompt.startswith(lead.prompt) and "thread 3 of #webui" in spec.prompt
    assert c.fork_spec("webui/3", 42, None).fork_from is None  # type: ignore[union-attr]
    assert c.fork_spec("nosuch/3", 42, "s") is None
    assert c.home_channel("webui/3", None) == "webui"


def test_r13_5_each_channels_agents_run_with_its_tool_policy() -> None:
    """R13.5: a channel's permission_mode, allowed/disallowed tools and model replace
    `[agent]`'s key by key, for its lead, its forks and its tasks' workers; elsewhere the
    `[agent]` defaults apply. They reach the command line as Claude Code's flags."""
    agent = AgentConfig(command=("fake",), permission_mode=PermissionMode.ACCEPT_EDITS,
                        model="opus", approvals=False)
    config = Config(Path("c.toml"), BotConfig(), agent,
                    (ChannelConfig("webui", permission_mode=PermissionMode.PLAN,
                                   allowed_tools=("Bash(npm test:*)", "Read")),),
                    AdminConfig(), None, None, ConsoleConfig())
    c = Crew(config, CHANNELS, workers=["alice"])
    lead = c.spec_for("webui", None)
    worker = c.spec_for("alice", task(1, "webui"))
    general = c.spec_for("general", None)
    fork = c.fork_spec("webui/2", 9, "sid")
    assert lead and worker and general and fork
    assert lead.policy == worker.policy == fork.policy == ToolPolicy(
        PermissionMode.PLAN, ("Bash(npm test:*)", "Read"), (), "opus")
    assert general.policy.flags() == ("--permission-mode", "acceptEdits", "--model", "opus")
    assert lead.policy.flags() == ("--permission-mode", "plan",
                                   "--allowedTools", "Bash(npm test:*),Read", "--model", "opus")
