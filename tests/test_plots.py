"""`gdbench plot`: the three figures are written as PNG and SVG; the convergence curves
of different backends coincide."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


@pytest.mark.e2e
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
    assert code == 2 and err == f"gdbench plot: error: {run}: exists and is not a folder\n"


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


# --- the roofline ----------------------------------------------------------------------------

def _measured_roofs(doc: dict) -> tuple[float, dict[str, float]]:
    """From the run's JSON alone: the best GFLOP/s of its roofline loops, and each
    workload's memory roof (GB/s), the fastest copy of a buffer at least as large."""
    roofs = [b["extra_info"] for b in doc["benchmarks"] if b["extra_info"]["kind"] == "roofline"]
    compute = max(r["flops"] / (r["step_us"] * r["steps"] * 1e-6) / 1e9 for r in roofs)
    memory = {r["workload"]: max(c["bandwidth_gbs"] for c in roofs
                                 if c["copy_bytes"] >= r["copy_bytes"]) for r in roofs}
    return compute, memory


SHAPES = {"crops": (3, 3, 2), "small": (32, 16, 2), "medium": (256, 128, 8)}  # B, d, k


def _intensity(workload: str) -> float:
    b, d, k = SHAPES[workload]
    return b * (4 * d * k + 6 * k) / ((b * (d + k) + 2 * (k * d + k)) * 4)


def _roofline_run(tmp_path: Path, name: str = "run", **kwargs: Any) -> tuple[dict, Any]:
    """(the run's JSON, its loaded frame): crops, small and medium, four backends."""
    import json

    from _benchjson import make_run

    from gdbench.records.results import load_run

    doc = make_run(workloads=("crops", "small", "medium"), seed=1, **kwargs)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return doc, load_run(path)


def test_every_plotted_point_lies_under_the_roofs_the_run_measured(tmp_path: Path) -> None:
    """The roofs are the run's own: the best roofline loop (medium's) and the fastest copy
    at least as large as each workload's data (medium's 8.5 MiB copy at 45 GB/s bounds
    every workload here); every backend × workload is drawn at its intensity and GFLOP/s,
    under them."""
    from gdbench.report.plots import roofline_figure, roofline_points

    doc, frame = _roofline_run(tmp_path, bandwidths={"crops": 15.0, "small": 25.0,
                                                     "medium": 45.0})
    compute, memory = _measured_roofs(doc)
    assert memory == {"crops": 45.0, "small": 45.0, "medium": 45.0}
    points, roofs = roofline_points(frame)
    assert roofs is not None
    assert roofs.compute_flops_per_s / 1e9 == pytest.approx(compute)
    assert len(points) == 3 * 4  # every backend × workload
    for _, p in points.iterrows():
        assert p["intensity"] == pytest.approx(_intensity(p["workload"]))
        roof = min(compute, memory[p["workload"]] * p["intensity"])
        assert p["roof_gflops"] == pytest.approx(roof)
        assert p["gflops"] <= roof and not p["above"]
    fig = roofline_figure(frame)
    ax, ax_alpha = fig.axes
    # The points drawn are those points, one marker set per backend.
    drawn = {c.get_label(): c.get_offsets() for c in ax.collections}
    assert set(drawn) == {"numpy", "torch-cpu", "jax", "jax-scan"}
    for label, xy in drawn.items():
        rows = points[points["label"] == label]
        np.testing.assert_allclose(xy, rows[["intensity", "gflops"]].to_numpy())
    # The flat roof at the best GEMM rate, the diagonal at bandwidth × intensity up to it.
    flat, diagonal = ax.get_lines()
    np.testing.assert_allclose(flat.get_ydata(), compute)
    x, y = (np.asarray(v, float) for v in diagonal.get_data())
    np.testing.assert_allclose(y / x, 45.0)
    assert y[-1] == pytest.approx(compute)  # it ends where it meets the flat roof
    text = fig.get_supxlabel().replace("\n", " ")  # the caption
    assert "No point lies above its roof." in text and "WARNING" not in text
    assert f"compute {compute:.3g} GFLOP/s" in text
    assert "memory 45 GB/s: a streaming copy of 8.5 MiB on 1 thread (medium's roofline), " \
           "for crops, small, medium" in text
    # Beside it, each backend's fixed cost α, as the fit table gives it.
    from gdbench.report.tables import fits, summary

    expected = fits(summary(frame))
    alphas = {tick.get_text(): c.lines[0].get_xdata()[0] for tick, c in zip(
        ax_alpha.get_yticklabels(), ax_alpha.containers, strict=True)}
    assert alphas == {label: pytest.approx(f.alpha_s * 1e6) for label, f in expected.items()}


