"""Every alert, notice and admin reply the supervisor writes, as functions of plain data.

The texts are part of the interface: operators learn them, the tests match on them. Keeping
them here keeps the lifecycle's tables readable and makes a wording change one edit.
Times are shown as the host's local wall-clock time of day.
"""

from __future__ import annotations

import re
import time

from crewbridge.supervisor.breaker import Blocked, BlockReason
from crewbridge.supervisor.ports import AgentSpec


def clock_time(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def _where(spec: AgentSpec, *, task: bool = False) -> str:
    label = f", task #{spec.task_id}" if task and spec.task_id else ""
    return f"{spec.kind.value} in #{spec.channel}{label}"


# --- ops alerts (R6) ---------------------------------------------------------------------------


def leftovers_ended(names: list[str]) -> str:
    return (f"♻️ crewbridge was not stopped cleanly last time: ended agent processes it left "
            f"running ({', '.join(names)}). Their sessions resume on the next message.")


def breaker_opened(spec: AgentSpec, failures: int, error: str, retry_at: float) -> str:
    return (f"🛑 Circuit breaker open: {spec.name} ({_where(spec, task=True)}) failed "
            f"{failures} times in a row. Last error: {error}. It stays stopped; one trial "
            f"start after {clock_time(retry_at)}. Remedy: `reset {spec.name}` (or `auth login` "
            "if it is a login problem).")


def auth_expired(name: str, error: str) -> str:
    """R6.2, R6.5: one alert for the login, saying what the agent said — "not logged in"
    (no credentials) or "login expired" (a token the API no longer takes)."""
    what = "login expired" if re.search(r"expired|revoked|invalid", error, re.I) else \
        "not logged in"
    return (f"🔑 Agent auth: {what} — {name} cannot log in to the model API ({error}). Agents "
            "will not be restarted against it. Remedy: `auth login` here (it shows a URL to "
            "open, then `auth code <code>`), or log in on the host, then `reset <agent>`.")


def recovered(spec: AgentSpec) -> str:
    return f"✅ Recovered: {spec.name} ({_where(spec)}) is running again."


def hung(name: str, minutes: float) -> str:
    return (f"⏱️ {name} hung (no output for {minutes:.0f} min in a turn); it was killed and "
            "will be restarted when needed.")


# --- notices to the channel a queued message came from (R3.4, R4.11) -------------------------


def blocked_notice(name: str, blocked: Blocked, how: str = "failed") -> str:
    """`how` says what happened ("failed to start", "stopped while answering", …)."""
    when = clock_time(blocked.until)
    if blocked.reason is BlockReason.COOLDOWN:
        return (f"{name} {how} and is cooling down; your message is queued and "
                f"will be delivered when it is retried at {when}.")
    return (f"{name} is paused after repeated failures; your message is queued. It will be "
            f"tried again after {when}, or sooner if an admin runs `reset {name}`.")


def answer_cut_short(name: str, how: str, blocked: Blocked | None) -> str:
    """To the people whose messages a failed or broken-off turn was answering (R4.11)."""
    if blocked is None:
        again = "it will try again."
    elif blocked.reason is BlockReason.COOLDOWN:
        again = f"it will try again at {clock_time(blocked.until)}."
    else:
        again = (f"it will try again after {clock_time(blocked.until)}, or sooner if an "
                 f"admin runs `reset {name}`.")
    return f"{name} {how}; {again}"


# --- what an agent is told (R8.5) ---------------------------------------------------------------


def redelivered(text: str) -> str:
    """A message delivered again after the turn answering it was cut short: one line first."""
    return ("[crewbridge: an earlier attempt to answer this message was cut short (the agent "
            "or the bot stopped mid-turn); some of it may already be done.]\n" + text)


# --- replies to admin commands (R6.4) ----------------------------------------------------------


def no_such_agent(name: str) -> str:
    return f"No agent named {name}."


def restart_refused(name: str) -> str:
    return f"{name}'s circuit breaker is open; use `reset {name}` to close it and start it."


def restarted(name: str) -> str:
    return f"Restarted {name}."


def not_running(name: str) -> str:
    return f"{name} is not running."


def stopped(name: str) -> str:
    return f"Stopped {name}; its next message resumes it."


def reset_done(name: str, queued: int) -> str:
    suffix = f"; delivering {queued} queued message(s)" if queued else ""
    return f"Reset {name}: breaker closed, cooldown cleared{suffix}."


def turn_stopped(agent: str, by: str) -> str:
    """R13.6: one line in the conversation, saying who stopped the turn."""
    return f"⏹ {agent} stopped by {by}."


def turn_failed(agent: str, how: str) -> str:
    """R13.7: the outcome a failed turn's status line is edited into (`how`: a `Failure`)."""
    return f"❌ {agent} {how}."


def turn_cut_off(agent: str, reason: str) -> str:
    """R13.7: the status line of a turn whose process was stopped by the bot (`reason`: a
    `StopReason`); its messages stay queued (R8.5)."""
    return f"⏹ {agent}'s turn was cut off ({reason}); it answers when it is back."


def nothing_to_stop(agent: str) -> str:
    return f"{agent} is not working on anything right now; nothing to stop."


def stopping(agent: str) -> str:
    return f"Stopping {agent}'s turn…"


def rate_limited(agent: str, resets_at: float) -> str:
    """R13.8: one notice when the plan refuses turns; its messages wait for the reset."""
    at = time.strftime("%H:%M UTC", time.gmtime(resets_at))
    return (f"⏸️ {agent} reached its plan's usage limit; messages wait and are answered "
            f"after {at}.")


# --- approval requests that stop waiting (R13.3): the outcome a card is edited into ---------

ASK_WITHDRAWN = "withdrawn by the agent"
ASK_SESSION_ENDED = "withdrawn: the agent's session ended"


def ask_stopped(by: str) -> str:
    return f"withdrawn: the turn was stopped by {by}"
