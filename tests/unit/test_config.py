"""The TOML configuration: shape, `${ENV}`, validation errors, secrets (R11.1, R9.1, R9.3)."""

from __future__ import annotations

import dataclasses
import re
import textwrap
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from crewbridge.bot import config
from crewbridge.bot.config import (
    AdminConfig,
    BotConfig,
    Config,
    ConfigError,
    ConsoleConfig,
    load_config,
)
from crewbridge.bot.config_reader import Field, FieldKind, Section
from crewbridge.bridges.settings import SlackMode
from crewbridge.supervisor.ports import AgentConfig
from crewbridge.supervisor.redact import redact

# The example of R11.1, as SPEC shows it.
EXAMPLE = """
[bot]
data_dir = "var"                 # the SQLite store and the control socket live here
general_channel = "general"
admin_channel = "ops"

[agent]
command = ["claude"]             # crewbridge adds the stream-json flags itself
workdir = "."
env = {}
healthy_after_s = 60
spawn_failure_cooldown_s = 120
max_lead_restarts = 3
max_worker_restarts = 3
breaker_reset_s = 600
flush_interval_s = 2
idle_stop_s = 1800
turn_timeout_s = 900
login_command = ["claude", "auth", "login"]
login_timeout_s = 300

[[channel]]
name = "webui"
prompt = "You lead the work on the web UI."
workdir = "../webui"
always_on = false
slack = ["C0123ABCD"]            # Slack channel ids, or "#name"
matrix = ["!room:example.org"]   # Matrix room ids, or "#alias:example.org"

[admin]
slack = ["C0OPS0001"]
matrix = ["!ops:example.org"]
users = []                       # Slack user ids / Matrix ids; empty: anyone in the admin room

[slack]
mode = "socket"                  # or "http"
bot_token = "${SLACK_BOT_TOKEN}"
app_token = "${SLACK_APP_TOKEN}" # socket mode
signing_secret = "${SLACK_SIGNING_SECRET}"   # http mode
http_host = "127.0.0.1"
http_port = 3000
api_url = "https://slack.com/api/"

[matrix]
homeserver = "https://matrix.example.org"
user_id = "@crew:example.org"
access_token = "${MATRIX_ACCESS_TOKEN}"      # or password = "${MATRIX_PASSWORD}"
allow_invites_from = ["@alice:example.org", ":example.org"]

[console]
enabled = true                   # on by default when neither [slack] nor [matrix] is given
"""

BOT_TOKEN = "xoxb-1111-2222-SECRETbotTOKEN"
APP_TOKEN = "xapp-1-A111-SECRETappTOKEN"
SIGNING = "8f742231b10e8888abcd99yyyzzz85a5"
MATRIX_TOKEN = "syt_Y3Jldw_SECRETmatrixTOKEN_0a1b2c"
ENV = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN,
       "SLACK_SIGNING_SECRET": SIGNING, "MATRIX_ACCESS_TOKEN": MATRIX_TOKEN}
SECRETS = [BOT_TOKEN, APP_TOKEN, SIGNING, MATRIX_TOKEN]

MINIMAL_SLACK = """
[slack]
bot_token = "${SLACK_BOT_TOKEN}"
app_token = "${SLACK_APP_TOKEN}"
"""


@pytest.fixture
def write(tmp_path: Path):
    def write(text: str, name: str = "crewbridge.toml") -> Path:
        path = tmp_path / "conf" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path
    return write


def problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=ENV if env is None else env)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def one_problem(path: Path, env: dict[str, str] | None = None) -> str:
    found = problems(path, env)
    assert len(found) == 1, found
    return found[0]


# --- the shape ---------------------------------------------------------------------------------


