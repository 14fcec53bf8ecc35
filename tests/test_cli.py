"""The command line: help texts, one-line errors for malformed input, and a tiny
end-to-end run (fit -> summary -> predict) on a CSV written here."""

import argparse
import csv
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pandas as pd
import pytest

from bayesode import cli
from bayesode.cli.fit import chunk_size
from bayesode.cli.main import build_parser

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
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return parser, sub.choices


def test_every_option_of_every_command_is_explained_with_an_example():
    parser, commands = _subparsers()
    assert set(commands) == {"fit", "summary", "predict", "datasets", "events", "irregular"}
    assert "examples:" in parser.epilog
    for name, p in commands.items():
        assert "example" in (p.epilog or ""), name
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and len(action.help) > 15, (name, action.dest)


@pytest.mark.parametrize(
    "command", [[], ["fit"], ["summary"], ["predict"], ["datasets"], ["events"], ["irregular"]]
)
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
        (["fit", "--thin", "6", "--samples", "5"], r"--thin 6 keeps no draw of --samples 5"),
        (["fit", "--thin", "2", "--method", "svi"], r"--thin thins the draws of --method nuts or svi\+nuts; not --method svi"),
        (["fit", "--thin", "2", "--bayesian-layers", "all"], r"--thin thins the draws of --method nuts.*--bayesian-layers all"),
        (["fit", "--full-weight", "nuts"], r"--full-weight chooses how --bayesian-layers all"),
        (["fit", "--model", "lotka-volterra", "--weight-scale", "0.3"], r"--weight-scale sets a network's weight prior"),
    ]
    for argv, match in cases:
        code, _, err = run(argv + (["--no-progress"] if argv[0] == "fit" else []), capsys)
        assert code == 2, argv
        assert err.count("\n") == 1 and err.startswith(f"bayesode {argv[0]}: error: "), err
        assert re.search(match, err), (argv, err)


def test_bad_option_values_are_refused_by_the_parser(capsys):
    for argv in (["fit", "--chains", "0"], ["fit", "--prob", "1.5"], ["predict", "d", "--until", "nan"],
                 ["fit", "--thin", "0"], ["fit", "--thin", "1.5"], ["fit", "--weight-scale", "0"],
                 ["fit", "--weight-scale", "-1"], ["fit", "--weight-scale", "wide"], ["fit", "--weight-scale", "inf"],
                 ["events", "--decay", "-0.1"], ["events", "--decay", "nan"]):  # fmt: skip
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
    c = chunk_size(warmup, samples)
    assert c == expected and warmup % c == 0 and samples % c == 0


