"""``bayesode summary``: re-print the diagnostics of a saved run (nothing is recomputed)."""

from __future__ import annotations

from .common import add_command, diagnostics_table, load_posterior

EPILOG = """example:
  bayesode summary runs/mine

Prints az.summary of the interpretable variables (not the neural weights) and a table of
R-hat, bulk/tail ESS, divergences, tree depth, E-BFMI and ODE solver failures, with
plain-word warnings. Nothing is recomputed.
"""


def add_parser(subparsers) -> None:
    s = add_command(subparsers, "summary", "re-print the diagnostics of a saved run", EPILOG)
    s.add_argument("dir", metavar="DIR", help="a folder written by `bayesode fit` (holds posterior.nc)")


def run(args) -> int:
    post = load_posterior(args.dir)
    print(post.summary().to_string())
    print()
    print(diagnostics_table(post))
    return 0
