"""``bayesode datasets``: list the bundled datasets (name, size, columns, time unit, title)."""

from __future__ import annotations

from .common import add_command

EPILOG = """example:
  bayesode datasets
  bayesode fit --dataset damped_pendulum --model neural --likelihood normal
"""


def add_parser(subparsers) -> None:
    add_command(subparsers, "datasets", "list the bundled datasets", EPILOG)


def run(args) -> int:
    from ..datasets import format_table

    print(format_table(), end="")
    return 0
