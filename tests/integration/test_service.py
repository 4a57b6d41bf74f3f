"""Installing and running as a service (R14.5): `crewbridge init`, the systemd unit, the
readiness protocol, `$STATE_DIRECTORY`, and what the wheel carries."""

from __future__ import annotations

import configparser
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from crewbridge.bot.config import load_config
from tests.support.botproc import REPO, BotProcess, crewbridge, write_config

pytestmark = pytest.mark.timeout(180)


def test_r14_5_init_writes_a_config_a_manifest_and_a_unit_and_keeps_what_exists(
        tmp_path: Path) -> None:
    target = tmp_path / "etc"
    result = crewbridge("init", str(target))
    assert result.returncode == 0, result.stderr
    config, manifest, unit = (target / n for n in ("crewbridge.toml", "slack-app-manifest.yaml",
                                                   "crewbridge.service"))
    assert config.stat().st_mode & 0o777 == 0o600
    assert manifest.read_text() == (REPO / "config" / "slack-manifest.yaml").read_text()
    again = crewbridge("init", str(target))
    assert again.returncode == 2 and "exists" in again.stderr and again.stderr.count("\n") == 1
    assert crewbridge("init", "--force", str(target)).returncode == 0
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text())
    service = parser["Service"]
    assert service["Type"] == "notify" and service["StateDirectory"] == "crewbridge"
    assert service["UMask"] == "0077" and int(service["LimitNOFILE"]) >= 65536
    assert service["RestartPreventExitStatus"] == "2"
    assert service["ExecStart"].endswith(f"run --config {config.resolve()}")
    assert Path(service["ExecStart"].split()[0]).is_file()
    if shutil.which("systemd-analyze"):  # present on the CI image; the checks above always run
        verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                                text=True, timeout=60)
        assert verify.returncode == 0, verify.stderr


def test_r14_5_the_data_directory_defaults_to_systemds_state_directory(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[agent]\ncommand = [\"claude\"]\n")
    state = tmp_path / "state"
    assert load_config(path, env={"STATE_DIRECTORY": str(state)}).bot.data_dir == state
    written = write_config(tmp_path / "d.toml", data_dir=tmp_path / "mine")
    assert load_config(written, env={"STATE_DIRECTORY": str(state)}).bot.data_dir == \
        tmp_path / "mine"


def test_r14_5_the_bot_tells_systemd_when_it_is_ready_and_when_it_stops(tmp_path: Path) -> None:
    address = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(address))
    listener.settimeout(30)
    bot = BotProcess(write_config(tmp_path / "c.toml"), env={"NOTIFY_SOCKET": str(address)})
    try:
        assert listener.recv(256) == b"READY=1"
        bot.wait_ready()
        bot.terminate()
        assert listener.recv(256) == b"STOPPING=1"
    finally:
        bot.close()
        listener.close()


def test_r14_5_the_wheel_has_one_import_name_and_carries_the_templates_and_the_license(
        tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: a build/ left in the repository must not leak in
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".venv*", ".git", "build", "var", "*.egg-info", "__pycache__", ".*_cache",
        ".hypothesis", "tests", "bench", "docs"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
                           capture_output=True, text=True, timeout=170)
    assert build.returncode == 0, build.stderr
    [wheel] = tmp_path.glob("crewbridge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for file in ("example.toml", "slack-manifest.yaml", "crewbridge.service", "LICENSE"):
        assert any(n.endswith(f".data/data/share/crewbridge/{file}") for n in names), names
    # R14.5: one import name; nothing top-level called bot, bridges or supervisor
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info",
                                                                           ".data"))}
    assert tops == {"crewbridge"}, tops
    assert "crewbridge/bot/app.py" in names and "crewbridge/supervisor/session.py" in names
