"""Unfolding one-line Python (octopussy.mcp.oneliner): where each block ends."""

from __future__ import annotations

import contextlib
import io

import pytest

from octopussy.mcp.oneliner import repair_python, unfold_one_liner


def run(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<test>", "exec"), {})  # our own test snippets
    return out.getvalue()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # Accumulators assigned before a loop are printed once, after it.
        (
            "total = 0; for n in [1, 2, 3]: total += n; print(total)",
            "total = 0\nfor n in [1, 2, 3]:\n    total += n\nprint(total)\n",
        ),
        # A loop whose variable is unused keeps the rest, as Python reads a one-liner.
        (
            "a, b = 0, 1; for _ in range(5): print(a); a, b = b, a + b",
            "a, b = 0, 1\nfor _ in range(5):\n    print(a)\n    a, b = b, a + b\n",
        ),
        # An if inside a loop keeps what uses the loop's names.
        (
            "best = 0; name = ''; for k, v in [('x', 3), ('y', 5)]: if v > best: best = v; "
            "name = k; print(name, best)",
            "best = 0\nname = ''\nfor k, v in [('x', 3), ('y', 5)]:\n    if v > best:\n"
            "        best = v\n        name = k\nprint(name, best)\n",
        ),
        # Nothing follows a return in the same block.
        (
            "def fib(n): if n < 2: return n; return fib(n - 1) + fib(n - 2); print(fib(10))",
            "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n"
            "print(fib(10))\n",
        ),
        # else/except/finally continue the statement they belong to.
        (
            "for i in range(3): if i % 2: print('odd', i); else: print('even', i); print('end')",
            "for i in range(3):\n    if i % 2:\n        print('odd', i)\n    else:\n"
            "        print('even', i)\nprint('end')\n",
        ),
        (
            "try: x = int('a'); except ValueError as e: print('bad'); finally: print('done')",
            "try:\n    x = int('a')\nexcept ValueError as e:\n    print('bad')\nfinally:\n"
            "    print('done')\n",
        ),
        # Colons inside brackets, lambdas, slices and strings are not block colons.
        (
            "f = lambda x: x + 1; d = {'a': 1}; for k in d: print(f(d[k]), 'x: y'[1:])",
            "f = lambda x: x + 1\nd = {'a': 1}\nfor k in d:\n    print(f(d[k]), 'x: y'[1:])\n",
        ),
        # Names bound by a comprehension are not the loop's.
        (
            "rows = {}; for r in ['a', 'bb']: rows[r] = len(r); "
            "top = [r for r in rows if rows[r] == 2]; print(top)",
            "rows = {}\nfor r in ['a', 'bb']:\n    rows[r] = len(r)\n"
            "top = [r for r in rows if rows[r] == 2]\nprint(top)\n",
        ),
    ],
)
def test_unfolds_into_blocks(line: str, expected: str) -> None:
    assert unfold_one_liner(line) == expected
    run(expected)  # and the result is runnable


def test_the_unfolded_scripts_compute_what_was_meant() -> None:
    assert run(unfold_one_liner("t = 0; for n in range(4): t += n; print(t)") or "") == "6\n"
    fib = unfold_one_liner("a, b = 0, 1; for _ in range(6): print(a, end=' '); a, b = b, a + b")
    assert run(fib or "") == "0 1 1 2 3 5 "


@pytest.mark.parametrize(
    "code",
    [
        "print(1); print(2)",  # valid as it is
        "for i in range(3): print(i)",  # valid as it is
        "x = 1\nfor i in range(3) print(i)",  # several lines: not ours to guess
        "for x in: print(x)",  # broken beyond the layout
        "for x in y; print(x)",  # a header cut by ';'
        "if x:",  # a header with no body
        "print((1, 2)",  # unbalanced
        "",
        "x = 1; " * 700 + "for i in y: print(i)",  # too long to be a one-liner to read
    ],
)
def test_leaves_alone_what_it_cannot_or_need_not_repair(code: str) -> None:
    assert unfold_one_liner(code) is None


def test_a_missing_semicolon_between_statements_is_read_as_one() -> None:
    # As the embedded model wrote it (run 9, csv-total), csv import left out.
    line = "total = sum(int(r['n']) for r in [{'n': '2'}, {'n': '3'}]) print(total)"
    assert unfold_one_liner(line) == (
        "total = sum(int(r['n']) for r in [{'n': '2'}, {'n': '3'}])\nprint(total)\n"
    )
    assert unfold_one_liner("from math import pi r = 2 print(pi * r)") == (
        "from math import pi\nr = 2\nprint(pi * r)\n"
    )
    # Words that continue a statement do not cut it.
    assert unfold_one_liner("x = 1 if True else 2 print(x, 'a' 'b')") == (
        "x = 1 if True else 2\nprint(x, 'a' 'b')\n"
    )


def test_a_line_break_inside_a_string_is_read_as_the_escape() -> None:
    # Run 9, csv-best-month: "\n" inside an f-string, one JSON escape too few.
    code = "m, t = 'March', 1830\nprint(f'best: {m}\n total: {t}')\nprint('done')"
    repair = repair_python(code)
    assert repair is not None
    assert (repair.line_breaks_escaped, repair.unfolded) == (True, False)
    assert run(repair.code) == "best: March\n total: 1830\ndone\n"
    both = repair_python("t = 0; for i in range(3): t += i; print(f'{t}\n')")
    assert both is not None
    assert (both.line_breaks_escaped, both.unfolded) == (True, True)
    assert run(both.code) == "3\n\n"


@pytest.mark.parametrize(
    "code",
    [
        "print('ok')\n",  # nothing to repair
        "print('never closed)\nprint(2)",  # an open string: not a line break in one
        "print(r'raw\nbreak')",  # a raw string: \n would mean something else there
        "s = '''a\nb'''\nprint(s 1)",  # triple quotes may hold line breaks; the error is elsewhere
    ],
)
def test_repair_leaves_alone_what_it_cannot_read(code: str) -> None:
    assert repair_python(code) is None
