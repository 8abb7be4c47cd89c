"""A saved run's file name, and one run made of the parts its jobs wrote."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gdbench.harness import machine


def run_name(profile: str, machine_info: dict[str, Any], when: float | None = None) -> str:
    """'YYYYmmdd-HHMMSS_<cpu>-<N>c_<fingerprint>_<profile>': sortable, says which machine."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    info = machine_info.get("gdbench", {})
    model = str(info.get("cpu_model", "unknown"))
    cpu = "".join(c if c.isalnum() else "-" for c in model).strip("-").lower()
    return (f"{stamp}_{cpu[:24]}-{info.get('cpu_count', '')}c_"
            f"{machine.fingerprint(machine_info)}_{profile}")

def unused_path(directory: Path, stem: str) -> Path:
    """directory/stem.json, or stem-2.json, stem-3.json ... if that name is taken."""
    path = directory / f"{stem}.json"
    n = 2
    while path.exists():
        path = directory / f"{stem}-{n}.json"
        n += 1
    return path

def merge(parts: Sequence[dict[str, Any]], unavailable: dict[str, str]) -> dict[str, Any]:
    """One pytest-benchmark run from the runs of several processes on one machine.

    The benchmarks are concatenated; machine_info is the first process's, with gdbench's
    part completed by what each process saw of its own libraries (BLAS, torch, jax) and
    the fingerprint recomputed over the whole.
    """
    doc = dict(parts[0])
    doc["benchmarks"] = [bench for part in parts for bench in part.get("benchmarks", [])]
    info = dict(doc.get("machine_info") or {})
    merged: dict[str, Any] = {}
    blas: dict[str, dict[str, Any]] = {}
    for part in parts:
        g = (part.get("machine_info") or {}).get("gdbench") or {}
        for key, value in g.items():
            if key == "blas":
                blas.update({str(lib.get("prefix")) + str(lib.get("filepath")): lib
                             for lib in value})
            elif merged.get(key) in (None, [], {}):
                merged[key] = value
    merged["blas"] = list(blas.values())
    merged["unavailable"] = dict(unavailable)
    merged["isolation"] = "process per backend"
    info["gdbench"] = merged
    merged["fingerprint"] = machine.fingerprint({**info, "gdbench": {
        k: v for k, v in merged.items() if k != "fingerprint"}})
    doc["machine_info"] = info
    return doc
