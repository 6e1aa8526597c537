"""`python -m airdock.cli`: the same as the `airdock` command."""

from airdock.cli import main

main()
