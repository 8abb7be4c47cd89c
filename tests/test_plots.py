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


def _numpy_fit(tmp_path: Path, workloads: tuple[str, ...]) -> tuple[Any, Any, Any, float,
                                                                     float]:
    """The fit figure of a numpy run on ``workloads``: its axes, its one line, the FLOPs per
    step of each workload, and (α s, β FLOP/s) fitted here to the same rows."""
    from gdbench.judge.limits import fit_alpha_beta
    from gdbench.records.results import load_run
    from gdbench.report.plots import fit_figure

    frame = load_run(write_run(tmp_path / "run.json", workloads=workloads,
                               backends=("numpy",), seed=1))
    ax = fit_figure(frame).axes[0]
    (line,) = ax.get_lines()
    train = frame[frame["kind"] == "training"].sort_values("flops")
    flops = (train["flops"] / train["steps"].astype(float)).to_numpy()
    alpha, beta = fit_alpha_beta(flops, train["step_us"].to_numpy() * 1e-6)
    return ax, line, flops, alpha, beta


def test_the_fit_figure_draws_the_fitted_lines(tmp_path: Path) -> None:
    _, line, _, alpha, beta = _numpy_fit(tmp_path, ("crops", "small", "medium"))
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
    assert ax.get_ylim()[1] == pytest.approx(above["gflops"].max() * 3)  # not cut off
    (caption,) = [t for t in fig.texts if t.get_text() == fig.get_supxlabel()]
    assert _hex(caption.get_color()) == "#bb0000"  # a warning, in red
    assert (ring.get_sizes()[0], _hex(ring.get_edgecolor()[0]), ring.get_linewidths()[0]) \
        == (180, "#ff0000", 1.5)
    assert ring.get_facecolor().size == 0  # a ring, not a disc
    assert [t.get_text() for t in ax.get_legend().get_texts()][-1] == "above its roof"


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


# --- each figure's marks, from a summary made by hand ----------------------------------------

def _summary(monkeypatch: pytest.MonkeyPatch, rows: list[dict[str, Any]]) -> Any:
    """A run frame whose summary is ``rows`` (label, kind, workload, flops, steps, step_us,
    speedup, ...): the figures draw exactly these numbers."""
    import pandas as pd

    from gdbench.report import plots

    s = pd.DataFrame(rows)
    monkeypatch.setattr(plots, "summary", lambda frame: s)
    return pd.DataFrame({"machine": ["Test CPU, 2 cores"]})


def _hex(color: Any) -> str:
    from matplotlib.colors import to_hex

    return to_hex(color)


