"""Static checks for a generated tool, before any of its code runs.

    model text ──► extract_code (fences and prose around the code removed)
               ──► check_tool(code, examples, policy)
                     parses? one public function? docstring? every parameter and the return
                     typed with JSON types? a valid MCP tool name, not taken? imports on the
                     allow-list (network modules only when the tool may use the network)?
                     example calls of the form name(literal, key=literal) with a literal result?
               ──► CheckedTool (name, description, parameters as JSON schema, examples as data)
                   or ToolCheckError (one sentence per problem, written for the model to fix)

Nothing here executes or imports the tool's code: the signature, the input schema and the
examples come from the syntax tree, so the server process and the tool agent can check a
tool without trusting it. The checks catch honest mistakes; the sandbox is the barrier
against the rest (a static allow-list can always be talked around).
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from octopussy.errors import OctopussyError

#: MCP tool-name rules (2025-11-25: 1-128 of ``A-Za-z0-9_-.``) narrowed to what a Python
#: function can be called and an OpenAI-style API accepts.
TOOL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
#: The allow-list entry that stands for the whole standard library.
STDLIB = "stdlib"
#: Standard-library modules that reach the network; refused unless the tool may use it.
DEFAULT_NETWORK_MODULES: tuple[str, ...] = (
    "socket",
    "ssl",
    "asyncio",
    "http",
    "urllib",
    "ftplib",
    "poplib",
    "imaplib",
    "smtplib",
    "telnetlib",
    "socketserver",
    "xmlrpc",
    "wsgiref",
    "webbrowser",
    "selectors",
    "select",
    "nntplib",
)
#: Modules that would get around the import allow-list (imports by name at run time).
_DYNAMIC_IMPORTERS = frozenset({"importlib", "imp", "pkgutil", "runpy", "zipimport"})
_DYNAMIC_CALLS = frozenset({"__import__"})
MAX_EXAMPLES = 8


class ToolCheckError(OctopussyError):
    """The generated tool failed a static check; ``problems`` are sentences for the model."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True, slots=True)
class ImportPolicy:
    """Which modules a tool may import."""

    allowed: tuple[str, ...] = (STDLIB,)
    network_modules: tuple[str, ...] = DEFAULT_NETWORK_MODULES
    allow_network: bool = False

    def problem(self, module: str) -> str | None:
        """Why ``module`` may not be imported, or ``None`` when it may."""
        top = module.split(".")[0]
        if top in _DYNAMIC_IMPORTERS:
            return f"import {module} is not allowed: tools import modules by name only"
        if not self.allow_network and top in self.network_modules:
            return (
                f"import {module} is not allowed: this tool may not use the network "
                "(no network access in the sandbox either); compute the result locally"
            )
        if "*" in self.allowed or top in self.allowed or module in self.allowed:
            return None
        if STDLIB in self.allowed and top in sys.stdlib_module_names and not top.startswith("_"):
            return None
        allowed = "the Python standard library" if STDLIB in self.allowed else ""
        extra = [name for name in self.allowed if name != STDLIB]
        if extra:
            allowed = ", ".join(filter(None, [allowed, *extra]))
        return f"import {module} is not allowed; only {allowed or 'no modules'} may be imported"


@dataclass(frozen=True, slots=True)
class Example:
    """One example call with its expected result (both JSON values)."""

    arguments: dict[str, Any]
    expected: Any
    call: str = ""  # the call as the model wrote it, for messages

    def as_dict(self) -> dict[str, Any]:
        return {"arguments": self.arguments, "expected": self.expected, "call": self.call}


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: dict[str, Any]
    annotation: Any  # a real type built from the JSON types (for the SDK's input schema)
    default: Any = inspect.Parameter.empty

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


