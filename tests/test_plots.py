"""`gdbench plot`: the three figures are written as PNG and SVG; the convergence curves
of different backends coincide."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _benchjson import run_cli, write_run

from gdbench.data.workloads import WORKLOADS
from gdbench.plots import MIN_EPOCHS_SHOWN, losses_per_epoch

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plot_writes_the_three_figures(tmp_path: Path, capsys) -> None:
    run = write_run(tmp_path / "run.json", workloads=("crops", "small", "medium"), seed=1)
    out_dir = tmp_path / "new" / "plots"  # created on demand
    code, out, err = run_cli(capsys, "plot", str(run), "-o", str(out_dir),
                             "--backends", "numpy")
    assert code == 0, err
    for stem in ("scaling", "speedup", "convergence"):
        assert (out_dir / f"{stem}.png").read_bytes().startswith(PNG_MAGIC)
        assert b"<svg" in (out_dir / f"{stem}.svg").read_bytes()[:2000]
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        f"{s}.{e}" for s in ("scaling", "speedup", "convergence") for e in ("png", "svg"))
    assert len(out.splitlines()) == 6


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
