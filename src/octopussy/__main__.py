"""`python -m octopussy` is the same as the `octopussy` command."""

from octopussy.cli import run

run()
