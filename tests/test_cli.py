"""The gdbench CLI: train and verify, and one clear line (exit 2) for every bad input.

Most tests call ``gdbench.commands.cli.main`` in-process (fast); one runs the installed console
script to prove the real process exits 2 without a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _clock import FakeClock

from gdbench import implementations
from gdbench.commands import cli
from gdbench.data.datasets import least_squares, load_dataset, mse
from gdbench.data.errors import InputError
from gdbench.data.loader import BatchPlan, init_params
from gdbench.data.workloads import Problem, make_problem
from gdbench.implementations.base import (
    RTOL,
    DivergenceError,
    TrainResult,
    agreement,
    first_divergent_step,
    make_result,
    prepare,
    train_once,
)
from gdbench.implementations.numpy_manual import NumpyManual

GOOD_CSV = (
    "Region,Temperature,Rainfall,Yield\n"
    "North,10,200,3.5\n"
    "South,20,100,4.0\n"
    "East,15,150,3.75\n"
    "West,12,180,3.6\n"
)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``gdbench argv...``, run in this process."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse exits itself on a bad option and on --help
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(
    code: int, err: str, *fragments: str, command: str = "train"
) -> str:
    """Exit 2 and exactly one stderr line, 'gdbench <command>: error: ...', with fragments."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"gdbench {command}: error: "), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


# --- bad input: files and columns -------------------------------------------------------

def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    code, out, err = run_cli(capsys, "train", "--data", str(path), "--targets", "y")
    assert_one_line_error(code, err, str(path), "no such file")
    assert out == ""


def test_directory_instead_of_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "train", "--data", str(tmp_path), "--targets", "y")
    assert_one_line_error(code, err, str(tmp_path), "is a directory")


def test_empty_csv(
    capsys: pytest.CaptureFixture[str], write_csv: Callable[..., Path]
) -> None:
    path = write_csv("")
    assert path.stat().st_size == 0
    code, _, err = run_cli(capsys, "train", "--data", str(path), "--targets", "y")
    assert_one_line_error(code, err, str(path), "empty")


def test_header_only_csv(
    capsys: pytest.CaptureFixture[str], write_csv: Callable[..., Path]
) -> None:
    path = write_csv("Region,Temperature,Yield\n")
    code, _, err = run_cli(capsys, "train", "--data", str(path), "--targets", "Yield")
    assert_one_line_error(code, err, str(path), "no data rows")


def test_csv_without_targets(
    capsys: pytest.CaptureFixture[str], write_csv: Callable[..., Path]
) -> None:
    path = write_csv(GOOD_CSV)
    code, _, err = run_cli(capsys, "train", "--data", str(path))
    assert_one_line_error(code, err, str(path), "--targets", "Region, Temperature, Rainfall, Yield")


def test_unknown_target_column(
    capsys: pytest.CaptureFixture[str], write_csv: Callable[..., Path]
) -> None:
    path = write_csv(GOOD_CSV)
    code, _, err = run_cli(capsys, "train", "--data", str(path), "--targets", "Tonnes")
    assert_one_line_error(code, err, str(path), "unknown target column 'Tonnes'", "Rainfall")


def test_no_feature_columns_left(
    capsys: pytest.CaptureFixture[str], write_csv: Callable[..., Path]
) -> None:
    path = write_csv("Region,Yield\nNorth,3.5\nSouth,4.0\n")
    code, _, err = run_cli(capsys, "train", "--data", str(path), "--targets", "Yield")
    assert_one_line_error(code, err, str(path), "no feature columns")


@pytest.mark.parametrize(
    ("cell", "fragments"),
    [
        ("nan", ["column 'Rainfall'", "row 2", "NaN"]),
        ("", ["column 'Rainfall'", "row 2", "missing"]),
        ("inf", ["column 'Rainfall'", "row 2", "infinite value 'inf'"]),
        ("-inf", ["column 'Rainfall'", "row 2", "infinite value '-inf'"]),
        ("lots", ["column 'Rainfall'", "row 2", "non-numeric value 'lots'"]),
    ],
    ids=["nan", "blank", "inf", "minus-inf", "non-numeric"],
)
def test_bad_value_names_column_and_row(
    capsys: pytest.CaptureFixture[str],
    write_csv: Callable[..., Path],
    cell: str,
    fragments: list[str],
) -> None:
    path = write_csv(GOOD_CSV.replace("South,20,100,", f"South,20,{cell},"))
    code, _, err = run_cli(capsys, "train", "--data", str(path), "--targets", "Yield")
    assert_one_line_error(code, err, str(path), *fragments)