def test_r11_1_full_example_loads(write) -> None:
    """R11.1: the full example from SPEC loads, with every value where it belongs."""
    path = write(EXAMPLE)
    cfg = load_config(path, env=ENV)
    assert isinstance(cfg, Config)
    base = path.parent
    assert cfg.bot.data_dir.resolve() == (base / "var").resolve()
    assert (cfg.bot.general_channel, cfg.bot.admin_channel) == ("general", "ops")
    a = cfg.agent
    assert a.command == ("claude",)
    assert a.workdir.resolve() == base.resolve()
    assert a.env == {}
    assert (a.healthy_after_s, a.spawn_failure_cooldown_s, a.breaker_reset_s) == (60, 120, 600)
    assert (a.max_lead_restarts, a.max_worker_restarts) == (3, 3)
    assert (a.flush_interval_s, a.idle_stop_s, a.turn_timeout_s) == (2, 1800, 900)
    assert a.login_command == ("claude", "auth", "login")
    assert a.login_timeout_s == 300
    (ch,) = cfg.channels
    assert ch.name == "webui"
    assert ch.prompt == "You lead the work on the web UI."
    assert ch.workdir is not None
    assert ch.workdir.resolve() == (base / ".." / "webui").resolve()
    assert ch.always_on is False
    assert (ch.slack, ch.matrix) == (("C0123ABCD",), ("!room:example.org",))
    assert cfg.channel("webui") is ch
    assert cfg.channel("nope") is None
    assert (cfg.admin.slack, cfg.admin.matrix, cfg.admin.users) == (
        ("C0OPS0001",), ("!ops:example.org",), ())
    s = cfg.slack
    assert s is not None
    assert (s.mode, s.bot_token, s.app_token, s.signing_secret) == (
        "socket", BOT_TOKEN, APP_TOKEN, SIGNING)
    assert s.mode is SlackMode.SOCKET
    assert (s.http_host, s.http_port, s.api_url) == ("127.0.0.1", 3000, "https://slack.com/api/")
    m = cfg.matrix
    assert m is not None
    assert (m.homeserver, m.user_id, m.access_token) == (
        "https://matrix.example.org", "@crew:example.org", MATRIX_TOKEN)
    assert m.allow_invites_from == ("@alice:example.org", ":example.org")
    assert cfg.console.enabled is True


def test_r11_1_secrets_never_in_repr_of_the_loaded_config(write) -> None:
    """R11.1: secrets are never printed — not even by logging the config object."""
    cfg = load_config(write(EXAMPLE), env=ENV)
    shown = repr(cfg) + str(cfg) + repr(cfg.slack) + repr(cfg.matrix)
    for secret in SECRETS:
        assert secret not in shown


def test_r11_1_empty_file_gives_the_defaults(write) -> None:
    """R11.1: every key has a default; an empty file is a console-only bot."""
    cfg = load_config(write(""), env={})
    assert (cfg.bot.general_channel, cfg.bot.admin_channel) == ("general", "ops")
    assert cfg.channels == ()
    assert (cfg.slack, cfg.matrix) == (None, None)
    assert cfg.agent.max_hops == 8
    assert cfg.console.enabled is True


@pytest.mark.parametrize(("listen", "address"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)),
    ("localhost:0", ("localhost", 0)),  # port 0: any free port (the tests' choice)
    ("[::1]:9464", ("::1", 9464)),
    ("0.0.0.0:65535", ("0.0.0.0", 65535)),
])
def test_r14_3_http_listen_is_a_host_and_a_port(write, listen: str,
                                                address: tuple[str, int]) -> None:
    """R14.3: `[http] listen` takes "host:port" (IPv6 in brackets); "" is off, the default."""
    cfg = load_config(write(f'[http]\nlisten = "{listen}"\n'), env={})
    assert cfg.http.listen == listen
    assert config.split_listen(cfg.http.listen) == address
    assert load_config(write(""), env={}).http == config.HttpConfig(listen="")


def test_r11_1_defaults_are_the_dataclasses_own(write) -> None:
    """R11.1: each default is written once, in its dataclass; the reader adds none of its own
    (a path default is resolved against the config file like the same value written)."""
    path = write("")
    cfg = load_config(path, env={})
    base = path.parent
    assert cfg.bot == BotConfig(data_dir=base / "var")
    assert cfg.agent == replace(AgentConfig(), workdir=base)
    assert cfg.admin == AdminConfig()
    assert cfg.console == ConsoleConfig()


