"""Make ``hawkes_exponential_events.csv``: hawkes exponential sequences of the Jia & Benson (2019) synthetic suite.

See ``_point_processes.py`` for the process and its parameters. Run
``python data/scripts/make_hawkes_exponential_events.py [--out DIR]``; the output is byte-for-byte reproducible.
"""

from __future__ import annotations

from _common import output_dir
from _point_processes import write_sequences

SEED = 28102
NOISE_SD = None  # events carry no observation noise


def main() -> None:
    write_sequences("hawkes_exponential", SEED, output_dir(__doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
