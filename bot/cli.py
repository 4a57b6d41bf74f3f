"""`crewbridge`: run the bot, check a config, and talk to a running bot (R11.2, R14.2).

Every failure is one clear line on stderr and a non-zero exit: 2 for a wrong config or
usage (credentials a platform rejects included), 1 for a runtime failure (a bot that cannot
be reached or refuses a request); 0 is done, a clean stop after SIGINT/SIGTERM included. No
tracebacks for anything a user can cause. The config is `--config`, else
`$CREWBRIDGE_CONFIG`, else `./crewbridge.toml`, else `/etc/crewbridge/crewbridge.toml`; the
host commands read only its `[bot]` section, so no secret has to be in the admin's shell.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import resource
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crewbridge.bot import service
from crewbridge.bot.config import Config, ConfigError, find_config, load_config, load_host_config
from crewbridge.bot.control import ControlError, read_operator_token, request
from crewbridge.bot.validate import validate
from crewbridge.supervisor.redact import ScrubbingFilter

EXIT_FAILURE = 1
EXIT_USAGE = 2
BUSY_WAIT_S = 15.0  # longer than the control socket's 10 s read timeout


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        for problem in e.problems:
            print(f"crewbridge: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except ControlError as e:
        print(f"crewbridge: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("crewbridge: interrupted", file=sys.stderr)
        return EXIT_FAILURE


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("crewbridge")
    except PackageNotFoundError:
        return "unknown (not installed)"


def config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="the TOML config file (default: $CREWBRIDGE_CONFIG, ./crewbridge.toml, "
                        "/etc/crewbridge/crewbridge.toml)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crewbridge",
        description="Talk to a crew of headless coding agents from Slack, Matrix or a console.")
    p.add_argument("--version", action="version", version=f"crewbridge {version()}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the bot in the foreground until SIGINT/SIGTERM",
                         description="Run the bot until SIGINT/SIGTERM (or end of console input).")
    config_arg(run)
    run.add_argument("--log-level", metavar="LEVEL",
                     help="debug, info, warning or error, in any case (default: "
                          "$CREWBRIDGE_LOG_LEVEL, else info — warning on an interactive "
                          "console, so the chat stays readable)")
    run.add_argument("--log-format", default="text", metavar="FORMAT",
                     help="text (the default) or json: one JSON object per line")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate a config file (exit 0 or 2)",
                           description="Validate a config; --online also checks tokens and rooms.")
    config_arg(check)
    check.add_argument("--online", action="store_true",
                       help="also log in to each platform and resolve every bound room")
    check.set_defaults(func=cmd_check)

    init = sub.add_parser("init", help="write a starter config, the Slack app manifest and "
                                       "a systemd unit",
                          description="Write crewbridge.toml, slack-app-manifest.yaml and "
                                      "crewbridge.service into DIR (R14.5).")
    init.add_argument("dir", nargs="?", type=Path, default=Path("."), metavar="DIR",
                      help="where to write them (default: the current directory)")
    init.add_argument("--force", action="store_true", help="overwrite files that exist")
    init.set_defaults(func=cmd_init)

    status = sub.add_parser("status", help="print the agents table of the running bot")
    _socket_args(status)
    _json_arg(status, "the agents")
    status.set_defaults(func=cmd_status)

    post = sub.add_parser("post", help="post a message to a channel of the running bot",
                          description="Post to a channel; run by an agent, it posts as that agent.")
    _socket_args(post)
    post.add_argument("--create", action="store_true",
                      help="make the channel if it does not exist (else an unknown name is "
                           "refused)")
    post.add_argument("channel", help="the channel's name (#name works too)")
    post.add_argument("text", nargs="+", help="what to post")
    post.set_defaults(func=cmd_post)

    task = sub.add_parser("task", help="create, finish or list tasks")
    tsub = task.add_subparsers(dest="task_command", required=True, metavar="ACTION")
    create = tsub.add_parser("create", help="create a task and start its worker")
    _socket_args(create)
    create.add_argument("--assignee", required=True, help="the worker's name")
    create.add_argument("--channel", help="the topic channel (default: the caller's)")
    create.add_argument("--create", action="store_true",
                        help="make the topic channel if it does not exist")
    create.add_argument("subject", nargs="+", help="what the task is")
    create.set_defaults(func=cmd_task_create)
    done = tsub.add_parser("done", help="finish a task and stop its worker")
    _socket_args(done)
    done.add_argument("id", type=int, help="the task's number")
    done.set_defaults(func=cmd_task_done)
    lst = tsub.add_parser("list", help="list open tasks")
    _socket_args(lst)
    lst.add_argument("--all", action="store_true", help="include finished tasks")
    _json_arg(lst, "the tasks")
    lst.set_defaults(func=cmd_task_list)

    usage = sub.add_parser("usage", help="print what the agents cost, by channel, agent and day",
                           description="Cost and tokens today and over the last days, UTC "
                                       "(R13.8).")
    _socket_args(usage)
    usage.add_argument("--days", type=days_arg, help="how many days, today included (default 7)")
    usage.add_argument("--json", action="store_true", help="print the report as JSON")
    usage.set_defaults(func=cmd_usage)

    audit = sub.add_parser("audit", help="print the audit: who did what, where and when",
                           description="The latest audited acts, oldest first (R13.9).")
    _socket_args(audit)
    audit.add_argument("--since", type=since_arg, metavar="WHEN",
                       help="from an ISO time (UTC unless it says) or a duration ago: 30m, 2h, 1d")
    audit.add_argument("--limit", type=int, help="at most this many entries (default: 20, "
                                                 f"or {AUDIT_SINCE_LIMIT} with --since)")
    audit.add_argument("--json", action="store_true", help="print the entries as JSON")
    audit.set_defaults(func=cmd_audit)
    return p


DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhdw])")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
AUDIT_SINCE_LIMIT = 10_000


def days_arg(text: str) -> int:
    from crewbridge.bot.store_usage import MAX_DAYS

    if not text.isdigit() or not 1 <= int(text) <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"expected a whole number of days from 1 to {MAX_DAYS}")
    return int(text)


def since_arg(text: str, now: float | None = None) -> float:
    """`--since`: a duration ago (`90m`, `2h`, `1d`) or an ISO time, as epoch seconds."""
    if m := DURATION.fullmatch(text.strip().lower()):
        return (time.time() if now is None else now) - float(m.group(1)) * UNIT_S[m.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO time (2026-12-01T09:00) nor a duration (2h, 1d)"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _socket_args(p: argparse.ArgumentParser) -> None:
    config_arg(p)
    p.add_argument("--socket", type=Path, metavar="PATH",
                   help="the running bot's control socket (default: $CREWBRIDGE_SOCKET, else "
                        "control.sock in the config's data directory)")


def _json_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def socket_path(args: argparse.Namespace) -> Path:
    """The running bot's socket: `--socket`, `$CREWBRIDGE_SOCKET` (an agent's), else the
    data directory of the config — read from its `[bot]` section alone (R14.2)."""
    if args.socket:
        return args.socket
    if os.environ.get("CREWBRIDGE_SOCKET"):
        return Path(os.environ["CREWBRIDGE_SOCKET"])
    return load_host_config(find_config(args.config)).data_dir / "control.sock"


def _call(args: argparse.Namespace, payload: dict[str, Any]) -> Any:
    """One request as whom this process is: an agent by its own token, else the operator
    by the token the bot keeps in its data directory (R10.4)."""
    path = socket_path(args)
    token = os.environ.get("CREWBRIDGE_TOKEN") or read_operator_token(path.parent)
    deadline = time.monotonic() + BUSY_WAIT_S
    delay = 0.25
    while True:
        try:
            return request(path, {**payload, "token": token})
        except ControlError as e:
            # A socket full of idle clients frees a slot within its read timeout (R10.6).
            if not str(e).startswith("busy") or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


# --- commands -------------------------------------------------------------------------------


def raise_fd_limit() -> None:
    """Raise the soft limit on open files to the hard one (R3.7): each agent process holds
    three pipes in the bot, and a burst of starts must not fail for a default of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def log_level(given: str | None, *, interactive: bool) -> str:
    """R14.4: `--log-level`, else `$CREWBRIDGE_LOG_LEVEL`, in any case; else info — warning
    on an interactive console. A name that is none of them is a usage error."""
    chosen = given or os.environ.get("CREWBRIDGE_LOG_LEVEL")
    if chosen is None:
        return "WARNING" if interactive else "INFO"
    if chosen.lower() not in LOG_LEVELS:
        source = "--log-level" if given else "$CREWBRIDGE_LOG_LEVEL"
        raise ConfigError([f"{source}: expected one of {', '.join(LOG_LEVELS)}, got "
                           f"{chosen!r}"])
    return chosen.upper()