@dataclass(frozen=True)
class _Two:
    a: str
    b: int = 1


@pytest.mark.parametrize("fields", [
    (Field("a", FieldKind.STR),),
    (Field("a", FieldKind.STR), Field("b", FieldKind.INT), Field("c", FieldKind.INT)),
], ids=["key-not-read", "key-not-built"])
def test_r11_1_a_field_table_must_match_its_dataclass(fields: tuple[Field, ...]) -> None:
    """R11.1: a key the reader does not know, or reads but cannot build, is refused at import
    time, so a table cannot drift from its dataclass."""
    with pytest.raises(TypeError, match="only one of"):
        Section(_Two, fields)


def test_r11_1_required_keys_are_the_fields_without_a_default() -> None:
    """R11.1: `required` comes from the dataclass, not from a second list."""
    assert Section(_Two, (Field("a", FieldKind.STR), Field("b", FieldKind.INT))).required == (
        "a",)


def test_r11_1_env_substitution(write) -> None:
    """R11.1: `${NAME}` is read from the environment, inside strings, lists and tables."""
    path = write("""
        [agent]
        command = ["${CLAUDE_BIN}", "--model", "${MODEL}"]
        env = { ANTHROPIC_BASE_URL = "http://${HOST}:8080" }
        [[channel]]
        name = "webui"
        prompt = "You are ${ROLE}; say ${ROLE}."
    """)
    cfg = load_config(path, env={"CLAUDE_BIN": "/opt/claude", "MODEL": "sonnet",
                                 "HOST": "127.0.0.1", "ROLE": "lead"})
    assert cfg.agent.command == ("/opt/claude", "--model", "sonnet")
    assert cfg.agent.env == {"ANTHROPIC_BASE_URL": "http://127.0.0.1:8080"}
    assert cfg.channels[0].prompt == "You are lead; say lead."


def test_r11_1_env_defaults_to_the_process_environment(write, monkeypatch) -> None:
    """R11.1: without an explicit env the process environment is used."""
    monkeypatch.setenv("CREWBRIDGE_TEST_PROMPT", "from the environment")
    cfg = load_config(write('[[channel]]\nname = "a"\nprompt = "${CREWBRIDGE_TEST_PROMPT}"\n'))
    assert cfg.channels[0].prompt == "from the environment"


# --- every problem names file, key and expectation ----------------------------------------------