def test_the_roofs_move_with_the_run_s_measurements(tmp_path: Path) -> None:
    from gdbench.report.plots import roofline_points

    _, frame = _roofline_run(tmp_path)
    _, slower = _roofline_run(tmp_path, "slower", roofline_factor=2.0,
                              bandwidths={"medium": 10.0})
    _, roofs = roofline_points(frame)
    _, slow_roofs = roofline_points(slower)
    assert roofs is not None and slow_roofs is not None
    # The roofline loop took twice as long: half the compute roof.
    assert slow_roofs.compute_flops_per_s == pytest.approx(roofs.compute_flops_per_s / 2,
                                                           rel=0.05)
    assert roofs.bandwidth("medium") == pytest.approx(20e9)  # the suite's default copy
    assert slow_roofs.bandwidth("medium") == pytest.approx(10e9)


def test_a_point_above_its_roof_is_ringed_and_warned_of_in_the_caption(tmp_path: Path) -> None:
    """jax-scan made 1000× faster than its recorded roofs allow: the roofs as measured are
    wrong, and the figure says so rather than hiding it."""
    from gdbench.report.plots import roofline_figure, roofline_points

    _, frame = _roofline_run(tmp_path, factors={"jax-scan": 1e-3})
    points, _ = roofline_points(frame)
    above = points[points["above"]]
    assert list(above["label"]) == ["jax-scan"] * 3  # on every workload, nobody else
    fig = roofline_figure(frame)
    text = fig.get_supxlabel().replace("\n", " ")
    assert "WARNING: 3 points above their roofs (jax-scan on crops: " in text
    assert "the measured roof is too low there" in text
    assert "No point lies above" not in text
    ax = fig.axes[0]
    ring = next(c for c in ax.collections if c.get_label() == "above its roof")
    np.testing.assert_allclose(ring.get_offsets(), above[["intensity", "gflops"]].to_numpy())
    assert ax.get_ylim()[1] > above["gflops"].max()  # shown, not cut off at the roof


def test_the_caption_says_what_each_roof_is_and_what_alpha_allows() -> None:
    """The caption on constructed roofs and fits, no figure: one point above the compute
    roof, and F / α on the smallest workload for the slowest and fastest α."""
    import pandas as pd

    from gdbench.judge.limits import Fit, run_roofs
    from gdbench.report.plots import roofline_caption

    roofs = run_roofs([{"workload": "crops", "gflops": 1.0, "bandwidth_gbs": 40.0,
                        "copy_bytes": 2.0**20, "copy_threads": 2},
                       {"workload": "medium", "gflops": 50.0, "bandwidth_gbs": 30.0,
                        "copy_bytes": 8.5 * 2**20, "copy_threads": 1}])
    assert roofs is not None
    points = pd.DataFrame({"label": ["numpy", "jax-scan"], "workload": ["medium", "medium"],
                           "intensity": [7.2, 7.2], "gflops": [20.0, 60.0],
                           "roof_gflops": [50.0, 50.0], "limit_kind": ["compute"] * 2,
                           "above": [False, True]})
    fits = {"numpy": Fit(10e-6, 30e9), "jax-scan": Fit(0.1e-6, 50e9)}
    lines = roofline_caption(points, roofs, fits, smallest_flops=108.0)
    assert "compute 50 GFLOP/s: the fastest roofline loop, two cached NumPy GEMMs of " \
           "medium's step shapes" in lines[0]
    assert "memory 40 GB/s: a streaming copy of 1 MiB on 2 threads (crops's roofline), for " \
           "crops" in lines[0]
    assert "memory 30 GB/s: a streaming copy of 8.5 MiB on 1 thread (medium's roofline), " \
           "for medium" in lines[0]
    assert lines[1].startswith("WARNING: 1 point above its roof (jax-scan on medium: 60 "
                               "GFLOP/s over its compute roof of 50)")
    # 108 FLOPs in 10 µs, and in 0.1 µs.
    assert "numpy's α of 10 µs allows 0.011 GFLOP/s, and jax-scan's α of 0.1 µs allows " \
           "1.1 GFLOP/s" in lines[2]


# --- the command, its figures stood in for -------------------------------------------------

