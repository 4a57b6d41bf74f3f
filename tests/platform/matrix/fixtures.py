"""Pytest fixtures for the Matrix tier: one real Synapse per test session, fresh people,
rooms and bot accounts per test. Registered in tests/conftest.py (`pytest_plugins`).

Why one homeserver per session: Synapse starts in about 1.5 s; per test that would dominate
the tier. Isolation comes from fresh users and rooms instead. A second homeserver with
Synapse's *default* rate limits starts only when a 429 test asks for it.

A missing Synapse is a test failure with instructions, never a skip: a green run must mean
the Matrix tier really ran.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crewbridge.bridges.matrix import MatrixBridge
from crewbridge.bridges.settings import MatrixConfig
from tests.platform.matrix.support import MemoryKV, RecordingSink
from tests.platform.matrix.synapse import (
    Account,
    Person,
    SynapseNotInstalled,
    SynapseServer,
    check_synapse_installed,
)


def _start_server(tmp_path_factory: pytest.TempPathFactory, name: str,
                  rate_limits: str) -> SynapseServer:
    try:
        python = check_synapse_installed()
    except SynapseNotInstalled as e:
        pytest.fail(str(e), pytrace=False)
    server = SynapseServer(Path(tmp_path_factory.mktemp(name)), rate_limits=rate_limits,
                           python=python)
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    return server


@pytest.fixture(scope="session")
def synapse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """The session's homeserver, with rate limits raised so tests never wait on them."""
    server = _start_server(tmp_path_factory, "synapse", "raised")
    yield server
    server.stop()


@pytest.fixture
def synapse(synapse_server: SynapseServer) -> SynapseServer:
    """The session's homeserver, running (a test that stopped it and failed midway does not
    take every later test down with it)."""
    if not synapse_server.running:
        synapse_server.start()
    return synapse_server


@pytest.fixture(scope="session")
def synapse_default_limits_server(
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """A second homeserver left at Synapse's default `rc_*` limits (the 429 tests)."""
    server = _start_server(tmp_path_factory, "synapse-default-limits", "default")
    yield server
    server.stop()


@pytest.fixture
def synapse_default_limits(synapse_default_limits_server: SynapseServer) -> SynapseServer:
    if not synapse_default_limits_server.running:
        synapse_default_limits_server.start()
    return synapse_default_limits_server


@pytest.fixture
def make_account(synapse: SynapseServer) -> Callable[..., Account]:
    """Register a fresh user on the session homeserver: `make_account("alice")` gets a
    unique localpart starting with "alice" and that display name."""
    def make(prefix: str = "user", *, displayname: str | None = None,
             server: SynapseServer | None = None) -> Account:
        srv = server or synapse
        return srv.register(srv.new_localpart(prefix),
                            displayname=displayname or prefix.capitalize())
    return make


@pytest.fixture
async def make_person(synapse: SynapseServer, make_account: Callable[..., Account],
                      tmp_path_factory: pytest.TempPathFactory
                      ) -> AsyncIterator[Callable[..., Awaitable[Person]]]:
    """Connect people (fresh accounts unless one is given); all are closed after the test.
    `encryption=True` (R15): the person's client encrypts, with a store of its own;
    `login=True`: a fresh password login, i.e. another device of the same account."""
    people: list[Person] = []

    async def make(prefix: str = "person", *, account: Account | None = None,
                   server: SynapseServer | None = None, encryption: bool = False,
                   login: bool = False) -> Person:
        srv = server or synapse
        store = Path(tmp_path_factory.mktemp("person-store")) if encryption else None
        person = await Person.connect(srv, account or make_account(prefix, server=srv),
                                      login=login, encryption=encryption, store_dir=store)
        people.append(person)
        return person

    yield make
    for person in people:
        await person.close()


@pytest.fixture
async def alice(make_person: Callable[..., Awaitable[Person]]) -> Person:
    """A person for this test only."""
    return await make_person("alice")


@pytest.fixture
async def matrix_room(alice: Person) -> str:
    """A fresh private room created by `alice` for this test."""
    return await alice.create_room(name="test room")


@pytest.fixture
def bot_account(make_account: Callable[..., Account]) -> Account:
    """A fresh account for the bot, so no test sees another's rooms or sync position."""
    return make_account("crew", displayname="crew")


def matrix_config(server: SynapseServer, account: Account, *, password: bool = False,
                  allow_invites_from: tuple[str, ...] = ()) -> MatrixConfig:
    """The `[matrix]` section a bot using `account` would have."""
    if password:
        return MatrixConfig(homeserver=server.url, user_id=account.user_id,
                            password=account.password, allow_invites_from=allow_invites_from)
    return MatrixConfig(homeserver=server.url, user_id=account.user_id,
                        access_token=account.access_token,
                        allow_invites_from=allow_invites_from)


@pytest.fixture
async def make_bridge() -> AsyncIterator[Callable[..., Awaitable[MatrixBridge]]]:
    """Start real `MatrixBridge`s: `await make_bridge(config, kv, sink, **knobs)`; every
    bridge still running is stopped after the test."""
    bridges: list[MatrixBridge] = []

    async def make(config: MatrixConfig, kv: MemoryKV | None = None,
                   sink: RecordingSink | None = None, **knobs: Any) -> MatrixBridge:
        bridge = MatrixBridge(config, kv if kv is not None else MemoryKV(), **knobs)
        bridges.append(bridge)
        await bridge.start(sink if sink is not None else RecordingSink())
        return bridge

    yield make
    for bridge in bridges:
        await bridge.stop()