def test_bad_value_in_a_target_column(
    capsys: pytest.CaptureFixture[str], write_csv: Callable[..., Path]
) -> None:
    path = write_csv(GOOD_CSV.replace("East,15,150,3.75", "East,15,150,n/a"))
    code, _, err = run_cli(capsys, "train", "--data", str(path), "--targets", "Yield")
    assert_one_line_error(code, err, "column 'Yield'", "row 3")


def test_fewer_rows_than_one_batch_with_drop_last(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "train", "--batch-size", "20", "--drop-last")
    assert_one_line_error(code, err, "batch size 20", "15 rows", "drop_last")


# --- bad input: numbers -----------------------------------------------------------------

@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--batch-size", "0"), ("--batch-size", "-2"), ("--batch-size", "2.5"),
        ("--batch-size", "three"),
        ("--epochs", "0"), ("--epochs", "-1"), ("--epochs", "1.5"),
        ("--lr", "0"), ("--lr", "-0.1"), ("--lr", "nan"), ("--lr", "inf"), ("--lr", "fast"),
    ],
)
@pytest.mark.parametrize("command", ["train", "verify"])
def test_bad_number_is_one_line_naming_option_and_value(
    capsys: pytest.CaptureFixture[str], command: str, option: str, value: str
) -> None:
    code, out, err = run_cli(capsys, command, f"{option}={value}")
    assert_one_line_error(code, err, f"argument {option}", value, command=command)
    assert out == ""


# --- bad input: backends ----------------------------------------------------------------

def test_unknown_backend_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "train", "--backend", "nope")
    assert_one_line_error(code, err, "unknown backend 'nope'", *implementations.names())


def test_verify_unknown_backend_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "verify", "--backends", "numpy", "nope")
    assert_one_line_error(code, err, "unknown backend 'nope'", *implementations.names(),
                          command="verify")


def test_backend_with_a_missing_library_says_how_to_install(
    capsys: pytest.CaptureFixture[str], hide_library: Callable[[str], None]
) -> None:
    cli.build_parser()  # import the subcommand modules while torch is still importable
    hide_library("torch")
    code, _, err = run_cli(capsys, "train", "--backend", "torch-cpu")
    assert_one_line_error(code, err, "backend torch-cpu", "torch is not installed",
                          "pip install 'gdbench[torch]'")


def test_verify_skips_backends_whose_library_is_missing(
    capsys: pytest.CaptureFixture[str], hide_library: Callable[[str], None]
) -> None:
    cli.build_parser()
    hide_library("torch")
    code, out, err = run_cli(capsys, "verify", "--backends", "numpy", "torch-cpu")
    assert code == 0, err
    rows = verify_rows(out)
    assert rows["numpy"].split()[-1] == "yes"
    assert "skipped: torch is not installed" in rows["torch-cpu"]
    assert "pip install 'gdbench[torch]'" in rows["torch-cpu"]


# torch.compile compiles every new batch shape, seconds each on a CPU: the tests that
# train every backend leave these out, except verify on crops (tests/test_compile.py
# runs verify on them, and test_agreement.py checks their agreement).
COMPILE_PER_SHAPE = {"torch-compile", "torch-compile-cuda"}


@pytest.mark.parametrize("backend",
                         [n for n in implementations.names() if n not in COMPILE_PER_SHAPE])
def test_divergence_names_backend_step_and_lr(
    capsys: pytest.CaptureFixture[str], backend: str, backend_status: dict[str, str | None]
) -> None:
    if backend_status[backend]:
        pytest.skip(f"backend {backend}: {backend_status[backend]}")
    code, out, err = run_cli(capsys, "train", "--backend", backend, "--lr", "1e-3")
    line = assert_one_line_error(code, err, f"backend {backend} diverged", "lr=0.001",
                                 "smaller --lr", "--standardize")
    assert out == ""
    match = re.search(r"at step (\d+) of 250", line)
    assert match, line
    # float32 crops at lr 1e-3 overflows at step 15 (see the replay test below).
    assert int(match.group(1)) == 15