# ---------------------------------------------------------------- end to end
@pytest.mark.slow  # compiles NUTS and prediction for a new data shape: minutes on a busy 2-core machine
def test_fit_summary_predict_on_own_csv(tmp_path, good_csv, capsys):
    out_dir = str(tmp_path / "run")
    argv = ["fit", "--csv", good_csv, "--model", "lotka-volterra", "--method", "nuts", "--warmup", "20",
            "--samples", "20", "--chains", "2", "--out", out_dir, "--until", "10", "--precision", "float64"]  # fmt: skip
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "fit: lotka-volterra by nuts (float64)" in out  # the summary line says which precision ran
    assert re.search(r"in \d+ s \(\d+ s of it compiling the sampler\)", out)  # and the compile apart
    assert re.search(r"precision\s+float64", out)  # and the diagnostics table (also `bayesode summary`)
    from bayesode.cli.common import load_posterior

    assert load_posterior(out_dir).settings["precision"] == "float64"
    for name in ("posterior.nc", "summary.csv", "trajectories.png", "phase.png"):
        assert os.path.getsize(os.path.join(out_dir, name)) > 0, name
    assert not os.path.exists(os.path.join(out_dir, "vector_field.png"))  # mechanistic: no learned field
    assert "max R-hat" in out and re.search(r"chains x draws\s+2 x 20", out)
    assert "phase=warmup" in err and "phase=sample" in err  # the progress lines report both phases
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

    for until in ("-1", "5"):  # before the data start, or inside the data: a forecast runs past the data
        code, _, err = run(["predict", out_dir, "--until", until], capsys)
        assert code == 2 and err.count("\n") == 1, err
        assert f"--until {float(until)} is not after the end of the data (year 7); a forecast runs past" in err


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

    # every weight: members from MAP fits, each sampled by NUTS (--method is not used); a small budget
    argv = argv[:-3] + ["--bayesian-layers", "all", "--warmup", "20", "--samples", "10",
                        "--out", out_dir + "_all", "--no-progress"]  # fmt: skip
    code, out, err = run(argv + ["--full-weight", "nuts"], capsys)
    assert code == 0, err
    post = bo.Posterior.load(os.path.join(out_dir + "_all", "posterior.nc"))
    assert {"field.layers[0].weight", "field.layers[1].weight"} <= set(post.samples)
    assert post.model.spec.field.fixed_layers == 0
    # the saved fit keeps every member's divergence count; the table says what its R-hat is of
    assert post.diagnostics()["divergences"] == sum(post.settings["ensemble"]["member_divergences"])
    assert "R-hat and ESS above are of the pooled resample" in out

    # the default for every weight: the Laplace mixture, its floor chosen by leave-future-out; predict reads it
    argv[argv.index("--out") + 1] = out_dir + "_laplace"
    code, out, err = run(argv, capsys)
    assert code == 0, err
    post = bo.Posterior.load(os.path.join(out_dir + "_laplace", "posterior.nc"))
    info = post.settings["ensemble"]
    assert post.settings["method"] == "laplace-mixture" and info["floor_chosen"] and info["draws_per_member"] == 10
    assert {"field.layers[0].weight", "field.layers[1].weight"} <= set(post.samples)
    assert "Laplace mixture: independent draws" in out and "by a mixture of Laplace approximations" in out
    code, out, err = run(["predict", out_dir + "_laplace", "--until", "10", "--points", "5"], capsys)
    assert code == 0, err


# ---------------------------------------------------------------- as a user runs it: a subprocess
REPO = os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__)))
HEAVY = ("jax", "numpyro", "diffrax", "equinox", "arviz", "matplotlib")
# Runs the command, then reports on a last stderr line which heavy libraries it imported.
RUN_AND_REPORT = (
    "import sys, bayesode.cli as c\n"
    "try:\n    code = c.main()\nexcept SystemExit as e:\n    code = e.code\n"
    f"print('imported:', *[m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)\n"
    "sys.exit(code)"
)


