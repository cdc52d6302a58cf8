"""Three-way merge of lines (``octopussy.mcp.merge3``)."""

from __future__ import annotations

import random

import pytest

from octopussy.mcp.merge3 import merge3

BASE = ["eggs", "flour", "sugar"]


@pytest.mark.parametrize(
    ("ours", "theirs", "merged"),
    [
        # Run 10's two-step edit: ours replaced a line, theirs (from the old copy) appended.
        (["bread", "flour", "sugar"], [*BASE, "butter"], ["bread", "flour", "sugar", "butter"]),
        # The other way round, and both in the middle.
        ([*BASE, "butter"], ["bread", "flour", "sugar"], ["bread", "flour", "sugar", "butter"]),
        (["eggs", "sugar"], ["milk", "eggs", "flour", "sugar"], ["milk", "eggs", "sugar"]),
        # One side unchanged: the other side's text.
        (BASE, ["eggs", "salt", "sugar"], ["eggs", "salt", "sugar"]),
        # The same change on both sides is made once.
        (["bread", "flour", "sugar"], ["bread", "flour", "sugar"], ["bread", "flour", "sugar"]),
        # An insertion right after a replaced line is not a clash.
        (
            ["bread", "flour", "sugar"],
            ["eggs", "milk", "flour", "sugar"],
            ["bread", "milk", "flour", "sugar"],
        ),
        (
            ["bread", "flour", "sugar"],
            ["eggs", "flour", "milk", "sugar"],
            ["bread", "flour", "milk", "sugar"],
        ),
    ],
)
def test_merges(ours: list[str], theirs: list[str], merged: list[str] | None) -> None:
    assert merge3(BASE, ours, theirs) == merged


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (["bread", "flour", "sugar"], ["toast", "flour", "sugar"]),  # one line, two ways
        ([*BASE, "butter"], [*BASE, "milk"]),  # two different last lines: which first?
        (["flour", "sugar"], ["egg", "flour", "sugar"]),  # deleted on one side, edited on the other
    ],
)
def test_clashes_are_none(ours: list[str], theirs: list[str]) -> None:
    assert merge3(BASE, ours, theirs) is None


def test_random_edits_of_disjoint_halves_always_merge() -> None:
    rng = random.Random(7)
    for _ in range(300):
        base = [f"line {i}" for i in range(rng.randint(4, 30))]
        cut = len(base) // 2
        ours = [*[f"ours {x}" if rng.random() < 0.3 else x for x in base[:cut]], *base[cut:]]
        theirs = [
            *base[: cut + 1],
            *[f"theirs {x}" if rng.random() < 0.3 else x for x in base[cut + 1 :]],
        ]
        merged = merge3(base, ours, theirs)
        assert merged == [*ours[:cut], *theirs[cut:]]
