"""`gdbench plot`: the three figures are written as PNG and SVG; the convergence curves
of different backends coincide."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _benchjson import run_cli, write_run

from gdbench.data.datasets import mse
from gdbench.data.loader import init_params
from gdbench.data.workloads import WORKLOADS, make_problem
from gdbench.implementations.base import train_once
from gdbench.report.plots import MIN_EPOCHS_SHOWN, convergence_figure, losses_per_epoch

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


FIGURES = ("scaling", "speedup", "roofline", "fit", "loss-time", "convergence")


def test_plot_writes_every_figure(tmp_path: Path, capsys) -> None:
    run = write_run(tmp_path / "run.json", workloads=("crops", "small", "medium"), seed=1)
    out_dir = tmp_path / "new" / "plots"  # created on demand
    code, out, err = run_cli(capsys, "plot", str(run), "-o", str(out_dir),
                             "--backends", "numpy")
    assert code == 0, err
    for stem in FIGURES:
        assert (out_dir / f"{stem}.png").read_bytes().startswith(PNG_MAGIC)
        assert b"<svg" in (out_dir / f"{stem}.svg").read_bytes()[:2000]
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        f"{s}.{e}" for s in FIGURES for e in ("png", "svg"))
    assert len(out.splitlines()) == 2 * len(FIGURES)


def test_the_fit_figure_draws_the_fitted_lines(tmp_path: Path) -> None:
    from gdbench.judge.limits import fit_alpha_beta
    from gdbench.records.results import load_run
    from gdbench.report.plots import fit_figure

    frame = load_run(write_run(tmp_path / "run.json", workloads=("crops", "small", "medium"),
                               backends=("numpy",), seed=1))
    ax = fit_figure(frame).axes[0]
    (line,) = ax.get_lines()
    train = frame[frame["kind"] == "training"].sort_values("flops")
    flops = (train["flops"] / train["steps"].astype(float)).to_numpy()
    alpha, beta = fit_alpha_beta(flops, train["step_us"].to_numpy() * 1e-6)
    x, y = line.get_data()
    assert np.allclose(y, (alpha + np.asarray(x) / beta) * 1e6)
    assert f"α {alpha * 1e6:.3g} µs" in line.get_label()


def test_the_loss_time_figure_starts_each_line_after_prepare(tmp_path: Path) -> None:
    from gdbench.records.results import load_run
    from gdbench.report.plots import loss_time_figure

    frame = load_run(write_run(tmp_path / "run.json", workloads=("small",),
                               backends=("numpy", "jax"), seed=1))
    ax = loss_time_figure(frame, "small").axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    by = frame.set_index("backend")
    for backend, prepare_s in (("numpy", 0.001), ("jax", 0.35)):
        x, y = lines[backend].get_data()
        assert x[0] == pytest.approx(prepare_s)  # the line starts after prepare
        assert x[-1] == pytest.approx(prepare_s + 256 * by.loc[backend, "step_us"] * 1e-6)
        assert list(y) == [1.0, 0.0102]  # the reference's curve, from the run
    target = lines["target (1.01 × least squares)"]
    assert target.get_ydata()[0] == pytest.approx(0.0101)


def test_plot_without_numpy_in_the_run_still_draws(tmp_path: Path, capsys) -> None:
    run = write_run(tmp_path / "run.json", workloads=("crops",), backends=("jax",), seed=1)
    code, _, err = run_cli(capsys, "plot", str(run), "-o", str(tmp_path), "--no-convergence")
    assert code == 0, err
    assert (tmp_path / "speedup.png").exists() and not (tmp_path / "convergence.png").exists()


def test_losses_per_epoch_decrease_from_the_initial_loss() -> None:
    epochs, losses = losses_per_epoch("crops", ["numpy"], epochs=8)
    assert epochs == 8 and len(losses["numpy"]) == 9
    assert np.all(np.diff(losses["numpy"]) < 0)


def test_a_workload_of_few_epochs_is_shown_over_more() -> None:
    few = [name for name, w in WORKLOADS.items() if w.epochs < MIN_EPOCHS_SHOWN]
    if not few:
        pytest.skip("every workload trains enough epochs")
    epochs, losses = losses_per_epoch(few[0], [], epochs=None)  # no backend: no training
    assert epochs == MIN_EPOCHS_SHOWN and losses == {}


def test_convergence_curves_coincide_across_backends(backend_status) -> None:
    if backend_status["torch-cpu"]:
        pytest.skip(f"torch-cpu: {backend_status['torch-cpu']}")
    _, losses = losses_per_epoch("crops", ["numpy", "torch-cpu"], epochs=5)
    np.testing.assert_allclose(losses["torch-cpu"], losses["numpy"], rtol=1e-4)


@pytest.mark.parametrize(("args", "fragment"), [
    (["--backends", "no-such-backend"], "unknown backend"),
    (["--workload", "huge"], "unknown workload"),
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "two"], "--epochs"),
])
def test_bad_options_exit_2_with_one_line(tmp_path: Path, capsys, args: list[str],
                                          fragment: str) -> None:
    run = write_run(tmp_path / "run.json", workloads=("crops",), seed=1)
    out_dir = tmp_path / "p"
    code, _, err = run_cli(capsys, "plot", str(run), "-o", str(out_dir), *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]
    assert not out_dir.exists()  # checked before any figure is written


def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path, capsys) -> None:
    run = write_run(tmp_path / "run.json", workloads=("crops",), seed=1)
    code, _, err = run_cli(capsys, "plot", str(run), "-o", str(run))
    assert code == 2 and "not a folder" in err


def test_the_plotted_losses_are_the_real_ones() -> None:
    """Each point is the float64 MSE after e epochs, recomputed here independently: a fresh
    problem of e epochs from the workload's recipe, trained once, and its final loss."""
    w = WORKLOADS["crops"]
    dataset = w.build().dataset
    epochs, losses = losses_per_epoch("crops", ["numpy"], epochs=4)
    assert epochs == 4
    expected = [mse(dataset, *init_params(dataset.n_features, dataset.n_outputs))]
    for e in range(1, epochs + 1):
        problem = make_problem("crops", dataset, batch_size=w.batch_size, epochs=e, lr=w.lr)
        result, *_ = train_once("numpy", problem)
        expected.append(result.final_loss)
    assert losses["numpy"] == expected  # the same computation, so the same float64 values
    # The figure draws exactly those values, epoch 0 first, one line per backend.
    fig = convergence_figure("crops", {"numpy": losses["numpy"], "other": expected[::-1]})
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"numpy", "other"}
    np.testing.assert_array_equal(lines["numpy"].get_xdata(), np.arange(epochs + 1))
    np.testing.assert_array_equal(lines["numpy"].get_ydata(), expected)
    np.testing.assert_array_equal(lines["other"].get_ydata(), expected[::-1])
    spread = (max(expected[-1], expected[0]) - min(expected[-1], expected[0])) / min(
        expected[-1], expected[0])
    assert f"differ by at most {spread:.1e} (relative)" in ax.get_title()
    assert ax.get_yscale() == "log"


def test_losses_after_e_epochs_continue_the_same_run() -> None:
    """E sets only how many points there are: the point after e epochs is the same
    whatever E, since the plan of e epochs is the first e epochs of any longer one."""
    _, short = losses_per_epoch("small", ["numpy"], epochs=2)
    _, longer = losses_per_epoch("small", ["numpy"], epochs=3)
    assert longer["numpy"][:3] == short["numpy"]
    assert longer["numpy"][3] < longer["numpy"][2]
