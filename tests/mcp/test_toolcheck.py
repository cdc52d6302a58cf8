"""Static checks of generated tools: what passes, and the sentence each mistake gets."""

from __future__ import annotations

import pytest

from octopussy.mcp.toolcheck import ImportPolicy, ToolCheckError, check_tool, extract_code

GOOD = '''import math


def circle_area(radius: float, digits: int = 2) -> float:
    """Area of a circle with the given radius, rounded to `digits` decimals."""
    return round(math.pi * radius**2, digits)
'''


def problems(code: str, **kwargs: object) -> list[str]:
    with pytest.raises(ToolCheckError) as info:
        check_tool(code, **kwargs)  # type: ignore[arg-type]
    return info.value.problems


def test_a_good_tool_gives_name_schema_and_examples() -> None:
    tool = check_tool(
        GOOD,
        examples=[
            {"call": "circle_area(1)", "expected": "3.14"},
            {"call": "circle_area(radius=2, digits=0)", "expected": 13},
            "circle_area(0) == 0.0",
        ],
    )
    assert tool.name == "circle_area"
    assert tool.description.startswith("Area of a circle")
    assert tool.input_schema == {
        "type": "object",
        "properties": {
            "radius": {"type": "number"},
            "digits": {"type": "integer", "default": 2},
        },
        "required": ["radius"],
    }
    assert [e.arguments for e in tool.examples] == [
        {"radius": 1},
        {"radius": 2, "digits": 0},
        {"radius": 0},
    ]
    assert [e.expected for e in tool.examples] == [3.14, 13, 0.0]
    assert tool.signature() == "circle_area(radius: float, digits: int=2) -> float"


def test_json_types_become_schemas() -> None:
    code = '''from typing import Literal, Optional


def pick(items: list[str], weights: dict[str, float] | None = None,
         mode: Literal["first", "last"] = "first", limit: Optional[int] = None) -> list[str]:
    """Pick items."""
    return items
'''
    schema = check_tool(code).input_schema["properties"]
    assert schema["items"] == {"type": "array", "items": {"type": "string"}}
    assert schema["weights"]["anyOf"] == [
        {"type": "object", "additionalProperties": {"type": "number"}},
        {"type": "null"},
    ]
    assert schema["mode"] == {"enum": ["first", "last"], "default": "first"}
    assert schema["limit"]["anyOf"][1] == {"type": "null"}


def test_fences_and_prose_are_stripped() -> None:
    reply = f"Sure! Here is the tool you asked for:\n```python\n{GOOD}```\nIt rounds to 2 digits."
    assert extract_code(reply) == GOOD
    assert extract_code(f"Here it is:\n{GOOD}\nThat is all.") == GOOD
    assert check_tool(extract_code(reply)).name == "circle_area"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("def f(x: int) -> int:\n    return x(\n", "does not parse"),
        ("def f(x):\n    return x\n", "needs a docstring"),
        ('def f(x):\n    """D."""\n    return x\n', "parameter x needs a type annotation"),
        ('def f(x: int):\n    """D."""\n    return x\n', "needs a return type annotation"),
        ('def f(x: set) -> int:\n    """D."""\n    return 1\n', "not a JSON type"),
        (
            'def f(x: int) -> int:\n    """D."""\n    return x\n\n\ndef g() -> int:\n    """D."""\n'
            "    return 1\n",
            "exactly one public function",
        ),
        ('print("hi")\n\n\ndef f(x: int) -> int:\n    """D."""\n    return x\n', "top level"),
        ('def f(*args: int) -> int:\n    """D."""\n    return 1\n', "*args"),
        ('async def f(x: int) -> int:\n    """D."""\n    return x\n', "plain def"),
        ('def read_file(x: int) -> int:\n    """D."""\n    return x\n', "already exists"),
        ('def Bad_Name_(x: int) -> int:\n    """D."""\n    return x\n', None),
    ],
)
def test_each_mistake_is_named(code: str, expected: str | None) -> None:
    if expected is None:  # a valid (if odd) name passes
        assert check_tool(code, taken=["read_file"]).name == "Bad_Name_"
        return
    found = problems(code, taken=["read_file"])
    assert any(expected in p for p in found), found


def test_a_new_version_may_reuse_its_name() -> None:
    code = 'def convert(x: float) -> float:\n    """D."""\n    return x\n'
    assert problems(code, taken=["convert"])
    assert check_tool(code, taken=["convert"], replaces="convert").name == "convert"


@pytest.mark.parametrize(
    ("imports", "allow_network", "bad"),
    [
        ("import socket", False, "may not use the network"),
        ("from urllib.request import urlopen", False, "may not use the network"),
        ("import asyncio", False, "may not use the network"),
        ("import requests", False, "only the Python standard library"),
        ("import importlib", False, "import modules by name only"),
        ("import json, re, math, datetime, collections", False, None),
        ("import socket", True, None),
    ],
)
def test_imports_follow_the_allow_list(imports: str, allow_network: bool, bad: str | None) -> None:
    code = f'def f(x: int) -> int:\n    """D."""\n    {imports}\n    return x\n'
    policy = ImportPolicy(allow_network=allow_network)
    if bad is None:
        assert check_tool(code, policy=policy).name == "f"
    else:
        assert any(bad in p for p in problems(code, policy=policy))


def test_dynamic_imports_are_refused() -> None:
    code = 'def f(x: int) -> str:\n    """D."""\n    return str(__import__("socket"))\n'
    assert any("__import__" in p for p in problems(code))


def test_an_allow_list_can_add_packages() -> None:
    code = 'def f(x: int) -> int:\n    """D."""\n    import numpy\n    return x\n'
    assert problems(code, policy=ImportPolicy(allowed=("stdlib",)))
    assert check_tool(code, policy=ImportPolicy(allowed=("stdlib", "numpy"))).name == "f"
    stdlib_free = ImportPolicy(allowed=("numpy",))
    assert any("only numpy" in p for p in problems(GOOD, policy=stdlib_free))


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        ({"call": "other(1)", "expected": "1"}, "must be a call of circle_area"),
        ({"call": "circle_area(r=1)", "expected": "1"}, "has no parameter r"),
        ({"call": "circle_area()", "expected": "1"}, "misses the required argument"),
        ({"call": "circle_area(math.pi)", "expected": "1"}, "not a literal"),
        ({"call": "circle_area(1, 2, 3)", "expected": "1"}, "takes 2 argument"),
    ],
)
def test_bad_examples_are_named(example: dict[str, str], expected: str) -> None:
    found = problems(GOOD, examples=[example])
    assert any(expected in p for p in found), found


def test_examples_are_required_when_asked() -> None:
    assert any("at least one example" in p for p in problems(GOOD, require_examples=True))


def test_expected_values_are_read_leniently() -> None:
    tool = check_tool(
        GOOD,
        examples=[
            {"call": "circle_area(1)", "expected": "true"},
            {"call": "circle_area(1)", "expected": "hello"},
            {"call": "circle_area(1)", "expected": "(1, 2)"},
            {"arguments": {"radius": 1}, "expected": 3.14},
        ],
    )
    assert [e.expected for e in tool.examples] == [True, "hello", [1, 2], 3.14]
