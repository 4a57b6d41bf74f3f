"""The store's schema, as numbered migrations (R8.4).

`MIGRATIONS[i]` takes a store at `PRAGMA user_version` i to i+1. They only move forward: a
released migration is never edited, a change is a new one appended; a file whose version
is beyond this list was written by a newer crewbridge and is refused (`bot.store`).
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    """
    CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE channels (
        name TEXT PRIMARY KEY, kind TEXT NOT NULL, created_at REAL NOT NULL);
    CREATE TABLE dm_attachments (
        platform TEXT NOT NULL, room TEXT NOT NULL, worker TEXT NOT NULL,
        PRIMARY KEY (platform, room));
    CREATE TABLE agents (
        name TEXT PRIMARY KEY, kind TEXT NOT NULL, channel TEXT NOT NULL, task_id INTEGER,
        session_id TEXT, last_error TEXT NOT NULL DEFAULT '');
    CREATE TABLE tasks (
        id INTEGER PRIMARY KEY AUTOINCREMENT, subject TEXT NOT NULL, channel TEXT NOT NULL,
        assignee TEXT NOT NULL, status TEXT NOT NULL, created_by TEXT NOT NULL,
        created_at REAL NOT NULL, done_at REAL);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, platform TEXT NOT NULL,
        room TEXT NOT NULL, sender TEXT NOT NULL, sender_name TEXT NOT NULL,
        event_id TEXT NOT NULL, text TEXT NOT NULL, ts REAL NOT NULL,
        UNIQUE (platform, event_id));
    CREATE TABLE queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT, agent TEXT NOT NULL, text TEXT NOT NULL,
        hops INTEGER NOT NULL, origin TEXT NOT NULL, created_at REAL NOT NULL);
    CREATE INDEX queue_agent ON queue (agent, id);
    CREATE TABLE health (key TEXT PRIMARY KEY, json TEXT NOT NULL);
    CREATE TABLE escalations (key TEXT PRIMARY KEY, opened_at REAL NOT NULL, detail TEXT NOT NULL);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, platform TEXT NOT NULL, room TEXT NOT NULL,
        text TEXT NOT NULL, kind TEXT NOT NULL, created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '', set_aside INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX outbox_room ON outbox (platform, room, id);
    """,
    """
    CREATE TABLE processes (
        agent TEXT PRIMARY KEY, pgid INTEGER NOT NULL, started TEXT NOT NULL);
    """,
    """
    CREATE INDEX tasks_assignee ON tasks (assignee, id);
    """,
    # R8.5: a queued nudge stays queued until answered; this marks one already written to
    # an agent, so that its next delivery says an earlier attempt was cut short.
    """
    ALTER TABLE queue ADD COLUMN attempted INTEGER NOT NULL DEFAULT 0;
    """,
    # R12: threads. A thread is rooted at one message (a person's, or one the bot showed);
    # `refs` keeps every platform id a message has in each room — its own, and those of its
    # relays and posts — so a reply on any platform finds its thread, and an answer finds
    # the root to reply under in every room (R12.5). Outbox rows name the logical message
    # they show and the thread they go into; the author is kept apart from the text (R5.7).
    """
    CREATE TABLE threads (
        id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, number INTEGER NOT NULL,
        root INTEGER NOT NULL UNIQUE, owner TEXT, task_id INTEGER,
        UNIQUE (channel, number));
    CREATE TABLE refs (
        platform TEXT NOT NULL, room TEXT NOT NULL, event_id TEXT NOT NULL,
        message INTEGER NOT NULL, PRIMARY KEY (platform, room, event_id));
    CREATE INDEX refs_message ON refs (message, platform, room);
    ALTER TABLE messages ADD COLUMN thread INTEGER;
    CREATE INDEX messages_thread ON messages (thread) WHERE thread IS NOT NULL;
    ALTER TABLE queue ADD COLUMN thread INTEGER;
    ALTER TABLE tasks ADD COLUMN thread INTEGER;
    ALTER TABLE outbox ADD COLUMN author TEXT NOT NULL DEFAULT '';
    ALTER TABLE outbox ADD COLUMN role TEXT NOT NULL DEFAULT 'bot';
    ALTER TABLE outbox ADD COLUMN thread INTEGER;
    ALTER TABLE outbox ADD COLUMN message INTEGER;
    """,
    # R13.8 usage: one row per (day, agent, channel, person), summed by an upsert, so it
    # grows with the team rather than with its turns; `day` is a UTC date (YYYY-MM-DD).
    # R13.9 audit: who did what, on which platform, where (a channel), when, and how it
    # ended; `place` because WHERE is SQL's.
    """
    CREATE TABLE usage (
        day TEXT NOT NULL, agent TEXT NOT NULL, channel TEXT NOT NULL, person TEXT NOT NULL,
        cost_usd REAL NOT NULL DEFAULT 0, input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0, turns INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (day, agent, channel, person));
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, who TEXT NOT NULL,
        platform TEXT NOT NULL, place TEXT NOT NULL, what TEXT NOT NULL,
        outcome TEXT NOT NULL);
    CREATE INDEX audit_ts ON audit (ts);
    """,
    # R13.1-R13.4 approvals: one row per request a person is asked to decide, numbered for
    # the console's `/allow <n>`; `request_id` is the live request it answers (after a restart
    # of the bot the resumed agent asks again and the same card takes the new id). `askers`:
    # the people the turn answered (a JSON list of names), who may decide when a channel has
    # no approvers. `tool_rules`: what "Always allow" added, per channel (--allowedTools).
    # Outbox rows learn to edit, delete and react to a message shown before (`op`), and to
    # carry buttons (a JSON list; R13.1, R13.7). A queued nudge names the person's message
    # it came from, which the live status marks with 👀 ✅ ⏸️ ❌ (R13.7).
    """
    CREATE TABLE approvals (
        id INTEGER PRIMARY KEY AUTOINCREMENT, agent TEXT NOT NULL, channel TEXT NOT NULL,
        thread INTEGER, request_id TEXT NOT NULL, tool TEXT NOT NULL, input TEXT NOT NULL,
        rule TEXT NOT NULL DEFAULT '', safety INTEGER NOT NULL DEFAULT 0,
        askers TEXT NOT NULL DEFAULT '[]', message INTEGER, state TEXT NOT NULL,
        decided_by TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL, deadline REAL NOT NULL, decided_at REAL);
    CREATE INDEX approvals_pending ON approvals (state, deadline);
    CREATE TABLE tool_rules (
        channel TEXT NOT NULL, rule TEXT NOT NULL, added_by TEXT NOT NULL,
        added_at REAL NOT NULL, PRIMARY KEY (channel, rule));
    ALTER TABLE outbox ADD COLUMN op TEXT NOT NULL DEFAULT 'post';
    ALTER TABLE outbox ADD COLUMN buttons TEXT NOT NULL DEFAULT '';
    ALTER TABLE queue ADD COLUMN message INTEGER;
    """,
    # R14.6 retention: messages are pruned by age and a worker's activity is read by its
    # channel and its threads, daily, on a table that holds 90 days of a team's talk.
    """
    CREATE INDEX messages_ts ON messages (ts);
    CREATE INDEX messages_channel ON messages (channel, ts);
    CREATE INDEX threads_owner ON threads (owner) WHERE owner IS NOT NULL;
    """,
]
