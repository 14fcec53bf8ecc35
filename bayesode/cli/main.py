"""The ``bayesode`` command line.

``bayesode fit`` fits a model to a bundled dataset or to your own CSV and saves
the run in a folder; ``summary`` re-prints its diagnostics; ``predict`` writes
a forecast table and plot from it; ``datasets`` lists the bundled data.

Errors the user can fix (a malformed CSV, a bad setting, an unusable folder)
print one line on stderr and exit with status 2; Ctrl-C exits with 130; bugs
keep their traceback.

Each command is a module with ``add_parser(subparsers)`` (adds the sub-parser
named as in :data:`COMMANDS`) and ``run(args) -> int``; add one by listing it in
:data:`COMMANDS`. Modules import their heavy dependencies inside ``run``, so
``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .common import EXIT_INTERRUPTED, EXIT_USAGE, one_line

# (command name, module under bayesode.cli), in the order ``bayesode --help`` lists them.
COMMANDS = [
    ("fit", "fit"),
    ("summary", "summary"),
    ("predict", "predict"),
    ("datasets", "catalog"),
    ("events", "jumps"),
    ("irregular", "irregular"),
]

EPILOG = """examples:
  bayesode datasets                               # what data ship with bayesode
  bayesode fit --out runs/lh                      # neural ODE on lynx-hare (SVI then NUTS)
  bayesode fit --csv mydata.csv --model neural --out runs/mine
  bayesode summary runs/mine                      # diagnostics of a saved run
  bayesode predict runs/mine --until 30           # forecast.csv + forecast.png

`bayesode COMMAND --help` explains every option of COMMAND.
"""


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command in :data:`COMMANDS`."""
    p = argparse.ArgumentParser(
        prog="bayesode",
        description="Bayesian neural ODEs: fit a vector field to time series, check the fit, forecast with honest bands.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS:
        module = importlib.import_module(f".{module_name}", __package__)
        module.add_parser(sub)
        sub.choices[name].set_defaults(run=module.run)
    return p


def main(argv=None) -> int:
    """Entry point of the ``bayesode`` script; returns the exit status."""
    args = build_parser().parse_args(argv)
    from ..errors import BayesODEError

    try:
        return args.run(args)
    except (BayesODEError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"bayesode {args.command}: error: {one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"bayesode {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
