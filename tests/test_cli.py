"""The command line: help texts, one-line errors for malformed input, and a tiny
end-to-end run (fit -> summary -> predict) on a CSV written here."""

import argparse
import csv
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from bayesode import cli

# Eight years of the lynx-hare data, renamed and re-timed: a user's own file.
ROWS = [(0, 30.0, 4.0), (1, 47.2, 6.1), (2, 70.2, 9.8), (3, 77.4, 35.2), (4, 36.3, 59.4), (5, 20.6, 41.7),
        (6, 18.1, 19.0), (7, 21.4, 13.0)]  # fmt: skip


@pytest.fixture(autouse=True)
def _backend_started():
    # main() sets one CPU device per core only before JAX's backend starts; start it here so
    # the test session keeps one device whatever order tests run in.
    jax.devices()


def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.fixture
def good_csv(tmp_path):
    lines = ["year,prey,predator"] + [f"{t},{a},{b}" for t, a, b in ROWS]
    return write(tmp_path / "mine.csv", "\n".join(lines) + "\n")


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- help
def _subparsers():
    parser = cli._parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return parser, sub.choices


def test_every_option_of_every_command_is_explained_with_an_example():
    parser, commands = _subparsers()
    assert set(commands) == {"fit", "summary", "predict", "datasets", "events"}
    assert "examples:" in parser.epilog
    for name, p in commands.items():
        assert "example" in (p.epilog or ""), name
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and len(action.help) > 15, (name, action.dest)


