"""gdbench run: the saved file's name, its atomic write, and one real (tiny) run end to end."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from _benchjson import make_run

from gdbench.commands import run as run_command
from gdbench.commands.cli import main
from gdbench.harness import launcher
from gdbench.judge import retime, stats
from gdbench.records import run as run_file

EXTRA_INFO_KEYS = {
    "kind", "backend", "device", "workload", "n", "d", "k", "batch_size", "epochs", "steps",
    "dtype", "step_us", "gflops", "compile_s", "final_loss", "max_abs_diff_vs_numpy", "sync",
}


def test_run_name_says_when_which_machine_and_profile() -> None:
    from gdbench.harness import machine

    info = {"gdbench": machine.describe()}
    name = run_file.run_name("quick", info, when=0)
    stamp, *_, profile = name.split("_")
    assert len(stamp) == len("19700101-000000")
    assert profile == "quick"
    assert machine.fingerprint(info) in name


def test_thread_env_caps_every_pool() -> None:
    from gdbench.harness import machine

    env = machine.thread_env(1)
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert "--xla_cpu_multi_thread_eigen=false" in env["XLA_FLAGS"]
    assert "intra_op_parallelism_threads=1" in env["XLA_FLAGS"]


def test_pytest_command_passes_the_selection_through(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    args = parser.parse_args(["--quick", "--backends", "numpy", "jax", "--workloads", "crops",
                              "--threads", "1", "--", "--benchmark-max-time=0.1"])
    cmd = launcher.pytest_command(args, tmp_path / "x.json")
    assert cmd[cmd.index("--backends") + 1: cmd.index("--backends") + 3] == ["numpy", "jax"]
    assert "--quick" in cmd and "--threads=1" in cmd and "--benchmark-save-data" in cmd
    assert cmd[-1] == "--benchmark-max-time=0.1"
    assert "--benchmark-disable-gc" in cmd  # as the audit's standalone timings


def test_pytest_command_runs_the_suite_as_installed_with_gdbench_runs_settings(
        tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    args = parser.parse_args(["--dtype", "float64", "--workloads", "crops", "small",
                              "--backends", "jax", "--", "--benchmark-min-rounds=3"])
    cmd = launcher.pytest_command(args, tmp_path / "p.json", ["--isolated"])
    suite = str(launcher.BENCHES)
    assert cmd == [
        sys.executable, "-m", "pytest", suite, "-q", "-p", "no:cacheprovider",
        f"--rootdir={suite}",
        # the suite's collection rules, whatever pytest configuration surrounds it
        "-o", "python_files=bench_*.py", "-o", "python_functions=bench_*", "-o", "addopts=",
        "-o", "testpaths=",
        "--progress", "--benchmark-save-data", "--benchmark-disable-gc",
        "--benchmark-group-by=group", "--benchmark-sort=name",
        f"--benchmark-json={tmp_path / 'p.json'}", "--dtype=float64",
        "--backends", "jax", "--workloads", "crops", "small", "--isolated",
        "--benchmark-min-rounds=3"]
    # A selection naming its own workloads replaces the user's; extra pytest options
    # given without "--" pass through as they are.
    args = parser.parse_args(["--workloads", "crops"])
    args.pytest_args = ["--benchmark-max-time=0.1"]
    cmd = launcher.pytest_command(args, tmp_path / "p.json", ["--workloads", "small"])
    assert cmd.count("--workloads") == 1 and cmd[-3:] == [
        "--workloads", "small", "--benchmark-max-time=0.1"]
    assert "--quick" not in cmd and not any(a.startswith("--threads") for a in cmd)


def test_each_runnable_backend_gets_its_own_process() -> None:
    status = {"numpy": None, "torch-cpu": None, "torch-cuda": "no CUDA device", "jax": None}
    procs = launcher.processes(list(status), status)
    assert [label for label, _ in procs] == ["numpy", "torch-cpu", "jax"]
    options = dict(procs)
    # numpy's process also times the rooflines; the others time their backend alone.
    assert options["numpy"] == ["--isolated", "--backends", "numpy", "--roofline", "with"]
    assert options["jax"] == ["--isolated", "--backends", "jax", "--roofline", "without"]


def test_without_numpy_the_rooflines_get_a_process_of_their_own() -> None:
    procs = launcher.processes(["jax"], {"jax": None})
    assert procs == [("jax", ["--isolated", "--backends", "jax", "--roofline", "without"]),
                     ("roofline", ["--isolated", "--backends", "numpy", "--roofline", "only"])]


def test_the_selection_of_one_process_overrides_the_users_backends(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    args = parser.parse_args(["--backends", "numpy", "jax"])
    cmd = launcher.pytest_command(args, tmp_path / "x.json", ["--backends", "jax"])
    assert cmd.count("--backends") == 1
    assert cmd[cmd.index("--backends") + 1] == "jax"


def _part(backend: str, blas: list[dict[str, str]], **gdbench: object) -> dict[str, object]:
    return {"machine_info": {"node": "n", "machine": "x86_64", "cpu": {"brand_raw": "CPU"},
                             "gdbench": {"cpu_model": "CPU", "cpu_count": 2, "blas": blas,
                                         **gdbench}},
            "commit_info": {"id": "abc"}, "datetime": "2026-11-30T00:00:00",
            "benchmarks": [{"name": f"bench_training[crops-{backend}]"}]}


def test_merge_concatenates_the_benchmarks_and_completes_machine_info() -> None:
    openblas = {"prefix": "libscipy_openblas", "filepath": "/np/openblas.so"}
    gomp = {"prefix": "libgomp", "filepath": "/torch/libgomp.so"}
    numpy_part = _part("numpy", [openblas])
    torch_part = _part("torch-cpu", [openblas, gomp], torch_threads=2)
    doc = run_file.merge([numpy_part, torch_part], {"torch-cuda": "no CUDA device"})
    assert [b["name"] for b in doc["benchmarks"]] == [
        "bench_training[crops-numpy]", "bench_training[crops-torch-cpu]"]
    g = doc["machine_info"]["gdbench"]
    assert g["torch_threads"] == 2  # seen only by the torch process
    assert sorted(lib["prefix"] for lib in g["blas"]) == ["libgomp", "libscipy_openblas"]
    assert g["unavailable"] == {"torch-cuda": "no CUDA device"}
    assert g["isolation"] == "process per backend"
    assert doc["commit_info"] == {"id": "abc"}
    from gdbench.harness import machine

    assert g["fingerprint"] == machine.fingerprint(doc["machine_info"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One real gdbench run (crops; numpy, and torch-cuda which skips without a GPU) with
    0.05 s of rounds per benchmark: the saved file and what gdbench printed."""
    out = tmp_path_factory.mktemp("runs")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["run", "--quick", "--workloads", "crops", "--backends", "numpy",
                     "torch-cuda", "--out", str(out), "--", "--benchmark-max-time=0.05"])
    assert code == 0
    saved = list(out.glob("*.json"))
    assert len(saved) == 1, saved
    assert not list(out.glob(".*.tmp")), "the partial file must be renamed, not left behind"
    return saved[0], printed.getvalue()