def bayesode(argv, cwd, timeout=120, **kw):
    """``bayesode ARGV`` in a fresh Python; returns (exit code, stdout, stderr lines, heavy modules imported)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", RUN_AND_REPORT, *argv], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout, **kw)  # fmt: skip
    *err, report = proc.stderr.strip().splitlines()
    assert report.startswith("imported:"), proc.stderr
    return proc.returncode, proc.stdout, err, report.split()[1:]


def test_help_and_user_errors_do_not_import_jax(tmp_path, good_csv):
    """Fast to start: help, argument errors, data errors and path errors answer before JAX (was 13-15 s)."""
    code, out, err, heavy = bayesode(["--help"], tmp_path)
    assert code == 0 and out.startswith("usage: bayesode") and heavy == []
    code, out, err, heavy = bayesode(["fit", "--chains", "0"], tmp_path)
    assert code == 2 and "argument --chains" in err[-1] and heavy == []
    bad = write(tmp_path / "bad.csv", "t,x\n0,1\n1,oops\n")
    for argv in (["fit", "--csv", bad], ["fit", "--dataset", "no_such_data"], ["fit", "--out", good_csv],
                 ["fit", "--csv", write(tmp_path / "zero.csv", "t,x\n0,1\n1,0\n")], ["datasets"],
                 ["summary", str(tmp_path)], ["predict", str(tmp_path), "--until", "3"]):  # fmt: skip
        code, out, err, heavy = bayesode(argv, tmp_path)
        assert heavy == [], (argv, heavy)
        assert code == (0 if argv == ["datasets"] else 2), (argv, err)


def test_import_bayesode_is_lazy_and_keeps_every_public_name():
    import bayesode as bo

    code = f"import sys, bayesode, bayesode.cli; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=REPO))  # fmt: skip
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    assert len(bo.__all__) == len(set(bo.__all__))  # no name twice (tests/test_layers.py: each maps to a wing)
    assert set(bo.__all__) <= set(dir(bo))
    from bayesode import datasets, infer, model, models, plots, results

    assert bo.run_nuts is infer.run_nuts and bo.Posterior is results.Posterior and bo.make_model is model.make_model
    assert bo.plot_trajectories is plots.plot_trajectories and bo.datasets is datasets and bo.models is models
    with pytest.raises(AttributeError, match="has no attribute 'run_nut'"):
        bo.run_nut  # noqa: B018


# ---------------------------------------------------------------- output paths, checked before any work
def test_out_that_is_a_file_is_refused_before_any_work(tmp_path, good_csv):
    target = write(tmp_path / "notes.txt", "my notes\n")
    code, out, err, heavy = bayesode(["fit", "--csv", good_csv, "--out", target], tmp_path)
    assert code == 2 and len(err) == 1 and heavy == [], err
    assert err[0] == f"bayesode fit: error: --out {target!r} is an existing file, not a folder; choose a folder " \
                     "(created if needed)."  # fmt: skip
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"


def test_previous_fit_is_not_overwritten_unless_asked(tmp_path, good_csv):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "posterior.nc").write_bytes(b"a previous fit")
    code, out, err, heavy = bayesode(["fit", "--csv", good_csv, "--out", str(run_dir)], tmp_path)
    assert code == 2 and len(err) == 1 and heavy == [], err
    assert "holds a previous fit" in err[0] and "add --overwrite to replace it" in err[0]
    assert f"--out {run_dir}-2" in err[0]  # a free folder name to use instead
    assert (run_dir / "posterior.nc").read_bytes() == b"a previous fit"
    # With --overwrite the path passes and the next check speaks (here: the data).
    bad = write(tmp_path / "bad.csv", "t,x\n0,1\n1,oops\n")
    code, out, err, heavy = bayesode(["fit", "--csv", bad, "--out", str(run_dir), "--overwrite"], tmp_path)
    assert code == 2 and "cannot read 'oops' as a number" in err[0], err


def test_unwritable_out_is_refused_before_any_work(tmp_path, good_csv):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    # root writes anywhere chmod says not to; /sys refuses even root (where it exists)
    targets = [] if os.geteuid() == 0 else [str(locked / "run")]
    if os.path.isdir("/sys") and os.geteuid() == 0:
        targets.append("/sys/bayesode-test-run")
    if not targets:
        pytest.skip("no unwritable folder to try on this machine")
    for target in targets:
        code, out, err, heavy = bayesode(["fit", "--csv", good_csv, "--out", target, "--no-progress"], tmp_path)
        assert code == 2 and len(err) == 1 and heavy == [], err
        assert err[0].startswith(f"bayesode fit: error: --out {target!r}") and "writ" in err[0], err
    locked.chmod(0o700)


def test_predict_refuses_an_unwritable_run_folder(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can write into a read-only folder")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "posterior.nc").write_bytes(b"x")
    run_dir.chmod(0o500)
    code, out, err, heavy = bayesode(["predict", str(run_dir), "--until", "9"], tmp_path)
    run_dir.chmod(0o700)
    assert code == 2 and "is not writable" in err[0] and heavy == [], err


# ---------------------------------------------------------------- settings as flags
def test_sampler_flags_reach_run_nuts_only_when_given():
    import inspect

    import bayesode as bo
    from bayesode.cli.fit import nuts_settings

    parse = build_parser().parse_args
    default = nuts_settings(parse(["fit"]))
    assert "target_accept_prob" not in default and "dense_mass" not in default  # each method keeps its default
    chosen = nuts_settings(parse(["fit", "--target-accept", "0.95", "--dense-mass"]))
    assert chosen["target_accept_prob"] == 0.95 and chosen["dense_mass"] is True
    assert nuts_settings(parse(["fit", "--no-dense-mass"]))["dense_mass"] is False
    assert default["stuck_chains"] == "restart"  # run_nuts's default: the pinned draws
    assert nuts_settings(parse(["fit", "--stuck-chains", "report"]))["stuck_chains"] == "report"
    assert default["thinning"] == 1 and nuts_settings(parse(["fit", "--thin", "4"]))["thinning"] == 4
    assert set(chosen) <= set(inspect.signature(bo.run_nuts).parameters)  # run_nuts takes every one of them
    assert parse(["fit", "--devices", "3"]).devices == 3
    with pytest.raises(SystemExit):
        parse(["fit", "--target-accept", "1"])


def test_diagnostic_advice_names_flags_not_python_arguments():
    from bayesode.cli.common import command_line_advice

    text = command_line_advice("12 divergent transitions: ...; raise target_accept_prob or reparametrise.")
    assert text.endswith("raise --target-accept or reparametrise.")
    assert "--max-tree-depth" in command_line_advice("raise max_tree_depth or rescale the model.")
    assert "(--warmup, --samples)" in command_line_advice("chains disagree; run longer or reparametrise.")


# ---------------------------------------------------------------- Ctrl-C
def _fit_until(tmp_path, good_csv, out, warmup, samples, phase, timeout=600):
    """Start a small NUTS fit, press Ctrl-C once the progress line shows ``phase``; return (code, stderr)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    log = tmp_path / f"{out}.log"
    argv = ["fit", "--csv", good_csv, "--model", "lotka-volterra", "--method", "nuts", "--chains", "1",
            "--warmup", str(warmup), "--samples", str(samples), "--out", str(tmp_path / out), "--checkpoint"]  # fmt: skip
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-c", "import sys, bayesode.cli as c; sys.exit(c.main())", *argv],
                                stdout=subprocess.DEVNULL, stderr=fh, cwd=tmp_path, env=env)  # fmt: skip
        try:
            deadline = time.time() + timeout
            while f"phase={phase}" not in log.read_text() and proc.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            assert proc.poll() is None, log.read_text()  # still running: the interrupt lands mid-phase
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=120)
        finally:
            proc.kill()
    return code, log.read_text()


