"""JSON-mode tool calls: schema shape, prompt, tolerant parsing, minimal validation."""

from __future__ import annotations

from typing import Any

import pytest

from octopussy.errors import ModelBehaviorError
from octopussy.llm import jsontools
from octopussy.llm.base import ChatMessage, ToolCall, ToolSpec

READ = ToolSpec(
    "read_file",
    "Read a text file.",
    {
        "type": "object",
        "properties": {"path": {"type": "string", "description": "relative path"}},
        "required": ["path"],
    },
)
WRITE = ToolSpec(
    "write_file",
    "Write text into a file.",
    {
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "content": {"type": "string"},
            "mode": {"type": "string", "enum": ["w", "a"]},
        },
        "required": ["path", "content"],
    },
)
TOOLS = [READ, WRITE]


def test_schema_has_one_option_per_tool_and_final_answer_first() -> None:
    schema = jsontools.tool_choice_schema(TOOLS, max_answer_chars=500, max_string_chars=900)
    options = schema["anyOf"]
    assert [o["properties"]["tool"]["const"] for o in options] == [
        "final_answer",
        "read_file",
        "write_file",
    ]
    for option in options:
        assert option["required"] == ["tool", "arguments"]
    answer = options[0]["properties"]["arguments"]
    assert answer["properties"]["answer"] == {"type": "string", "maxLength": 500}
    assert answer["required"] == ["answer"]
    write_args = options[2]["properties"]["arguments"]
    assert write_args["properties"]["content"]["maxLength"] == 900
    assert "maxLength" not in write_args["properties"]["mode"]  # an enum is already bounded
    assert write_args["required"] == ["path", "content"]
    assert "maxLength" not in WRITE.parameters["properties"]["content"]  # input not mutated


def test_cap_strings_reaches_nested_items() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "note": {"type": ["string", "null"]},
            "limited": {"type": "string", "maxLength": 5},
        },
    }
    capped = jsontools.cap_strings(schema, 42)
    assert capped["properties"]["tags"]["items"]["maxLength"] == 42
    assert capped["properties"]["note"]["maxLength"] == 42
    assert capped["properties"]["limited"]["maxLength"] == 5


def test_schema_with_structured_answer() -> None:
    answer = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    schema = jsontools.tool_choice_schema([READ], answer=answer)
    final = schema["anyOf"][0]["properties"]["arguments"]["properties"]["answer"]
    assert final == answer


def test_prompt_lists_tools_arguments_and_rules() -> None:
    prompt = jsontools.tools_prompt(TOOLS)
    assert '{"tool": "<tool name>", "arguments"' in prompt
    assert "- read_file(path: string): Read a text file." in prompt
    assert 'mode: "w" | "a" (optional)' in prompt
    assert "path: relative path" in prompt
    assert "final_answer" in prompt
    assert "greetings" in prompt


@pytest.mark.parametrize(
    "text",
    [
        '{"tool": "read_file", "arguments": {"path": "a.txt"}}',
        '```json\n{"tool": "read_file", "arguments": {"path": "a.txt"}}\n```',
        'Sure, I will read it.\n{"tool": "read_file", "arguments": {"path": "a.txt"}}\nDone.',
        '{"name": "read_file", "arguments": "{\\"path\\": \\"a.txt\\"}"}',
        '{"name": "read_file", "parameters": {"path": "a.txt"}}',
    ],
    ids=["plain", "fenced", "prose", "double-encoded", "parameters"],
)
def test_parse_tool_call_variants(text: str) -> None:
    response = jsontools.parse_tool_choice(text, TOOLS)
    assert response.text == ""
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        ("read_file", {"path": "a.txt"})
    ]
    assert response.tool_calls[0].id.startswith("call_")


def test_parse_several_calls() -> None:
    text = (
        '[{"tool": "read_file", "arguments": {"path": "a"}},'
        ' {"tool": "write_file", "arguments": {"path": "b", "content": "x"}}]'
    )
    response = jsontools.parse_tool_choice(text, TOOLS)
    assert [c.name for c in response.tool_calls] == ["read_file", "write_file"]


