"""Make ``poisson_events.csv``: poisson sequences of the Jia & Benson (2019) synthetic suite.

See ``_point_processes.py`` for the process and its parameters. Run
``python data/scripts/make_poisson_events.py [--out DIR]``; the output is byte-for-byte reproducible.
"""

from __future__ import annotations

from _common import output_dir
from _point_processes import write_sequences

SEED = 40106
NOISE_SD = None  # events carry no observation noise


def main() -> None:
    write_sequences("poisson", SEED, output_dir(__doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
