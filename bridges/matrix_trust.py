"""Matrix, pure: trust on first use of people's devices, and when to tell the admins (R15.2).

The bot verifies no one (it cannot compare emoji with a person); like Element with devices
nobody has verified, it shares its room keys with every device of a room's members and
reads what they send. What it can do is notice change: the first time it meets a user,
their devices are simply taken as theirs; after that, a device that appears, or a device
whose signing key is not the one first seen, is one alert naming the user (someone may
have signed in as them). A device that goes away is no alert: people sign out.

Keys are compared by the device's Ed25519 signing key, the one that identifies it; nio
keeps the devices it has seen in the crypto store, so a restart meets no one for the
first time again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Devices = dict[str, dict[str, str]]  # user id -> device id -> Ed25519 key


def query_keys(device_keys: dict[str, Any]) -> Devices:
    """The devices a `/keys/query` answer lists (its `device_keys`), with their signing keys;
    entries without one are left out."""
    found: Devices = {}
    for user, devices in device_keys.items():
        if not isinstance(devices, dict):
            continue
        for device, payload in devices.items():
            keys = payload.get("keys") if isinstance(payload, dict) else None
            key = keys.get(f"ed25519:{device}") if isinstance(keys, dict) else None
            if isinstance(key, str) and key:
                found.setdefault(user, {})[device] = key
    return found


def known_devices(device_store: Any, users: Iterable[str]) -> Devices:
    """What nio's device store knows of `users`' active devices, before a query updates it."""
    return {user: {d.id: d.ed25519 for d in device_store.active_user_devices(user)}
            for user in users}


def device_changes(before: Devices, after: Devices, *, own: tuple[str, str]) -> dict[str, str]:
    """{user: what changed} for users known `before` whose devices in `after` are new or
    carry another signing key; users met for the first time (no device known) are trusted
    as they are. `own` (the bot's user and device) is never a change."""
    changed: dict[str, str] = {}
    for user, devices in after.items():
        known = before.get(user) or {}
        if not known:
            continue
        new = sorted(d for d in devices if d not in known and (user, d) != own)
        rekeyed = sorted(d for d in devices if d in known and devices[d] != known[d]
                         and (user, d) != own)
        parts = [f"new device {', '.join(new)}"] if new else []
        parts += [f"other keys on device {', '.join(rekeyed)}"] if rekeyed else []
        if parts:
            changed[user] = "; ".join(parts)
    return changed