PROBLEMS: dict[str, tuple[str, str, list[str]]] = {
    # id: (toml, dotted key, words of the expectation)
    "r11_1-missing-env-var": (
        '[slack]\nbot_token = "${NOPE_TOKEN}"\napp_token = "x"\n', "slack.bot_token",
        ["environment variable", "NOPE_TOKEN", "not set"]),
    "r11_1-unknown-section": ("[sl4ck]\nmode = 'socket'\n", "sl4ck",
                              ["unknown section", "slack"]),
    "r11_1-unknown-key-in-bot": ("[bot]\ndatadir = 'var'\n", "bot.datadir",
                                 ["unknown key", "data_dir"]),
    "r11_1-unknown-key-in-agent": ("[agent]\ncomand = ['claude']\n", "agent.comand",
                                   ["unknown key", "command"]),
    "r11_1-unknown-key-in-channel": ("[[channel]]\nname = 'a'\npromt = 'x'\n", "channel[0].promt",
                                     ["unknown key", "prompt"]),
    "r11_1-wrong-type-number": ("[agent]\nhealthy_after_s = '60'\n", "agent.healthy_after_s",
                                ["number", "str"]),
    "r11_1-wrong-type-bool": ("[[channel]]\nname = 'a'\nalways_on = 'yes'\n",
                              "channel[0].always_on", ["true or false"]),
    "r11_1-wrong-type-int": ("[agent]\nmax_lead_restarts = 2.5\n", "agent.max_lead_restarts",
                             ["whole number"]),
    "r11_1-bool-is-not-int": ("[agent]\nmax_hops = true\n", "agent.max_hops", ["whole number"]),
    "r11_1-wrong-type-list": ("[agent]\ncommand = 'claude'\n", "agent.command",
                              ["list of strings"]),
    "r11_1-wrong-type-list-item": ("[agent]\ncommand = ['claude', 1]\n", "agent.command",
                                   ["list of strings"]),
    "r11_1-wrong-type-table": ("[agent]\nenv = { A = 1 }\n", "agent.env",
                               ["table of string values"]),
    "r11_1-section-not-a-table": ("admin = 5\n", "admin", ["a table"]),
    "r11_1-agent-not-a-table": ("agent = 'claude'\n", "agent", ["a table"]),
    "r11_1-channel-not-an-array": ("[channel]\nname = 'a'\n", "channel", ["array of tables"]),
    "r11_1-negative-timer": ("[agent]\nhealthy_after_s = -5\n", "agent.healthy_after_s",
                             ["greater than 0", "-5"]),
    "r11_1-zero-timer": ("[agent]\nturn_timeout_s = 0\n", "agent.turn_timeout_s",
                         ["greater than 0"]),
    "r11_1-negative-cooldown": ("[agent]\nspawn_failure_cooldown_s = -1\n",
                                "agent.spawn_failure_cooldown_s", ["at least 0"]),
    "r11_1-zero-restarts": ("[agent]\nmax_worker_restarts = 0\n", "agent.max_worker_restarts",
                            ["greater than 0"]),
    "r11_1-empty-command": ("[agent]\ncommand = []\n", "agent.command", ["non-empty"]),
    "r11_1-bad-port": (MINIMAL_SLACK + "http_port = 70000\n", "slack.http_port",
                       ["port number", "65535", "70000"]),
    "r11_1-negative-port": (MINIMAL_SLACK + "http_port = -1\n", "slack.http_port",
                            ["port number"]),
    "r11_1-bad-mode": (MINIMAL_SLACK + "mode = 'websocket'\n", "slack.mode",
                       ["'socket'", "'http'", "websocket"]),
    "r11_1-bad-url": (MINIMAL_SLACK + "api_url = 'slack.com/api'\n", "slack.api_url",
                      ["http", "URL"]),
    "r11_1-bad-homeserver": ("[matrix]\nhomeserver = 'matrix.org'\nuser_id = '@a:b'\n"
                             "access_token = 't'\n", "matrix.homeserver", ["URL"]),
    "r11_1-matrix-without-credentials": ("[matrix]\nhomeserver = 'https://m.org'\n"
                                         "user_id = '@a:b'\n", "matrix.access_token",
                                         ["access_token or password"]),
    "r11_1-missing-required": ("[matrix]\nuser_id = '@a:b'\naccess_token = 't'\n",
                               "matrix.homeserver", ["missing"]),
    "r11_1-duplicate-channel": ("[[channel]]\nname = 'webui'\n[[channel]]\nname = 'webui'\n",
                                "channel[1].name", ["unique", "webui"]),
    "r11_1-dm-channel-name": ("[[channel]]\nname = 'dm-x'\n", "channel[0].name",
                              ["reserved", "dm-x"]),
    "r11_1-admin-channel-name": ("[[channel]]\nname = 'ops'\n", "channel[0].name",
                                 ["reserved", "ops"]),
    "r11_1-renamed-admin-channel-name": ("[bot]\nadmin_channel = 'alerts'\n[[channel]]\n"
                                         "name = 'alerts'\n", "channel[0].name", ["reserved"]),
    "r11_1-upper-case-channel": ("[[channel]]\nname = 'WebUI'\n", "channel[0].name",
                                 ["lower-case"]),
    "r11_1-channel-without-name": ("[[channel]]\nprompt = 'x'\n", "channel[0].name",
                                   ["missing"]),
    "r11_1-general-equals-admin": ("[bot]\ngeneral_channel = 'ops'\n", "bot.admin_channel",
                                   ["different"]),
    "r9_1-socket-needs-app-token": ("[slack]\nbot_token = 'xoxb-1'\n", "slack.app_token",
                                    ["socket"]),
    "r9_1-http-needs-signing-secret": ("[slack]\nmode = 'http'\nbot_token = 'xoxb-1'\n",
                                       "slack.signing_secret", ["http"]),
    "r14_3-listen-without-a-host": ("[http]\nlisten = '9464'\n", "http.listen",
                                    ["host:port", "127.0.0.1:9464", "'9464'"]),
    "r14_3-listen-port-too-big": ("[http]\nlisten = 'localhost:70000'\n", "http.listen",
                                  ["host:port"]),
    "r14_3-listen-not-a-string": ("[http]\nlisten = 9464\n", "http.listen", ["a string"]),
    "r14_3-unknown-http-key": ("[http]\nport = 9464\n", "http.port", ["unknown key", "listen"]),
}