def test_run_saves_pytest_benchmark_json_with_extra_info(tiny_run: tuple[Path, str]) -> None:
    run = json.loads(tiny_run[0].read_text())
    by_name = {b["name"]: b for b in run["benchmarks"]}
    assert set(by_name) == {"bench_training[crops-numpy]", "bench_roofline[crops]"}
    info = by_name["bench_training[crops-numpy]"]["extra_info"]
    assert set(info) >= EXTRA_INFO_KEYS
    assert info["steps"] == 250 and info["agrees"] is True
    median = by_name["bench_training[crops-numpy]"]["stats"]["median"]
    assert info["step_us"] == pytest.approx(median / 250 * 1e6)  # per step, from the median
    assert by_name["bench_training[crops-numpy]"]["stats"]["data"], "rounds must be saved"
    assert "fingerprint" in run["machine_info"]["gdbench"]
    assert run["machine_info"]["gdbench"]["unavailable"]["torch-cuda"] == "no CUDA device"
    assert len(info["norm_data"]) == len(by_name["bench_training[crops-numpy]"]["stats"]["data"])
    frame = pd.json_normalize(run["benchmarks"])
    assert {"extra_info.step_us", "stats.median"} <= set(frame.columns)


def test_run_prints_the_table_and_where_it_saved(tiny_run: tuple[Path, str]) -> None:
    path, printed = tiny_run
    assert "crops" in printed and "numpy" in printed
    assert "skipped torch-cuda: no CUDA device" in printed
    assert f"saved {path}" in printed or path.name in printed


def test_run_where_every_backend_skips_saves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--workloads", "crops", "--backends", "torch-cuda", "--out",
                 str(tmp_path), "--", "--benchmark-max-time=0.05"])
    assert code == 1
    assert "nothing saved" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(shutil.which("pytest-benchmark") is None and not Path(
    sys.executable).with_name("pytest-benchmark").exists(), reason="pytest-benchmark CLI absent")
def test_saved_run_loads_in_pytest_benchmark_compare(tiny_run: tuple[Path, str]) -> None:
    exe = Path(sys.executable).with_name("pytest-benchmark")
    proc = subprocess.run([str(exe), "compare", str(tiny_run[0])], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "bench_training[crops-numpy]" in proc.stdout


@pytest.mark.e2e
def test_audit_of_a_saved_run_records_its_verdicts_in_the_run(
    tiny_run: tuple[Path, str], tmp_path: Path
) -> None:
    run = tmp_path / "run.json"
    shutil.copy(tiny_run[0], run)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["audit", "--run", str(run), "--seconds", "0.1"])
    saved = json.loads(run.read_text())
    audit = saved["machine_info"]["gdbench"]["audit"]
    assert [(r["workload"], r["backend"]) for r in audit["rows"]] == [("crops", "numpy")]
    row = audit["rows"][0]
    suite = {b["name"]: b for b in saved["benchmarks"]}["bench_training[crops-numpy]"]
    assert row["suite_step_us"] == pytest.approx(suite["extra_info"]["step_us"])
    assert row["step_us"] > 0 and row["verdict"] in ("ok", "ok, spins", "FAIL")
    # The run saved per-round references, so the rounds of both are compared (the per-round
    # lists themselves stay out of the saved record).
    # (On a machine unsettled throughout, the drift-corrected medians, or the medians of
    # both sides timed again taking turns, saying so.)
    assert row["compared"].startswith(("settled ", "medians, drift ×", "medians of "))
    assert "no per-round refs" not in row["compared"] and "round_us" not in row
    if row["compared"].startswith("settled "):
        assert row["interference"] == pytest.approx(
            row["suite_settled_us"] / row["alone_settled_us"])
    assert code == (0 if audit["passed"] else 1)
    assert "gdbench audit:" in printed.getvalue() and "numpy" in printed.getvalue()
    # The benchmarks stay as saved, but for one whose suite timing the audit repeated and
    # kept (the machine unsettled for most of its rounds) or pooled with timings again
    # (suite/alone off while the pairing was clean), which it records.
    decided = [d for d in saved["machine_info"]["gdbench"].get("resettled", [])
               if d.get("by") == "audit"]
    replaced = {d["benchmark"] for d in decided if d["kept"] in ("again", "pooled")}
    before = json.loads(tiny_run[0].read_text())["benchmarks"]
    assert [b["name"] for b in saved["benchmarks"]] == [b["name"] for b in before]
    for old, new in zip(before, saved["benchmarks"], strict=True):
        assert (new["stats"]["data"] != old["stats"]["data"]) if old["name"] in replaced \
            else new == old