class _Drawn:
    """gdbench plot with every figure a stand-in: which figures it asks for, of what, and
    the convergence figure's note."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.saved: list[tuple[str, Any]] = []
        self.trained: list[tuple[str, list[str], int | None]] = []
        self.note = ""
        from gdbench.commands import plot

        def save(figure: Any, out_dir: Path, stem: str) -> list[Path]:
            self.saved.append((stem, figure))
            return [out_dir / f"{stem}.png"]

        def losses(workload: str, names: list[str], epochs: int | None,
                   progress: Any = None) -> tuple[int, dict[str, list[float]]]:
            self.trained.append((workload, list(names), epochs))
            progress(f"trained {workload}")
            return 0, {}

        def convergence(workload: str, losses: Any, note: str) -> str:
            self.note = note
            return f"convergence of {workload}"

        monkeypatch.setattr(plot, "save", save)
        monkeypatch.setattr(plot, "losses_per_epoch", losses)
        monkeypatch.setattr(plot, "convergence_figure", convergence)
        monkeypatch.setattr(plot, "loss_time_figure", lambda frame, w: f"loss-time of {w}")
        for name in ("scaling", "speedup", "roofline", "fit"):
            monkeypatch.setattr(plot, f"{name}_figure", lambda frame, name=name: name)
        monkeypatch.setattr(plot.implementations, "available", lambda: {
            "numpy": None, "torch-cuda": "no CUDA device", "jax": None,
            "jax-cuda": "no GPU"})


def test_plot_draws_each_figure_once_and_prints_each_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    drawn = _Drawn(monkeypatch)
    run = write_run(tmp_path / "run.json", workloads=("small", "medium"), seed=1)
    code, out, err = run_cli(capsys, "plot", str(run), "-o", str(tmp_path / "p"),
                             "--workload", "medium")
    assert code == 0 and err == "trained medium\n"  # the training's progress, on stderr
    assert drawn.saved == [("scaling", "scaling"), ("speedup", "speedup"),
                           ("roofline", "roofline"), ("fit", "fit"),
                           ("loss-time", "loss-time of medium"),
                           ("convergence", "convergence of medium")]
    assert out.splitlines() == [str(tmp_path / "p" / f"{s}.png") for s, _ in drawn.saved]
    # Every backend available here, trained over 10 epochs of medium's recipe (it trains 2).
    assert drawn.trained == [("medium", ["numpy", "jax"], None)]
    assert drawn.note == ("; not available here: torch-cuda, jax-cuda\nthe benchmark trains "
                          f"2 epochs; shown over {MIN_EPOCHS_SHOWN} of the same recipe")


def test_plot_of_the_backends_and_epochs_asked_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    drawn = _Drawn(monkeypatch)
    run = write_run(tmp_path / "run.json", workloads=("small", "medium"), seed=1)
    assert run_cli(capsys, "plot", str(run), "-o", str(tmp_path), "--workload", "large",
                   "--backends", "numpy", "--epochs", "3")[0] == 0
    assert drawn.trained == [("large", ["numpy"], 3)]
    assert drawn.note == "\nthe benchmark trains 1 epoch; shown over 3 of the same recipe"
    # The loss-time figure: the workload asked for is not in the run, so the run's first.
    assert ("loss-time", "loss-time of small") in drawn.saved
    drawn.trained.clear()
    assert run_cli(capsys, "plot", str(run), "-o", str(tmp_path), "--workload", "crops",
                   "--backends", "numpy")[0] == 0
    assert drawn.note == ""  # crops trains 50 epochs: shown as benchmarked
    assert run_cli(capsys, "plot", str(run), "-o", str(tmp_path), "--workload", "crops",
                   "--backends", "numpy", "--epochs", "50")[0] == 0
    assert drawn.note == ""
    drawn.saved.clear()
    assert run_cli(capsys, "plot", str(run), "-o", str(tmp_path), "--no-convergence")[0] == 0
    assert [stem for stem, _ in drawn.saved] == ["scaling", "speedup", "roofline", "fit",
                                                 "loss-time"]


def test_plot_writes_under_results_plots_by_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    drawn = _Drawn(monkeypatch)
    run = write_run(tmp_path / "run.json", workloads=("crops",), seed=1)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "plot", str(run), "--no-convergence")
    assert code == 0 and len(drawn.saved) == 5
    assert out.splitlines()[0] == str(Path("results") / "plots" / "scaling.png")
