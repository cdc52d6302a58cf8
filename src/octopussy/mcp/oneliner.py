"""One-line Python that cannot parse, unfolded into one statement per line.

Small models put a whole script on one line, joined with ``;``. Python accepts that only
for simple statements: ``import csv; rows = []; for r in x: ...`` is a SyntaxError at the
``for``, and the embedded model, told so, sends the same line again until it runs out of
steps (measured: csv-best-month in benchmarks/bench_tasks.py, three identical retries).

    line ─► tokenize ─► items (simple statements and block headers, in order)
         ─► indentation: a header's first item goes one level in; each later item stays
            in the innermost open block while the rules below say it belongs there
         ─► source ─► compile() ─► the unfolded code, or None

Where a block ends is not written in such a line, so it is inferred:

- ``for``: an item stays in the loop while it uses a name the loop binds (its target, or
  a name first assigned inside it from one); ``break``/``continue`` stay. Names assigned
  before the loop are accumulators: ``total = 0; for r in rows: total += r; print(total)``
  prints once, after the loop. A loop whose target is never used (``for _ in range(3)``)
  keeps everything that follows, as Python would.
- ``if``/``elif``/``else`` inside a loop follow the loop's rule; elsewhere, and ``while``,
  ``with``, ``try``, ``def``, ``class``, keep what follows, as Python would.
- After ``return``, ``raise``, ``break`` or ``continue`` nothing more belongs to that block.
- ``elif``/``else``/``except``/``finally`` close blocks up to the statement they continue.

The result is only a best reading: callers run it and show it (see ``execute_python``).
"""

from __future__ import annotations

import ast
import io
import tokenize
import warnings
from dataclasses import dataclass, field

__all__ = ["unfold_one_liner"]

#: Keywords that open a block (``async`` is followed by ``def``/``for``/``with``).
_HEADERS = frozenset(
    {"if", "elif", "else", "for", "while", "with", "try", "except", "finally", "def",
     "class", "async"}
)  # fmt: skip
#: Headers that continue an earlier statement, and the ones they may continue.
_CONTINUES = {
    "elif": {"if", "elif"},
    "else": {"if", "elif", "for", "while", "try", "except"},
    "except": {"try", "except"},
    "finally": {"try", "except", "else"},
}
_LOOPS = frozenset({"for", "while"})
_ENDS_BLOCK = ("return", "raise", "break", "continue")
_MAX_CHARS = 4000


@dataclass
class _Item:
    text: str
    header: bool

    @property
    def keyword(self) -> str:
        word = self.text.split(None, 1)[0] if self.text.strip() else ""
        if word == "async":
            rest = self.text.split(None, 2)
            return rest[1] if len(rest) > 1 else word
        return word.rstrip(":")


@dataclass
class _Block:
    keyword: str
    depth: int  # the header's indentation level; its body is depth + 1
    loop: _Block | None  # the innermost loop this block is in (itself for a loop)
    bound: set[str] = field(default_factory=set)  # names the loop binds
    before: frozenset[str] = frozenset()  # names assigned before the loop
    lazy: bool = False  # a loop whose target is never used: keeps what follows
    ended: bool = False  # a return/raise/break/continue was its last item


def unfold_one_liner(code: str) -> str | None:
    """``code`` as one statement per line if it is a single line that does not parse as is
    and the unfolded form does; ``None`` otherwise (valid code, several lines, no repair)."""
    line = code.strip()
    if not line or "\n" in line or len(line) > _MAX_CHARS or _parses(line):
        return None
    items = _split(line)
    if items is None or len(items) < 2:
        return None
    unfolded = _indent(items)
    if unfolded is None or not _parses(unfolded):
        return None
    return unfolded