def test_suite_path_names_the_installed_suite(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--suite-path"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert (path / "bench_training.py").is_file() and (path / "conftest.py").is_file()


def test_a_run_stopped_by_sigterm_stops_its_benchmark_process_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two stand-in benchmark processes: the first saves its part and exits; the second
    # says it started (its pid) and would run for a minute. SIGTERM comes while it runs.
    started = tmp_path / "second.pid"
    first = ("import json, sys; json.dump({'benchmarks': []}, open(sys.argv[1], 'w'))")
    second = ("import os, sys, time; open(sys.argv[2], 'w').write(str(os.getpid())); "
              "time.sleep(60)")

    def command(args: argparse.Namespace, json_path: Path, selection: Any = ()) -> list[str]:
        script = first if selection == ["first"] else second
        return [sys.executable, "-c", script, str(json_path), str(started)]

    monkeypatch.setattr(launcher, "processes", lambda backends, status: [
        ("first", ["first"]), ("second", ["second"])])
    monkeypatch.setattr(launcher, "pytest_command", command)

    def terminate_when_the_second_runs() -> None:
        deadline = time.monotonic() + 30
        while not (started.exists() and started.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    out = tmp_path / "runs"
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    args = parser.parse_args(["--backends", "numpy", "--workloads", "crops", "--out", str(out)])
    def unhandled(signum: int, frame: Any) -> None:  # were the runner not to catch it
        raise RuntimeError("SIGTERM reached the test: gdbench run did not handle it")

    previous = signal.signal(signal.SIGTERM, unhandled)
    killer = threading.Thread(target=terminate_when_the_second_runs)
    killer.start()
    began = time.monotonic()
    try:
        with pytest.raises(SystemExit) as stopped:
            run_command.run_suite(args)
        assert signal.getsignal(signal.SIGTERM) is unhandled  # the handler is put back
    finally:
        killer.join()
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert time.monotonic() - began < 30  # it did not wait out the second process
    assert list(out.iterdir()) == []  # the first process's part is gone too
    with pytest.raises(ProcessLookupError):  # the second process was stopped (and reaped)
        os.kill(int(started.read_text()), 0)


def test_a_run_cut_short_keeps_the_processes_that_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two stand-in benchmark processes: the first saves numpy's part of a constructed run
    # (training rows) and exits; the second would run for a minute. SIGTERM (a timeout's)
    # comes while it runs: the run is saved with the first part, named as cut short.
    started = tmp_path / "second.pid"
    source = tmp_path / "numpy.json"
    source.write_text(json.dumps(make_run(workloads=("crops",), backends=("numpy",))))
    first = "import shutil, sys; shutil.copy(sys.argv[3], sys.argv[1])"
    second = ("import os, sys, time; open(sys.argv[2], 'w').write(str(os.getpid())); "
              "time.sleep(60)")

    def command(args: argparse.Namespace, json_path: Path, selection: Any = ()) -> list[str]:
        script = first if selection == ["first"] else second
        return [sys.executable, "-c", script, str(json_path), str(started), str(source)]

    monkeypatch.setattr(launcher, "processes", lambda backends, status: [
        ("first", ["first"]), ("second", ["second"])])
    monkeypatch.setattr(launcher, "pytest_command", command)

    def terminate_when_the_second_runs() -> None:
        deadline = time.monotonic() + 30
        while not (started.exists() and started.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    out = tmp_path / "runs"
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    args = parser.parse_args(["--backends", "numpy", "--workloads", "crops", "--out", str(out)])

    def unhandled(signum: int, frame: Any) -> None:  # were the runner not to catch it
        raise RuntimeError("SIGTERM reached the test: gdbench run did not handle it")

    previous = signal.signal(signal.SIGTERM, unhandled)
    killer = threading.Thread(target=terminate_when_the_second_runs)
    killer.start()
    try:
        with pytest.raises(SystemExit) as stopped:
            run_command.run_suite(args)
    finally:
        killer.join()
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 128 + signal.SIGTERM  # still the signal's exit status
    saved = list(out.iterdir())
    assert len(saved) == 1 and saved[0].name.endswith("_crops-cut-short.json")
    doc = json.loads(saved[0].read_text())
    assert doc["machine_info"]["gdbench"]["cut_short"] == {"kept": ["first"],
                                                           "not_finished": ["second"]}
    assert doc["benchmarks"] == json.loads(source.read_text())["benchmarks"]
    printed, err = capsys.readouterr()
    assert printed.splitlines()[-1] == f"saved {saved[0]}"
    assert "stopped before the end; kept the finished processes (first), lost second" in err
    with pytest.raises(ProcessLookupError):  # the second process was stopped (and reaped)
        os.kill(int(started.read_text()), 0)


def test_the_gpus_yardsticks_get_a_process_when_a_backend_trains_on_a_gpu() -> None:
    assert launcher.yardstick_processes({"cpu"}) == []
    assert launcher.yardstick_processes(["cpu", "cuda", "cuda"]) == [
        ("roofline-cuda", ["--isolated", "--backends", "numpy", "--roofline", "gpu"])]


def test_gdbench_run_asks_for_the_gpus_yardsticks_after_the_backends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fakes jax's device as a GPU's ("cuda", as jax reports on a GPU box); the benchmark
    # processes are not started, only recorded (each "fails" at once).
    real_get = run_command.implementations.get
    monkeypatch.setattr(run_command.implementations, "get", lambda name: SimpleNamespace(
        device="cuda") if name == "jax" else real_get(name))
    selections: list[list[str]] = []
    monkeypatch.setattr(launcher, "run_process", lambda cmd, env, **kw: selections.append(
        cmd[cmd.index("--isolated"):]) or 1)
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    args = parser.parse_args(["--backends", "numpy", "jax", "--workloads", "crops", "--out",
                              str(tmp_path)])
    code, saved = run_command.run_suite(args)
    assert (code, saved) == (1, None)
    assert [s[s.index("--roofline") + 1] for s in selections] == ["with", "without", "gpu"]


def _stand_in_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        fails: dict[str, int],
                        writes: dict[str, str | None] | None = None) -> list[str]:
    """Replace the benchmark processes of gdbench run by stand-ins, one per backend: each
    writes its backend's part of a constructed run and exits 0, except those in ``fails``,
    which print a failed benchmark and exit with the given code, and those in ``writes``,
    which exit 0 having written the given text as their part (None: no file at all).
    Returns the labels run."""
    ran: list[str] = []
    writes = writes or {}

    def command(args: argparse.Namespace, json_path: Path, selection: Any = ()) -> list[str]:
        backend = list(selection)[list(selection).index("--backends") + 1]
        ran.append(backend)
        if backend in fails:
            script = (f"print('[  1/1] bench_training[crops-{backend}]: FAILED'); "
                      f"print('AssertionError: {backend} on crops disagrees with numpy'); "
                      f"raise SystemExit({fails[backend]})")
            return [sys.executable, "-c", script]
        if backend in writes:
            text = writes[backend]
            script = "print('[  1/1] bench_training: 1.0 us/step')" if text is None else (
                "import sys; open(sys.argv[1], 'w').write(sys.argv[2])")
            return [sys.executable, "-c", script, str(json_path), text or ""]
        source = tmp_path / f"{backend}.json"
        source.write_text(json.dumps(make_run(workloads=("crops",), backends=(backend,))))
        return [sys.executable, "-c", "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])",
                str(source), str(json_path)]

    monkeypatch.setattr(launcher, "pytest_command", command)
    monkeypatch.setattr(launcher, "processes", lambda backends, status: [
        (name, ["--isolated", "--backends", name]) for name in backends])
    return ran


def test_run_exits_non_zero_and_names_the_backend_whose_process_failed_keeping_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = _stand_in_processes(tmp_path, monkeypatch, {"torch-cpu": 1})
    out = tmp_path / "runs"
    code = main(["run", "--backends", "numpy", "torch-cpu", "jax", "--workloads", "crops",
                 "--out", str(out)])
    printed, err = capsys.readouterr()
    assert code == 1
    assert ran == ["numpy", "torch-cpu", "jax"]  # a failure stops no other backend
    assert "torch-cpu on crops disagrees with numpy" in err  # the failed process's output
    assert "-- torch-cpu (process 2 of 3)\n[  1/1] bench_training[crops-torch-cpu]: FAILED\n" \
        in printed  # its progress line, echoed as it came
    assert "disagrees" not in printed
    assert err.strip().splitlines()[-1] == (
        "gdbench run: the torch-cpu process failed (pytest exit 1): its benchmarks are not "
        "in the saved run; its output is above")
    saved = [p for p in out.iterdir()]
    assert len(saved) == 1 and f"saved {saved[0]}" in printed
    backends = {b["extra_info"]["backend"] for b in json.loads(saved[0].read_text())["benchmarks"]}
    assert backends == {"numpy", "jax", "roofline"}


def test_run_names_every_failed_process_and_exits_with_the_first_failures_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stand_in_processes(tmp_path, monkeypatch, {"torch-cpu": 3, "jax": 1})
    code = main(["run", "--backends", "numpy", "torch-cpu", "jax", "--workloads", "crops",
                 "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 3
    assert err.strip().splitlines()[-2:] == [
        "gdbench run: the torch-cpu process failed (pytest exit 3): its benchmarks are not "
        "in the saved run; its output is above",
        "gdbench run: the jax process failed (pytest exit 1): its benchmarks are not "
        "in the saved run; its output is above"]


def test_run_where_every_process_fails_saves_nothing_and_names_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stand_in_processes(tmp_path, monkeypatch, {"numpy": 1})
    out = tmp_path / "runs"
    code = main(["run", "--backends", "numpy", "--workloads", "crops", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "gdbench run: the numpy process failed (pytest exit 1)" in err
    assert "nothing saved" in err and list(out.iterdir()) == []


@pytest.mark.parametrize("written", [None, "", '{"benchmarks": [', '[{"name": "x"}]',
                                     '{"benchmarks": {}}'])
def test_run_fails_naming_a_backend_whose_process_exits_0_without_a_readable_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    written: str | None
) -> None:
    # torch-cpu's stand-in exits 0 but saves nothing, or nothing pytest-benchmark would
    # write: its backend would be missing from the run without a word.
    _stand_in_processes(tmp_path, monkeypatch, {}, {"torch-cpu": written})
    out = tmp_path / "runs"
    code = main(["run", "--backends", "numpy", "torch-cpu", "jax", "--workloads", "crops",
                 "--out", str(out)])
    printed, err = capsys.readouterr()
    assert code == 1
    assert err.strip().splitlines() == [
        "gdbench run: the torch-cpu process failed (it exited 0 but saved no readable run): "
        "its benchmarks are not in the saved run"]
    (saved,) = out.iterdir()
    assert f"saved {saved}" in printed
    backends = {b["extra_info"]["backend"] for b in json.loads(saved.read_text())["benchmarks"]}
    assert backends == {"numpy", "jax", "roofline"}


def test_run_where_no_process_saves_a_part_saves_nothing_and_names_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stand_in_processes(tmp_path, monkeypatch, {}, {"numpy": None, "jax": "{}"})
    out = tmp_path / "runs"
    code = main(["run", "--backends", "numpy", "jax", "--workloads", "crops", "--out", str(out)])
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "gdbench run: the numpy process failed (it exited 0 but saved no readable run): its "
        "benchmarks are not in the saved run",
        "gdbench run: the jax process failed (it exited 0 but saved no readable run): its "
        "benchmarks are not in the saved run",
        "gdbench run: no backend ran (every one skipped or failed); nothing saved"]
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(("threads", "expected"), [
    (["--threads", "1"], "thread_env"), ([], "inherited")])
def test_each_benchmark_process_starts_with_the_thread_settings_in_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: list[str], expected: str
) -> None:
    # The stand-in processes write down the thread variables they started with, before
    # importing anything but the standard library: the libraries they time would read
    # them at import.
    from gdbench.harness import machine

    names = sorted(machine.thread_env(1)) + ["PYTHONUNBUFFERED"]
    seen = tmp_path / "seen.jsonl"
    source = tmp_path / "part.json"
    source.write_text(json.dumps(make_run(workloads=("crops",), backends=("numpy",))))
    script = ("import json, os, shutil, sys; names = json.loads(sys.argv[3]); "
              "open(sys.argv[4], 'a').write(json.dumps({n: os.environ.get(n) for n in names}) "
              "+ '\\n'); shutil.copy(sys.argv[1], sys.argv[2])")

    def command(args: argparse.Namespace, json_path: Path, selection: Any = ()) -> list[str]:
        return [sys.executable, "-c", script, str(source), str(json_path), json.dumps(names),
                str(seen)]

    monkeypatch.setattr(launcher, "pytest_command", command)
    monkeypatch.setattr(launcher, "processes", lambda backends, status: [
        ("numpy", ["--backends", "numpy"]), ("roofline", ["--backends", "numpy"])])
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # gdbench sets it, not the user
    monkeypatch.setenv("MKL_NUM_THREADS", "7")  # the user's own, kept unless --threads
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", "--backends", "numpy", "--workloads", "crops", "--out",
                     str(tmp_path / "runs"), *threads])
    assert code == 0
    envs = [json.loads(line) for line in seen.read_text().splitlines()]
    assert len(envs) == 2  # every process, the rooflines' too
    want = dict(machine.thread_env(1)) if expected == "thread_env" else {
        n: os.environ.get(n) for n in names}
    want["PYTHONUNBUFFERED"] = "1"
    assert envs == [want, want]
    if expected == "inherited":
        assert want["MKL_NUM_THREADS"] == "7" and want["OMP_NUM_THREADS"] is None
    else:
        assert want["OMP_NUM_THREADS"] == want["MKL_NUM_THREADS"] == "1"


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--backends", "nope"], "unknown backend 'nope'; the known backends are: numpy, "),
    (["--workloads", "tiny"], "unknown workload 'tiny'"),
])
def test_run_refuses_an_unknown_name_in_one_line_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    argv: list[str], fragment: str
) -> None:
    started: list[Any] = []
    monkeypatch.setattr(launcher, "run_process", lambda *a, **k: started.append(a) or 0)
    out = tmp_path / "runs"
    code = main(["run", *argv, "--out", str(out)])
    printed, err = capsys.readouterr()
    assert code == 2 and printed == ""
    assert err.count("\n") == 1 and err.startswith(f"gdbench run: error: {fragment}"), err
    assert started == [] and not out.exists()


