"""Exit codes of the gdbench commands on failure paths that no other test file asserts.

Every bad input is one line on stderr naming the problem and exit 2, without a traceback
(the contract in gdbench/commands/cli.py). The runs read here are constructed
(tests/_benchjson.py); nothing is timed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _benchjson import bad_run_files, run_cli, write_run

from gdbench.harness import launcher


def _one_line_error(code: int, out: str, err: str, command: str, *fragments: str) -> str:
    assert code == 2, err
    assert out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"gdbench {command}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# --- the gdbench command itself -----------------------------------------------------------------

@pytest.mark.parametrize(("argv", "fragment"), [
    ([], "the following arguments are required: COMMAND"),
    (["bench"], "invalid choice: 'bench'"),
    (["compare"], "the following arguments are required: RUN.json"),
])
def test_a_missing_or_unknown_command_is_one_line(
        capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gdbench") and fragment in lines[0], err


# --- run ------------------------------------------------------------------------------------------

def test_run_with_a_file_where_its_folder_goes_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    started: list[object] = []
    monkeypatch.setattr(launcher, "run_process", lambda *a, **k: started.append(a) or 0)
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    code, out, err = run_cli(capsys, "run", "--backends", "numpy", "--out", str(blocker))
    _one_line_error(code, out, err, "run", f"{blocker}: cannot save runs there")
    assert started == [] and blocker.read_text() == "not a folder"


# --- check ----------------------------------------------------------------------------------------

@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    base = write_run(tmp_path / "base.json", workloads=("crops",), seed=1)
    new = write_run(tmp_path / "new.json", workloads=("crops",), seed=2)
    return base, new


@pytest.mark.parametrize("what", ["missing", "truncated", "not a run"])
def test_check_with_a_bad_confirmation_run_is_one_line(
        tmp_path: Path, runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        what: str) -> None:
    (tmp_path / "bad").mkdir()
    bad = bad_run_files(tmp_path / "bad")[what]
    code, out, err = run_cli(capsys, "check", "--baseline", str(runs[0]), str(runs[1]),
                             "--confirm", str(bad))
    _one_line_error(code, out, err, "check", str(bad))


def test_check_that_cannot_write_its_report_is_one_line(
        tmp_path: Path, runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "report.md"
    folder.mkdir()  # a folder where the report goes
    code, out, err = run_cli(capsys, "check", "--baseline", str(runs[0]), str(runs[1]),
                             "--report", str(folder))
    line = _one_line_error(code, out, err, "check")
    assert line == f"gdbench check: error: {folder}: cannot write the report (Is a directory)"
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "base.json", "new.json", "report.md"]  # no temporary file left


# --- plot -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("what", ["missing", "empty", "not JSON", "no benchmarks"])
def test_plot_of_a_bad_run_is_one_line_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str) -> None:
    bad = bad_run_files(tmp_path)[what]
    out_dir = tmp_path / "plots"
    code, out, err = run_cli(capsys, "plot", str(bad), "-o", str(out_dir), "--no-convergence")
    _one_line_error(code, out, err, "plot", str(bad))
    assert not out_dir.exists()


def test_plot_with_a_backend_that_cannot_run_here_says_why(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        backend_status: dict[str, str | None]) -> None:
    cannot = [name for name, why in backend_status.items() if why]
    if not cannot:
        pytest.skip("every backend can run here")
    run = write_run(tmp_path / "run.json", workloads=("crops",), seed=1)
    out_dir = tmp_path / "plots"
    code, out, err = run_cli(capsys, "plot", str(run), "-o", str(out_dir), "--backends",
                             "numpy", cannot[0])
    _one_line_error(code, out, err, "plot", cannot[0], str(backend_status[cannot[0]]))
    assert not out_dir.exists()  # checked before any figure is written


# --- history --------------------------------------------------------------------------------------

def test_history_that_cannot_write_its_page_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run.json", workloads=("crops",), seed=1)
    blocker = tmp_path / "site"
    blocker.write_text("a file where the page's folder goes")
    page = blocker / "history.html"
    code, out, err = run_cli(capsys, "history", str(run), "-o", str(page))
    line = _one_line_error(code, out, err, "history")
    assert line == f"gdbench history: error: {page}: cannot write the page (File exists)"


# --- ab -------------------------------------------------------------------------------------------

def test_ab_with_an_unknown_workload_is_one_line_before_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no repository here either: the workload is checked first
    code, out, err = run_cli(capsys, "ab", "HEAD~1", "HEAD", "--workloads", "tiny",
                             "--out", str(tmp_path / "out"))
    _one_line_error(code, out, err, "ab", "unknown workload 'tiny'")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_ab_outside_a_git_repository_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    code, out, err = run_cli(capsys, "ab", "HEAD~1", "HEAD", "--out", str(tmp_path / "out"))
    _one_line_error(code, out, err, "ab", f"{tmp_path}: not inside a git repository")
    assert not (tmp_path / "out").exists()
