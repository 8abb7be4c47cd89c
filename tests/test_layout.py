"""A bare source checkout on PYTHONPATH is a working gdbench, without any install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_checkout_on_pythonpath_maps_its_folders_under_gdbench(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("pyproject.toml", "gdbench", "data", "implementations", "benches"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, checkout / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, checkout / name)
    script = ("import gdbench.data.loader as l, gdbench.implementations.base as b, "
              "gdbench.benches.bench_training as t; print(l.__file__); print(b.__file__); "
              "print(t.__file__)")
    env = dict(os.environ, PYTHONPATH=str(checkout))
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    files = [Path(line) for line in proc.stdout.split()]
    assert files == [checkout / "data" / "loader.py", checkout / "implementations" / "base.py",
                     checkout / "benches" / "bench_training.py"]
