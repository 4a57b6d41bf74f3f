"""stream-json parsing and encoding (R10.1, R10.2), against hand-written lines and the real
CLI's recorded output in tests/fixtures/claude/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crewbridge.supervisor.protocol import (
    UNPARSED_MAX_CHARS,
    ApiError,
    ApiRetry,
    AssistantText,
    Init,
    ToolResult,
    ToolUse,
    TurnResult,
    Unparsed,
    encode_user_message,
    is_auth_failure,
    is_unknown_session,
    parse_line,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "claude"


def replay(name: str) -> list:
    lines = (FIXTURES / name).read_bytes().splitlines()
    return [event for line in lines for event in parse_line(line)]


def line(**obj) -> str:
    return json.dumps(obj)


# --- the real CLI's output ---------------------------------------------------------------


def test_r10_2_not_logged_in_fixture_is_an_auth_api_error_then_a_failed_turn():
    """R10.2: the auth failure ends `subtype: success` with `is_error: true`."""
    events = replay("claude-2.1.330-not-logged-in.jsonl")
    assert events == [
        Init(session_id="44f17269-7557-496b-ad5f-e60c9ccff55e", model="claude-opus-5-5"),
        ApiError(kind="authentication_failed", text="Not logged in · Please run /login"),
        TurnResult(
            is_error=True,
            subtype="success",
            text="Not logged in · Please run /login",
            session_id="44f17269-7557-496b-ad5f-e60c9ccff55e",
            errors=(),
            queued_turns=0,
            total_cost_usd=0.0,
            turn_cost_usd=0.0,
            duration_s=0.212,  # R14.3: `duration_ms`
        ),
    ]
    assert is_auth_failure(events[1])
    assert is_auth_failure(events[2])
    assert not any(isinstance(event, AssistantText) for event in events)


def test_r10_2_api_unreachable_fixture_is_retries_then_server_error():
    events = replay("claude-2.1.330-api-unreachable.jsonl")
    retries = [event for event in events if isinstance(event, ApiRetry)]
    assert [retry.attempt for retry in retries] == list(range(1, 11))
    assert all(retry.error == "unknown" for retry in retries)
    assert isinstance(events[0], Init)
    assert isinstance(events[-2], ApiError)
    assert events[-2].kind == "server_error"
    assert events[-2].text.startswith("API Error: Connection refused")
    assert events[-1].is_error and events[-1].subtype == "success"
    assert not is_auth_failure(events[-2]) and not is_auth_failure(events[-1])


def test_r10_1_good_turn_fixture_is_init_text_success():
    events = replay("claude-2.1.330-one-good-turn.jsonl")
    assert events[1:] == [
        AssistantText("Hello from the loopback stub"),
        TurnResult(
            is_error=False,
            subtype="success",
            text="Hello from the loopback stub",
            session_id="1038941e-f0a7-4669-b1d7-addc87b37eae",
            errors=(),
            queued_turns=0,
            total_cost_usd=0.00014000000000000001,  # R13.8: the session's running total
            turn_cost_usd=0.00014000000000000001,  # model_usage_since_last_result: the turn's
            input_tokens=5,
            output_tokens=6,
            duration_s=0.118,  # R14.3: `duration_ms`
        ),
    ]
    assert events[0] == Init(
        session_id="1038941e-f0a7-4669-b1d7-addc87b37eae", model="claude-opus-5-5"
    )


# --- hand-written lines ------------------------------------------------------------------


def test_r10_1_one_assistant_line_yields_every_text_and_tool_block_in_order():
    raw = line(
        type="assistant",
        message={
            "content": [
                {"type": "thinking", "thinking": "hmm"},
                {"type": "text", "text": "first"},
                {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}},
                {"type": "text", "text": "second"},
            ]
        },
    )
    assert parse_line(raw) == [
        AssistantText("first"),
        ToolUse(tool_id="t1", name="Bash"),
        AssistantText("second"),
    ]


def test_r10_1_user_line_yields_every_tool_result():
    raw = line(
        type="user",
        message={
            "content": [
                {"type": "tool_result", "tool_use_id": "a", "content": "ok"},
                {"type": "tool_result", "tool_use_id": "b", "content": "boom", "is_error": True},
            ]
        },
    )
    assert parse_line(raw) == [ToolResult("a", False), ToolResult("b", True)]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("authentication_failed", "authentication_failed"),
        ("billing_error", "billing_error"),
        ("rate_limit", "rate_limit"),
        ("invalid_request", "invalid_request"),
        ("server_error", "server_error"),
        ("unknown", "unknown"),
        ("something_new", "unknown"),
        (["not", "a", "string"], "unknown"),
    ],
)
def test_r10_2_assistant_with_error_field_is_an_api_error_not_text(error, kind):
    raw = line(
        type="assistant",
        error=error,
        is_api_error_message=True,
        message={"model": "<synthetic>", "content": [{"type": "text", "text": "API Error: 500"}]},
    )
    assert parse_line(raw) == [ApiError(kind=kind, text="API Error: 500")]


def test_r10_2_result_is_judged_by_is_error_never_by_subtype():
    ok = parse_line(line(type="result", subtype="error_max_turns", is_error=False, result="x"))
    failed = parse_line(line(type="result", subtype="success", is_error=True, result="x"))
    assert ok == [TurnResult(False, "error_max_turns", "x", None, ())]
    assert failed[0].is_error is True


def test_r3_1_result_carries_the_queued_turn_count_when_sane():
    """R3.1: `queued_turn_count` tells how many delivered messages still wait for a turn."""
    assert parse_line(line(type="result", is_error=False, queued_turn_count=2))[0].queued_turns == 2
    for bad in (-1, "2", 2.5, True, None):
        parsed = parse_line(line(type="result", is_error=False, queued_turn_count=bad))
        assert parsed[0].queued_turns is None


def test_r10_2_result_with_null_result_and_error_list():
    raw = line(
        type="result",
        subtype="error_during_execution",
        is_error=True,
        result=None,
        session_id="s1",
        errors=["No conversation found with session ID: s0", {"code": 7}],
    )
    assert parse_line(raw) == [
        TurnResult(
            is_error=True,
            subtype="error_during_execution",
            text="",
            session_id="s1",
            errors=("No conversation found with session ID: s0", '{"code": 7}'),
        )
    ]


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        line(type="stream_event", event={}),
        line(type="system", subtype="hook_started"),
        line(type="system", subtype="init"),  # no session id: nothing to resume by
        line(type=["system"]),
        line(no_type=True),
        line(type="user", message={"role": "user", "content": "an echoed prompt"}),
    ],
)
def test_r10_1_unknown_or_incomplete_events_yield_nothing(raw):
    assert parse_line(raw) == []


@pytest.mark.parametrize(
    "raw",
    ["Traceback (most recent call last):", "[1, 2]", '"just a string"', "{broken", "null"],
)
def test_r10_1_lines_that_are_not_json_objects_are_unparsed(raw):
    assert parse_line(raw) == [Unparsed(raw)]


def test_r10_1_unparsed_is_truncated_and_bad_utf8_does_not_raise():
    assert parse_line("x" * 10_000) == [Unparsed("x" * UNPARSED_MAX_CHARS)]
    [event] = parse_line(b"\xff\xfe not utf-8")
    assert isinstance(event, Unparsed)
    assert "not utf-8" in event.line


def _text_event(escaped: str) -> bytes:
    return (b'{"type":"assistant","message":{"content":[{"type":"text","text":"'
            + escaped.encode() + b'"}]}}')


@pytest.mark.parametrize(("escaped", "text"), [
    (r"lone \ud800 surrogate", "lone \ufffd surrogate"),
    (r"low \udfff first", "low \ufffd first"),
    (r"nul\u0000byte", "nulbyte"),
    (r"a pair \ud83d\ude00 is fine", "a pair \U0001f600 is fine"),
    (r"plain \u00e9", "plain \u00e9"),
])
def test_r5_8_text_that_is_not_valid_unicode_is_cleaned_not_dropped(escaped, text):
    """R5.8: lone surrogates and NULs in an event are cleaned; the event is kept, and what
    comes out can always be encoded as UTF-8 (stored, posted)."""
    [event] = parse_line(_text_event(escaped))
    assert event == AssistantText(text)
    event.text.encode("utf-8")


def test_r5_8_invalid_utf8_inside_an_event_keeps_the_event():
    """R5.8: bad bytes inside a JSON string become U+FFFD; the turn's text is not lost."""
    [event] = parse_line(b'{"type":"result","is_error":false,"result":"ok \xff\xfe end"}')
    assert isinstance(event, TurnResult) and event.text == "ok \ufffd\ufffd end"


