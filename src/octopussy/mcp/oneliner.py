"""Python from a model that cannot parse, repaired: one-liners unfolded, broken strings fixed.

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
- A name right after a complete operand starts the next statement: the ``;`` was left out
  (``total = sum(rows) print(total)``, measured in run 9).

``repair_python`` also mends a line break inside a one-quote string (see there).

The result is only a best reading: callers run it and show it (see ``execute_python``).
"""

from __future__ import annotations

import ast
import io
import keyword
import tokenize
import warnings
from dataclasses import dataclass, field

__all__ = ["Repair", "repair_python", "unfold_one_liner"]

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


@dataclass(frozen=True)
class Repair:
    """Code that parses, made from code that did not, and what was done to it."""

    code: str
    line_breaks_escaped: bool  # a line break inside a '...' string became \\n
    unfolded: bool  # one line became one statement per line


def repair_python(code: str) -> Repair | None:
    """``code`` repaired so that it parses, or None (it parses already, or no repair works).

    Two repairs, in this order, each kept only if the result parses:

    - a line break inside a one-quote string literal (never valid Python) becomes the
      escape ``\\n``: models write ``print(f'total: {t}\\n')`` in the JSON of a tool call,
      one escape too few, so the string reaches Python broken in two (measured in run 9);
    - a single line is unfolded into one statement per line (``unfold_one_liner``).
    """
    if _parses(code):
        return None
    escaped = _escape_line_breaks(code)
    if escaped is not None and _parses(escaped):
        return Repair(escaped, line_breaks_escaped=True, unfolded=False)
    base = escaped if escaped is not None else code
    unfolded = unfold_one_liner(base)
    if unfolded is None:
        return None
    return Repair(unfolded, line_breaks_escaped=escaped is not None, unfolded=True)


def _escape_line_breaks(code: str) -> str | None:
    """``code`` with every line break inside a one-quote string written as ``\\n``; None
    when there is none, or a string is raw or left open (nothing safe to change)."""
    out: list[str] = []
    i, n = 0, len(code)
    quote: str | None = None
    raw = changed = False
    while i < n:
        char = code[i]
        if quote is None:
            if char == "#":
                end = code.find("\n", i)
                end = n if end < 0 else end
                out.append(code[i:end])
                i = end
                continue
            if char in "'\"":
                start = i
                while start > 0 and code[start - 1].isalnum():
                    start -= 1
                raw = "r" in code[start:i].lower()
                quote = char * 3 if code.startswith(char * 3, i) else char
                out.append(quote)
                i += len(quote)
                continue
            out.append(char)
            i += 1
            continue
        if char == "\\" and i + 1 < n:
            out.append(code[i : i + 2])
            i += 2
        elif code.startswith(quote, i):
            out.append(quote)
            i += len(quote)
            quote = None
        elif char == "\n" and len(quote) == 1:
            if raw:
                return None
            out.append("\\n")
            changed = True
            i += 1
        else:
            out.append(char)
            i += 1
    if quote is not None or not changed:
        return None
    return "".join(out)


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
    previous: tokenize.TokenInfo | None = None
    for token in tokens:
        if token.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.COMMENT):
            continue
        if token.type in (tokenize.INDENT, tokenize.DEDENT):
            continue
        column = token.start[1]
        if (
            not first
            and depth == 0
            and not in_header
            and previous is not None
            and _ends_operand(previous)
            and token.type == tokenize.NAME
            and token.string not in _JOINING_WORDS
        ):
            # "total = sum(rows) print(total)": a name right after a complete operand can
            # only start the next statement (the ';' was left out).
            items.append(_Item(line[start:column].strip(), header=False))
            first = True
        previous = token
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


#: Words that may follow an operand inside one statement (so never start the next one).
_JOINING_WORDS = frozenset({"if", "else", "in", "is", "not", "and", "or", "as", "from", "import"})


def _ends_operand(token: tokenize.TokenInfo) -> bool:
    if token.type in (tokenize.NUMBER, tokenize.STRING):
        return True
    if token.type == tokenize.NAME:
        return not keyword.iskeyword(token.string) or token.string in ("True", "False", "None")
    return token.type == tokenize.OP and token.string in ")]}"


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