def _parses(source: str) -> bool:
    try:
        with warnings.catch_warnings():  # "invalid decimal literal" and such: not ours
            warnings.simplefilter("ignore")
            compile(source, "<code>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


# --------------------------------------------------------------------------- splitting


def _split(line: str) -> list[_Item] | None:
    """The line's statements and headers, cut at top-level ``;`` and header colons."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line).readline))
    except (tokenize.TokenError, SyntaxError):
        return None
    items: list[_Item] = []
    depth = 0
    start = 0  # column where the current item begins
    in_header = False
    lambdas = 0  # lambdas open in the current header (each takes one colon)
    first = True  # the next significant token starts an item
    for token in tokens:
        if token.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.COMMENT):
            continue
        if token.type in (tokenize.INDENT, tokenize.DEDENT):
            continue
        column = token.start[1]
        if first:
            start = column
            first = False
            in_header = token.type == tokenize.NAME and token.string in _HEADERS
            lambdas = 0
        if token.type == tokenize.OP and token.string in "([{":
            depth += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth -= 1
            if depth < 0:
                return None
        elif depth == 0 and token.type == tokenize.NAME and token.string == "lambda":
            lambdas += 1
        elif depth == 0 and token.type == tokenize.OP and token.string == ";":
            if in_header:
                return None  # "for x in y;" is not something we can read
            text = line[start:column].strip()
            if text:
                items.append(_Item(text, header=False))
            first = True
        elif depth == 0 and token.type == tokenize.OP and token.string == ":" and in_header:
            if lambdas:
                lambdas -= 1
                continue
            items.append(_Item(line[start : column + 1].strip(), header=True))
            first = True
    if depth != 0:
        return None
    if not first:
        text = line[start:].strip()
        if text:
            items.append(_Item(text, header=in_header))
    if items and items[-1].header:
        return None  # a header with no body
    return items


# --------------------------------------------------------------------------- indentation


def _indent(items: list[_Item]) -> str | None:
    lines: list[str] = []
    stack: list[_Block] = []
    assigned: set[str] = set()  # every name assigned so far, at any level
    opened = False  # the previous item was a header: this one is its body
    for index, item in enumerate(items):
        keyword = item.keyword if item.header else ""
        if opened:
            depth = stack[-1].depth + 1
        elif keyword in _CONTINUES:
            while stack and stack[-1].keyword not in _CONTINUES[keyword]:
                stack.pop()
            if not stack:
                return None
            depth = stack.pop().depth
        else:
            while stack and not _stays(stack[-1], item):
                stack.pop()
            depth = stack[-1].depth + 1 if stack else 0
        lines.append("    " * depth + item.text)
        loads, stores = _names(item)
        for block in stack:
            if block.loop is block and not block.lazy and loads & block.bound:
                block.bound |= stores - block.before
        if item.header:
            inner_loop = stack[-1].loop if stack else None
            block = _Block(keyword, depth, inner_loop)
            if keyword in _LOOPS:
                block.loop = block
                block.before = frozenset(assigned)
                if keyword == "for":
                    block.bound = set(stores)
                    rest = items[index + 1 :]
                    block.lazy = not any(_names(other)[0] & block.bound for other in rest)
                else:
                    block.lazy = True
            stack.append(block)
            opened = True
        else:
            opened = False
            if stack and item.text.split(None, 1)[0].rstrip(";") in _ENDS_BLOCK:
                stack[-1].ended = True
        assigned |= stores
    return "\n".join(lines) + "\n"


def _stays(block: _Block, item: _Item) -> bool:
    """Whether ``item`` (not the first of the block) still belongs to ``block``."""
    if block.ended:
        return False
    loop = block.loop
    if loop is None or loop.lazy:
        return True  # outside loops: as Python reads a one-liner, to the end
    if not item.header and item.text.split(None, 1)[0] in ("break", "continue"):
        return True
    loads, _ = _names(item)
    return bool(loads & loop.bound)


def _names(item: _Item) -> tuple[set[str], set[str]]:
    """The names ``item`` reads and assigns (comprehension variables excluded)."""
    tree = _parse_item(item)
    if tree is None:
        return set(), set()
    local: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension):
            local |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
    loads: set[str] = set()
    stores: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loads.add(node.id)
            else:
                stores.add(node.id)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            loads.add(node.target.id)
        elif isinstance(node, ast.Assign | ast.AugAssign):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Subscript | ast.Attribute):
                    base = target.value
                    while isinstance(base, ast.Subscript | ast.Attribute):
                        base = base.value
                    if isinstance(base, ast.Name):
                        stores.add(base.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) or (
            isinstance(node, ast.ExceptHandler) and node.name
        ):
            stores.add(str(node.name))
        elif isinstance(node, ast.alias):
            stores.add((node.asname or node.name).split(".")[0])
    return loads - local, stores - local


def _parse_item(item: _Item) -> ast.AST | None:
    text = item.text
    if item.header:
        keyword = item.keyword
        if keyword == "elif":
            text = "if" + text[4:]
        elif keyword in ("else", "finally", "try"):
            return None
        elif keyword == "except":
            text = f"try:\n    pass\n{text}"
        text += "\n    pass"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