def test_the_scaling_figure_draws_each_backend_at_its_workloads_training_flops(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A line per backend, rooflines last and dashed; each point at its workload's training
    FLOPs per step (the roofline's own count is smaller) and its µs per step; rows without
    FLOPs or steps are left out; each workload named above the axis."""
    from gdbench.report.plots import scaling_figure

    nan = float("nan")
    frame = _summary(monkeypatch, [
        {"label": "roofline-cuda", "kind": "roofline", "workload": "small", "flops": 800.0,
         "steps": 10, "step_us": 2.0},
        {"label": "roofline", "kind": "roofline", "workload": "medium", "flops": 5000.0,
         "steps": 10, "step_us": 30.0},  # no training row: its own FLOPs
        {"label": "jax", "kind": "training", "workload": "small", "flops": 1000.0,
         "steps": 10, "step_us": 7.0},
        {"label": "numpy", "kind": "training", "workload": "small", "flops": 1000.0,
         "steps": 10, "step_us": 9.0},
        {"label": "numpy", "kind": "training", "workload": "crops", "flops": 100.0,
         "steps": 10, "step_us": 5.0},
        {"label": "roofline", "kind": "roofline", "workload": "small", "flops": 800.0,
         "steps": 10, "step_us": 3.0},
        {"label": "roofline", "kind": "roofline", "workload": "crops", "flops": 80.0,
         "steps": 10, "step_us": 1.0},
        {"label": "jax", "kind": "training", "workload": "crops", "flops": nan,
         "steps": 10, "step_us": 4.0},
        {"label": "jax", "kind": "training", "workload": "large", "flops": 9e6,
         "steps": nan, "step_us": 4.0},
    ])
    ax = scaling_figure(frame).axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == [
        "numpy", "jax", "roofline (NumPy matmul pair)", "roofline-cuda (torch.mm pair)"]
    data = [(list(line.get_xdata()), list(line.get_ydata())) for line in lines]
    assert data == [([10.0, 100.0], [5.0, 9.0]), ([100.0], [7.0]),
                    ([10.0, 100.0, 500.0], [1.0, 3.0, 30.0]), ([100.0], [2.0])]
    assert [line.get_marker() for line in lines] == ["o", "s", "^", "D"]
    assert [line.get_linestyle() for line in lines] == ["-", "-", "--", "--"]
    assert [line.get_linewidth() for line in lines] == [1.5, 1.5, 2.5, 2.5]
    assert [_hex(line.get_color()) for line in lines] == ["#1f77b4", "#ff7f0e", "#000000",
                                                          "#737373"]
    names = [(t.get_text(), t.xy, t.get_fontsize(), _hex(t.get_color()), t.get_ha(),
              t.get_va(), t.xyann) for t in ax.texts]
    assert names == [(w, (x, 1), 8.0, "#666666", "center", "top", (0, -4))
                     for w, x in (("crops", 10.0), ("small", 100.0), ("medium", 500.0))]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert ax.get_xlabel() == "work per step (FLOPs, 4·B·d·k + 6·B·k)"
    assert ax.get_ylabel() == "time per step (µs, median)"
    assert ax.get_title() == "Step time vs work per step\nTest CPU, 2 cores"
    assert ax.get_legend().get_texts()[0].get_fontsize() == 8.0
    assert ax.xaxis.get_gridlines()[0].get_visible()
    assert ax.xaxis.get_gridlines()[0].get_alpha() == 0.3


def test_the_speedup_figure_draws_bars_from_x1(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bars start at ×1 (up is faster), one group per workload, each labelled with its
    speed-up; numpy, the rooflines and a missing speed-up are not drawn."""
    from matplotlib.ticker import FuncFormatter

    from gdbench.report.plots import _minor_tick, speedup_figure

    nan = float("nan")
    frame = _summary(monkeypatch, [
        {"label": "numpy", "backend": "numpy", "kind": "training", "workload": "crops",
         "speedup": 1.0},
        {"label": "roofline", "backend": "roofline", "kind": "roofline",
         "workload": "crops", "speedup": 4.0},
        {"label": "jax", "backend": "jax", "kind": "training", "workload": "small",
         "speedup": 2.0},
        {"label": "torch-cpu", "backend": "torch-cpu", "kind": "training",
         "workload": "crops", "speedup": 0.5},
        {"label": "jax", "backend": "jax", "kind": "training", "workload": "crops",
         "speedup": 0.25},
        {"label": "torch-cpu", "backend": "torch-cpu", "kind": "training",
         "workload": "small", "speedup": nan},
    ])
    fig = speedup_figure(frame)
    assert tuple(fig.get_size_inches()) == (7.5, 5.0)
    ax = fig.axes[0]
    bars = {c.get_label(): list(c) for c in ax.containers}
    assert list(bars) == ["torch-cpu", "jax"]
    # Two backends: bars 0.4 wide, at -0.2 and +0.2 of each workload's tick.
    for i, label in enumerate(bars):
        for tick, bar in enumerate(bars[label]):
            assert bar.get_width() == pytest.approx(0.4)
            assert bar.get_x() + 0.2 == pytest.approx(tick - 0.2 + 0.4 * i)
            assert bar.get_y() == 1.0
    heights = {label: [bar.get_height() for bar in b] for label, b in bars.items()}
    assert heights["jax"] == [-0.75, 1.0]
    assert heights["torch-cpu"][0] == -0.5 and np.isnan(heights["torch-cpu"][1])
    marks = sorted((t.get_text(), round(t.xy[0], 6), t.xy[1], t.xyann, t.get_va(),
                    t.get_ha(), t.get_fontsize()) for t in ax.texts)
    assert marks == [("0.25", 0.2, 0.25, (0, -2), "top", "center", 7.0),
                     ("0.5", -0.2, 0.5, (0, -2), "top", "center", 7.0),
                     ("2", 1.2, 2.0, (0, 2), "bottom", "center", 7.0)]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["crops", "small"]
    assert list(ax.get_xticks()) == [0, 1]
    assert ax.get_yscale() == "log"
    major = ax.yaxis.get_major_formatter()
    assert isinstance(major, FuncFormatter) and major(2.0, 0) == "×2"
    assert ax.yaxis.get_minor_formatter().func is _minor_tick
    (one,) = ax.get_lines()  # the ×1 line
    assert list(one.get_ydata()) == [1, 1] and _hex(one.get_color()) == "#000000"
    assert one.get_linewidth() == 1
    assert ax.get_title() == ("Speed-up vs numpy (numpy's time ÷ the backend's)\n"
                              "Test CPU, 2 cores")
    assert ax.get_ylabel() == "speed-up vs numpy (×, log scale; above 1 is faster)"
    assert ax.get_xlabel() == "workload"
    assert ax.get_legend().get_texts()[0].get_fontsize() == 8.0
    assert not ax.xaxis.get_gridlines()[0].get_visible()  # a grid across, not along
    assert ax.yaxis.get_gridlines()[0].get_visible()


def test_the_speedup_figure_widens_with_the_workloads_and_says_when_empty(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from gdbench.data.workloads import WORKLOADS
    from gdbench.report.plots import speedup_figure

    rows = [{"label": "jax", "backend": "jax", "kind": "training", "workload": w,
             "speedup": 2.0} for w in WORKLOADS]
    assert tuple(speedup_figure(_summary(monkeypatch, rows)).get_size_inches()) == (
        1.6 * len(WORKLOADS), 5.0)
    numpy_only = _summary(monkeypatch, [{"label": "numpy", "backend": "numpy",
                                         "kind": "training", "workload": "crops",
                                         "speedup": 1.0}])
    fig = speedup_figure(numpy_only)
    assert tuple(fig.get_size_inches()) == (7.5, 5.0)
    ax = fig.axes[0]
    (text,) = ax.texts
    assert text.get_text() == "no numpy benchmark to compare with in this run"
    assert text.get_position() == (0.5, 0.5) and text.get_transform() == ax.transAxes
    assert (text.get_ha(), text.get_va()) == ("center", "center")
    assert not ax.containers and ax.get_yscale() == "linear"


@pytest.mark.parametrize(("value", "text"), [
    (0.2, "×0.2"), (0.3, "×0.3"), (0.5, "×0.5"), (3.0, "×3"), (20.0, "×20"), (500.0, "×500"),
    (1.0, ""), (4.0, ""), (0.7, ""), (9.0, ""), (2.5, ""), (2.000001, ""), (0.0, ""),
    (-2.0, ""),
])
def test_the_speedup_axis_labels_only_its_2s_3s_and_5s(value: float, text: str) -> None:
    from gdbench.report.plots import _minor_tick

    assert _minor_tick(value, 0) == text


def test_a_run_without_roofs_says_so_in_the_roofline_figure(tmp_path: Path) -> None:
    import json

    from _benchjson import make_run

    from gdbench.records.results import load_run
    from gdbench.report.plots import roofline_figure

    doc = make_run(workloads=("crops", "small"), seed=1)
    doc["benchmarks"] = [b for b in doc["benchmarks"] if b["extra_info"]["kind"] != "roofline"]
    (tmp_path / "run.json").write_text(json.dumps(doc), encoding="utf-8")
    fig = roofline_figure(load_run(tmp_path / "run.json"))
    ax, ax_alpha = fig.axes
    (text,) = ax.texts
    assert text.get_text() == "this run has no roofs (made before gdbench measured them)"
    assert text.get_position() == (0.5, 0.5) and text.get_transform() == ax.transAxes
    assert (text.get_ha(), text.get_va()) == ("center", "center")
    assert not ax_alpha.axison and not ax.collections
    assert fig.get_suptitle() == ("Roofline: throughput against arithmetic intensity, and "
                                  "the fixed cost of a step\nTest CPU 9000, 2 cores")
    assert ax.get_xlabel() == "arithmetic intensity (FLOPs per byte a step must move)"
    assert ax.get_ylabel() == "GFLOP/s (median step)"
    assert tuple(fig.get_size_inches()) == (12.5, 6.8)


def test_the_roofline_figure_labels_each_roof_and_spans_every_point(tmp_path: Path) -> None:
    """Two memory roofs (crops and small bounded by the 50 GB/s copy, medium by its own at
    45): each diagonal from the left edge to its ridge, labelled along it; the flat roof from
    the first ridge to the right edge; the axis an eighth left of the lowest intensity and
    four times right of the highest."""
    from gdbench.report.plots import roofline_figure, roofline_points

    doc, frame = _roofline_run(tmp_path, bandwidths={"crops": 50.0, "small": 25.0,
                                                     "medium": 45.0})
    compute, _ = _measured_roofs(doc)
    points, _ = roofline_points(frame)
    fig = roofline_figure(frame)
    ax = fig.axes[0]
    flat, *diagonals = ax.get_lines()
    ridges = [compute / 50.0, compute / 45.0]
    x_low = min([*points["intensity"], *ridges]) / 8
    x_high = max([*points["intensity"], *ridges]) * 4
    assert ax.get_xlim() == pytest.approx((x_low, x_high))
    np.testing.assert_allclose(flat.get_xdata(), [min(ridges), x_high])
    assert flat.get_linewidth() == 2 and _hex(flat.get_color()) == "#000000"
    assert len(diagonals) == 2
    for line, bandwidth, ridge, style in zip(diagonals, (50.0, 45.0), ridges, ("--", ":"),
                                             strict=True):
        np.testing.assert_allclose(line.get_xdata(), [x_low, ridge])
        np.testing.assert_allclose(line.get_ydata(), [bandwidth * x_low, compute])
        assert line.get_linestyle() == style and line.get_linewidth() == 1.5
    (roof_label,) = [t for t in ax.texts if t.get_text().startswith("compute roof")]
    assert roof_label.get_text() == (f"compute roof {compute:.3g} GFLOP/s (GEMM pair, "
                                     "medium's shapes)")
    assert roof_label.xy == (x_high, compute) and roof_label.xyann == (-4, 3)
    assert (roof_label.get_ha(), roof_label.get_va(), roof_label.get_fontsize()) == (
        "right", "bottom", 8.0)
    memory = [t for t in ax.texts if "memory roof" in t.get_text()]
    assert [t.get_text() for t in memory] == [
        "  memory roof 50 GB/s: 1 MiB copy (crops, small)",
        "  memory roof 45 GB/s: 8.5 MiB copy (medium)"]
    for t, bandwidth in zip(memory, (50.0, 45.0), strict=True):
        x, y = t.get_position()
        assert x == pytest.approx(x_low * 1.15) and y == pytest.approx(bandwidth * x)
        # The angle of y = bandwidth·x in data units, turned by the log-log axes.
        angle = t.get_transform().transform_angles(
            np.array([np.degrees(np.arctan(bandwidth))]), np.array([(x, y)]))[0]
        assert t.get_rotation() == pytest.approx(angle)
        assert (t.get_ha(), t.get_va(), t.get_fontsize()) == ("left", "bottom", 8.0)
        assert t.get_transform_rotates_text() and t.get_rotation_mode() == "anchor"
    # Each workload named under its lowest point.
    names = [t for t in ax.texts if t.get_text() in ("crops", "small", "medium")]
    assert [t.get_text() for t in names] == ["crops", "small", "medium"]
    for t in names:
        column = points[points["workload"] == t.get_text()]
        assert t.xy == (column["intensity"].iloc[0], column["gflops"].min())
        assert t.xyann == (0, -10) and (t.get_ha(), t.get_va()) == ("center", "top")
    low, high = ax.get_ylim()
    assert low == pytest.approx(points["gflops"].min() / 6)
    assert high == pytest.approx(max(compute * 4, points["gflops"].max() * 3))
    assert ax.get_xscale() == ax.get_yscale() == "log"
    # Each backend's own colour and marker, the same in the α panel beside it.
    markers = {c.get_label(): c for c in ax.collections}
    assert [_hex(c.get_facecolor()[0]) for c in markers.values()] == [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "backends"
    assert [t.get_text() for t in legend.get_texts()] == ["numpy", "torch-cpu", "jax",
                                                          "jax-scan"]
    (caption,) = [t for t in fig.texts if t.get_text() == fig.get_supxlabel()]
    assert _hex(caption.get_color()) == "#262626"  # no point above a roof: not red
    assert caption.get_fontsize() == 7.5 and caption.get_ha() == "left"
    assert all(len(line) <= 175 for line in caption.get_text().splitlines())


def test_the_alpha_panel_draws_each_fixed_cost_with_its_interval() -> None:
    """α in µs with its 95% interval, the first backend on top, a log axis a third below
    the smallest and three times above the largest value shown; a backend whose α is not
    positive, or that has no fit, is left out."""
    from gdbench.judge.limits import Fit
    from gdbench.report.plots import _draw_alpha, _figure

    ax = _figure().add_subplot()
    fits = {"numpy": Fit(10e-6, 1e9, 8e-6, 13e-6), "jax": Fit(-1e-6, 1e9),
            "jax-scan": Fit(2e-6, 1e9)}
    _draw_alpha(ax, ["numpy", "torch-cpu", "jax", "jax-scan"], fits)
    bars = ax.containers
    assert len(bars) == 2
    assert list(bars[0].lines[0].get_xdata()) == pytest.approx([10.0])
    assert list(bars[0].lines[0].get_ydata()) == [0]
    assert list(bars[1].lines[0].get_xdata()) == pytest.approx([2.0])
    assert list(bars[1].lines[0].get_ydata()) == [1]
    assert bars[0].lines[0].get_marker() == "o" and bars[1].lines[0].get_marker() == "D"
    assert _hex(bars[0].lines[0].get_color()) == "#1f77b4"
    assert _hex(bars[1].lines[0].get_color()) == "#d62728"
    (segments,) = bars[0].lines[2]
    np.testing.assert_allclose(segments.get_segments()[0], [[8.0, 0], [13.0, 0]])
    assert not bars[1].lines[2]  # no interval: no bar
    assert [(t.get_text(), t.xy, t.xyann) for t in ax.texts] == [
        ("10 µs", (pytest.approx(10.0), 0), (0, 7)), ("2 µs", (pytest.approx(2.0), 1), (0, 7))]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["numpy", "jax-scan"]
    assert ax.get_xlim() == pytest.approx((2.0 / 3, 13.0 * 3))
    assert ax.get_ylim() == (1.5, -0.7)
    assert ax.get_xscale() == "log"
    assert ax.get_title() == "fixed cost of a step, α"
    assert ax.get_xlabel() == "α (µs per step; step = α + FLOPs / β)"


def test_the_alpha_panel_with_nothing_to_fit_says_so() -> None:
    from gdbench.judge.limits import Fit
    from gdbench.report.plots import _draw_alpha, _figure

    ax = _figure().add_subplot()
    _draw_alpha(ax, ["numpy"], {"numpy": Fit(0.0, 1e9)})
    (text,) = ax.texts
    assert text.get_text() == "one workload per backend: nothing to fit"
    assert text.get_position() == (0.5, 0.5) and text.get_transform() == ax.transAxes
    assert not ax.containers


def test_the_fit_figure_of_one_workload_has_nothing_to_fit(tmp_path: Path) -> None:
    from gdbench.records.results import load_run
    from gdbench.report.plots import fit_figure

    frame = load_run(write_run(tmp_path / "run.json", workloads=("small",),
                               backends=("numpy", "jax"), seed=1))
    ax = fit_figure(frame).axes[0]
    assert not ax.get_lines() and ax.get_legend() is None
    (text,) = ax.texts
    assert text.get_text() == "one workload per backend: nothing to fit"
    assert text.get_transform() == ax.transAxes and text.get_position() == (0.5, 0.5)
    train = frame[frame["kind"] == "training"].set_index("backend")
    points = {b: c.get_offsets() for b, c in zip(("numpy", "jax"), ax.collections,
                                                 strict=True)}
    for backend, xy in points.items():
        r = train.loc[backend]
        np.testing.assert_allclose(xy, [[r["flops"] / r["steps"], r["step_us"]]])
    assert ax.get_title() == ("Fixed cost α and throughput β: step = α + FLOPs / β\n"
                              "Test CPU 9000, 2 cores")
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("work per step (FLOPs)",
                                                  "time per step (µs, median)")
    assert ax.get_xscale() == ax.get_yscale() == "log"


def test_the_loss_time_figure_without_a_curve_says_so(tmp_path: Path) -> None:
    from gdbench.records.results import load_run
    from gdbench.report.plots import loss_time_figure

    frame = load_run(write_run(tmp_path / "run.json", workloads=("small",),
                               backends=("numpy",), seed=1))
    for workload in ("medium", "small"):  # not in the run; in it, without its curve
        if workload == "small":
            frame["loss_curve"] = None
        ax = loss_time_figure(frame, workload).axes[0]
        (text,) = ax.texts
        assert text.get_text() == f"this run has no loss curve for {workload}"
        assert text.get_transform() == ax.transAxes and text.get_position() == (0.5, 0.5)
        assert not ax.get_lines()
        assert ax.get_title() == (f"Loss against time on {workload}, prepare and compile "
                                  "included\nTest CPU 9000, 2 cores")
        assert ax.get_xlabel() == "wall-clock seconds from the start of prepare"
        assert ax.get_ylabel() == "loss (MSE over all rows)"


def test_the_loss_time_figure_of_a_run_without_prepare_times_or_target(
        tmp_path: Path) -> None:
    """No prepare time: the lines start at 0. No target: no horizontal line. A loss of 0
    on the curve: a linear loss axis (a log one cannot show it)."""
    from gdbench.records.results import load_run
    from gdbench.report.plots import loss_time_figure

    frame = load_run(write_run(tmp_path / "run.json", workloads=("small",),
                               backends=("numpy", "jax"), seed=1))
    frame["prepare_s"] = float("nan")
    frame["target_loss"] = float("nan")
    roof = frame["kind"] == "roofline"
    frame.loc[roof, "loss_curve"] = pd_series_of([[1.0, 0.0]], index=frame.index[roof])
    ax = loss_time_figure(frame, "small").axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["numpy", "jax"]
    by = frame.set_index("backend")
    for line, backend in zip(lines, ("numpy", "jax"), strict=True):
        np.testing.assert_allclose(line.get_xdata(),
                                   np.array([0, 256]) * by.loc[backend, "step_us"] * 1e-6)
    assert [line.get_linestyle() for line in lines] == ["-", "--"]
    assert [line.get_marker() for line in lines] == ["o", "s"]
    assert [line.get_markersize() for line in lines] == [3, 3]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"  # the curve ends at 0
    assert ax.get_legend().get_texts()[0].get_fontsize() == 8.0


def test_the_loss_time_figure_draws_its_target_and_a_log_loss_axis(tmp_path: Path) -> None:
    from gdbench.records.results import load_run
    from gdbench.report.plots import loss_time_figure

    frame = load_run(write_run(tmp_path / "run.json", workloads=("small",),
                               backends=("numpy",), seed=1))
    roof = frame["kind"] == "roofline"
    frame.loc[roof, "loss_curve"] = pd_series_of([[1.0, 0.5]], index=frame.index[roof])
    ax = loss_time_figure(frame, "small").axes[0]
    numpy_line, target = ax.get_lines()
    assert list(numpy_line.get_ydata()) == [1.0, 0.5]
    assert target.get_label() == "target (1.01 × least squares)"
    assert list(target.get_ydata()) == [pytest.approx(0.0101)] * 2
    assert target.get_linestyle() == ":" and target.get_linewidth() == 1
    assert _hex(target.get_color()) == "#000000"
    assert ax.get_yscale() == "log"


def pd_series_of(values: list[Any], index: Any) -> Any:
    import pandas as pd

    return pd.Series(values, index=index, dtype=object)


def test_the_convergence_figure_names_the_host_and_keeps_coinciding_lines_visible(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.ticker import MaxNLocator

    from gdbench.report import plots

    monkeypatch.setattr(plots.machine, "cpu_model", lambda: "Host CPU 7")
    monkeypatch.setattr(plots.os, "cpu_count", lambda: 6)
    losses = {"numpy": [4.0, 2.0, 1.0] * 7, "jax": [4.0, 0.0, 2.0] * 7,
              "torch-cpu": [1.0] * 21, "jax-scan": [1.0] * 21, "torch-manual": [1.0] * 21}
    fig = plots.convergence_figure("crops", losses, "; a note")
    ax = fig.axes[0]
    assert ax.get_title() == ("Loss per epoch: crops (recomputed untimed on Host CPU 7, 6 "
                              "cores)\nfinal losses differ by at most 1.0e+00 (relative); "
                              "a note")
    assert ax.title.get_fontsize() == 10
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == list(losses)
    assert [line.get_linestyle() for line in lines] == ["-", "--", ":", "-.", "-"]
    assert [line.get_marker() for line in lines] == ["o", "s", "^", "D", "v"]
    # Markers every 2nd epoch of 21, each line starting one epoch later than the last.
    assert [line.get_markevery() for line in lines] == [(0, 2), (1, 2), (0, 2), (1, 2),
                                                        (0, 2)]
    assert {(line.get_markersize(), line.get_linewidth(), line.get_alpha())
            for line in lines} == {(5, 1.5, 0.85)}
    assert list(lines[1].get_xdata()) == list(range(21))
    assert ax.get_yscale() == "linear"  # jax's loss of 0 cannot go on a log axis
    assert isinstance(ax.xaxis.get_major_locator(), MaxNLocator)
    assert ax.get_xlabel() == "epoch (0 = initial weights)"
    assert ax.get_ylabel() == "loss (MSE over all rows, target units²)"
    assert ax.get_legend().get_texts()[0].get_fontsize() == 8.0
    assert ax.get_legend() is not None


def test_a_convergence_figure_of_few_epochs_marks_every_epoch() -> None:
    from gdbench.report.plots import convergence_figure

    ax = convergence_figure("crops", {"numpy": [3.0, 2.0, 1.5],
                                      "jax": [3.0, 2.0, 1.5]}).axes[0]
    assert [line.get_markevery() for line in ax.get_lines()] == [(0, 1), (0, 1)]
    assert ax.get_title().endswith("differ by at most 0.0e+00 (relative)")


def test_save_writes_the_figure_as_png_and_svg_without_a_date(tmp_path: Path) -> None:
    import struct

    from gdbench.report.plots import _figure, save

    fig = _figure()
    fig.add_subplot().plot([1, 2], [3, 4])
    paths = save(fig, tmp_path, "fig")
    assert paths == [tmp_path / "fig.png", tmp_path / "fig.svg"]
    png = paths[0].read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert struct.unpack(">II", png[16:24]) == (1125, 750)  # 7.5 × 5 inches at 150 dpi
    svg = paths[1].read_text()
    assert svg.startswith("<?xml") and "<dc:date>" not in svg  # not the day it was drawn
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png", "fig.svg"]


def test_the_caption_word_for_word_and_when_alpha_allows_nothing_to_say() -> None:
    import pandas as pd

    from gdbench.judge.limits import Fit, run_roofs
    from gdbench.report.plots import roofline_caption

    roofs = run_roofs([{"workload": "crops", "gflops": 1.0, "bandwidth_gbs": 40.0,
                        "copy_bytes": 2.0**20, "copy_threads": 2},
                       {"workload": "medium", "gflops": 50.0, "bandwidth_gbs": 30.0,
                        "copy_bytes": 8.5 * 2**20, "copy_threads": 1}])
    assert roofs is not None
    points = pd.DataFrame({"label": ["numpy", "jax", "jax-scan"],
                           "workload": ["crops", "medium", "medium"],
                           "intensity": [0.9, 7.2, 7.2], "gflops": [2.0, 60.0, 20.0],
                           "roof_gflops": [1.0, 50.0, 50.0],
                           "limit_kind": ["compute", "compute", "compute"],
                           "above": [True, True, False]})
    fits = {"numpy": Fit(10e-6, 30e9), "jax": Fit(0.0, 1e9), "jax-scan": Fit(0.1e-6, 50e9)}
    assert roofline_caption(points, roofs, fits, smallest_flops=108.0) == [
        "Left: every backend × workload at its median step time, under the roofs measured "
        "in this run, the same that give the limit in gdbench compare: compute 50 GFLOP/s: "
        "the fastest roofline loop, two cached NumPy GEMMs of medium's step shapes; memory "
        "40 GB/s: a streaming copy of 1 MiB on 2 threads (crops's roofline), for crops; "
        "memory 30 GB/s: a streaming copy of 8.5 MiB on 1 thread (medium's roofline), for "
        "medium. A buffer that stays in cache copies faster than one streamed from memory, "
        "so each workload's memory roof is the fastest copy of a buffer at least as large as "
        "its data.",
        "WARNING: 2 points above their roofs (numpy on crops: 2 GFLOP/s over its compute "
        "roof of 1; jax on medium: 60 GFLOP/s over its compute roof of 50): the measured "
        "roof is too low there, and so is the limit in gdbench compare.",
        "Right: the fixed cost α of one step, from the fit step = α + FLOPs / β over the "
        "workloads (95% intervals). A step of F FLOPs runs at most F / α: with the smallest "
        "workload's F = 108 FLOPs, numpy's α of 10 µs allows 0.011 GFLOP/s, and jax-scan's "
        "α of 0.1 µs allows 1.1 GFLOP/s: the small workloads sit far under the roofs because "
        "of what a step costs, not what it computes or moves."]
    below = points.assign(above=False)
    assert roofline_caption(below, roofs, fits, 108.0)[1] == "No point lies above its roof."
    assert len(roofline_caption(below, roofs, fits, 0.0)) == 2  # no workload: nothing on α
    assert "F = 0.5 FLOPs" in roofline_caption(below, roofs, fits, 0.5)[2]
    only_zero = {"jax": Fit(0.0, 1e9)}  # an α of 0 allows anything: nothing to say
    assert len(roofline_caption(below, roofs, only_zero, 108.0)) == 2


def test_the_roofline_is_the_cpus_of_the_first_run_and_dtype(tmp_path: Path) -> None:
    """A run with a GPU's yardsticks first and a float64 run beside it: the figure shows
    the CPU's roofs of the first run, and only that run's float32 CPU rows under them."""
    import copy
    import json

    from _benchjson import make_run

    from gdbench.records.results import load_runs
    from gdbench.report.plots import roofline_points
    from gdbench.report.tables import roofs_by_run, summary

    doc = make_run(workloads=("crops", "small"), backends=("numpy", "jax"), seed=1)
    gpu = []
    for bench, backend in zip(doc["benchmarks"][:2], ("roofline-cuda", "torch-cuda"),
                              strict=True):
        bench = copy.deepcopy(bench)
        bench["name"] = bench["name"].replace("[crops", f"[crops-{backend}")
        bench["extra_info"].update(device="cuda:0", backend=backend)
        gpu.append(bench)
    doc["benchmarks"] = [*gpu, *doc["benchmarks"]]
    (tmp_path / "g.json").write_text(json.dumps(doc))
    (tmp_path / "d.json").write_text(json.dumps(make_run(
        workloads=("crops",), backends=("numpy",), seed=2, dtype="float64")))
    frame = load_runs([tmp_path / "g.json", tmp_path / "d.json"])
    roofs = roofs_by_run(summary(frame))
    assert list(roofs) == [("g", "float32", "cuda:0"), ("g", "float32", "cpu"),
                           ("d", "float64", "cpu")]
    points, chosen = roofline_points(frame)
    assert chosen == roofs[("g", "float32", "cpu")] != roofs[("g", "float32", "cuda:0")]
    assert list(points.columns) == ["label", "workload", "intensity", "gflops",
                                    "roof_gflops", "limit_kind", "above"]
    assert points[["label", "workload"]].values.tolist() == [
        ["numpy", "crops"], ["jax", "crops"], ["numpy", "small"], ["jax", "small"]]
    assert list(points.index) == [0, 1, 2, 3]


def test_a_speedup_of_exactly_x1_is_labelled_above_its_bar(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from gdbench.report.plots import speedup_figure

    frame = _summary(monkeypatch, [
        {"label": label, "backend": label, "kind": "training", "workload": "crops",
         "speedup": v} for label, v in (("jax", 1.0), ("jax-scan", 1.5), ("torch-cpu", 0.99))])
    ax = speedup_figure(frame).axes[0]
    assert [(t.get_text(), t.xyann, t.get_va(), t.anncoords) for t in ax.texts] == [
        ("0.99", (0, -2), "top", "offset points"), ("1", (0, 2), "bottom", "offset points"),
        ("1.5", (0, 2), "bottom", "offset points")]


def test_seven_backends_have_seven_markers_and_short_benchmarks_show_ten_epochs() -> None:
    from gdbench.report.plots import convergence_figure

    names = ["numpy", "torch-cpu", "torch-manual", "jax", "jax-scan", "torch-cuda",
             "jax-cuda"]
    ax = convergence_figure("crops", {n: [2.0, 1.0] for n in names}).axes[0]
    assert [line.get_marker() for line in ax.get_lines()] == ["o", "s", "^", "D", "v", "P",
                                                              "X"]
    assert MIN_EPOCHS_SHOWN == 10  # medium trains 2 epochs: its curve has 10


def test_each_memory_roof_has_its_own_dash_and_a_copy_of_unknown_size_no_size() -> None:
    """Four memory roofs take the dashes after the solid line in turn, and start again."""
    import pandas as pd

    from gdbench.judge.limits import run_roofs
    from gdbench.report.plots import _draw_roofs, _figure

    copies = [("crops", 2.0**20, 50.0), ("small", 2.0**21, 40.0), ("medium", 2.0**23, 30.0),
              ("large", float("nan"), 20.0)]
    roofs = run_roofs([{"workload": w, "gflops": 100.0, "bandwidth_gbs": gbs,
                        "copy_bytes": size, "copy_threads": 1} for w, size, gbs in copies])
    assert roofs is not None and len(roofs.memory) == 4
    ax = _figure().add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    _draw_roofs(ax, roofs, pd.DataFrame({"intensity": [1.0, 10.0]}))
    _, *diagonals = ax.get_lines()
    assert [line.get_linestyle() for line in diagonals] == ["--", ":", "-.", "--"]
    labels = [t.get_text() for t in ax.texts if "memory roof" in t.get_text()]
    assert labels[1:] == ["  memory roof 40 GB/s: 2 MiB copy (small)",
                          "  memory roof 30 GB/s: 8 MiB copy (medium)",
                          "  memory roof 20 GB/s (large)"]


def test_a_run_with_roofs_but_no_training_point_under_them_says_so(tmp_path: Path) -> None:
    import json

    from _benchjson import make_run

    from gdbench.records.results import load_run
    from gdbench.report.plots import roofline_figure

    (tmp_path / "run.json").write_text(json.dumps(make_run(workloads=("crops",),
                                                           backends=())))
    ax = roofline_figure(load_run(tmp_path / "run.json")).axes[0]
    assert [t.get_text() for t in ax.texts] == [
        "this run has no training benchmark under its roofs"]


def test_the_roofline_caption_takes_the_smallest_training_steps_flops(tmp_path: Path) -> None:
    """F of the caption is the smallest FLOPs per step among the training rows; the
    roofline loops count fewer FLOPs (no 6·B·k part) and are not among them."""
    import json

    from _benchjson import make_run

    from gdbench.records.results import load_run
    from gdbench.report.plots import roofline_figure

    doc = make_run(workloads=("crops", "small"), seed=1)
    for bench in doc["benchmarks"]:
        if bench["extra_info"]["kind"] == "roofline":
            bench["extra_info"]["flops"] *= 0.5
    (tmp_path / "run.json").write_text(json.dumps(doc))
    frame = load_run(tmp_path / "run.json")
    fig = roofline_figure(frame)
    train = frame[frame["kind"] == "training"]
    smallest = (train["flops"] / train["steps"]).min()
    assert smallest == 108.0  # crops: 15 rows × (4·3·2 + 6·2) FLOPs × 50 epochs / 250 steps
    caption = [t for t in fig.texts if t.get_text() == fig.get_supxlabel()][0]
    assert "smallest workload's F = 108 FLOPs" in caption.get_text().replace("\n", " ")
    assert caption.get_position()[0] == 0.01


def test_an_alpha_interval_that_reaches_close_or_to_zero(tmp_path: Path) -> None:
    from gdbench.judge.limits import Fit
    from gdbench.report.plots import _draw_alpha, _figure

    ax = _figure().add_subplot()
    _draw_alpha(ax, ["numpy", "jax"], {"numpy": Fit(10e-6, 1e9, 9.5e-6, 10.4e-6),
                                       "jax": Fit(4e-6, 1e9, 0.0, 5e-6)})
    (numpy_bar,) = ax.containers[0].lines[2]
    np.testing.assert_allclose(numpy_bar.get_segments()[0], [[9.5, 0], [10.4, 0]])
    (jax_bar,) = ax.containers[1].lines[2]
    np.testing.assert_allclose(jax_bar.get_segments()[0], [[0.0, 1], [5.0, 1]])
    assert ax.get_xlim() == pytest.approx((4.0 / 3, 10.4 * 3))  # an α bound of 0 is no span
    assert [t.anncoords for t in ax.texts] == ["offset points"] * 2


def test_two_workloads_are_enough_for_a_fitted_line(tmp_path: Path) -> None:
    ax, line, flops, alpha, beta = _numpy_fit(tmp_path, ("crops", "small"))
    assert line.get_label() == f"numpy: α {alpha * 1e6:.3g} µs, β {beta / 1e9:.3g} GFLOP/s"
    x = np.asarray(line.get_xdata())
    assert len(x) == 50 and x[0] == pytest.approx(flops.min()) and x[-1] == pytest.approx(
        flops.max())
    assert _hex(line.get_color()) == _hex(ax.collections[0].get_facecolor()[0])


def test_the_loss_time_figure_reads_its_own_workloads_curve(tmp_path: Path) -> None:
    import json

    from _benchjson import make_run

    from gdbench.records.results import load_run
    from gdbench.report.plots import loss_time_figure

    doc = make_run(workloads=("crops", "small"), backends=("numpy",), seed=1)
    for bench in doc["benchmarks"]:
        if bench["extra_info"]["kind"] == "roofline" and bench["extra_info"]["workload"] == \
                "crops":
            bench["extra_info"]["loss_curve"] = [9.0, 8.0]
    (tmp_path / "run.json").write_text(json.dumps(doc))
    frame = load_run(tmp_path / "run.json")
    lines = loss_time_figure(frame, "small").axes[0].get_lines()
    assert [list(line.get_ydata()) for line in lines][0] == [1.0, 0.0102]
    assert [line.get_label() for line in lines] == ["numpy", "target (1.01 × least squares)"]


def test_losses_per_epoch_says_which_backend_it_trains() -> None:
    said: list[str] = []
    epochs, losses = losses_per_epoch("crops", ["numpy"], epochs=2, progress=said.append)
    assert said == ["convergence: training numpy (1/1), 2 runs of 1 to 2 epochs"]
    assert epochs == 2 and len(losses["numpy"]) == 3


def test_a_convergence_figure_of_losses_under_one_and_of_nothing() -> None:
    import warnings

    from gdbench.report.plots import convergence_figure

    ax = convergence_figure("crops", {"numpy": [0.9, 0.5, 0.25]}).axes[0]
    assert ax.get_yscale() == "log"  # positive, if under 1
    ticks = [t for t in ax.get_xticks() if 0 <= t <= 2]
    assert ticks and all(float(t).is_integer() for t in ticks)  # whole epochs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no line to put in the legend
        empty = convergence_figure("crops", {}).axes[0]
    assert empty.get_title().endswith("differ by at most 0.0e+00 (relative)")