@pytest.mark.parametrize("command", [[], ["fit"], ["summary"], ["predict"], ["datasets"], ["events"]])
def test_help_exits_zero_and_prints_usage(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(command + ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: bayesode") and "example" in out


def test_fit_help_names_outputs_and_csv_format(capsys):
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    out = capsys.readouterr().out
    for text in ("--csv FILE", "--svi-steps", "--width", "--depth", "--likelihood", "posterior.nc", "trajectories.png",
                 "an empty cell (or NA / nan) is a missing value"):  # fmt: skip
        assert text in out, text


# ---------------------------------------------------------------- errors
MALFORMED = [
    ("ragged.csv", "t,x,y\n0,1,2\n1,2\n2,3,4\n", r"line 3 has 2 cells but the header has 3 columns"),
    ("word.csv", "t,x,y\n0,1,2\n1,two,3\n2,3,4\n", r"line 3, column 'x': cannot read 'two' as a number"),
    ("noheader.csv", "0,1,2\n1,2,3\n2,3,4\n", r"no header line"),
    ("empty.csv", "", r"the file is empty"),
    ("unsorted.csv", "t,x,y\n0,1,2\n2,2,3\n1,3,4\n", r"not sorted"),
    ("dup.csv", "t,x,x\n0,1,2\n1,2,3\n", r"the header repeats 'x'"),
    ("zeros.csv", "t,x,y\n0,1,2\n1,0,3\n2,3,4\n", r"non-positive value .*--likelihood normal"),
]


@pytest.mark.parametrize("name, text, match", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_csv_is_one_line_on_stderr_with_exit_2(tmp_path, capsys, name, text, match):
    path = write(tmp_path / name, text)
    code, out, err = run(["fit", "--csv", path, "--out", str(tmp_path / "out"), "--no-progress"], capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"bayesode fit: error: {path}: "), err
    assert "Traceback" not in err and "load_csv(" not in err
    assert re.search(match, err), err
    assert not os.path.exists(tmp_path / "out")  # nothing written


def test_other_user_errors_are_one_line(tmp_path, good_csv, capsys):
    cases = [
        (["fit", "--csv", str(tmp_path / "nope.csv")], r"file not found"),
        (["fit", "--csv", good_csv, "--columns", "prey,wolf"], r"'wolf' is not a column; the columns are"),
        (["fit", "--time-column", "year"], r"--time-column, --columns and --series-column apply to --csv files only"),
        (["fit", "--dataset", "no_such_data"], r"no_such_data"),
        (["summary", str(tmp_path)], r"no posterior.nc in"),
        (["predict", str(tmp_path / "missing"), "--until", "9"], r"no folder"),
    ]
    for argv, match in cases:
        code, _, err = run(argv + (["--no-progress"] if argv[0] == "fit" else []), capsys)
        assert code == 2, argv
        assert err.count("\n") == 1 and err.startswith(f"bayesode {argv[0]}: error: "), err
        assert re.search(match, err), (argv, err)


def test_bad_option_values_are_refused_by_the_parser(capsys):
    for argv in (["fit", "--chains", "0"], ["fit", "--prob", "1.5"], ["predict", "d", "--until", "nan"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "error: argument" in err and "Traceback" not in err


def test_console_script_exit_code_and_stderr(tmp_path):
    """The installed entry point, as a user runs it: exit status 2 and one line, no traceback."""
    path = write(tmp_path / "bad.csv", "t,x\n0,1\n1,oops\n")
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, bayesode.cli as c; sys.exit(c.main())", "fit", "--csv", path],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "line 3, column 'x': cannot read 'oops' as a number" in lines[0], proc.stderr


@pytest.mark.parametrize(
    "warmup, samples, expected", [(500, 500, 50), (1000, 1000, 100), (20, 20, 2), (0, 100, 5), (7, 13, 1)]
)
def test_chunk_size_divides_both_phases(warmup, samples, expected):
    c = cli._chunk_size(warmup, samples)
    assert c == expected and warmup % c == 0 and samples % c == 0


# ---------------------------------------------------------------- end to end
@pytest.mark.slow  # compiles NUTS and prediction for a new data shape: minutes on a busy 2-core machine
def test_fit_summary_predict_on_own_csv(tmp_path, good_csv, capsys):
    out_dir = str(tmp_path / "run")
    argv = ["fit", "--csv", good_csv, "--model", "lotka-volterra", "--method", "nuts", "--warmup", "20",
            "--samples", "20", "--chains", "2", "--out", out_dir, "--until", "10"]  # fmt: skip
    code, out, err = run(argv, capsys)
    assert code == 0, err
    for name in ("posterior.nc", "summary.csv", "trajectories.png", "phase.png"):
        assert os.path.getsize(os.path.join(out_dir, name)) > 0, name
    assert not os.path.exists(os.path.join(out_dir, "vector_field.png"))  # mechanistic: no learned field
    assert "max R-hat" in out and re.search(r"chains x draws\s+2 x 20", out)
    assert "warmup [" in err and "sample [" in err  # the progress bar reports both phases
    with open(os.path.join(out_dir, "summary.csv")) as fh:
        table = list(csv.reader(fh))
    assert {"alpha", "beta", "gamma", "delta"} <= {row[0] for row in table[1:]}

    code, out, err = run(["summary", out_dir], capsys)
    assert code == 0, err
    assert "alpha" in out and "divergences" in out and "max R-hat" in out

    code, out, err = run(["predict", out_dir, "--until", "12", "--points", "9", "--prob", "0.8"], capsys)
    assert code == 0, err
    with open(os.path.join(out_dir, "forecast.csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["series", "year", "state", "lower", "median", "upper"]
    assert len(rows) == 9 * 2  # times x states, one series
    assert {r["state"] for r in rows} == {"prey", "predator"}
    times = sorted({float(r["year"]) for r in rows})
    np.testing.assert_allclose(times, np.linspace(0.0, 12.0, 9))
    lo, mid, hi = (np.array([float(r[k]) for r in rows]) for k in ("lower", "median", "upper"))
    assert np.all(lo <= mid) and np.all(mid <= hi) and np.all(lo > 0)  # log-normal noise: positive
    # in-sample medians are of the data's size (loose: 20 draws, a 2-chain smoke run)
    prey0 = [float(r["median"]) for r in rows if r["state"] == "prey" and float(r["year"]) == 0.0][0]
    assert 5.0 < prey0 < 150.0
    assert os.path.getsize(os.path.join(out_dir, "forecast.png")) > 0

    code, _, err = run(["predict", out_dir, "--until", "-1"], capsys)
    assert code == 2 and "--until -1 is not after the data start 0" in err and err.count("\n") == 1


@pytest.mark.slow  # two SVI compiles and a prediction compile
def test_neural_fit_fixes_the_hidden_layer_and_predict_rebuilds_it(tmp_path, good_csv, capsys):
    out_dir = str(tmp_path / "nl")
    argv = ["fit", "--csv", good_csv, "--method", "svi", "--svi-steps", "200", "--samples", "25", "--chains", "2",
            "--width", "3", "--out", out_dir, "--no-progress"]  # fmt: skip
    code, out, err = run(argv, capsys)
    assert code == 0, err
    import bayesode as bo

    post = bo.Posterior.load(os.path.join(out_dir, "posterior.nc"))
    weights = {k for k in post.samples if k.startswith("field.")}
    assert weights == {"field.layers[1].weight", "field.layers[1].bias"}  # output layer only
    field = post.model.spec.field
    assert field.fixed_layers == 1 and np.all(np.isfinite(field.layers[0].weight))
    # The saved recipe carries the fixed hidden layer, so a forecast from the folder uses the same field.
    code, out, err = run(["predict", out_dir, "--until", "10", "--points", "5"], capsys)
    assert code == 0, err
    with open(os.path.join(out_dir, "forecast.csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5 * 2 and all(0 < float(r["median"]) < 1e4 for r in rows)

    argv = argv[:-3] + ["--bayesian-layers", "all", "--out", out_dir + "_all", "--no-progress"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    post = bo.Posterior.load(os.path.join(out_dir + "_all", "posterior.nc"))
    assert {"field.layers[0].weight", "field.layers[1].weight"} <= set(post.samples)
    assert post.model.spec.field.fixed_layers == 0
