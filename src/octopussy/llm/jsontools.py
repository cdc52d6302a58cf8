"""Tool calls and structured output through plain JSON text.

    tools ──► tool_choice_schema() ──► {"anyOf": [{"tool": {"const": "read_file"}, "arguments": …},
                                                  {"tool": {"const": "final_answer"}, …}]}
          ──► tools_prompt()       ──► a system-prompt block explaining the same to the model
    reply ──► parse_tool_choice()  ──► ModelResponse(text=answer) | ModelResponse(tool_calls=[…])

Small local models have no native tool calling, and some endpoints reject the ``tools``
parameter. Both then get the same contract: the model answers with one JSON object naming a
tool (or the ``final_answer`` pseudo-tool) and its arguments. Where the backend can constrain
decoding to a JSON schema (llama.cpp, Ollama, OpenAI) the schema makes that object valid by
construction; elsewhere the prompt explains it and the parser here tolerates markdown fences
and prose around the object. Every free-text string in the schema gets a ``maxLength``: a
runaway string was the only kind of invalid JSON seen from constrained decoding.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from octopussy.errors import ModelBehaviorError
from octopussy.llm.base import ChatMessage, ModelResponse, ToolCall, ToolSpec

#: The pseudo-tool a model "calls" to answer the user instead of calling a real tool.
FINAL_ANSWER = "final_answer"
#: Default cap on a final answer and on other free-text strings.
DEFAULT_MAX_ANSWER_CHARS = 4000
DEFAULT_MAX_STRING_CHARS = 8000

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_ARGUMENT_RULE = "- Give every required argument, with the type the tool expects."
_RAW_PREVIEW = 200  # characters of bad model output quoted in an error message


# --------------------------------------------------------------------------- schemas


def cap_strings(schema: dict[str, Any], max_chars: int) -> dict[str, Any]:
    """A copy of ``schema`` where every free-text ``string`` has a ``maxLength``.

    Strings that are already bounded (``enum``, ``const``, ``pattern``, ``format``,
    an existing ``maxLength``) are left alone.
    """
    result = copy.deepcopy(schema)
    _cap_in_place(result, max_chars)
    return result


def _cap_in_place(node: Any, max_chars: int) -> None:
    if isinstance(node, list):
        for item in node:
            _cap_in_place(item, max_chars)
        return
    if not isinstance(node, dict):
        return
    types = node.get("type")
    is_string = types == "string" or (isinstance(types, list) and "string" in types)
    bounded = any(key in node for key in ("enum", "const", "pattern", "format", "maxLength"))
    if is_string and not bounded:
        node["maxLength"] = max_chars
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions", "patternProperties"):
            if isinstance(value, dict):
                for sub in value.values():
                    _cap_in_place(sub, max_chars)
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "prefixItems"):
            _cap_in_place(value, max_chars)


def answer_schema(max_chars: int = DEFAULT_MAX_ANSWER_CHARS) -> dict[str, Any]:
    """The arguments schema of the ``final_answer`` pseudo-tool with a free-text answer."""
    return {
        "type": "object",
        "properties": {"answer": {"type": "string", "maxLength": max_chars}},
        "required": ["answer"],
    }


def tool_choice_schema(
    tools: Sequence[ToolSpec],
    *,
    final_answer: bool = True,
    answer: dict[str, Any] | None = None,
    max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS,
    max_string_chars: int = DEFAULT_MAX_STRING_CHARS,
    answer_last: bool = False,
) -> dict[str, Any]:
    """A JSON schema whose ``anyOf`` has one ``{"tool": NAME, "arguments": {...}}`` per tool.

    ``final_answer`` adds the pseudo-tool whose ``answer`` is free text, or matches the
    ``answer`` schema when one is given (a tools call that also asks for structured output).
    It comes first unless ``answer_last`` (see ``ModelSettings.prefer_tools``).
    """
    options: list[dict[str, Any]] = []
    if final_answer:
        if answer is None:
            arguments = answer_schema(max_answer_chars)
        else:
            arguments = {
                "type": "object",
                "properties": {"answer": cap_strings(answer, max_answer_chars)},
                "required": ["answer"],
            }
        # First, as in the prompt: a small model leans towards the first option it is shown.
        options.append(_tool_option(FINAL_ANSWER, arguments))
    for tool in tools:
        options.append(_tool_option(tool.name, cap_strings(tool.parameters, max_string_chars)))
    if not options:
        raise ValueError("tool_choice_schema needs at least one tool or final_answer")
    if answer_last and final_answer:
        options = [*options[1:], options[0]]
    return {"anyOf": options}


def _tool_option(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    parameters = dict(arguments)
    parameters.setdefault("type", "object")
    return {
        "type": "object",
        "properties": {"tool": {"const": name}, "arguments": parameters},
        "required": ["tool", "arguments"],
    }


# --------------------------------------------------------------------------- prompts


def tools_prompt(
    tools: Sequence[ToolSpec], *, final_answer: bool = True, answer_last: bool = False
) -> str:
    """A system-prompt block that explains the tools and the one-JSON-object reply format.

    ``answer_last`` lists ``final_answer`` after the tools, for when a tool call is the
    expected reply: measured on the embedded model, a file question ("How many lines has
    notes.txt?") was answered from thin air 7 times in 18 with the answer option first,
    and routed to a tool 18 times in 18 with it last.
    """
    lines = [
        "You can use tools. Reply with exactly one JSON object and nothing else, in this form:",
        '{"tool": "<tool name>", "arguments": {<arguments for that tool>}}',
        "",
        "Tools:",
    ]
    if answer_last:
        for tool in tools:
            lines.extend(_describe_tool(tool.name, tool.description, tool.parameters))
        if final_answer:
            lines.extend(
                _describe_tool(
                    FINAL_ANSWER,
                    "Reply to the user directly, only when no file, data, code or computation "
                    "is involved, or with the result once the work is done.",
                    answer_schema(),
                )
            )
        lines.extend(["", "Rules:", _ARGUMENT_RULE])
        return "\n".join(lines)
    if final_answer:
        lines.extend(
            _describe_tool(
                FINAL_ANSWER,
                "Reply to the user directly: greetings, small talk, questions you can answer "
                "from your own knowledge, and the result once the work is done.",
                answer_schema(),
            )
        )
    for tool in tools:
        lines.extend(_describe_tool(tool.name, tool.description, tool.parameters))
    lines.append("")
    lines.append("Rules:")
    if final_answer:
        lines.append(
            f"- Use {FINAL_ANSWER} for greetings, small talk and general-knowledge questions, "
            "and as soon as you have what you need to answer."
        )
    # Measured on the embedded coder model: without this line it reaches for Python (and
    # made-up web APIs) on ordinary questions.
    lines.append(
        "- Call a tool only when the request needs it; use a tool that runs code only when "
        "asked for a computation or to run code."
    )
    lines.append(_ARGUMENT_RULE)
    return "\n".join(lines)


def _describe_tool(name: str, description: str, parameters: dict[str, Any]) -> list[str]:
    properties = parameters.get("properties") or {}
    required = set(parameters.get("required") or ())
    signature = ", ".join(
        f"{arg}: {_type_name(spec)}{'' if arg in required else ' (optional)'}"
        for arg, spec in properties.items()
        if isinstance(spec, dict)
    )
    lines = [f"- {name}({signature}): {description.strip() or 'no description'}"]
    for arg, spec in properties.items():
        if isinstance(spec, dict) and spec.get("description"):
            lines.append(f"    {arg}: {str(spec['description']).strip()}")
    return lines


def _type_name(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        return " | ".join(json.dumps(value) for value in spec["enum"])
    kind = spec.get("type")
    if isinstance(kind, list):
        return " | ".join(str(item) for item in kind)
    if kind == "array" and isinstance(spec.get("items"), dict):
        return f"array of {_type_name(spec['items'])}"
    return str(kind or "any")


def schema_prompt(schema: dict[str, Any]) -> str:
    """A system-prompt block asking for one JSON value that matches ``schema``."""
    return (
        "Reply with exactly one JSON value and nothing else (no markdown, no comments). "
        "It must match this JSON schema:\n" + json.dumps(schema, separators=(",", ":"))
    )


def repair_prompt(error: str) -> str:
    """The user turn that sends a parse or validation error back to the model (one repair)."""
    return (
        f"Your last reply could not be used: {error}. "
        "Reply again with only the corrected JSON object, nothing else."
    )


def with_system_block(messages: Sequence[ChatMessage], block: str) -> list[ChatMessage]:
    """``messages`` with ``block`` appended to the first system message (or a new one first)."""
    result = list(messages)
    for index, message in enumerate(result):
        if message.role == "system":
            content = f"{message.content.rstrip()}\n\n{block}" if message.content else block
            result[index] = ChatMessage.system(content)
            return result
    return [ChatMessage.system(block), *result]


def as_json_mode_messages(messages: Iterable[ChatMessage]) -> list[ChatMessage]:
    """Rewrite native tool turns as the JSON text a JSON-mode model reads and writes.

    An assistant turn with tool calls becomes the JSON object the model would have written;
    a tool result becomes a user turn naming the tool. Chat templates without tool support
    (and endpoints that reject ``tools``) then still see the whole conversation.
    """
    result: list[ChatMessage] = []
    for message in messages:
        if message.role == "assistant" and message.tool_calls:
            calls = [{"tool": c.name, "arguments": c.arguments} for c in message.tool_calls]
            text = json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
            if message.content.strip():
                text = f"{message.content.strip()}\n{text}"
            result.append(ChatMessage.assistant(text))
        elif message.role == "tool":
            name = message.name or "tool"
            result.append(ChatMessage.user(f"Result of {name}:\n{message.content}"))
        else:
            result.append(message)
    return result


# --------------------------------------------------------------------------- parsing


def preview(text: str, limit: int = _RAW_PREVIEW) -> str:
    """One line of ``text`` for an error message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def extract_json(text: str) -> Any:
    """The one JSON value in a model's reply, tolerating markdown fences and prose around it.

    Raises ``ModelBehaviorError`` (with ``raw``) when the reply is empty or holds no JSON.
    """
    stripped = text.strip()
    if not stripped:
        raise ModelBehaviorError("the model returned an empty reply", raw=text)
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    for match in _FENCE.finditer(stripped):
        try:
            return json.loads(match.group(1).strip())
        except json.JSONDecodeError:
            continue
    decoder = json.JSONDecoder()
    # Prose around the object: try each "{" (then "[") as a start and keep the first value
    # that decodes. Objects first, since "[1]" inside prose is more often not the answer.
    for opener in ("{", "["):
        start = stripped.find(opener)
        while start != -1:
            try:
                value, _end = decoder.raw_decode(stripped, start)
            except json.JSONDecodeError:
                start = stripped.find(opener, start + 1)
                continue
            return value
    raise ModelBehaviorError(
        f"the model's reply is not JSON: {preview(stripped)!r}",
        raw=text,
        hint="a model with JSON-schema support (or a larger model) answers more reliably",
    )


def validate(value: Any, schema: dict[str, Any], path: str = "$") -> str | None:
    """A minimal JSON-schema check: the first problem found as one line, or ``None``.

    Covers what models get wrong in practice: wrong types, missing required keys,
    ``const``/``enum`` mismatches and ``anyOf`` alternatives; not a full validator.
    """
    problem = _check(value, schema, path)
    return problem.text if problem is not None else None


class _Problem:
    """A validation problem; ``matched`` says whether the value got past every ``const``."""

    __slots__ = ("depth", "matched", "text")

    def __init__(self, text: str, path: str, *, matched: bool = True) -> None:
        self.text = text
        self.matched = matched
        self.depth = path.count(".") + path.count("[")


def _check(value: Any, schema: Any, path: str) -> _Problem | None:
    if not isinstance(schema, dict) or not schema:
        return None
    for key in ("anyOf", "oneOf"):
        if key in schema:
            problems = [_check(value, option, path) for option in schema[key]]
            if all(problem is not None for problem in problems):
                return _closest([p for p in problems if p is not None], path)
    if "const" in schema and value != schema["const"]:
        return _Problem(f"{path} must be {json.dumps(schema['const'])}", path, matched=False)
    if "enum" in schema and value not in schema["enum"]:
        return _Problem(f"{path} must be one of {json.dumps(schema['enum'])}", path)
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is_type(value, name) for name in kinds):
            return _Problem(
                f"{path} must be of type {' or '.join(kinds)}, not {_json_type(value)}", path
            )
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        # Check const-carrying properties first, so an anyOf can tell "wrong alternative"
        # (say, another tool) from "right alternative, wrong arguments".
        ordered = sorted(
            (name for name in value if name in properties),
            key=lambda name: "const" not in properties[name],
        )
        for name in ordered:
            problem = _check(value[name], properties[name], f"{path}.{name}")
            if problem is not None:
                return problem
        for name in schema.get("required") or ():
            if name not in value:
                return _Problem(f"{path} is missing the required key {name!r}", path)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            problem = _check(item, schema["items"], f"{path}[{index}]")
            if problem is not None:
                return problem
    return None


