"""Terminal output made fit for a room (R6.5, R13.1): `supervisor.terminal`, the login's
line buffer."""

from __future__ import annotations

from crewbridge.supervisor.login import LineBuffer
from crewbridge.supervisor.terminal import plain, screen_line


def test_r6_5_terminal_lines_lose_their_escapes_and_keep_the_url() -> None:
    url = "https://claude.ai/oauth/authorize?code=true&client_id=9d1c_x-Y"
    assert plain(f"\x1b]8;;{url}\x07{url}\x1b]8;;\x07") == url
    assert plain("\x1b[1mPaste >\x1b[0m \x07") == "Paste > "
    assert screen_line("50%\r75%\r100% done\r") == "100% done"


def test_r6_5_a_line_buffer_gives_whole_lines_and_the_prompt_on_request() -> None:
    lines = LineBuffer()
    assert lines.feed(b"Opening\xe2\x80") == []  # a character split across reads
    assert lines.feed(b"\xa6\r\nvisit:\r\nPaste code >") == ["Opening\u2026", "visit:"]
    assert lines.take_partial() == "Paste code >"
    assert lines.take_partial() == ""
