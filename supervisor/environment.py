"""What an agent process finds in its environment (R10.4, R10.5). Pure.

An agent runs code a model chose, and what it prints may be posted to the team's rooms, so it
must never hold the bot's own secrets: a lead asked to print its environment would post the
chat tokens to every room. The rules:

- the bot's environment is inherited (PATH, HOME, locale, proxies: what tools need),
- less every variable the config reads through `${NAME}` (tokens, passwords, secrets),
- less every `SLACK_*` and `MATRIX_*` variable, whether the config names it or not,
- less any inherited `CREWBRIDGE_*` (the bot's own settings and an operator's token),
- plus what `[agent] env` and the channel's `env` name explicitly — a person chose those,
  so they are kept even when they are secrets,
- plus who the agent is: the control socket, its name and its own token.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping

WITHHELD_PREFIXES = ("SLACK_", "MATRIX_", "CREWBRIDGE_")
TOKEN_PREFIX = "cbt_"
"""Every control-socket token starts so: `supervisor.redact.scrub` hides the shape anywhere."""


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class AgentTokens:
    """Which agent a control-socket token speaks for (R10.4).

    Each agent process gets a token of its own when it is started; the bot acts on the
    token, never on a name a request claims, so an agent cannot post as another agent, as
    the bot or as a person. A new start replaces the agent's token, so a dead process's
    token stops working once its agent runs again.
    """

    def __init__(self) -> None:
        self._by_token: dict[str, str] = {}
        self._by_agent: dict[str, str] = {}

    def issue(self, agent: str) -> str:
        old = self._by_agent.pop(agent, None)
        if old is not None:
            self._by_token.pop(old, None)
        token = new_token()
        self._by_token[token] = agent
        self._by_agent[agent] = token
        return token

    def agent_of(self, token: str) -> str | None:
        return self._by_token.get(token)


def agent_environment(inherited: Mapping[str, str], *, withheld: Collection[str],
                      configured: Mapping[str, str],
                      identity: Mapping[str, str]) -> dict[str, str]:
    """The environment for one agent process; see the module's rules."""
    env = {name: value for name, value in inherited.items()
           if name not in withheld and not name.startswith(WITHHELD_PREFIXES)}
    env.update(configured)
    env.update(identity)
    return env