def _closest(problems: Sequence[_Problem], path: str) -> _Problem:
    # The alternative whose discriminating consts matched is the one the model meant; among
    # those, the deepest problem is the informative one.
    matched = [problem for problem in problems if problem.matched]
    if matched:
        return max(matched, key=lambda problem: problem.depth)
    return _Problem(f"{path} matches none of the allowed shapes", path, matched=False)


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    return True


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_type(value, name):
            return name
    return type(value).__name__


def parse_structured(text: str, schema: dict[str, Any]) -> Any:
    """The JSON value in ``text`` checked against ``schema``; else ``ModelBehaviorError``."""
    value = extract_json(text)
    problem = validate(value, schema)
    if problem:
        raise ModelBehaviorError(f"the model's JSON does not match the schema: {problem}", raw=text)
    return value


def parse_tool_choice(
    text: str,
    tools: Sequence[ToolSpec],
    *,
    answer: dict[str, Any] | None = None,
) -> ModelResponse:
    """Turn a JSON-mode reply into a final answer (``text``) or tool calls.

    Accepts ``{"tool": ..., "arguments": {...}}`` and, from models that imitate native tool
    calling, ``{"name": ..., "arguments"|"parameters": ...}`` and a list of such objects.
    Unknown tool names, missing required arguments or a non-object raise
    ``ModelBehaviorError`` with ``raw`` so the caller can send the error back once.
    When ``answer`` (a schema) is given, a final answer's value is validated against it and
    returned in ``data`` as well as (serialised) in ``text``.
    """
    value = extract_json(text)
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ModelBehaviorError("the model replied with an empty JSON list", raw=text)
    known = {tool.name: tool for tool in tools}
    calls: list[ToolCall] = []
    for item in items:
        name, arguments = _call_parts(item, text)
        if name == FINAL_ANSWER:
            if len(items) > 1:
                raise ModelBehaviorError(
                    f"{FINAL_ANSWER} must be the only item in the reply", raw=text
                )
            return _final_answer(arguments, text, answer)
        tool = known.get(name)
        if tool is None:
            allowed = ", ".join([*known, FINAL_ANSWER])
            raise ModelBehaviorError(
                f"the model called an unknown tool {name!r} (known: {allowed})", raw=text
            )
        problem = validate(arguments, tool.parameters, f"arguments of {name}")
        if problem:
            raise ModelBehaviorError(f"bad tool call: {problem}", raw=text)
        calls.append(ToolCall(name, arguments))
    return ModelResponse(tool_calls=calls)


