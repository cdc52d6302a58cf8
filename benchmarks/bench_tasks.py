"""Task success on the embedded model: everyday requests, end to end through `octopussy ask`.

    for each task: fresh workspace with its files ─► `octopussy ask TEXT` (a real process,
    the default embedded model, coordinator routing, optimizer, worker, built-in tools)
    ─► check the workspace and the printed answer ─► pass/fail, seconds

Every task is checked by its result, not by the path taken: a file task passes when the
file is right, a question when the answer holds the fact. One data dir is shared by the
run (as a user's would be: long-term memory grows from task to task); each task gets its
own workspace. Output: one line per task, then the success rate and seconds per task;
``--json FILE`` keeps the details (answers, exit codes, stderr tails).

    .venv/bin/python benchmarks/bench_tasks.py            # all tasks
    .venv/bin/python benchmarks/bench_tasks.py -k csv -k json   # tasks whose name matches
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OCTOPUSSY = [sys.executable, "-m", "octopussy"]

NOTES = "\n".join(f"note {n}: remember item {n}" for n in range(1, 8)) + "\n"
SALES = "month,revenue\nJanuary,1200\nFebruary,950\nMarch,1830\nApril,1410\nMay,1675\n"
CONFIG = json.dumps({"name": "demo", "port": 8080, "debug": False}, indent=2) + "\n"
ESSAY = (
    "The colour of the sea changes with the weather.\n"
    "On grey days the colour is dull; in summer the colour is bright blue.\n"
)
SHOPPING = "eggs\nflour\nsugar\n"
FISH = "The octopus has three hearts and blue blood.\n"


def _read(workspace: Path, name: str) -> str:
    path = workspace / name
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def _json(workspace: Path, name: str) -> object:
    try:
        return json.loads(_read(workspace, name))
    except ValueError:
        return None


def _has(answer: str, *needles: str) -> bool:
    low = answer.lower()
    return all(needle.lower() in low for needle in needles)


Check = Callable[[str, Path], bool]


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    check: Check
    files: dict[str, str] = field(default_factory=dict)
    #: The given files the task is meant to change; every other one must stay as it was
    #: (a right answer that destroyed the user's data is a failed task).
    changes: tuple[str, ...] = ()


CASES = [
    Case(
        "file-write-read",
        "create a file hello.txt containing hi, then read it back",
        lambda a, w: _read(w, "hello.txt").strip() == "hi" and _has(a, "hi"),
    ),
    Case("question-capital", "What is the capital of Japan?", lambda a, w: _has(a, "tokyo")),
    Case("question-author", "Who wrote the play Hamlet?", lambda a, w: _has(a, "shakespeare")),
    Case(
        "count-lines",
        "How many lines does notes.txt have?",
        lambda a, w: re.search(r"\b7\b|\bseven\b", a, re.I) is not None,
        {"notes.txt": NOTES},
    ),
    Case(
        "python-sum",
        "Use Python to compute the sum of all integers from 1 to 100.",
        lambda a, w: "5050" in a.replace(",", ""),
    ),
    Case(
        "csv-best-month",
        "Which month has the highest revenue in sales.csv?",
        lambda a, w: _has(a, "march"),
        {"sales.csv": SALES},
    ),
    Case(
        "csv-total",
        "What is the total revenue in sales.csv?",
        lambda a, w: "7065" in a.replace(",", ""),
        {"sales.csv": SALES},
    ),
    Case(
        "json-read",
        "What port is set in config.json?",
        lambda a, w: "8080" in a,
        {"config.json": CONFIG},
    ),
    Case(
        "json-edit",
        "Change the port in config.json to 9090.",
        lambda a, w: (
            isinstance(c := _json(w, "config.json"), dict)
            and c.get("port") == 9090
            and c.get("name") == "demo"
        ),
        {"config.json": CONFIG},
        changes=("config.json",),
    ),
    Case(
        "replace-word",
        "Replace every 'colour' with 'color' in essay.txt.",
        lambda a, w: (
            "colour" not in _read(w, "essay.txt") and _read(w, "essay.txt").count("color") == 3
        ),
        {"essay.txt": ESSAY},
        changes=("essay.txt",),
    ),
    Case(
        "append-line",
        "Add milk as a new last line of shopping.txt.",
        lambda a, w: _read(w, "shopping.txt").split() == ["eggs", "flour", "sugar", "milk"],
        {"shopping.txt": SHOPPING},
        changes=("shopping.txt",),
    ),
    Case(
        "two-step-edit",
        "In shopping.txt, replace eggs with bread, then add butter as a new last line.",
        lambda a, w: _read(w, "shopping.txt").split() == ["bread", "flour", "sugar", "butter"],
        {"shopping.txt": SHOPPING},
        changes=("shopping.txt",),
    ),
    Case(
        "json-create",
        'Create todo.json containing a JSON list with the strings "a" and "b".',
        lambda a, w: _json(w, "todo.json") == ["a", "b"],
    ),
    Case(
        "subdir-file",
        "Create the file reports/summary.md whose first line is '# Summary'.",
        lambda a, w: _read(w, "reports/summary.md").startswith("# Summary"),
    ),
    Case(
        "list-files",
        "Which .txt files are in the workspace?",
        lambda a, w: _has(a, "notes.txt", "essay.txt") and "data.csv" not in a.lower(),
        {"notes.txt": NOTES, "essay.txt": ESSAY, "data.csv": SALES},
    ),
    Case(
        "search-text",
        "Which file in the workspace mentions the octopus?",
        lambda a, w: _has(a, "animals.txt"),
        {"animals.txt": FISH, "notes.txt": NOTES, "essay.txt": ESSAY},
    ),
    Case(
        "script-run",
        "Write a Python script fib.py that prints the first 10 Fibonacci numbers, then run it.",
        lambda a, w: (w / "fib.py").is_file() and "34" in a,
    ),
    Case(
        "arithmetic",
        "What is 17 multiplied by 23?",
        lambda a, w: "391" in a,
    ),
]


@dataclass
class Outcome:
    name: str
    passed: bool
    seconds: float
    exit_code: int
    answer: str
    stderr_tail: str


def run_case(case: Case, home: Path, root: Path, timeout: float) -> Outcome:
    workspace = root / case.name
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    for name, content in case.files.items():
        (workspace / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace / name).write_text(content, encoding="utf-8")
    env = {**os.environ, "OCTOPUSSY_HOME": str(home)}
    env.setdefault("OCTOPUSSY_MODEL_CACHE", str(REPO / ".cache" / "models"))
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [*OCTOPUSSY, "ask", "--no-stream", case.text],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        code, answer, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code = -1
        answer = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = "timeout"
    seconds = time.perf_counter() - started
    try:
        # A labelled partial answer is a failure even when its "last progress" excerpt
        # happens to hold the fact (a file dump with "March,1830" in it is no answer).
        kept = all(
            _read(workspace, name) == content
            for name, content in case.files.items()
            if name not in case.changes
        )
        passed = (
            code == 0
            and "[partial answer]" not in answer
            and kept
            and case.check(answer, workspace)
        )
    except Exception:  # a check that trips over odd output is a failed task
        passed = False
    return Outcome(case.name, passed, seconds, code, answer.strip(), err.strip()[-600:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", action="append", default=[], help="only tasks whose name has it")
    parser.add_argument("--timeout", type=float, default=420.0, help="seconds per task")
    parser.add_argument("--json", type=Path, help="write every outcome here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the data dir and workspaces (path printed)"
    )
    args = parser.parse_args()
    cases = [c for c in CASES if not args.k or any(k in c.name for k in args.k)]
    root = Path(tempfile.mkdtemp(prefix="octopussy-tasks-"))
    home = root / "home"
    print(f"# {len(cases)} task(s); python {platform.python_version()}; {platform.machine()}")
    outcomes: list[Outcome] = []
    for case in cases:
        outcome = run_case(case, home, root / "ws", args.timeout)
        outcomes.append(outcome)
        mark = "PASS" if outcome.passed else "FAIL"
        answer = " ".join(outcome.answer.split())[:100]
        print(f"{mark} {case.name:<16} {outcome.seconds:6.1f}s  exit {outcome.exit_code}  {answer}")
        sys.stdout.flush()
    passed = sum(o.passed for o in outcomes)
    seconds = [o.seconds for o in outcomes]
    print(
        f"\nsuccess {passed}/{len(outcomes)} = {100 * passed / max(1, len(outcomes)):.0f}%  "
        f"seconds per task: median {statistics.median(seconds):.1f}, "
        f"mean {statistics.fmean(seconds):.1f}, max {max(seconds):.1f}"
    )
    if args.json:
        args.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=2))
    if args.keep:
        print(f"kept: {root} (OCTOPUSSY_HOME={home}; `octopussy tasks --json` shows each task)")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
