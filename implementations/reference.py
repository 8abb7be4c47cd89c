"""The model's maths in plain NumPy: the batch loss and its hand-derived gradients.

For ``L = sum((X_b @ W.T + b - Y_b)**2) / numel`` with numel = rows * k:
``G = 2/numel * (pred - Y_b)``, ``dL/dW = G.T @ X_b`` and ``dL/db = G.sum(0)``.

The numpy backend's hot loop is these lines written into preallocated buffers; the
divergence replay in :mod:`gdbench.implementations.base` runs them as they are. Both
import this module, which imports neither.
"""

from __future__ import annotations

import numpy as np


def loss_and_grads(
    X: np.ndarray, Y: np.ndarray, W: np.ndarray, b: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """The batch loss and its gradients: (loss, dW (k, d), db (k,)), in X's dtype."""
    diff = X @ W.T + b - Y
    G = diff * (2.0 / diff.size)
    return float(np.sum(diff * diff) / diff.size), G.T @ X, G.sum(axis=0)
