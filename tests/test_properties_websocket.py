"""Property-based tests of `edge.web.websocket.parse_message`, the parser of what a WebSocket client
sends (§5 of docs/interface.md), in process (hypothesis).

Any text, any JSON value, and JSON objects shaped like the real messages (``ack`` and
``settings`` with right and wrong field types) must give ``(message, error)`` without raising:
the error is None or a non-empty string, and None only for an object whose type is ``ack`` with
an integer ``seq`` (not a bool) or ``settings``; the message returned is the parsed object.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.web.websocket import parse_message

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)
shaped = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(["ack", "settings", "ping", "", "ACK"]), json_values)},
    optional={"seq": json_values, "fps": json_values, "ack": json_values, "token": json_values},
)


def check(text: str) -> tuple[Any, str | None]:
    message, error = parse_message(text)
    assert error is None or (isinstance(error, str) and error), repr(error)
    if error is None:
        assert isinstance(message, dict)
        kind = message.get("type")
        assert kind in ("ack", "settings"), message
        if kind == "ack":
            seq = message.get("seq")
            assert isinstance(seq, int) and not isinstance(seq, bool), message
    return message, error


@SETTINGS
@given(st.text(max_size=200))
def test_any_text_gives_a_message_or_an_error_string(text: str) -> None:
    check(text)


@SETTINGS
@given(json_values)
def test_any_json_value_gives_a_message_or_an_error_string(value: Any) -> None:
    message, error = check(json.dumps(value))
    if not isinstance(value, dict):
        assert message is None and error == "message must be a JSON object"


@SETTINGS
@given(shaped)
def test_message_shaped_objects_are_judged_by_type_and_seq(value: dict[str, Any]) -> None:
    message, error = check(json.dumps(value))
    assert message == value, "the message handed on is the object the client sent"
    seq = value.get("seq")
    good_ack = value["type"] == "ack" and isinstance(seq, int) and not isinstance(seq, bool)
    assert (error is None) == (good_ack or value["type"] == "settings"), (value, error)


@settings(SETTINGS, max_examples=50)
@given(st.integers(1, 200_000), st.sampled_from(["[", "{", '{"a":', "[[{"]))
def test_deep_or_long_input_is_an_error_not_a_crash(depth: int, opener: str) -> None:
    _, error = check(opener * depth)
    assert error == "message is not valid JSON"