UNCLEAN_TEXT = st.text(st.one_of(
    st.characters(),
    st.integers(0xD800, 0xDFFF).map(chr),  # surrogates, which st.characters() never draws
    st.just("\x00")))


@given(UNCLEAN_TEXT)
def test_r5_8_any_parsed_text_encodes_as_utf8(text):
    line = json.dumps({"type": "assistant", "message": {"content": [
        {"type": "text", "text": text}]}})
    for event in parse_line(line):
        assert isinstance(event, AssistantText)
        event.text.encode("utf-8")


def test_r10_1_deeply_nested_json_does_not_raise():
    assert parse_line("[" * 100_000) == [Unparsed("[" * UNPARSED_MAX_CHARS)]


def test_r10_1_api_retry_tolerates_wrong_types():
    assert parse_line(line(type="system", subtype="api_retry", attempt="3", error=5)) == [
        ApiRetry(attempt=0, error="")
    ]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["system", "assistant", "user", "result"]) | json_values,
        "subtype": st.sampled_from(["init", "api_retry"]) | json_values,
        "session_id": json_values,
        "message": st.fixed_dictionaries(
            {},
            optional={
                "content": st.lists(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "type": st.sampled_from(["text", "tool_use", "tool_result"])
                            | json_values,
                            "text": json_values,
                            "id": json_values,
                            "tool_use_id": json_values,
                            "is_error": json_values,
                        },
                    )
                    | json_values,
                    max_size=3,
                )
                | json_values
            },
        )
        | json_values,
        "error": json_values,
        "is_error": json_values,
        "errors": json_values,
        "result": json_values,
        "attempt": json_values,
    },
)