def test_first_divergent_step_is_the_first_non_finite_step() -> None:
    problem = make_problem("crops", load_dataset("crops"), batch_size=3, epochs=50, lr=1e-3)
    assert first_divergent_step(problem) == 15
    # The same steps by hand: the loss and W are finite through step 14, not at step 15.
    X, Y = problem.dataset.X, problem.dataset.Y
    W, b = problem.W0.copy(), problem.b0.copy()
    lr = np.float32(1e-3)
    finite = []
    with np.errstate(all="ignore"):
        for idx in list(problem.plan)[:15]:
            diff = X[idx] @ W.T + b - Y[idx]
            G = diff * np.float32(2.0 / diff.size)
            W, b = W - lr * (G.T @ X[idx]), b - lr * G.sum(0)
            loss = np.sum(diff * diff) / diff.size
            finite.append(bool(np.isfinite(loss) and np.isfinite(W).all()))
    assert finite == [True] * 14 + [False]


def test_subprocess_console_script_exits_2_without_traceback(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("gdbench")
    found = str(script) if script.exists() else shutil.which("gdbench")
    if found is None:
        pytest.skip("the gdbench console script is not installed (pip install -e .)")
    missing = tmp_path / "missing.csv"
    proc = subprocess.run(
        [found, "train", "--data", str(missing), "--targets", "y"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"gdbench train: error: {missing}: no such file"
    ]
    assert proc.stdout == ""


# --- train ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tutorial_numpy() -> tuple[np.ndarray, np.ndarray]:
    """W, b from training numpy directly on the tutorial setup, without the CLI."""
    ds = load_dataset("crops")
    plan = BatchPlan(15, 3, 50, seed=0)
    W0, b0 = init_params(3, 2, seed=0)
    result, *_ = train_once(NumpyManual(), Problem("crops", ds, plan, W0, b0, 1e-6))
    return result.W, result.b


def test_default_train_json_is_the_tutorial(
    capsys: pytest.CaptureFixture[str], tutorial_numpy: tuple[np.ndarray, np.ndarray]
) -> None:
    code, out, err = run_cli(capsys, "train", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["backend"] == "numpy"
    assert report["data"] == "crops"
    assert report["features"] == ["Temperature", "Rainfall", "Humidity"]
    assert report["targets"] == ["Mangoes", "Oranges"]
    assert (report["batch_size"], report["epochs"], report["lr"]) == (3, 50, 1e-6)
    assert report["steps"] == 250 and report["seed"] == 0 and report["dtype"] == "float32"
    W, b = np.array(report["W"]), np.array(report["b"])
    assert W.shape == (2, 3) and b.shape == (2,)
    # float32 values survive JSON exactly, so this is the same training, bit for bit.
    W_direct, b_direct = tutorial_numpy
    np.testing.assert_array_equal(W, W_direct)
    np.testing.assert_array_equal(b, b_direct)
    # The loss of the trained weights over every row, not a batch's or the first step's.
    assert report["final_loss"] == mse(load_dataset("crops"), W_direct, b_direct) > 0


def test_default_train_is_shuffled(tutorial_numpy: tuple[np.ndarray, np.ndarray]) -> None:
    class InFileOrder(BatchPlan):
        def epoch_order(self, epoch: int) -> np.ndarray:
            return np.arange(self.n_samples)

    ds = load_dataset("crops")
    W0, b0 = init_params(3, 2, seed=0)
    in_file_order = Problem("crops", ds, InFileOrder(15, 3, 50, seed=0), W0, b0, 1e-6)
    unshuffled, *_ = train_once(NumpyManual(), in_file_order)
    W_default, b_default = tutorial_numpy
    # In file order the weights differ from the default's by ~4e-4, beyond the agreement
    # tolerance (1e-4 x scale): the default is shuffled, and verify would tell the two apart.
    default = TrainResult("numpy", W_default, b_default, 0.0, 250)
    assert not agreement(unshuffled, default, "float32")[2]


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """train_once's and prepare's time.perf_counter, replaced by a fake clock."""
    from gdbench.implementations import base

    clock = FakeClock(start=1000.0)
    monkeypatch.setattr(base, "time", types.SimpleNamespace(perf_counter=clock))
    return clock


class _SlowPrepare(NumpyManual):
    """The NumPy backend, whose prepare takes 5 s and whose run 0.25 s on a fake clock."""

    name = "numpy-slow-prepare"
    clock = FakeClock(start=1000.0)  # the test's, set by the slow_prepare fixture

    def prepare(self, problem: Problem) -> Any:
        self.clock.now += 5.0
        return super().prepare(problem)

    def run(self, state: Any) -> None:
        self.clock.now += 0.25
        super().run(state)


@pytest.fixture
def slow_prepare(monkeypatch: pytest.MonkeyPatch, fake_clock: FakeClock) -> str:
    """Register 'numpy-slow-prepare', timed by the fake clock, as a real backend would be."""
    module = types.ModuleType("gdbench_test_slow_prepare_backend")
    module.SlowPrepare = _SlowPrepare  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(implementations._REGISTRY, _SlowPrepare.name,
                        implementations.Spec(module.__name__, "SlowPrepare"))
    monkeypatch.setattr(_SlowPrepare, "clock", fake_clock)
    return _SlowPrepare.name


def test_train_json_reports_the_run_and_the_prepare_seconds_each_in_its_own_field(
    capsys: pytest.CaptureFixture[str], slow_prepare: str
) -> None:
    code, out, err = run_cli(capsys, "train", "--backend", slow_prepare, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["backend"] == slow_prepare and report["steps"] == 250
    assert (report["seconds"], report["prepare_seconds"]) == (0.25, 5.0)


def test_train_prints_the_run_seconds_per_step_and_the_setup_seconds_apart(
    capsys: pytest.CaptureFixture[str], slow_prepare: str
) -> None:
    code, out, err = run_cli(capsys, "train", "--backend", slow_prepare)
    assert code == 0, err
    # 0.25 s over 250 steps is 1000 us a step; the 5 s of prepare are the setup.
    assert "trained 250 steps in 0.2500 s (1000.00 us/step; setup 5.000 s)" in out


def test_default_train_prints_named_weights(
    capsys: pytest.CaptureFixture[str], tutorial_numpy: tuple[np.ndarray, np.ndarray]
) -> None:
    code, out, err = run_cli(capsys, "train")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == ("backend numpy: crops (15 rows, 3 features -> 2 targets), batch 3, "
                        "50 epochs, lr 1e-06, seed 0, float32")
    assert lines[1].startswith("trained 250 steps in ")
    W, b = tutorial_numpy
    assert lines[2] == f"final loss (MSE over all rows): {mse(load_dataset('crops'), W, b):.6g}"
    assert lines[3] == "weights (pred[target] = sum of weight x feature + bias):"
    assert lines[4].split() == ["target", "Temperature", "Rainfall", "Humidity", "bias"]
    # One row per target: its weight for each feature, then its bias.
    for row, target, W_row, bias in zip(lines[5:], ["Mangoes", "Oranges"], W, b, strict=True):
        assert row.split() == [target, *(f"{w:.6g}" for w in W_row), f"{bias:.6g}"]


def test_train_options_reach_the_problem(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "train", "--json", "--batch-size", "4", "--epochs", "3",
                             "--lr", "0.01", "--seed", "7", "--standardize", "--drop-last",
                             "--dtype", "float64")
    assert code == 0, err
    report = json.loads(out)
    expected, *_ = train_once("numpy", make_problem(
        "crops", load_dataset("crops", standardize=True, dtype="float64"), batch_size=4,
        epochs=3, lr=0.01, seed=7, drop_last=True))
    assert (report["batch_size"], report["epochs"], report["lr"], report["seed"]) == (
        4, 3, 0.01, 7)
    assert report["dtype"] == "float64" and report["steps"] == 9  # 3 whole batches of 4
    assert report["W"] == expected.W.tolist() and report["b"] == expected.b.tolist()


def test_an_interrupted_command_says_so_and_exits_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_train", interrupted)
    code, out, err = run_cli(capsys, "train")
    assert (code, out, err) == (130, "", "gdbench train: interrupted\n")


@pytest.mark.parametrize("backend",
                         [n for n in implementations.names() if n not in COMPILE_PER_SHAPE])
def test_train_json_works_for_every_available_backend(
    capsys: pytest.CaptureFixture[str],
    backend: str,
    backend_status: dict[str, str | None],
    tutorial_numpy: tuple[np.ndarray, np.ndarray],
) -> None:
    code, out, err = run_cli(capsys, "train", "--backend", backend, "--json")
    why = backend_status[backend]
    if why:  # an unavailable backend is one clear line, not a crash
        assert_one_line_error(code, err, f"backend {backend}", why)
        return
    assert code == 0, err
    report = json.loads(out)
    assert report["backend"] == backend and report["steps"] == 250
    W, b = np.array(report["W"]), np.array(report["b"])
    assert W.shape == (2, 3) and b.shape == (2,)
    W_ref, b_ref = tutorial_numpy
    scale = max(1.0, np.max(np.abs(W_ref)), np.max(np.abs(b_ref)))
    assert max(np.max(np.abs(W - W_ref)), np.max(np.abs(b - b_ref))) <= RTOL["float32"] * scale


@pytest.mark.parametrize("command", ["train", "verify"])
def test_help_exits_0_and_explains_the_options(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0
    for option in ("--data", "--targets", "--batch-size", "--epochs", "--lr", "--seed",
                   "--standardize", "--drop-last", "--dtype"):
        assert option in out
    assert "default: 3" in out and "default: 50" in out and "default: 1e-6" in out
    assert ("--backend " if command == "train" else "--backends") in out


# --- verify -----------------------------------------------------------------------------

def verify_rows(out: str) -> dict[str, str]:
    """The table's row for each backend, keyed by backend name."""
    names = set(implementations.names())
    return {line.split()[0]: line for line in out.splitlines()
            if line.split() and line.split()[0] in names}


K1_CSV = "Region,a,b,c,y\n" + "".join(
    f"R{i},{a},{b},{c},{2 * a - b + 0.5 * c + 1 + 0.01 * (i % 3):.4f}\n"
    for i, (a, b, c) in enumerate(
        [(1, 4, 2), (2, 1, 5), (3, 3, 1), (4, 6, 0), (5, 2, 2), (6, 5, 3),
         (7, 0, 4), (8, 7, 1), (9, 3, 6), (10, 1, 2), (11, 4, 4), (12, 2, 5)]
    )
)


@pytest.mark.parametrize(
    "problem",
    ["crops", "crops-ragged", "crops-float64", "csv-one-target"],
)
def test_verify_reports_every_available_backend_as_agreeing(
    capsys: pytest.CaptureFixture[str],
    write_csv: Callable[..., Path],
    backend_status: dict[str, str | None],
    problem: str,
) -> None:
    args = {
        "crops": [],
        "crops-ragged": ["--batch-size", "4"],  # 15 rows: 3 batches of 4, then 3 rows
        "crops-float64": ["--dtype", "float64"],
        "csv-one-target": ["--data", str(write_csv(K1_CSV)), "--targets", "y", "--standardize",
                           "--batch-size", "5", "--epochs", "20", "--lr", "0.05"],
    }[problem]
    # Every backend by default on crops (the shape test_agreement.py compiles too); the
    # other problems leave out the backends that compile each new shape.
    names = implementations.names()
    if problem != "crops":
        names = [n for n in names if n not in COMPILE_PER_SHAPE]
        args += ["--backends", *names]
    code, out, err = run_cli(capsys, "verify", *args)
    assert code == 0, out + err
    rows = verify_rows(out)
    assert sorted(rows) == sorted(names)
    for name in names:
        why = backend_status[name]
        if why:
            assert f"skipped: {why}" in rows[name]
        else:
            assert rows[name].split()[-1] == "yes", rows[name]
    if backend_status["torch-cuda"] is not None and "torch" not in backend_status["torch-cuda"]:
        assert "skipped: no CUDA device" in rows["torch-cuda"]
    if problem == "crops":  # numpy's own row: its loss, no distance, and its distance to lstsq
        ds = load_dataset("crops")
        numpy, *_ = train_once("numpy", make_problem("crops", ds, batch_size=3, epochs=50,
                                                     lr=1e-6))
        W_ls, b_ls = least_squares(ds)
        dist = np.sqrt(np.sum((numpy.W - W_ls) ** 2) + np.sum((numpy.b - b_ls) ** 2))
        assert rows["numpy"].split() == ["numpy", f"{numpy.final_loss:.6g}", "0", "0",
                                         f"{dist:.4g}", "yes"]
    dtype = "float64" if problem == "crops-float64" else "float32"
    assert f"<= {RTOL[dtype]:g} x" in out


class _OffByOnePercent(NumpyManual):
    """The NumPy backend, except that its final weights come out 1% too large."""

    name = "numpy-off"

    def result(self, state: Any) -> TrainResult:
        good = super().result(state)
        return TrainResult(self.name, good.W * 1.01, good.b, good.final_loss, good.steps)


@pytest.fixture
def off_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register 'numpy-off' in the backend registry, as a real backend module would be."""
    module = types.ModuleType("gdbench_test_off_backend")
    module.OffByOnePercent = _OffByOnePercent  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(implementations._REGISTRY, "numpy-off",
                        implementations.Spec(module.__name__, "OffByOnePercent"))
    return "numpy-off"


def test_verify_exits_1_when_a_backend_disagrees(
    capsys: pytest.CaptureFixture[str], off_backend: str
) -> None:
    code, out, err = run_cli(capsys, "verify", "--backends", "numpy", off_backend)
    assert code == 1, out + err
    rows = verify_rows(out)
    assert rows["numpy"].split()[-1] == "yes"
    assert rows[off_backend].split()[-1] == "NO"
    # The reported distance is the real one: 1% of the largest weight.
    reference, *_ = train_once("numpy", make_problem("crops", load_dataset("crops"),
                                                     batch_size=3, epochs=50, lr=1e-6))
    dW = float(rows[off_backend].split()[2])
    assert dW == pytest.approx(0.01 * np.max(np.abs(reference.W)), rel=1e-2)
    assert float(rows[off_backend].split()[3]) == 0.0  # b untouched


def test_verify_of_the_disagreeing_backend_alone_exits_1(
    capsys: pytest.CaptureFixture[str], off_backend: str
) -> None:
    code, out, _ = run_cli(capsys, "verify", "--backends", off_backend, "--dtype", "float64")
    assert code == 1
    assert verify_rows(out)[off_backend].split()[-1] == "NO"


# --- the contract (implementations/base.py), by value ------------------------------------------

def _result(W: list[list[float]], b: list[float], dtype: str = "float64") -> TrainResult:
    return TrainResult("x", np.array(W, dtype=dtype), np.array(b, dtype=dtype), 0.0, 1)


def test_rtol_is_the_documented_tolerance() -> None:
    assert RTOL == {"float32": 1e-4, "float64": 1e-10}


@pytest.mark.parametrize(("W", "b", "dW", "db", "agrees"), [
    # scale max(1, |W_ref|, |b_ref|) = 4: the tolerance is 4e-4
    ([[2.0, -4.0]], [0.5], 0.0, 0.0, True),
    ([[2.0 + 3.5e-4, -4.0]], [0.5], 3.5e-4, 0.0, True),
    ([[2.0, -4.0 - 4.5e-4]], [0.5], 4.5e-4, 0.0, False),
    ([[2.0, -4.0]], [0.5 + 3.5e-4], 0.0, 3.5e-4, True),
    ([[2.0, -4.0]], [0.5 - 4.5e-4], 0.0, 4.5e-4, False),
])
def test_agreement_is_relative_to_the_largest_weight(
        W: list[list[float]], b: list[float], dW: float, db: float, agrees: bool) -> None:
    reference = _result([[2.0, -4.0]], [0.5])
    got = agreement(_result(W, b), reference, "float32")
    assert got[0] == pytest.approx(dW, abs=1e-15) and got[1] == pytest.approx(db, abs=1e-15)
    assert got[2] is agrees


def test_agreement_scale_is_at_least_one_and_counts_the_bias() -> None:
    small = _result([[0.1, 0.2]], [0.05])  # scale 1: tolerance 1e-4
    assert agreement(_result([[0.1 + 0.9e-4, 0.2]], [0.05]), small, "float32")[2] is True
    assert agreement(_result([[0.1 + 1.1e-4, 0.2]], [0.05]), small, "float32")[2] is False
    big_bias = _result([[0.1, 0.2]], [-10.0])  # scale 10: tolerance 1e-3
    assert agreement(_result([[0.1 + 9e-4, 0.2]], [-10.0]), big_bias, "float32")[2] is True
    assert agreement(_result([[0.1 + 1.1e-3, 0.2]], [-10.0]), big_bias, "float32")[2] is False
    # float64's tolerance is 1e-10; a float32 result is compared in float64
    assert agreement(_result([[0.1 + 5e-11, 0.2]], [0.05]), small, "float64")[2] is True
    assert agreement(_result([[0.1 + 2e-10, 0.2]], [0.05]), small, "float64")[2] is False
    assert agreement(_result([[0.1, 0.2]], [0.05], "float32"), small, "float32") == (
        pytest.approx(abs(float(np.float32(0.2)) - 0.2)), pytest.approx(
            abs(float(np.float32(0.05)) - 0.05)), True)


def _crops_problem(lr: float = 1e-6, epochs: int = 2) -> Problem:
    return make_problem("crops", load_dataset("crops"), batch_size=3, epochs=epochs, lr=lr)


def test_make_result_wraps_finite_weights_with_the_dataset_loss() -> None:
    problem = _crops_problem()
    W, b = problem.W0 + 1, problem.b0 - 1
    result = make_result("mine", W.tolist(), b.tolist(), problem)
    assert result.backend == "mine" and result.steps == len(problem.plan) == 10
    assert isinstance(result.W, np.ndarray) and isinstance(result.b, np.ndarray)
    np.testing.assert_array_equal(result.W, W)
    np.testing.assert_array_equal(result.b, b)
    assert result.final_loss == mse(problem.dataset, W, b)


@pytest.mark.parametrize("where", ["W", "b", "loss"])
def test_make_result_refuses_non_finite_results_naming_the_step(where: str) -> None:
    problem = _crops_problem(lr=1e-3, epochs=50)  # float32 crops diverges at step 15
    step = 15
    if where == "loss":  # finite weights whose float64 loss overflows
        problem = make_problem("crops", load_dataset("crops", dtype="float64"), batch_size=3,
                               epochs=50, lr=1e-3)
        step = first_divergent_step(problem)
    W, b = problem.W0.copy(), problem.b0.copy()
    if where == "W":
        W[0, 0] = np.nan
    elif where == "b":
        b[-1] = np.inf
    else:
        W[:] = 1e200
    with pytest.raises(DivergenceError) as info, np.errstate(over="ignore"):
        make_result("mine", W, b, problem)
    assert str(info.value) == (f"backend mine diverged at step {step} of 250 with lr=0.001: "
                               "the loss or weights are no longer finite; try a smaller --lr "
                               "or --standardize")
    assert isinstance(info.value, InputError)


def test_first_divergent_step_of_a_finite_run_is_its_length() -> None:
    assert first_divergent_step(_crops_problem()) == 10


def test_first_divergent_step_replays_in_the_problems_dtype() -> None:
    # float64 crops at lr 1e-3 overflows later than float32 (at step 15): the replay must
    # not run the float32 problem in float64.
    problem = make_problem("crops", load_dataset("crops", dtype="float64"), batch_size=3,
                           epochs=50, lr=1e-3)
    step64 = first_divergent_step(problem)
    assert step64 > 15
    assert first_divergent_step(_crops_problem(lr=1e-3, epochs=50)) == 15
    np.testing.assert_array_equal(problem.W0, init_params(3, 2, dtype="float64")[0])


class _Sleepy:
    """A backend whose prepare takes 0.15 s and whose run 0.05 s on a fake clock."""

    name = "sleepy"
    device = "cpu"
    sync = "none"

    def __init__(self, state: Any, clock: FakeClock) -> None:
        self.state, self.clock = state, clock

    def prepare(self, problem: Problem) -> Any:
        self.clock.now += 0.15
        return self.state

    def run(self, state: Any) -> None:
        self.clock.now += 0.05

    def wait(self, state: Any) -> None:
        pass

    def result(self, state: Any) -> TrainResult:
        return TrainResult("sleepy", np.zeros((2, 3)), np.zeros(2), 1.0, 1)


def test_train_once_times_prepare_and_run_apart(fake_clock: FakeClock) -> None:
    result, seconds, prepare_s = train_once(_Sleepy(object(), fake_clock), _crops_problem())
    assert result.backend == "sleepy"
    assert (seconds, prepare_s) == (pytest.approx(0.05), pytest.approx(0.15))


def test_prepared_reports_compile_seconds_when_the_state_has_them(
        fake_clock: FakeClock) -> None:
    prepared = prepare(_Sleepy(types.SimpleNamespace(compile_s=0.25), fake_clock),
                       _crops_problem())
    assert prepared.compile_s == 0.25 and prepared.prepare_s == pytest.approx(0.15)
    assert prepare(_Sleepy(object(), fake_clock), _crops_problem()).compile_s == 0.0


def test_prepare_takes_a_registry_name() -> None:
    prepared = prepare("numpy", _crops_problem())
    assert isinstance(prepared.backend, NumpyManual)
    prepared.run()
    assert prepared.result().steps == 10


def test_first_divergent_step_replays_the_exact_updates() -> None:
    """Standardised crops at lr 1.2 oscillates with a slowly growing amplitude and
    overflows float32 at step 274; a replay that stepped W or b the wrong way, or set them
    to the step instead of subtracting it, would overflow tens or hundreds of steps away."""
    ds = load_dataset("crops", standardize=True)
    problem = make_problem("crops", ds, batch_size=3, epochs=200, lr=1.2)
    X, Y = ds.X, ds.Y
    W, b = problem.W0.copy(), problem.b0.copy()
    lr = np.float32(1.2)
    finite = []
    with np.errstate(all="ignore"):
        for idx in list(problem.plan)[:274]:
            diff = X[idx] @ W.T + b - Y[idx]
            G = diff * np.float32(2.0 / diff.size)
            W, b = W - lr * (G.T @ X[idx]), b - lr * G.sum(0)
            loss = np.sum(diff * diff) / diff.size
            finite.append(bool(np.isfinite(loss) and np.isfinite(W).all()
                               and np.isfinite(b).all()))
    assert finite == [True] * 273 + [False]
    assert first_divergent_step(problem) == 274
    with pytest.raises(DivergenceError, match="at step 274 of 1000 with lr=1.2"):
        train_once("numpy", problem)


def test_agreement_at_exactly_the_tolerance_agrees() -> None:
    zero = _result([[0.0, 0.0]], [0.0])  # scale 1: the tolerance is RTOL itself
    assert agreement(_result([[1e-4, 0.0]], [0.0]), zero, "float32") == (1e-4, 0.0, True)
    assert agreement(_result([[0.0, 0.0]], [-1e-10]), zero, "float64") == (0.0, 1e-10, True)


def test_a_train_result_is_a_value() -> None:
    result = _result([[1.0]], [2.0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.final_loss = 0.0  # type: ignore[misc]


def test_verify_exits_1_when_a_backend_disagrees_before_one_that_agrees(
    capsys: pytest.CaptureFixture[str], off_backend: str
) -> None:
    code, out, _ = run_cli(capsys, "verify", "--backends", off_backend, "numpy")
    assert code == 1, out
    assert out.splitlines()[0] == (
        "crops: 15 x 3 -> 2, batch 3, 50 epochs (250 steps), lr 1e-06, float32; agree means "
        "max(|dW|, |db|) <= 0.0001 x max(1, |W_numpy|, |b_numpy|)")
    assert out.splitlines()[1].split() == ["backend", "final", "loss", "max|W-W_numpy|",
                                           "max|b-b_numpy|", "dist", "to", "lstsq", "agree"]