# Both runs have the same settings, so the second reads the first's compiled program from the cache; 100-iteration
# chunks (``chunk_size``) leave time to land Ctrl-C inside the phase the progress line shows.
WARMUP, SAMPLES = 2000, 2000


@pytest.mark.slow  # two NUTS fits in subprocesses: 6.6 min with a cold compile cache on the busy 2-core machine
def test_ctrl_c_exits_130_with_one_line_and_keeps_the_draws(tmp_path, good_csv):
    import bayesode as bo

    # During warmup: nothing to keep, no raw warning, and the exit status still says "interrupted".
    code, err = _fit_until(tmp_path, good_csv, "warmup", warmup=WARMUP, samples=SAMPLES, phase="warmup")
    assert code == 130, err
    assert "Warning" not in err and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        "bayesode fit: interrupted before any draw was kept; the warmup done so far is in the checkpoint; "
        f"run the same command again to resume from {tmp_path / 'warmup' / 'checkpoint'}."
    )
    assert not (tmp_path / "warmup" / "posterior.nc").exists()

    # During sampling: the draws made so far are saved as a normal run, and the line says how to resume.
    code, err = _fit_until(tmp_path, good_csv, "sampling", warmup=WARMUP, samples=SAMPLES, phase="sample")
    assert code == 130, err
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(r"bayesode fit: interrupted: kept 1 x \d+ draws \(chains x draws\) in \S+posterior\.nc; "
                        r"run the same command again to resume from \S+checkpoint\.", last), last  # fmt: skip
    assert "Warning" not in err and "Traceback" not in err, err
    post = bo.Posterior.load(str(tmp_path / "sampling" / "posterior.nc"))
    assert 0 < post.num_draws < SAMPLES and post.settings["interrupted"]
    assert f"kept 1 x {post.num_draws} draws" in last