@pytest.mark.parametrize(("toml", "key", "words"), list(PROBLEMS.values()), ids=list(PROBLEMS))
def test_r11_1_problem_names_file_key_and_expectation(write, toml: str, key: str,
                                                      words: list[str]) -> None:
    """R11.1: a missing variable, unknown key, wrong type or impossible value is one problem
    line naming the file, the dotted key and what is expected — never a traceback."""
    path = write(toml)
    line = one_problem(path)
    assert line.startswith(f"{path}: {key}: "), line
    for w in words:
        assert w in line, (w, line)


@pytest.mark.parametrize(("toml", "key"), [
    ('[bot]\ndata_dir = "${CREWBRIDGE_DATA}"\n', "bot.data_dir"),
    ("[bot]\ndata_dir = 5\n", "bot.data_dir"),
    ("bot = 5\n", "bot"),
], ids=["unset-env-var", "wrong-type", "not-a-table"])
def test_r11_1_bad_data_dir_is_a_config_error_not_a_traceback(write, toml: str,
                                                             key: str) -> None:
    """R11.1: 'a missing variable ... or a wrong type ... is a start-up error that names the
    file, the key and what is expected — never a traceback'."""
    path = write(toml)
    line = one_problem(path, env={})
    assert line.startswith(f"{path}: {key}: ")


@pytest.mark.parametrize("toml", [
    MINIMAL_SLACK + "mode = 'http'\nsigning_secret = 's3cr3t-value'\n",
    "[slack]\nbot_token = 'xoxb-1'\nmode = 'http'\nsigning_secret = 'abcdef'\n",
], ids=["http-with-secret", "http-without-app-token"])
def test_r9_1_http_mode_needs_no_app_token(write, toml: str) -> None:
    """R9.1: HTTP mode is valid with a signing secret and no app token."""
    cfg = load_config(write(toml), env=ENV)
    assert cfg.slack is not None and cfg.slack.mode is SlackMode.HTTP


def test_r11_1_several_problems_reported_at_once(write) -> None:
    """R11.1: every problem of the file in one go, so it is fixed in one pass."""
    path = write("""
        [bot]
        admin_channel = "Ops Room"
        colour = "blue"
        [agent]
        healthy_after_s = -1
        max_hops = "eight"
        [[channel]]
        name = "dm-bob"
        [slack]
        bot_token = "${MISSING_TOKEN}"
        mode = "carrier-pigeon"
        [extras]
    """)
    found = problems(path, env={})
    keys = [line.split(": ")[1] for line in found]
    for key in ("bot.admin_channel", "bot.colour", "agent.healthy_after_s", "agent.max_hops",
                "channel[0].name", "slack.bot_token", "slack.mode", "extras"):
        assert key in keys, (key, found)
    assert all(line.startswith(f"{path}: ") for line in found)