def _call_parts(item: Any, raw: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(item, dict):
        raise ModelBehaviorError(
            f"expected a JSON object naming a tool, got {_json_type(item)}", raw=raw
        )
    name = item.get("tool", item.get("name"))
    if not isinstance(name, str) or not name:
        raise ModelBehaviorError('the JSON reply has no "tool" name', raw=raw)
    arguments: Any = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str):
        # Some models double-encode arguments the way the native wire format does.
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            if name == FINAL_ANSWER:
                arguments = {"answer": arguments}
            else:
                raise ModelBehaviorError(
                    f"the arguments of {name!r} are not a JSON object", raw=raw
                ) from None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ModelBehaviorError(f'the "arguments" of {name!r} must be a JSON object', raw=raw)
    return name, arguments


def _final_answer(
    arguments: dict[str, Any], raw: str, answer: dict[str, Any] | None
) -> ModelResponse:
    if "answer" not in arguments:
        raise ModelBehaviorError(f'{FINAL_ANSWER} needs an "answer" argument', raw=raw)
    value = arguments["answer"]
    if answer is None:
        if not isinstance(value, str):
            value = json.dumps(value, ensure_ascii=False)
        if not value.strip():
            raise ModelBehaviorError("the model's final answer is empty", raw=raw)
        return ModelResponse(text=value)
    problem = validate(value, answer, "answer")
    if problem:
        raise ModelBehaviorError(f"the answer does not match the schema: {problem}", raw=raw)
    return ModelResponse(text=json.dumps(value, ensure_ascii=False), data=value)