@dataclass(frozen=True, slots=True)
class CheckedTool:
    """A tool that passed every static check."""

    name: str
    description: str  # the docstring, dedented
    code: str
    params: tuple[Param, ...]
    returns: dict[str, Any]
    examples: tuple[Example, ...] = ()
    imports: tuple[str, ...] = field(default=())

    @property
    def input_schema(self) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        for param in self.params:
            schema = dict(param.schema)
            if not param.required:
                schema["default"] = param.default
            properties[param.name] = schema
        required = [p.name for p in self.params if p.required]
        return {"type": "object", "properties": properties, "required": required}

    def signature(self) -> str:
        """``name(a: int, b: str = 'x') -> float`` from the code (for listings)."""
        tree = ast.parse(self.code)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == self.name:
                args = ast.unparse(node.args)
                returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
                return f"{self.name}({args}){returns}"
        return self.name  # pragma: no cover - check_tool guarantees the function


# --------------------------------------------------------------------------- extraction

_FENCE = re.compile(
    r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:\n```|\Z)", re.DOTALL | re.IGNORECASE
)
_CODE_START = re.compile(r"^(?:from\s+\w|import\s+\w|def\s+\w|async\s+def\s|@|class\s+\w|#)")


def extract_code(text: str) -> str:
    """The Python code in a model's reply: markdown fences and surrounding prose removed."""
    text = text.replace("\r\n", "\n").strip("\n")
    fenced = _FENCE.findall(text)
    if fenced:
        # The block that defines a function; else the first one.
        chosen = next((block for block in fenced if re.search(r"^\s*def\s", block, re.M)), None)
        text = chosen if chosen is not None else fenced[0]
    text = textwrap.dedent(text).strip("\n")
    if _parses(text):
        return text + "\n"
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), 0)
    lines = lines[start:]
    # Prose after the code: drop trailing unindented lines that do not look like code, as
    # long as that is what keeps it from parsing; never cut into code (a syntax error in
    # the code must reach the checks, not be "repaired" by cutting the function short).
    end = len(lines)
    while end > 0:
        candidate = "\n".join(lines[:end]).rstrip()
        if _parses(candidate):
            return candidate + "\n"
        last = lines[end - 1]
        if last.strip() and (last[:1].isspace() or _CODE_START.match(last)):
            break
        end -= 1
    return "\n".join(lines).rstrip() + "\n"


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return bool(text.strip())


# --------------------------------------------------------------------------- types

_SIMPLE: dict[str, tuple[Any, dict[str, Any]]] = {
    "int": (int, {"type": "integer"}),
    "float": (float, {"type": "number"}),
    "str": (str, {"type": "string"}),
    "bool": (bool, {"type": "boolean"}),
    "list": (list, {"type": "array"}),
    "List": (list, {"type": "array"}),
    "dict": (dict, {"type": "object"}),
    "Dict": (dict, {"type": "object"}),
    "Any": (Any, {}),
    "None": (type(None), {"type": "null"}),
}
_TYPE_HINT = (
    "use int, float, str, bool, None, list[...], dict[str, ...], tuple[...], X | None, "
    "Optional[...] or Literal[...]"
)


class _TypeProblem(Exception):
    pass


def annotation_type(node: ast.expr) -> tuple[Any, dict[str, Any]]:
    """A type annotation (syntax) as a real type and a JSON schema; ``_TypeProblem`` if not
    made of JSON types. Only names from a fixed table are turned into types: nothing is
    evaluated."""
    if isinstance(node, ast.Constant) and node.value is None:
        return _SIMPLE["None"]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            inner = ast.parse(node.value, mode="eval").body
        except SyntaxError as exc:
            raise _TypeProblem(f"cannot read the annotation {node.value!r}") from exc
        return annotation_type(inner)
    if isinstance(node, ast.Name | ast.Attribute):
        name = node.id if isinstance(node, ast.Name) else node.attr
        if name in _SIMPLE:
            return _SIMPLE[name]
        if name in ("Tuple", "tuple"):
            return list, {"type": "array"}
        raise _TypeProblem(f"type {ast.unparse(node)} is not a JSON type; {_TYPE_HINT}")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([node.left, node.right])
    if isinstance(node, ast.Subscript):
        base = (
            node.value.id if isinstance(node.value, ast.Name) else getattr(node.value, "attr", "")
        )
        items = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base in ("list", "List", "Sequence", "Iterable"):
            item_type, item_schema = annotation_type(items[0])
            return _generic(list, item_type), {"type": "array", "items": item_schema}
        if base in ("tuple", "Tuple"):
            types = [annotation_type(i) for i in items if not _is_ellipsis(i)]
            if len(types) == 1:
                return _generic(list, types[0][0]), {"type": "array", "items": types[0][1]}
            return list, {"type": "array", "prefixItems": [t[1] for t in types]}
        if base in ("dict", "Dict", "Mapping"):
            if len(items) != 2:
                raise _TypeProblem(f"{ast.unparse(node)} needs a key and a value type")
            key_type, _ = annotation_type(items[0])
            if key_type is not str:
                raise _TypeProblem(
                    f"{ast.unparse(node)}: JSON object keys are strings; use dict[str, ...]"
                )
            value_type, value_schema = annotation_type(items[1])
            return _generic(dict, str, value_type), {
                "type": "object",
                "additionalProperties": value_schema,
            }
        if base == "Optional":
            return _union([items[0], ast.Constant(None)])
        if base == "Union":
            return _union(items)
        if base == "Literal":
            values = []
            for item in items:
                if not isinstance(item, ast.Constant) or not isinstance(
                    item.value, str | int | float | bool
                ):
                    raise _TypeProblem(
                        f"Literal values must be strings or numbers in {ast.unparse(node)}"
                    )
                values.append(item.value)
            return Literal.__getitem__(tuple(values)), {"enum": values}
        if base == "Annotated":
            return annotation_type(items[0])
    raise _TypeProblem(f"type {ast.unparse(node)} is not a JSON type; {_TYPE_HINT}")


def _generic(origin: Any, *args: Any) -> Any:
    """``origin[args]`` built at run time (``list[int]`` from types found in the code)."""
    return origin[args[0] if len(args) == 1 else args]


def _is_ellipsis(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is Ellipsis


def _union(nodes: Iterable[ast.expr]) -> tuple[Any, dict[str, Any]]:
    parts = [annotation_type(n) for n in nodes]
    types = tuple(p[0] for p in parts)
    schemas = [p[1] for p in parts]
    real: Any = Union[types] if len(types) > 1 else types[0]  # noqa: UP007 - built at run time
    if len(parts) == 2 and {"type": "null"} in schemas:
        other = schemas[0] if schemas[1] == {"type": "null"} else schemas[1]
        real = Optional[types[0] if types[1] is type(None) else types[1]]  # noqa: UP045
        return real, {"anyOf": [other, {"type": "null"}]}
    return real, {"anyOf": schemas}


# --------------------------------------------------------------------------- the checks


def check_tool(
    code: str,
    *,
    examples: Sequence[str | Mapping[str, Any]] = (),
    policy: ImportPolicy | None = None,
    taken: Iterable[str] = (),
    replaces: str | None = None,
    require_examples: bool = False,
) -> CheckedTool:
    """Check ``code`` (one tool) and its example calls; ``ToolCheckError`` lists problems.

    ``examples``: ``{"call": "name(1, x=2)", "expected": "3"}`` items (the model's form:
    Python call syntax and a Python literal) or ``{"arguments": {...}, "expected": ...}``
    (the stored form). ``taken``: tool names in use; the tool may have one of them only when
    it is ``replaces`` (an explicit new version of that tool).
    """
    policy = policy or ImportPolicy()
    try:
        tree = ast.parse(code, filename="tool.py")
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        line = (exc.text or "").strip()
        shown = f", in: {line}" if line else ""
        raise ToolCheckError([f"the code does not parse: {exc.msg} at {where}{shown}"]) from exc
    problems: list[str] = []
    public: list[ast.FunctionDef] = []
    imports: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if isinstance(node, ast.AsyncFunctionDef):
                problems.append(f"{node.name} must be a plain def, not async def")
            elif not node.name.startswith("_"):
                public.append(node)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            pass
        elif isinstance(node, ast.ClassDef):
            if not node.name.startswith("_"):
                problems.append(
                    f"class {node.name} is public; only the one tool function may be public "
                    f"(name helpers with a leading underscore, e.g. _{node.name})"
                )
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            pass  # module constants
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            pass  # a module docstring
        else:
            problems.append(
                f"line {node.lineno}: only imports, constants and function definitions may be "
                "at the top level (no code that runs on import)"
            )
    for sub in ast.walk(tree):
        if isinstance(sub, ast.Import):
            imports.extend(alias.name for alias in sub.names)
        elif isinstance(sub, ast.ImportFrom):
            if sub.level:
                problems.append("relative imports are not allowed")
            elif sub.module:
                imports.append(sub.module)
        elif isinstance(sub, ast.Name) and sub.id in _DYNAMIC_CALLS:
            problems.append(f"{sub.id} is not allowed: import modules with import statements")
    for module in dict.fromkeys(imports):
        problem = policy.problem(module)
        if problem:
            problems.append(problem)
    if len(public) != 1:
        names = ", ".join(f.name for f in public) or "none"
        problems.append(
            f"the code must define exactly one public function (found: {names}); "
            "give helpers a leading underscore"
        )
        raise ToolCheckError(problems)
    function = public[0]
    name = function.name
    if not TOOL_NAME.match(name):
        problems.append(
            f"the name {name!r} is not a valid tool name: 1-64 letters, digits and underscores, "
            "starting with a letter"
        )
    if name in set(taken) and name != replaces:
        problems.append(f"a tool named {name!r} already exists; choose another, more specific name")
    docstring = ast.get_docstring(function)
    if not docstring or not docstring.strip():
        problems.append(f"{name} needs a docstring saying what it does, its inputs and output")
    params, param_problems = _params(function)
    problems.extend(param_problems)
    returns: dict[str, Any] = {}
    if function.returns is None:
        problems.append(f"{name} needs a return type annotation (e.g. -> float)")
    else:
        try:
            _, returns = annotation_type(function.returns)
        except _TypeProblem as exc:
            problems.append(f"return type: {exc}")
    checked_examples: list[Example] = []
    if not problems:
        for index, raw in enumerate(examples[:MAX_EXAMPLES], start=1):
            try:
                checked_examples.append(_example(raw, name, params))
            except _ExampleProblem as exc:
                problems.append(f"example {index}: {exc}")
        if require_examples and not examples:
            problems.append(f"give at least one example call of {name} with its expected result")
    if problems:
        raise ToolCheckError(problems)
    return CheckedTool(
        name=name,
        description=inspect.cleandoc(docstring or ""),
        code=code,
        params=tuple(params),
        returns=returns,
        examples=tuple(checked_examples),
        imports=tuple(dict.fromkeys(imports)),
    )


def _params(function: ast.FunctionDef) -> tuple[list[Param], list[str]]:
    args = function.args
    problems: list[str] = []
    if args.vararg or args.kwarg:
        problems.append(f"{function.name} may not take *args or **kwargs; name each parameter")
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults.extend(args.defaults)
    pairs = [
        *zip(positional, defaults, strict=True),
        *zip(args.kwonlyargs, args.kw_defaults, strict=True),
    ]
    params: list[Param] = []
    for arg, default_node in pairs:
        if arg.arg.startswith("_"):
            problems.append(f"parameter {arg.arg} may not start with an underscore")
            continue
        if arg.annotation is None:
            problems.append(f"parameter {arg.arg} needs a type annotation (e.g. {arg.arg}: float)")
            continue
        try:
            real, schema = annotation_type(arg.annotation)
        except _TypeProblem as exc:
            problems.append(f"parameter {arg.arg}: {exc}")
            continue
        default: Any = inspect.Parameter.empty
        if default_node is not None:
            try:
                default = _json_literal(default_node)
            except _ExampleProblem:
                problems.append(
                    f"the default of {arg.arg} must be a literal (a number, string, True, "
                    "False, None, or a list/dict of those)"
                )
                continue
        params.append(Param(arg.arg, schema, real, default))
    return params, problems


class _ExampleProblem(Exception):
    pass


def _json_literal(node: ast.expr) -> Any:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise _ExampleProblem(f"{ast.unparse(node)} is not a literal value") from exc
    return to_json(value)


def to_json(value: Any) -> Any:
    """A literal as JSON data (tuples become lists); ``_ExampleProblem`` if it cannot be."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise _ExampleProblem("NaN and infinity are not JSON values")
        return value
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise _ExampleProblem("dictionary keys must be strings")
        return {k: to_json(v) for k, v in value.items()}
    raise _ExampleProblem(
        f"{type(value).__name__} values are not JSON (use lists, dicts, str, numbers)"
    )


def _example(raw: str | Mapping[str, Any], name: str, params: Sequence[Param]) -> Example:
    if isinstance(raw, Mapping) and "arguments" in raw:
        given = raw.get("arguments")
        if not isinstance(given, dict):
            raise _ExampleProblem("arguments must be an object")
        _bind_check(given, name, params)
        return Example(dict(given), raw.get("expected"), str(raw.get("call") or ""))
    if isinstance(raw, str):
        call_text, expected_text = raw, None
    elif isinstance(raw, Mapping):
        call_text = str(raw.get("call") or "")
        expected_text = raw.get("expected")
    else:
        raise _ExampleProblem("an example is an object with call and expected")
    call_text = call_text.strip().removeprefix(">>>").strip()
    if expected_text is None and "==" in call_text:
        call_text, _, expected_text = call_text.partition("==")
        call_text = call_text.strip()
    try:
        node = ast.parse(call_text, mode="eval").body
    except SyntaxError as exc:
        raise _ExampleProblem(f"{call_text!r} is not a call like {name}(...)") from exc
    if not isinstance(node, ast.Call) or not (
        isinstance(node.func, ast.Name) and node.func.id == name
    ):
        raise _ExampleProblem(f"{call_text!r} must be a call of {name}, like {name}(...)")
    arguments: dict[str, Any] = {}
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        k.arg is None for k in node.keywords
    ):
        raise _ExampleProblem("write each argument out (no * or **)")
    if len(node.args) > len(params):
        raise _ExampleProblem(
            f"{name} takes {len(params)} argument(s), the call gives {len(node.args)}"
        )
    for param, value in zip(params, node.args, strict=False):
        arguments[param.name] = _json_literal(value)
    for keyword in node.keywords:
        assert keyword.arg is not None
        arguments[keyword.arg] = _json_literal(keyword.value)
    _bind_check(arguments, name, params)
    expected = _expected(expected_text)
    return Example(arguments, expected, call_text)


def _expected(expected: Any) -> Any:
    if not isinstance(expected, str):
        try:
            return to_json(expected)
        except _ExampleProblem as exc:
            raise _ExampleProblem(f"the expected result: {exc}") from exc
    text = expected.strip()
    try:
        return to_json(ast.literal_eval(text))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered in ("null", "none"):
            return None
        return text  # a bare word the model meant as a string


def _bind_check(arguments: Mapping[str, Any], name: str, params: Sequence[Param]) -> None:
    known = {p.name for p in params}
    unknown = [key for key in arguments if key not in known]
    if unknown:
        raise _ExampleProblem(f"{name} has no parameter {', '.join(unknown)}")
    missing = [p.name for p in params if p.required and p.name not in arguments]
    if missing:
        raise _ExampleProblem(f"the call misses the required argument(s) {', '.join(missing)}")
