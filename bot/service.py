"""Running as a service (R14.5): the files `crewbridge init` writes, and systemd's readiness
protocol (`Type=notify`).

The example config, the Slack app manifest and the unit template are the repository's
`config/` files; the wheel carries them as data files (`share/crewbridge/`), and an editable
install reads them where they are.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_CONFIG = Path(__file__).resolve().parents[1] / "config"
TEMPLATES = ("example.toml", "slack-manifest.yaml", "crewbridge.service")


def templates_dir() -> Path:
    """Where the installed templates are: the wheel's data files, else the repository's."""
    installed = Path(sys.prefix) / "share" / "crewbridge"
    return installed if (installed / "crewbridge.service").is_file() else REPO_CONFIG


@dataclass(frozen=True)
class Written:
    path: Path
    what: str


def unit_text(template: str, *, crewbridge: str, config: Path) -> str:
    """The systemd unit with this installation's paths filled in."""
    return template.replace("@CREWBRIDGE@", crewbridge).replace("@CONFIG@", str(config))


def init(directory: Path, *, force: bool = False) -> list[Written]:
    """Write a starter config, the Slack app manifest and a systemd unit into `directory`.
    Refuses (a `FileExistsError` naming it) to overwrite a file unless `force`."""
    source = templates_dir()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "crewbridge.toml"
    targets = [(config, "the config: fill in rooms and tokens, then `crewbridge check`"),
               (directory / "slack-app-manifest.yaml",
                "the Slack app: paste it at api.slack.com/apps → Create New App → From a "
                "manifest"),
               (directory / "crewbridge.service",
                "the systemd unit: copy it to /etc/systemd/system/")]
    if not force and (existing := [p for p, _ in targets if p.exists()]):
        raise FileExistsError(f"{existing[0]} exists (--force overwrites it)")
    exe = shutil.which("crewbridge") or str(Path(sys.argv[0]).resolve())
    texts = [(source / "example.toml").read_text(encoding="utf-8"),
             (source / "slack-manifest.yaml").read_text(encoding="utf-8"),
             unit_text((source / "crewbridge.service").read_text(encoding="utf-8"),
                       crewbridge=exe, config=config.resolve())]
    written = []
    for (path, what), text in zip(targets, texts, strict=True):
        path.write_text(text, encoding="utf-8")
        written.append(Written(path, what))
    os.chmod(config, 0o600)  # it may come to hold a secret
    return written


def notify(state: str) -> bool:
    """Tell systemd `state` (`READY=1`, `STOPPING=1`) when it runs the bot as `Type=notify`;
    False (and nothing done) elsewhere. Best effort: a failed notification is no failure
    of the bot."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(address)
        s.sendall(state.encode())
        return True
    return False