@given(event_like)
def test_r10_1_parse_line_never_raises_on_event_shaped_garbage(obj):
    events = parse_line(json.dumps(obj))
    assert isinstance(events, list)
    for event in events:
        if isinstance(event, TurnResult):
            assert all(isinstance(error, str) for error in event.errors)
        if isinstance(event, AssistantText | ApiError):
            assert isinstance(event.text, str)


@given(st.binary() | st.text())
def test_r10_1_parse_line_never_raises_on_arbitrary_input(raw):
    unparsed = [event for event in parse_line(raw) if isinstance(event, Unparsed)]
    assert all(len(event.line) <= UNPARSED_MAX_CHARS for event in unparsed)


# --- encoding ----------------------------------------------------------------------------


def test_r10_1_user_message_is_exact_compact_line():
    assert encode_user_message("hi") == (
        b'{"type":"user","message":{"role":"user","content":"hi"}}\n'
    )


def test_r8_5_user_message_carries_its_uuid():
    """R8.5: the uuid the result will list is a top-level field of the user message."""
    assert json.loads(encode_user_message("hi", "u-1"))["uuid"] == "u-1"
    assert "uuid" not in json.loads(encode_user_message("hi"))


UUID_ROWS = {
    "r8_5-folded-turn-lists-several": ({"user_message_uuids": ["a", "b"]}, ("a", "b")),
    "r8_5-older-single-uuid": ({"user_message_uuid": "a"}, ("a",)),
    "r8_5-empty-list-answers-none": ({"user_message_uuids": []}, ()),
    "r8_5-absent-is-unknown": ({}, None),
    "r8_5-wrong-types-are-unknown": ({"user_message_uuids": ["a", 3]}, None),
    "r8_5-not-a-list-is-unknown": ({"user_message_uuids": "a"}, None),
}