# ---------------------------------------------------------------- --until, numbers or dates
def test_fit_until_before_the_end_or_a_date_for_numbers_is_refused_before_any_work(tmp_path, good_csv):
    code, out, err, heavy = bayesode(["fit", "--csv", good_csv, "--until", "5", "--out", "o"], tmp_path)
    assert code == 2 and heavy == [] and not (tmp_path / "o").exists(), err
    assert err == ["bayesode fit: error: --until 5.0 is not after the end of the data (year 7); a forecast runs past "
                   "the data: give a later time."]  # fmt: skip
    code, out, err, heavy = bayesode(["fit", "--csv", good_csv, "--until", "2021-06-01", "--out", "o"], tmp_path)
    assert code == 2 and heavy == [], err
    assert "--until '2021-06-01' is a date, but the data's times are numbers (year); give a number" in err[0]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "d", "--until", "June"])


def test_csv_errors_name_command_line_flags(tmp_path):
    path = write(tmp_path / "sites.csv", "site,t,x\na,0,1\na,1,2\n")
    code, out, err, heavy = bayesode(["fit", "--csv", path], tmp_path)
    assert code == 2 and "name it with --time-column ..." in err[0] and "time_column" not in err[0], err


@pytest.mark.slow  # an SVI fit, its export and a forecast: compiles for a new data shape
def test_dates_survive_the_fit_the_plots_and_the_forecast(tmp_path):
    """A CSV whose time column is dates, not first: dates in posterior.nc, on the plot, in forecast.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import bayesode as bo

    days = np.datetime64("2021-05-01") + np.arange(len(ROWS)) * 2  # every other day
    lines = ["prey,date,predator"] + [f"{a},{d},{b}" for (_, a, b), d in zip(ROWS, days.astype(str))]
    path = write(tmp_path / "dated.csv", "\n".join(lines) + "\n")
    out_dir = str(tmp_path / "run")
    argv = ["fit", "--csv", path, "--time-column", "date", "--model", "lotka-volterra", "--method", "svi",
            "--svi-steps", "50", "--samples", "10", "--chains", "2", "--out", out_dir, "--until", "2021-05-20",
            "--no-progress"]  # fmt: skip
    code, out, err = bayesode(argv, tmp_path, timeout=900)[:3]
    assert code == 0, err
    post = bo.Posterior.load(os.path.join(out_dir, "posterior.nc"))
    assert post.data.time_origin == "2021-05-01" and post.data.time_name == "date"
    with open(os.path.join(out_dir, "summary.csv")) as fh:
        assert {"y0[dated, prey]", "y0[dated, predator]"} <= {row[0] for row in csv.reader(fh)}  # the user's names
    times = post.to_arviz().posterior_predictive["trajectory"].coords["time"].values
    assert times.dtype.kind == "M" and str(times[-1])[:10] == "2021-05-15"
    axes = bo.plot_trajectories(post, until="2021-05-20", key=0)  # a date, as the data wrote them
    lo, hi = axes[0].get_xlim()  # matplotlib's date axis: days since 1970-01-01
    assert matplotlib.dates.num2date(lo).date().isoformat() <= "2021-05-01"
    assert matplotlib.dates.num2date(hi).date().isoformat() >= "2021-05-20"
    ax = bo.plot_phase(post, until="2021-05-29", key=0)  # no time axis: the title names the dates covered
    assert ax.get_title().endswith("2021-05-01 to 2021-05-29"), ax.get_title()

    # The Python forecast takes dates and gives dates back, the same draws as the day numbers they stand for.
    week = pd.date_range("2021-05-15", "2021-05-29", freq="7D")
    by_date, by_day = post.predict(week, key=1), post.predict([14.0, 21.0, 28.0], key=1)
    assert by_date["time"].values.dtype.kind == "M" and list(by_date["time"].values) == list(week.values)
    np.testing.assert_array_equal(by_date["obs"].values, by_day["obs"].values)
    # Two save times instead of three: the same solve up to float32 rounding of the adaptive steps (1e-6 seen).
    np.testing.assert_allclose(post.predict(["2021-05-15", "2021-05-22"], key=1)["trajectory"].values,
                               by_day["trajectory"].values[:, :, :, :2], rtol=1e-5)  # fmt: skip
    with pytest.raises(bo.DataError, match=r"`ts` starts at 2021-04-01T00:00:00.000, before the start t0=2021-05-01"):
        post.predict(["2021-04-01"], key=1)

    code, out, err = bayesode(["predict", out_dir, "--until", "2021-05-29", "--points", "5"], tmp_path, timeout=900)[:3]
    assert code == 0, err
    with open(os.path.join(out_dir, "forecast.csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:3] == ["series", "date", "state"]
    assert {r["state"] for r in rows} == {"prey", "predator"}
    assert sorted({r["date"] for r in rows}) == ["2021-05-01", "2021-05-08", "2021-05-15", "2021-05-22", "2021-05-29"]
    code, out, err = bayesode(["predict", out_dir, "--until", "2021-05-10"], tmp_path)[:3]
    assert code == 2 and "--until 2021-05-10 is not after the end of the data (date 2021-05-15); a" in err[0], err


def test_a_fit_that_fails_before_writing_leaves_no_empty_folder(tmp_path, good_csv, capsys, monkeypatch):
    from bayesode.cli import fit
    from bayesode.errors import DataError

    def refuse(args, data):
        raise DataError("the model refuses these data")

    monkeypatch.setattr(fit, "_model_for", refuse)  # fails after the folder was made and probed
    code, out, err = run(["fit", "--csv", good_csv, "--out", str(tmp_path / "new"), "--no-progress"], capsys)
    assert code == 2 and "the model refuses these data" in err
    assert not (tmp_path / "new").exists()


def test_a_command_is_added_by_listing_its_module(monkeypatch, capsys):
    """The contract for a new command (e.g. bayesode/cli/jumps.py): add_parser(subparsers) and run(args)."""
    import types

    main_module = sys.modules["bayesode.cli.main"]  # bayesode.cli.main is also the function's name
    hello = types.ModuleType("bayesode.cli.hello")
    hello.add_parser = lambda sub: sub.add_parser("hello", help="say hello").add_argument("--name", default="you")
    hello.run = lambda args: print(f"hello {args.name}") or 0
    monkeypatch.setitem(sys.modules, "bayesode.cli.hello", hello)
    monkeypatch.setattr(main_module, "COMMANDS", [*main_module.COMMANDS, ("hello", "hello")])
    assert cli.main(["hello", "--name", "lynx"]) == 0
    assert capsys.readouterr().out == "hello lynx\n"


def test_arviz_daily_refactor_notice_stays_out_of_bayesode_output(tmp_path):
    # ArviZ warns once a day, on the first import after a stamp in the user cache; a fresh cache forces it.
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONWARNINGS="default")
    plain = subprocess.run([sys.executable, "-c", "import arviz"], env=env, capture_output=True, text=True)
    # The notice still exists in ArviZ (otherwise the filter in bayesode/__init__.py can go): a fresh cache again.
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache2")
    ours = subprocess.run([sys.executable, "-c", "import bayesode, arviz; bayesode.Posterior"], env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert "ArviZ is undergoing a major refactor" in plain.stderr, plain.stderr
    assert ours.returncode == 0 and "Warning" not in ours.stderr, ours.stderr


def test_weight_scale_reaches_the_weight_prior_and_the_recipe(good_csv):
    from bayesode.cli.data_in import load_data
    from bayesode.cli.fit import _model_for
    from bayesode.cli.main import build_parser

    for model, key, default in (("neural", "weight_scale", 1.0), ("hybrid", "correction_scale", 0.1)):
        args = build_parser().parse_args(["fit", "--csv", good_csv, "--model", model, "--weight-scale", "0.3"])
        data = load_data(args)
        assert _model_for(args, data).spec.recipe[key] == 0.3  # `bayesode predict` rebuilds the same prior
        args = build_parser().parse_args(["fit", "--csv", good_csv, "--model", model])
        assert _model_for(args, data).spec.recipe[key] == default