def test_run_without_its_suite_says_to_reinstall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(launcher, "BENCHES", tmp_path / "benches")
    code = main(["run", "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (f"gdbench run: error: {tmp_path / 'benches'}: the benchmark suite is "
                   "missing from this install; reinstall gdbench\n")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_run_refuses_threads_below_one_in_one_line(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", f"--threads={value}"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.count("\n") == 1 and err.startswith("gdbench run: error: argument --threads")


# --- the launcher: reading a part back, running a process, stopping on SIGTERM -------------

def _run_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_a_job_named_alone_is_the_job_a_plain_gdbench_run_starts(tmp_path: Path) -> None:
    assert launcher.Job("numpy") == launcher.Job.of(_run_args(), "numpy")
    cmd = launcher.Job("numpy").command(tmp_path / "p.json")
    assert "--dtype=float32" in cmd and "--quick" not in cmd
    assert not any(a.startswith(("--threads", "--backends", "--workloads", "--workload-def"))
                   for a in cmd)


def test_a_job_is_frozen_and_hashable_as_is_its_outcome() -> None:
    import dataclasses

    job = launcher.Job("numpy", ("--backends", "numpy"))
    assert {job: 1}[launcher.Job("numpy", ("--backends", "numpy"))] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.label = "jax"  # type: ignore[misc]
    outcome = launcher.Outcome(job, 0, None, 1.0)
    assert hash(outcome) == hash(launcher.Outcome(job, 0, None, 1.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.code = 1  # type: ignore[misc]


def test_a_job_carries_the_runs_world_and_the_users_workloads(tmp_path: Path) -> None:
    from gdbench.implementations.data_parallel import WORLD_ENV

    args = _run_args("--workloads", "crops")
    args.world = 2
    args.definitions = (("mine", '{"shape": [8, 2, 1], "batch_size": 4}'),)
    job = launcher.Job.of(args, "numpy", ["--backends", "numpy"])
    assert job.extra_env == ((WORLD_ENV, "2"),)
    assert job.env()[WORLD_ENV] == "2"
    assert job.definitions == args.definitions
    cmd = job.command(tmp_path / "p.json")
    assert cmd[:4] == [sys.executable, "-m", "pytest", str(launcher.BENCHES)]
    at = cmd.index("--workload-def")
    assert cmd[at:at + 2] == ["--workload-def", f"mine={args.definitions[0][1]}"]
    assert cmd[-2:] == ["--backends", "numpy"]  # the selection after the definitions


def test_a_job_from_another_checkout_changes_only_the_suites_folder(tmp_path: Path) -> None:
    plain = launcher.Job("numpy", ("--backends", "numpy")).command(tmp_path / "p.json")
    theirs = launcher.Job("numpy", ("--backends", "numpy"), tree=str(tmp_path / "co"))
    cmd = theirs.command(tmp_path / "p.json")
    suite = str(tmp_path / "co" / "benches")
    ours = str(launcher.BENCHES)
    assert cmd == [suite if a == ours else f"--rootdir={suite}" if a == f"--rootdir={ours}"
                   else a for a in plain]
    assert cmd[3] == suite and cmd.count(f"--rootdir={suite}") == 1
    assert sum(a != b for a, b in zip(cmd, plain, strict=True)) == 2


def test_run_job_echoes_the_progress_lines_without_a_prefix_unless_given(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    script = "print('[1/1] bench_training[crops-numpy]: ok')"
    monkeypatch.setattr(launcher, "pytest_command",
                        lambda args, json_path, selection=(): [sys.executable, "-c", script])
    launcher.run_job(launcher.Job("numpy"))
    assert capsys.readouterr().out == "[1/1] bench_training[crops-numpy]: ok\n"
    launcher.LocalExecutor().run(launcher.Job("numpy"), prefix="  base: ")
    assert capsys.readouterr().out == "  base: [1/1] bench_training[crops-numpy]: ok\n"


def test_read_part_reads_a_pytest_benchmark_json(tmp_path: Path) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",))
    path = tmp_path / "part.json"
    path.write_text(json.dumps(doc))
    assert launcher.read_part(path) == doc
    assert launcher.read_part(tmp_path / "missing.json") is None
    assert launcher.read_part(tmp_path) is None  # a folder


@pytest.mark.parametrize("content", [
    b"", b'{"benchmarks": [', b'[{"name": "x"}]', b'{"benchmarks": {}}', b'{"machine_info": {}}',
    b'"benchmarks"', b"\xff\xfe{ not utf-8"])
def test_read_part_answers_none_for_anything_pytest_benchmark_would_not_write(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "part.json"
    path.write_bytes(content)
    assert launcher.read_part(path) is None


def test_run_process_echoes_progress_lines_only_and_returns_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = ("import os, sys; print('collecting'); print('[ 1/2] a: ok'); "
              "print(' [not at the start'); print('[ 2/2] ' + os.getcwd() + ' ' + "
              "os.environ['GDBENCH_TEST_VALUE']); print('table', file=sys.stderr)")
    env = dict(os.environ, GDBENCH_TEST_VALUE="from env")
    code = launcher.run_process([sys.executable, "-c", script], env, cwd=tmp_path,
                                prefix="   base: ")
    printed, err = capsys.readouterr()
    assert code == 0 and err == ""  # a passing process's whole output is not shown
    assert printed == f"   base: [ 1/2] a: ok\n   base: [ 2/2] {tmp_path} from env\n"


def test_each_progress_line_is_flushed_as_it_comes() -> None:
    # gdbench's output may be a pipe (CI's log): a line left in a buffer would show only
    # when the process ends.
    class Recording(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.events: list[str] = []

        def write(self, text: str) -> int:
            self.events.append(text)
            return super().write(text)

        def flush(self) -> None:
            self.events.append("<flush>")

    out = Recording()
    script = "print('[1/2] a: ok'); print('other'); print('[2/2] b: ok')"
    with contextlib.redirect_stdout(out):
        assert launcher.run_process([sys.executable, "-c", script], dict(os.environ)) == 0
    assert [e for e in out.events if e] == ["[1/2] a: ok\n", "<flush>", "[2/2] b: ok\n",
                                            "<flush>"]


def test_a_failed_process_shows_its_last_200_lines_on_stderr(
    capsys: pytest.CaptureFixture[str]
) -> None:
    script = "import sys; [print(f'line {i}') for i in range(250)]; sys.exit(3)"
    assert launcher.run_process([sys.executable, "-c", script], dict(os.environ)) == 3
    printed, err = capsys.readouterr()
    assert printed == ""
    assert err.splitlines() == [f"line {i}" for i in range(50, 250)]


def test_an_interrupted_process_is_asked_to_end_then_killed(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in Popen: reading its output is interrupted (Ctrl-C); it ignores the request
    # to end (its wait times out), so it is killed, and reaped, before the interrupt goes on.
    calls: list[Any] = []

    class Stubborn:
        def __init__(self, cmd: list[str], **kwargs: Any) -> None:
            calls.append(("start", kwargs["env"]["X"], kwargs["cwd"]))
            self.stdout = self._lines()

        def _lines(self) -> Any:
            yield "[ 1/1] a: ok\n"
            raise KeyboardInterrupt

        def terminate(self) -> None:
            calls.append("terminate")

        def kill(self) -> None:
            calls.append("kill")

        def wait(self, timeout: float | None = None) -> int:
            calls.append(("wait", timeout))
            if timeout is not None:
                raise subprocess.TimeoutExpired("stand-in", timeout)
            return -9

    monkeypatch.setattr(launcher.subprocess, "Popen", Stubborn)
    with pytest.raises(KeyboardInterrupt), contextlib.redirect_stdout(io.StringIO()):
        launcher.run_process(["x"], {"X": "1"}, cwd="/")
    assert calls == [("start", "1", "/"), "terminate", ("wait", 10), "kill", ("wait", None)]


def test_an_interrupted_process_that_ends_when_asked_is_not_killed(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []

    class Obliging:
        def __init__(self, cmd: list[str], **kwargs: Any) -> None:
            self.stdout = self._lines()

        def _lines(self) -> Any:
            raise KeyboardInterrupt
            yield ""

        def terminate(self) -> None:
            calls.append("terminate")

        def kill(self) -> None:
            calls.append("kill")

        def wait(self, timeout: float | None = None) -> int:
            calls.append(("wait", timeout))
            return -15

    monkeypatch.setattr(launcher.subprocess, "Popen", Obliging)
    with pytest.raises(KeyboardInterrupt):
        launcher.run_process(["x"], {})
    assert calls == ["terminate", ("wait", 10)]


def test_sigterm_inside_terminate_as_exit_raises_system_exit_143_and_the_handler_returns(
) -> None:
    def unhandled(signum: int, frame: Any) -> None:
        raise RuntimeError("SIGTERM reached the handler outside the block")

    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        with pytest.raises(SystemExit) as stopped, launcher.terminate_as_exit():
            assert signal.getsignal(signal.SIGTERM) is not unhandled
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the signal arrives before this ends
        assert stopped.value.code == 143
        assert signal.getsignal(signal.SIGTERM) is unhandled
        with launcher.terminate_as_exit():
            pass  # a block that ends normally puts the handler back too
        assert signal.getsignal(signal.SIGTERM) is unhandled
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_terminate_as_exit_outside_the_main_thread_leaves_the_handler_alone() -> None:
    # signal.signal may only be called from the main thread: elsewhere, the block runs as is.
    seen: list[Any] = []

    def body() -> None:
        try:
            with launcher.terminate_as_exit():
                seen.append(signal.getsignal(signal.SIGTERM))
        except BaseException as exc:  # pragma: no cover - what the test fails on
            seen.append(exc)

    before = signal.getsignal(signal.SIGTERM)
    worker = threading.Thread(target=body)
    worker.start()
    worker.join()
    assert seen == [before] and signal.getsignal(signal.SIGTERM) is before


# --- timing again what the machine's unsettled moments spoiled ----------------------------------

def _medium_part(backend: str, slowness: float, *, rooflines: bool = False) -> dict[str, Any]:
    """One backend's process on medium, every round (and its reference) ``slowness`` times
    slower than on a settled machine."""
    doc = make_run(workloads=("medium",), backends=(backend,), drift=[slowness], sigma=0.01)
    doc["benchmarks"] = [b for b in doc["benchmarks"]
                         if rooflines or b["extra_info"]["kind"] == "training"]
    return doc


def _calm() -> list[dict[str, Any]]:
    """Three backends' processes on medium, all on a settled machine."""
    return [_medium_part("numpy", 1.0, rooflines=True), _medium_part("torch-manual", 1.0),
            _medium_part("jax", 1.0)]


def test_a_benchmark_spoiled_throughout_stands_out_against_the_workloads_pooled_level() -> None:
    calm = [_medium_part("numpy", 1.0, rooflines=True), _medium_part("torch-manual", 1.0)]
    spoiled = _medium_part("torch-cpu", 1.5)
    # torch-cpu's own references are flat (all 1.5x): only the workload's level, taken
    # over every backend's process, shows that the machine was slower for all of it.
    levels = retime.quiet_levels([*calm, spoiled])
    own = [stats.quiet_level(p["benchmarks"][-1]["extra_info"]["ref_data"])
           for p in [*calm, spoiled]]
    assert levels == {"medium": pytest.approx(sorted(own)[1])}  # the median of the three
    found = retime.spoiled([*calm, spoiled])
    assert list(found) == ["torch-cpu"] and found["torch-cpu"] == {"medium": 1.0}
    assert retime.spoiled([*calm, spoiled], tried={("torch-cpu", "medium")}) == {}
    # One process that reads the reference faster throughout (numpy's, at medium) does
    # not make the others look spoiled.
    fast = _medium_part("numpy", 0.7, rooflines=True)
    assert retime.spoiled([fast, calm[1], _medium_part("torch-cpu", 1.0)]) == {}
    # A process whose reference reads 20% over the others' is not spoiled: on a quiet
    # machine the reference at medium differs that much from one backend's process to
    # the next (retime.RUN.tolerance).
    assert retime.spoiled([*calm, _medium_part("torch-cpu", 1.2)]) == {}


def test_the_better_settled_timing_of_a_benchmark_is_kept() -> None:
    parts = [*_calm(), _medium_part("torch-cpu", 1.5)]
    first = parts[-1]["benchmarks"][0]
    worse = _medium_part("torch-cpu", 1.6)
    assert retime.keep_settled(parts, worse) == [{
        "benchmark": first["name"], "by": "run", "unsettled_first": 1.0, "unsettled_again": 1.0,
        "kept": "first"}]
    assert parts[-1]["benchmarks"][0] is first
    better = _medium_part("torch-cpu", 1.0)
    assert retime.keep_settled(parts, better) == [{
        "benchmark": first["name"], "by": "run", "unsettled_first": 1.0, "unsettled_again": 0.0,
        "kept": "again"}]
    assert parts[-1]["benchmarks"][0] is better["benchmarks"][0]


def test_gdbench_run_times_a_spoiled_benchmark_again_and_saves_the_settled_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Stand-in processes that write constructed parts: torch-cpu's first process ran while
    # the machine was 1.5x slower; its second, asked for medium alone, on a settled one.
    calm = _calm()
    parts = {"numpy": calm[0], "torch-manual": calm[1], "jax": calm[2],
             "torch-cpu": _medium_part("torch-cpu", 1.5),
             "torch-cpu again": _medium_part("torch-cpu", 1.0)}
    commands: list[list[str]] = []

    def command(args: argparse.Namespace, json_path: Path, selection: Any = ()) -> list[str]:
        selection = list(selection)
        commands.append(selection)
        backend = selection[selection.index("--backends") + 1]
        key = f"{backend} again" if len(commands) > 4 else backend
        source = tmp_path / f"{key}.json"
        source.write_text(json.dumps(parts[key]))
        return [sys.executable, "-c", "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])",
                str(source), str(json_path)]

    monkeypatch.setattr(launcher, "pytest_command", command)
    # The stand-ins take no time to time: any budget fits.
    monkeypatch.setattr(retime, "RUN", replace(retime.RUN, budget_share=100.0))
    monkeypatch.setattr(launcher, "processes", lambda backends, status: [
        (name, ["--isolated", "--backends", name])
        for name in ("numpy", "torch-manual", "jax", "torch-cpu")])
    out = tmp_path / "runs"
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    args = parser.parse_args(["--backends", "numpy", "--out", str(out)])
    code, saved = run_command.run_suite(args)
    printed = capsys.readouterr().out
    assert code == 0 and saved is not None
    assert len(commands) == 5  # torch-cpu once more, and nothing else
    assert commands[4] == ["--isolated", "--backends", "torch-cpu", "--roofline", "without",
                           "--workloads", "medium"]
    assert ("-- torch-cpu (again: 100% of its rounds on medium had a reference over 25% "
            "above the quiet level)") in printed
    doc = json.loads(saved.read_text())
    kept = {b["name"]: b for b in doc["benchmarks"]}
    again = parts["torch-cpu again"]["benchmarks"][0]
    assert kept["bench_training[medium-torch-cpu]"]["stats"] == again["stats"]
    assert len(doc["benchmarks"]) == 5  # 4 backends and numpy's roofline: no duplicate
    assert doc["machine_info"]["gdbench"]["resettled"] == [{
        "benchmark": "bench_training[medium-torch-cpu]", "by": "run", "unsettled_first": 1.0,
        "unsettled_again": 0.0, "kept": "again"}]
    assert [p.name for p in out.iterdir()] == [saved.name]  # no partial file left


def test_a_re_run_that_fails_keeps_the_first_timing_and_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parts = {"numpy": _medium_part("numpy", 1.0, rooflines=True),
             "jax": _medium_part("jax", 1.0), "torch-cpu": _medium_part("torch-cpu", 1.5)}
    commands: list[list[str]] = []

    def command(args: argparse.Namespace, json_path: Path, selection: Any = ()) -> list[str]:
        commands.append(list(selection))
        if len(commands) > 3:  # torch-cpu again: its process fails
            return [sys.executable, "-c", "raise SystemExit(1)"]
        backend = list(selection)[list(selection).index("--backends") + 1]
        source = tmp_path / f"{backend}.json"
        source.write_text(json.dumps(parts[backend]))
        return [sys.executable, "-c", "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])",
                str(source), str(json_path)]

    monkeypatch.setattr(launcher, "pytest_command", command)
    # The stand-ins take no time to time: any budget fits.
    monkeypatch.setattr(retime, "RUN", replace(retime.RUN, budget_share=100.0))
    monkeypatch.setattr(launcher, "processes", lambda backends, status: [
        (name, ["--isolated", "--backends", name]) for name in ("numpy", "jax", "torch-cpu")])
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    code, saved = run_command.run_suite(parser.parse_args(["--out", str(tmp_path / "runs")]))
    assert code == 1 and saved is not None
    assert len(commands) == 3 + retime.RUN.passes  # still spoiled: tried each pass
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "gdbench run: timing torch-cpu again failed (pytest exit 1): its first timings are "
        "kept; its output is above")
    kept = {b["name"]: b for b in json.loads(saved.read_text())["benchmarks"]}
    first = parts["torch-cpu"]["benchmarks"][0]
    assert kept["bench_training[medium-torch-cpu]"]["stats"] == first["stats"]


def test_a_re_run_that_would_not_fit_the_budget_is_skipped_and_said(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parts = [*_calm(), _medium_part("torch-cpu", 1.5)]
    calls: list[str] = []

    def run_one(label: str, selection: list[str], what: str) -> dict[str, Any] | None:
        calls.append(label)
        return None

    # torch-cpu's process took 30 s for its one workload; 25% of a 100 s first pass is 25 s.
    assert retime.resettle(parts, run_one, {"numpy": 10.0, "torch-cpu": 30.0}, 100.0) == []
    assert calls == []
    printed = capsys.readouterr().out
    assert printed.count("no time left") == 1  # said once, not once a pass
    assert "torch-cpu: 100% of its rounds on medium had a reference over 25% above the quiet " \
           "level; no time left to time it again (25 s left of the 25% of the first pass " \
           "allowed)" in printed
    # With time for it, it runs again while it stays spoiled, at most RESETTLE_PASSES times
    # (here the re-runs fail, so it stays spoiled).
    retime.resettle(parts, run_one, {"numpy": 10.0, "torch-cpu": 5.0}, 100.0)
    assert calls == ["torch-cpu"] * retime.RUN.passes
    # --quick's smaller share (10%): 10 s, too little for a 20 s re-run.
    calls.clear()
    retime.resettle(parts, run_one, {"numpy": 10.0, "torch-cpu": 20.0}, 100.0,
                     retime.RUN_QUICK)
    assert calls == []
    assert "(10 s left of the 10% of the first pass allowed)" in capsys.readouterr().out


def test_a_benchmark_process_gets_the_thread_settings_and_the_extra_variables() -> None:
    from gdbench.harness import machine

    env = launcher.process_env(1, PYTHONPATH="/side")
    assert env["PYTHONUNBUFFERED"] == "1" and env["PYTHONPATH"] == "/side"
    assert all(env[k] == v for k, v in machine.thread_env(1).items())
    plain = launcher.process_env(None)
    assert all(plain.get(k) == os.environ.get(k) for k in machine.thread_env(1))


def test_a_retimed_benchmark_runs_alone_without_rooflines() -> None:
    assert launcher.retime_selection("jax", ["crops", "small"]) == [
        "--isolated", "--backends", "jax", "--roofline", "without",
        "--workloads", "crops", "small"]