@pytest.mark.parametrize(("fields", "expected"), UUID_ROWS.values(), ids=UUID_ROWS.keys())
def test_r8_5_result_lists_the_messages_it_answered(fields, expected):
    """R8.5: `user_message_uuids` (Claude Code 2.1.332) says which messages a turn answered."""
    assert parse_line(line(type="result", is_error=False, **fields))[0].answered == expected


DURATION_ROWS = {
    "r14_3-milliseconds-as-seconds": ({"duration_ms": 1500}, 1.5),
    "r14_3-zero": ({"duration_ms": 0}, 0.0),
    "r14_3-absent": ({}, None),
    "r14_3-negative": ({"duration_ms": -1}, None),
    "r14_3-a-string": ({"duration_ms": "1500"}, None),
    "r14_3-a-bool": ({"duration_ms": True}, None),
    "r14_3-too-big-for-a-float": ({"duration_ms": 10**400}, None),
}


@pytest.mark.parametrize(("fields", "expected"), DURATION_ROWS.values(),
                         ids=DURATION_ROWS.keys())
def test_r14_3_result_duration_is_read_in_seconds(fields, expected):
    """R14.3: a result's `duration_ms` is the turn's duration (`crewbridge_turn_seconds`);
    anything but a finite number of at least 0 is no duration, never an exception."""
    assert parse_line(line(type="result", is_error=False, **fields))[0].duration_s == expected


def test_r13_8_a_cost_too_big_for_a_float_is_no_cost():
    """R13.8: `total_cost_usd` is read like a duration: a huge JSON int is no cost."""
    assert parse_line(line(type="result", total_cost_usd=10**400))[0].total_cost_usd is None


@given(st.text())
def test_r3_1_user_message_is_one_line_that_round_trips(text):
    """R3.1: any text, newlines and lone surrogates included, is exactly one stdin line."""
    encoded = encode_user_message(text)
    assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
    assert json.loads(encoded)["message"]["content"] == text


# --- helpers the supervisor decides by ---------------------------------------------------


def result(text: str = "", *errors: str, is_error: bool = True) -> TurnResult:
    return TurnResult(is_error, "success", text, None, errors)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (ApiError("authentication_failed", "whatever"), True),
        (ApiError("unknown", 'API Error: 401 {"type":"error"}'), True),
        (ApiError("server_error", "API Error: 500 Internal server error"), False),
        (result("Not logged in · Please run /login"), True),
        (result("OAuth token has expired. Please obtain a new token"), True),
        (result("", "Invalid API key · Fix external API key"), True),
        (result("Failed to authenticate. API Error: 401 Unauthorized"), True),
        (result("HTTP 401"), True),
        (result("line 401 of the file is wrong"), False),
        (result("Invalid API key", is_error=False), False),
        (result("API Error: 529 Overloaded"), False),
        (AssistantText("Not logged in"), False),
    ],
)
def test_r6_2_is_auth_failure(event, expected):
    assert is_auth_failure(event) is expected


def test_r4_10_is_unknown_session_reads_errors_and_text():
    assert is_unknown_session(result("", "No conversation found with session ID: abc"))
    assert is_unknown_session(result("No conversation found with session ID: abc"))
    assert not is_unknown_session(result("", "something else"))
    assert not is_unknown_session(result("No conversation found", is_error=False))
