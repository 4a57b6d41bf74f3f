"""Trust on first use of Matrix devices, and the bot's own device check (R15.1, R15.2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crewbridge.bridges.matrix_crypto import check_own_device
from crewbridge.bridges.matrix_trust import Devices, device_changes, query_keys
from crewbridge.bridges.matrix_unreadable import thread_of

OWN = ("@crew:x", "BOT")


@pytest.mark.parametrize(("before", "after", "changed"), [
    ({}, {"@a:x": {"A1": "k1"}}, {}),  # first use: trusted as it is
    ({"@a:x": {}}, {"@a:x": {"A1": "k1"}}, {}),  # no device known yet: still first use
    ({"@a:x": {"A1": "k1"}}, {"@a:x": {"A1": "k1"}}, {}),  # nothing changed
    ({"@a:x": {"A1": "k1", "A2": "k2"}}, {"@a:x": {"A1": "k1"}}, {}),  # signed out: no alert
    ({"@a:x": {"A1": "k1"}}, {"@a:x": {"A1": "k1", "A2": "k2"}},
     {"@a:x": "new device A2"}),
    ({"@a:x": {"A1": "k1"}}, {"@a:x": {"A1": "evil"}}, {"@a:x": "other keys on device A1"}),
    ({"@a:x": {"A1": "k1"}}, {"@a:x": {"A1": "evil", "A3": "k3", "A2": "k2"}},
     {"@a:x": "new device A2, A3; other keys on device A1"}),
    ({"@crew:x": {"OLD": "k"}}, {"@crew:x": {"OLD": "k", "BOT": "mine"}}, {}),  # ourselves
    ({"@crew:x": {"BOT": "k"}}, {"@crew:x": {"BOT": "k", "EVE": "k9"}},
     {"@crew:x": "new device EVE"}),  # someone signed in as the bot
])
def test_r15_2_a_known_users_new_or_rekeyed_device_is_a_change(
        before: Devices, after: Devices, changed: dict[str, str]) -> None:
    assert device_changes(before, after, own=OWN) == changed


def test_r15_2_query_keys_reads_signing_keys_and_skips_malformed_entries() -> None:
    answer = {"@a:x": {"A1": {"keys": {"ed25519:A1": "k1", "curve25519:A1": "c1"}},
                       "A2": {"keys": {"curve25519:A2": "c2"}},
                       "A3": "junk"},
              "@b:x": "junk"}
    assert query_keys(answer) == {"@a:x": {"A1": "k1"}}


@pytest.mark.parametrize(("server_key", "refused"), [
    (None, False),  # a new device: its keys are uploaded
    ("mine", False),  # the store's own keys
    ("theirs", True),  # the store was lost, or is another device's
])
def test_r15_1_the_servers_keys_for_the_bots_device_must_be_the_stores(
        server_key: str | None, refused: bool) -> None:
    answer = {"@crew:x": {"BOT": {"keys": {"ed25519:BOT": server_key}}}} if server_key else {}
    problem = check_own_device(answer, "@crew:x", "BOT", "mine", Path("/data/matrix-crypto"))
    assert (problem is not None) == refused
    if problem:
        assert "BOT" in problem and "/data/matrix-crypto" in problem and "backup" in problem


@pytest.mark.parametrize(("relates", "root"), [
    (None, None),
    ({"rel_type": "m.thread", "event_id": "$root"}, "$root"),
    ({"m.in_reply_to": {"event_id": "$x"}}, None),
    ({"rel_type": "m.replace", "event_id": "$orig"}, None),
])
def test_r15_3_the_ask_again_notice_goes_to_the_unreadable_messages_thread(
        relates: dict | None, root: str | None) -> None:
    content = {"algorithm": "m.megolm.v1.aes-sha2"}
    if relates is not None:
        content["m.relates_to"] = relates
    thread = thread_of({"event_id": "$lost", "content": content})
    assert (thread.root if thread else None) == root
    if thread:
        assert thread.latest == "$lost"