# --------------------------------------------------------------------------- streaming


_ANSWER_OPENING = '{"tool":"' + FINAL_ANSWER + '","arguments":{"answer":"'
_SIMPLE_ESCAPES = {
    '"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"
}  # fmt: skip


class AnswerStream:
    """Pulls the ``final_answer`` text out of a tool-choice reply while it is generated.

        feed('{"tool": "final_an')         ──► ""          (could still be an answer)
        feed('swer", "arguments": {"answer": "Hel')  ──► "Hel"
        feed('lo\\nthere"}}')              ──► "lo\\nthere" (escapes decoded, stops at the quote)
        feed('{"tool": "read_file", …')    ──► ""          (``active`` turns False for good)

    Constrained decoding writes the keys in schema order, so a reply that answers starts
    with the fixed opening ``{"tool": "final_answer", "arguments": {"answer": "``; any
    whitespace between tokens is allowed. The full reply is still parsed by
    :func:`parse_tool_choice` at the end; this only lets a chat show the answer early.
    """

    def __init__(self) -> None:
        self._raw = ""
        self._position = 0  # where undecoded answer text starts in ``_raw``
        self._state = "opening"  # "opening" | "answer" | "done" | "off"

    @property
    def active(self) -> bool:
        """False once the reply is known not to be a final answer."""
        return self._state != "off"

    def feed(self, text: str) -> str:
        """Take the next piece of the reply; return the newly decoded answer text."""
        self._raw += text
        if self._state == "opening":
            self._match_opening()
        if self._state != "answer":
            return ""
        return self._decode()

    def _match_opening(self) -> None:
        compact: list[str] = []
        for index, char in enumerate(self._raw):
            if char.isspace():
                continue
            compact.append(char)
            so_far = "".join(compact)
            if not _ANSWER_OPENING.startswith(so_far):
                self._state = "off"
                return
            if len(so_far) == len(_ANSWER_OPENING):
                self._state = "answer"
                self._position = index + 1
                return

    def _decode(self) -> str:
        out: list[str] = []
        raw, i = self._raw, self._position
        while i < len(raw):
            char = raw[i]
            if char == '"':
                self._state = "done"
                i += 1
                break
            if char != "\\":
                out.append(char)
                i += 1
                continue
            if i + 1 >= len(raw):
                break  # the escape is not complete yet
            code = raw[i + 1]
            if code in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[code])
                i += 2
                continue
            if code != "u":
                out.append(code)  # invalid escape: keep the character, the parser decides
                i += 2
                continue
            decoded, used = _unicode_escape(raw, i)
            if used == 0:
                break  # need more characters
            out.append(decoded)
            i += used
        self._position = i
        return "".join(out)


def _unicode_escape(raw: str, start: int) -> tuple[str, int]:
    """Decode ``\\uXXXX`` (and a following low surrogate) at ``start``; (text, length) or
    ("", 0) when more input is needed."""
    if start + 6 > len(raw):
        return "", 0
    first = raw[start : start + 6]
    try:
        high = int(first[2:], 16)
    except ValueError:
        return first, 6
    if 0xD800 <= high < 0xDC00:
        if start + 12 > len(raw):
            if len(raw) - start > 6 and raw[start + 6] != "\\":
                return "\ufffd", 6
            return "", 0
        pair = raw[start : start + 12]
        try:
            return str(json.loads(f'"{pair}"')), 12
        except ValueError:
            return "\ufffd", 6
    return chr(high), 6
