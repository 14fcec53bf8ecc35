"""The command line's data in: a bundled dataset or a CSV, checked and worded for the command line."""

from __future__ import annotations

from ..errors import DataError

DEFAULT_DATASET = "lynx_hare"


def source_name(args) -> str:
    """What the fit reads, as the user named it (a CSV path or a dataset name)."""
    return args.csv or args.dataset or DEFAULT_DATASET


def load_data(args):
    """The data as ``Data``, with errors worded for the command line (the file, not ``load_csv(...)``)."""
    from .. import datasets

    if not args.csv:
        if args.time_column or args.columns or args.series_column:
            raise DataError("--time-column, --columns and --series-column apply to --csv files only.")
        return datasets.load(args.dataset or DEFAULT_DATASET).to_data()
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    try:
        return datasets.load_csv(
            args.csv, time_column=args.time_column, state_columns=columns, series_column=args.series_column
        ).to_data()
    except DataError as e:
        msg = str(e).replace(f"load_csv({args.csv!r}): ", "")
        for python, flag in (("time_column=", "--time-column "), ("state_columns", "--columns"),
                             ("series_column=", "--series-column "), ("series_column", "--series-column")):  # fmt: skip
            msg = msg.replace(python, flag)
        # make_data speaks of `ts`/`ys` arrays; say which file they came from.
        raise DataError(f"{args.csv}: {msg}") from None


def _lognormal(args) -> bool:
    return args.model != "neural" or args.likelihood == "lognormal"


def check_positive(args, data) -> None:
    """Log-normal noise needs positive data: said here, in the user's column names, before JAX loads.

    The model checks the same (``spec.check_data``) once built; this is the fast path.
    """
    import numpy as np

    if not _lognormal(args):
        return
    bad = np.argwhere(np.isfinite(data.ys) & (data.ys <= 0))
    if bad.size:
        s, i, k = (int(v) for v in bad[0])
        fix = "use --likelihood normal" if args.model == "neural" else "use --model neural --likelihood normal"
        raise DataError(
            f"{source_name(args)}: column {data.state_names[k]!r} has a non-positive value {float(data.ys[s, i, k]):g} "
            f"at {data.time_name} {data.ts[s, i]:g}, but log-normal noise needs positive observations; {fix}, "
            "or leave the cell empty (missing)."
        )