@pytest.mark.parametrize("toml", [
    f'[slack]\nbot_token = 12345\napp_token = "{APP_TOKEN}"\n',
    f'[slack]\nbot_token = ["{BOT_TOKEN}"]\napp_token = "{APP_TOKEN}"\n',
    f'[slack]\nbot_token = "{BOT_TOKEN}"\napp_token = ""\nhttp_port = "x"\n',
    f'[slack]\nbot_token = "{BOT_TOKEN}"\nmode = "http"\nsigning_secret = 7\n',
    f'[slack]\nbot_token = "{BOT_TOKEN}"\napp_token = "{APP_TOKEN}"\nbot_tokn = "{BOT_TOKEN}"\n',
    f'[matrix]\nhomeserver = "nope"\nuser_id = "@a:b"\naccess_token = "{MATRIX_TOKEN}"\n',
    f'[matrix]\nhomeserver = "https://m.org"\nuser_id = "@a:b"\npassword = ["{SIGNING}"]\n',
    '[slack]\nbot_token = "${SLACK_BOT_TOKEN}"\napp_token = "${SLACK_APP_TOKEN}"\nmode = 1\n',
    '[slack]\nbot_token = "${SLACK_BOT_TOKEN}"\nmode = "${SLACK_APP_TOKEN}"\n',
], ids=["bot-token-wrong-type", "bot-token-list", "app-token-empty", "signing-secret-int",
        "misspelt-key-holding-a-token", "matrix-bad-homeserver", "password-list",
        "env-secrets-with-other-problem", "secret-env-in-checked-key"])
def test_r11_1_secret_value_never_in_an_error(write, toml: str) -> None:
    """R11.1: secrets are never printed — a config error never echoes a token's value."""
    found = problems(write(toml), env=ENV)
    text = "\n".join(found)
    for secret in SECRETS:
        assert secret not in text
        assert secret[8:20] not in text


def test_r11_1_token_pasted_into_the_wrong_key_is_not_echoed(write) -> None:
    """R11.1: a Slack bot token put by mistake in `api_url` is still a secret."""
    found = problems(write(f'{MINIMAL_SLACK}api_url = "{BOT_TOKEN}"\n'))
    assert BOT_TOKEN not in "\n".join(found)


def test_r11_1_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    """R11.1: a missing file is one line naming it, not a traceback."""
    path = tmp_path / "absent.toml"
    line = one_problem(path)
    assert str(path) in line and "no such file" in line


@pytest.mark.parametrize("toml", [
    "[bot\ndata_dir = 'x'\n",
    f"[slack]\nbot_token = {BOT_TOKEN}\n",
    "[bot]\ndata_dir = 'a'\ndata_dir = 'b'\n",
], ids=["unclosed-header", "unquoted-token", "duplicate-key"])
def test_r11_1_invalid_toml_is_one_clear_error(write, toml: str) -> None:
    """R11.1: invalid TOML is one line naming the file and saying it is not valid TOML
    (with the position) — and never echoing a secret from the broken line."""
    path = write(toml)
    line = one_problem(path)
    assert line.startswith(f"{path}: ") and "not valid TOML" in line
    assert "line" in line
    assert BOT_TOKEN not in line


def test_r11_1_unreadable_path_is_one_clear_error(tmp_path: Path) -> None:
    """R11.1: a directory where the file should be is one clear error."""
    line = one_problem(tmp_path)
    assert line.startswith(f"{tmp_path}: ")


# --- paths ----------------------------------------------------------------------------------------