def cmd_run(args: argparse.Namespace) -> int:
    if args.log_format not in LOG_FORMATS:
        raise ConfigError([f"--log-format: expected text or json, got {args.log_format!r}"])
    config = load_config(find_config(args.config))
    validate(config)  # R14.1: what `check` checks, `run` checks
    interactive = config.console.enabled and sys.stdin.isatty()
    level = log_level(args.log_level, interactive=interactive)
    raise_fd_limit()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if args.log_format == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ScrubbingFilter())  # R10.5: no secret of the config in the log
    logging.basicConfig(level=level, handlers=[handler])
    quiet = max(logging.WARNING, logging.getLogger().level)
    for noisy in ("aiosqlite", "asyncio", "slack_bolt", "slack_bolt.AsyncApp", "slack_sdk",
                  "nio", "aiohttp"):
        logging.getLogger(noisy).setLevel(quiet)
    return asyncio.run(_run(config))


class JsonFormatter(logging.Formatter):
    """`--log-format json` (R14.4): one object per line, for a log shipper."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
                 "level": record.levelname.lower(), "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


async def _run(config: Config) -> int:
    from crewbridge.bot.app import App, StartupError

    app = App(config, stdin=sys.stdin, stdout=sys.stdout)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, app.stopping.set)
    try:
        await app.start()
    except StartupError as e:
        for line in str(e).splitlines():
            print(f"crewbridge: {line}", file=sys.stderr)
        await app.stop()
        return EXIT_USAGE
    except Exception as e:
        print(f"crewbridge: cannot start: {e}", file=sys.stderr)
        await app.stop()
        return EXIT_FAILURE
    service.notify("READY=1")  # R14.5: systemd's Type=notify
    console = app.bridges.get("console")
    waits = [asyncio.ensure_future(app.stopping.wait())]
    if console is not None:
        waits.append(asyncio.ensure_future(console.eof.wait()))
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for w in pending:
        w.cancel()
    if not app.stopping.is_set():  # end of input: turns finish, unless Ctrl-C says now
        drain = asyncio.ensure_future(app.drain_after_eof())
        stop = asyncio.ensure_future(app.stopping.wait())
        await asyncio.wait([drain, stop], return_when=asyncio.FIRST_COMPLETED)
        for w in (drain, stop):
            w.cancel()
    service.notify("STOPPING=1")
    await app.stop()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    path = find_config(args.config)
    config = load_config(path)
    validate(config)
    if args.online:
        from crewbridge.bot.wiring import check_online
        problems = asyncio.run(check_online(config))
        if problems:
            for problem in problems:
                print(f"crewbridge: {problem}", file=sys.stderr)
            return EXIT_USAGE
    platforms = [n for n, on in (("slack", config.slack), ("matrix", config.matrix),
                                 ("console", config.console.enabled)) if on]
    print(f"{path}: ok ({len(config.channels)} channel(s); "
          f"bridges: {', '.join(platforms) or 'none'})")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    try:
        written = service.init(args.dir, force=args.force)
    except (FileExistsError, OSError) as e:
        print(f"crewbridge: {e}", file=sys.stderr)
        return EXIT_USAGE
    for w in written:
        print(f"wrote {w.path}: {w.what}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from crewbridge.bot.admin import status_rows, table
    from crewbridge.supervisor.ports import AgentStatus

    rows = _call(args, {"op": "status"})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    costs = {r["name"]: r.pop("cost_today_usd", 0.0) for r in rows}  # R13.8
    agents = [AgentStatus(**r) for r in rows]
    print(table(status_rows(agents, costs)) if agents else "no agents yet")
    return 0


def cmd_post(args: argparse.Namespace) -> int:
    user = os.environ.get("USER", "cli")
    print(_call(args, {"op": "post", "channel": args.channel, "text": " ".join(args.text),
                       "user": user, "create": args.create}))
    return 0


def cmd_task_create(args: argparse.Namespace) -> int:
    print(_call(args, {"op": "task_create", "assignee": args.assignee, "channel": args.channel,
                       "subject": " ".join(args.subject), "user": os.environ.get("USER", ""),
                       "create": args.create}))
    return 0


def cmd_task_done(args: argparse.Namespace) -> int:
    print(_call(args, {"op": "task_done", "id": args.id, "user": os.environ.get("USER", "")}))
    return 0


def cmd_task_list(args: argparse.Namespace) -> int:
    tasks = _call(args, {"op": "task_list", "all": args.all})
    if args.json:
        print(json.dumps(tasks, indent=2))
        return 0
    if not tasks:
        print("no open tasks")
    for t in tasks:
        print(f"#{t['id']}  {t['status']:<5} @{t['assignee']:<12} #{t['channel']:<12} "
              f"{t['subject']}")
    return 0



def cmd_usage(args: argparse.Namespace) -> int:
    from crewbridge.bot.admin import usage_text
    from crewbridge.bot.store_usage import UsageReport

    report = _call(args, {"op": "usage", "days": args.days})
    print(json.dumps(report, indent=2) if args.json
          else usage_text(UsageReport.from_json(report), fenced=False))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from crewbridge.bot.admin import audit_text
    from crewbridge.bot.store_usage import AuditRow

    limit = args.limit or (AUDIT_SINCE_LIMIT if args.since is not None else None)
    rows = _call(args, {"op": "audit", "since": args.since, "limit": limit})
    print(json.dumps(rows, indent=2) if args.json
          else audit_text([AuditRow(**r) for r in rows], fenced=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