def test_parse_final_answer() -> None:
    response = jsontools.parse_tool_choice(
        '{"tool": "final_answer", "arguments": {"answer": "Rome."}}', TOOLS
    )
    assert response.text == "Rome."
    assert response.tool_calls == []


def test_parse_structured_final_answer_fills_data() -> None:
    answer = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    response = jsontools.parse_tool_choice(
        '{"tool": "final_answer", "arguments": {"answer": {"n": 3}}}', TOOLS, answer=answer
    )
    assert response.data == {"n": 3}
    assert response.text == '{"n": 3}'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty reply"),
        ("   \n", "empty reply"),
        ("I cannot do that.", "not JSON"),
        ("{not json at all", "not JSON"),
        ('{"tool": "delete_everything", "arguments": {}}', "unknown tool 'delete_everything'"),
        (
            '{"tool": "write_file", "arguments": {"path": "b"}}',
            "missing the required key 'content'",
        ),
        ('{"tool": "read_file", "arguments": {"path": 3}}', "must be of type string"),
        ('{"arguments": {"path": "a"}}', 'no "tool" name'),
        ('{"tool": "final_answer", "arguments": {}}', '"answer"'),
        ('{"tool": "final_answer", "arguments": {"answer": "  "}}', "final answer is empty"),
        ("[1, 2]", "expected a JSON object"),
        ("[]", "empty JSON list"),
    ],
)
def test_unusable_replies_raise_with_raw(text: str, message: str) -> None:
    with pytest.raises(ModelBehaviorError, match=message.replace("(", r"\(")) as caught:
        jsontools.parse_tool_choice(text, TOOLS)
    assert caught.value.raw == text
    assert "\n" not in str(caught.value)


def test_extract_json_prefers_object_in_prose_and_fences() -> None:
    assert jsontools.extract_json('The answer is [1] or rather {"a": 1} ok') == {"a": 1}
    assert jsontools.extract_json("```\n[1, 2]\n```") == [1, 2]
    assert jsontools.extract_json("  42 ") == 42


def test_validate_minimal() -> None:
    schema = {
        "type": "object",
        "properties": {
            "kind": {"enum": ["chat", "task"]},
            "items": {"type": "array", "items": {"type": "integer"}},
        },
        "required": ["kind"],
    }
    assert jsontools.validate({"kind": "chat", "items": [1, 2]}, schema) is None
    assert jsontools.validate({"kind": "x"}, schema) == '$.kind must be one of ["chat", "task"]'
    assert jsontools.validate({"kind": "chat", "items": [1, "2"]}, schema) == (
        "$.items[1] must be of type integer, not string"
    )
    assert jsontools.validate([], schema) == "$ must be of type object, not array"
    assert jsontools.validate(True, {"type": "integer"}) is not None
    choice = jsontools.tool_choice_schema(TOOLS)
    assert jsontools.validate({"tool": "read_file", "arguments": {"path": "a"}}, choice) is None
    problem = jsontools.validate({"tool": "read_file", "arguments": {}}, choice)
    assert problem is not None
    assert "path" in problem


def test_parse_structured() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert jsontools.parse_structured('```json\n{"n": 1}\n```', schema) == {"n": 1}
    with pytest.raises(ModelBehaviorError, match="does not match the schema"):
        jsontools.parse_structured('{"m": 1}', schema)


def test_json_mode_messages_render_tool_turns_as_text() -> None:
    call = ToolCall("read_file", {"path": "a"}, id="call_1")
    messages = [
        ChatMessage.system("sys"),
        ChatMessage.user("read a"),
        ChatMessage.assistant("", [call]),
        ChatMessage.tool_result(call, "hello"),
    ]
    converted = jsontools.as_json_mode_messages(messages)
    assert [m.role for m in converted] == ["system", "user", "assistant", "user"]
    assert converted[2].content == '{"tool": "read_file", "arguments": {"path": "a"}}'
    assert converted[3].content == "Result of read_file:\nhello"
    with_block = jsontools.with_system_block(converted, "BLOCK")
    assert with_block[0].content == "sys\n\nBLOCK"
    assert jsontools.with_system_block([ChatMessage.user("x")], "B")[0] == ChatMessage.system("B")