def test_r11_1_relative_paths_are_relative_to_the_config_file(write, tmp_path: Path,
                                                              monkeypatch) -> None:
    """R11.1: relative paths in the config are taken from the config file's directory, so the
    same config works from any working directory."""
    path = write("""
        [bot]
        data_dir = "state/var"
        [agent]
        workdir = "work"
        [[channel]]
        name = "webui"
        workdir = "../webui"
        [[channel]]
        name = "abs"
        workdir = "/srv/abs"
    """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(path, env={})
    base = path.parent.resolve()
    assert cfg.bot.data_dir.resolve() == base / "state" / "var"
    assert cfg.agent.workdir.resolve() == base / "work"
    assert cfg.channels[0].workdir is not None
    assert cfg.channels[0].workdir.resolve() == tmp_path.resolve() / "webui"
    assert cfg.channels[1].workdir == Path("/srv/abs")


def test_r11_1_relative_config_path_from_another_directory(write, tmp_path: Path,
                                                           monkeypatch) -> None:
    """R11.1: `--config conf/crewbridge.toml` given relative to the cwd works the same."""
    path = write('[bot]\ndata_dir = "var"\n')
    monkeypatch.chdir(tmp_path)
    cfg = load_config(Path("conf") / "crewbridge.toml", env={})
    assert cfg.bot.data_dir.resolve() == path.parent.resolve() / "var"


def test_r11_1_default_data_dir_is_relative_to_the_config_file_too(write, tmp_path: Path,
                                                                  monkeypatch) -> None:
    """R11.1: `data_dir` defaults to "var" — the same "var" as written in the example, next to
    the config. `crewbridge status --config conf/x.toml` run elsewhere must find the socket."""
    path = write("")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(path, env={})
    assert cfg.bot.data_dir.resolve() == path.parent.resolve() / "var"


# --- console default (R9.3) ---------------------------------------------------------------------

MATRIX_OK = '[matrix]\nhomeserver = "https://m.org"\nuser_id = "@a:b"\naccess_token = "t"\n'


@pytest.mark.parametrize(("toml", "enabled"), [
    ("", True),
    ("[bot]\n", True),
    (MINIMAL_SLACK, False),
    (MATRIX_OK, False),
    (MINIMAL_SLACK + MATRIX_OK, False),
    (MINIMAL_SLACK + "[console]\nenabled = true\n", True),
    ("[console]\nenabled = false\n", False),
], ids=["nothing", "no-platform", "slack", "matrix", "both", "slack-plus-console",
        "console-off"])
def test_r9_3_console_is_default_only_without_platforms(write, toml: str, enabled: bool) -> None:
    """R9.3, R11.1: the console bridge is on by default only when neither [slack] nor [matrix]
    is configured; an explicit `enabled` wins."""
    assert load_config(write(toml), env=ENV).console.enabled is enabled


def test_r9_3_empty_console_section_keeps_the_platform_dependent_default(write) -> None:
    """R11.1: `enabled` is 'on by default when neither [slack] nor [matrix] is given' — also
    when a [console] table is present without it."""
    assert load_config(write(MINIMAL_SLACK + "[console]\n"), env=ENV).console.enabled is False


@pytest.mark.parametrize("name", ["all", "lead"])
def test_r11_1_channel_named_like_a_mention_keyword_is_refused(write, name: str) -> None:
    """R2.2/R2.3: `@all` and `@lead` have fixed meanings, so a lead named `all` or `lead`
    could never be mentioned; such a channel name is an impossible value."""
    line = one_problem(write(f'[[channel]]\nname = "{name}"\n'))
    assert "channel[0].name" in line


# --- redact --------------------------------------------------------------------------------------

REDACT = {
    "slack-bot-token": ("auth failed for xoxb-1111-2222-abcdEFGH now", "xoxb-1111-2222-abcdEFGH"),
    "slack-user-token": ("token xoxp-99-88-77-aa used", "xoxp-99-88-77-aa"),
    "slack-app-token": ("socket: xapp-1-A0123-456-abcdef", "xapp-1-A0123-456-abcdef"),
    "anthropic-key": ("key sk-ant-api03-AbC_dEf-123456 rejected", "sk-ant-api03-AbC_dEf-123456"),
    "matrix-token": ("using syt_Y3Jldw_AbCdEf_0a1b2c", "syt_Y3Jldw_AbCdEf_0a1b2c"),
    "bearer": ("Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9.sig", "eyJhbGciOi.JIUzI1NiJ9.sig"),
    "bearer-lower": ("authorization: bearer abcdefgh12345678", "abcdefgh12345678"),
    "token-equals": ("GET /sync?token=abc123def456&x=1", "abc123def456"),
    "access-token-equals": ("url?access_token=MDAxOGxvY2F0aW9u", "MDAxOGxvY2F0aW9u"),
    "token-colon-json": ('{"token": "s3cr3tvalue99"}', "s3cr3tvalue99"),
    "api-key": ("ANTHROPIC_API_KEY=abcdef123456", "abcdef123456"),
    "password": ("password: hunter2hunter2", "hunter2hunter2"),
}


@pytest.mark.parametrize(("text", "secret"), list(REDACT.values()), ids=list(REDACT))
def test_r6_1_r11_1_redact_hides_tokens(text: str, secret: str) -> None:
    """R6.1, R11.1: errors bound for logs and the admin room have their tokens hidden, and
    the rest of the text is kept."""
    out = redact(text)
    assert secret not in out
    assert "[redacted]" in out
    first_word = text.split()[0]
    if secret not in first_word:
        assert out.startswith(first_word)


def test_r11_1_redact_hides_known_secret_values_and_keeps_plain_text() -> None:
    """R11.1: configured secret values are hidden wherever they appear; plain text stays."""
    assert redact("sig 8f742231b10e8888 bad", [SIGNING[:16]]) == "sig [redacted] bad"
    plain = "exit status 1 after 2.0 s: No conversation found with session ID"
    assert redact(plain, ["", "abc"]) == plain


@pytest.mark.parametrize("text", [
    "", "hello world", "tokens used: 1234", "the token expired", "see https://slack.com/api/",
], ids=["empty", "plain", "token-count", "word-token", "url"])
def test_r11_1_redact_leaves_ordinary_text_alone(text: str) -> None:
    """R11.1: redaction does not mangle ordinary error text."""
    assert redact(text) == text


# --- docs/configuration.md --------------------------------------------------------------------

DOC_DEFAULT_WORDS = {"required": "required", "—": None, "one required": None}


def _doc_defaults() -> list[tuple[str, str, object]]:
    """(section, key, default) for every row of docs/configuration.md whose default is a TOML
    value, `required` or `—` (no value); rows that describe a rule are left out."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    rows: list[tuple[str, str, object]] = []
    section = ""
    for line in doc.splitlines():
        if m := re.match(r"## `\[+(\w+)\]+`", line):
            section = m.group(1)
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not section or len(cells) != 3 or not cells[0].startswith("`"):
            continue
        keys = re.findall(r"`([a-z_]+)`", cells[0])
        if cells[1] in DOC_DEFAULT_WORDS:
            values = [DOC_DEFAULT_WORDS[cells[1]]] * len(keys)
        else:
            shown = re.findall(r"`([^`]+)`", cells[1])
            try:
                values = [tomllib.loads(f"v = {v}")["v"] for v in shown]
            except tomllib.TOMLDecodeError:
                continue  # a rule, such as "[agent].workdir" or "true only when …"
            values = values * len(keys) if len(values) == 1 else values
        rows += [(section, k, v) for k, v in zip(keys, values, strict=True)]
    return rows


def _as_toml(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value


def test_r11_1_documented_defaults_are_the_dataclasses_defaults() -> None:
    """R11.1: every default docs/configuration.md lists is the one its dataclass declares."""
    sections = {"bot": config.BOT, "agent": config.AGENT, "channel": config.CHANNEL,
                "admin": config.ADMIN, "slack": config.SLACK, "matrix": config.MATRIX,
                "console": config.CONSOLE, "http": config.HTTP}
    rows = _doc_defaults()
    assert len(rows) > 30, rows  # the parser found the tables
    for section, key, documented in rows:
        default = sections[section].default(key)
        expected = "required" if default is dataclasses.MISSING else _as_toml(default)
        assert documented == expected, (section, key, documented, expected)


def test_r14_1_an_unset_token_is_said_once(tmp_path: Path) -> None:
    """R14.1: a Matrix token from an unset variable is one line, not two."""
    path = tmp_path / "c.toml"
    path.write_text('[matrix]\nhomeserver = "https://m.example.org"\nuser_id = "@c:example.org"\n'
                    'access_token = "${MATRIX_ACCESS_TOKEN}"\n')
    with pytest.raises(ConfigError) as e:
        load_config(path, env={})
    assert [p.split(": ", 2)[1] for p in e.value.problems] == ["matrix.access_token"]
    path.write_text('[matrix]\nhomeserver = "https://m.example.org"\nuser_id = "@c:example.org"\n')
    with pytest.raises(ConfigError) as e:
        load_config(path, env={})
    assert any("set access_token or password" in p for p in e.value.problems)
