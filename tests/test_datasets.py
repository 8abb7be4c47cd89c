"""Datasets: the tutorial's crop table, a user's CSV, standardising, and synthetic problems."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gdbench.data.datasets import least_squares, load_dataset, mse, synthetic

# The tutorial's table, typed in independently of data/crops.csv.
TUTORIAL_INPUTS = [
    [73, 67, 43], [91, 88, 64], [87, 134, 58], [102, 43, 37], [69, 96, 70],
    [74, 66, 43], [91, 87, 65], [88, 134, 59], [101, 44, 37], [68, 96, 71],
    [73, 66, 44], [92, 87, 64], [87, 135, 57], [103, 43, 36], [68, 97, 70],
]
TUTORIAL_TARGETS = [
    [56, 70], [81, 101], [119, 133], [22, 37], [103, 119],
    [57, 69], [80, 102], [118, 132], [21, 38], [104, 118],
    [57, 69], [82, 100], [118, 134], [20, 38], [102, 120],
]


def test_crops_is_the_tutorial_table() -> None:
    ds = load_dataset("crops")
    assert ds.name == "crops"
    assert ds.X.shape == (15, 3) and ds.Y.shape == (15, 2)
    assert ds.X.dtype == np.float32 and ds.Y.dtype == np.float32
    assert ds.feature_names == ("Temperature", "Rainfall", "Humidity")
    assert ds.target_names == ("Mangoes", "Oranges")
    np.testing.assert_array_equal(ds.X[0], [73, 67, 43])
    np.testing.assert_array_equal(ds.Y[0], [56, 70])
    np.testing.assert_array_equal(ds.X, np.array(TUTORIAL_INPUTS, np.float32))
    np.testing.assert_array_equal(ds.Y, np.array(TUTORIAL_TARGETS, np.float32))
    assert ds.X.flags.c_contiguous and ds.Y.flags.c_contiguous


def test_crops_in_float64() -> None:
    ds = load_dataset("crops", dtype=np.float64)
    assert ds.X.dtype == np.float64 and ds.Y.dtype == np.float64
    np.testing.assert_array_equal(ds.X, np.array(TUTORIAL_INPUTS, np.float64))


def test_user_csv_drops_the_region_identifier(write_csv: Callable[..., Path]) -> None:
    path = write_csv(
        "Region,Temperature,Rainfall,Yield\n"
        "North,10,200,3.5\n"
        "South,20,100,4.0\n"
        "East,15,150,3.75\n",
        name="farms.csv",
    )
    ds = load_dataset(path, ["Yield"])
    assert ds.name == "farms"
    assert ds.feature_names == ("Temperature", "Rainfall")
    assert ds.target_names == ("Yield",)
    assert ds.X.shape == (3, 2) and ds.Y.shape == (3, 1)
    np.testing.assert_array_equal(ds.X, [[10, 200], [20, 100], [15, 150]])
    np.testing.assert_array_equal(ds.Y[:, 0], [3.5, 4.0, 3.75])


def test_identifier_column_with_a_blank_cell_is_still_dropped(
    write_csv: Callable[..., Path],
) -> None:
    path = write_csv("Region,x,y\nA,1,2\n,2,3\nC,3,5\n")
    ds = load_dataset(path, ["y"])
    assert ds.feature_names == ("x",)
    np.testing.assert_array_equal(ds.X[:, 0], [1, 2, 3])


def test_csv_targets_keep_the_order_given(write_csv: Callable[..., Path]) -> None:
    path = write_csv("a,b,c,d\n1,2,3,4\n5,6,7,8\n")
    ds = load_dataset(path, ["d", "b"])
    assert ds.target_names == ("d", "b")
    assert ds.feature_names == ("a", "c")
    np.testing.assert_array_equal(ds.Y, [[4, 2], [8, 6]])


def test_standardize_gives_zero_mean_unit_std() -> None:
    raw = load_dataset("crops")
    ds = load_dataset("crops", standardize=True)
    X = ds.X.astype(np.float64)
    # Scaled in float64 and stored in float32: off by a few float32 rounding units at most.
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(X.std(axis=0), 1.0, atol=1e-6)
    np.testing.assert_array_equal(ds.Y, raw.Y)  # targets are left alone
    assert ds.X.dtype == np.float32


def test_standardize_only_centres_a_constant_column(write_csv: Callable[..., Path]) -> None:
    path = write_csv("a,const,y\n1,5,1\n2,5,2\n3,5,4\n")
    ds = load_dataset(path, ["y"], standardize=True, dtype=np.float64)
    np.testing.assert_array_equal(ds.X[:, 1], 0.0)
    assert np.isfinite(ds.X).all()


def test_synthetic_is_deterministic() -> None:
    a = synthetic(40, 5, 3, seed=4, noise=0.1)
    b = synthetic(40, 5, 3, seed=4, noise=0.1)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.Y, b.Y)
    c = synthetic(40, 5, 3, seed=5, noise=0.1)
    assert not np.array_equal(a.X, c.X)
    assert a.X.shape == (40, 5) and a.Y.shape == (40, 3) and a.X.dtype == np.float32
    assert a.feature_names == ("x0", "x1", "x2", "x3", "x4")
    assert a.target_names == ("y0", "y1", "y2")


def test_synthetic_float32_is_the_float64_problem_rounded() -> None:
    a32 = synthetic(30, 4, 2, seed=1, noise=0.1, dtype=np.float32)
    a64 = synthetic(30, 4, 2, seed=1, noise=0.1, dtype=np.float64)
    np.testing.assert_array_equal(a32.X, a64.X.astype(np.float32))
    np.testing.assert_array_equal(a32.Y, a64.Y.astype(np.float32))


def test_noise_free_synthetic_is_exactly_solvable() -> None:
    ds = synthetic(200, 6, 3, seed=0, noise=0.0, dtype=np.float64)
    W, b = least_squares(ds)
    assert W.shape == (3, 6) and b.shape == (3,)
    residual = ds.X @ W.T + b - ds.Y
    # Y is X @ W_true.T + b_true exactly, so only float64 rounding remains (~1e-15).
    assert np.max(np.abs(residual)) < 1e-10
    assert mse(ds, W, b) < 1e-20


def test_noisy_synthetic_is_not_exactly_solvable() -> None:
    ds = synthetic(200, 6, 3, seed=0, noise=0.1, dtype=np.float64)
    W, b = least_squares(ds)
    # Residual variance ~ noise**2 * (1 - (d + 1) / n): far from zero, near 0.01.
    assert 0.005 < mse(ds, W, b) < 0.02


def test_least_squares_minimises_the_mse() -> None:
    ds = load_dataset("crops", dtype=np.float64)
    W, b = least_squares(ds)
    best = mse(ds, W, b)
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert mse(ds, W + 1e-3 * rng.standard_normal(W.shape), b) > best
        assert mse(ds, W, b + 1e-2 * rng.standard_normal(b.shape)) > best


def test_mse_is_the_mean_over_rows_and_outputs() -> None:
    ds = load_dataset("crops", dtype=np.float64)
    W = np.zeros((2, 3))
    b = np.zeros(2)
    assert mse(ds, W, b) == pytest.approx(np.mean(np.array(TUTORIAL_TARGETS, float) ** 2))
