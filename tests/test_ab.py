"""gdbench ab: two revisions of a temporary git repository, measured in turns.

The repository is a copy of this project's files with three commits: one too old for
ab (no benches/__init__.py), a base and a head. Most tests replace the function that
runs one benchmark process (ab.run_block) by one that writes constructed rounds, so they
test the orchestration in milliseconds; one test runs a real, tiny A/B.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gdbench import implementations
from gdbench.commands import ab, cli
from gdbench.data.errors import InputError
from gdbench.judge import retime

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("pyproject.toml", "gdbench", "data", "implementations", "benches")
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}, check=True)
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A repository of this project's files: commits 'old' (no benches/__init__.py),
    'base' and 'head' (head adds a comment to the numpy backend)."""
    repo = tmp_path_factory.mktemp("origin") / "gdbench"
    repo.mkdir()
    for name in PROJECT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, repo / name)
    git(repo, "init", "-q", "-b", "main")
    init = repo / "benches" / "__init__.py"
    saved = init.read_text()
    init.unlink()
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "old layout")
    old = git(repo, "rev-parse", "HEAD")
    init.write_text(saved)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    base = git(repo, "rev-parse", "HEAD")
    numpy_file = repo / "implementations" / "numpy_manual.py"
    numpy_file.write_text(numpy_file.read_text() + "# head\n")
    git(repo, "commit", "-q", "-am", "head")
    head = git(repo, "rev-parse", "HEAD")
    return {"repo": repo, "old": old, "base": base, "head": head}


@pytest.fixture
def repo(origin: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh clone of the origin (same commits, on main at head), as the current
    directory."""
    clone = tmp_path / "gdbench"
    subprocess.run(["git", "clone", "-q", str(origin["repo"]), str(clone)], check=True)
    monkeypatch.chdir(clone)
    return clone


def _state(repo: Path) -> tuple[str, str, str, list[str]]:
    """What the user sees of the repository: HEAD, status, a file, the worktrees."""
    return (git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain"),
            (repo / "data" / "loader.py").read_text(),
            git(repo, "worktree", "list", "--porcelain").splitlines())


# --- constructed rounds -------------------------------------------------------------------

STEP_US = {"numpy": 6.0, "torch-cpu": 25.0, "jax": 12.0, "roofline": 1.5}


def _bench(name: str, backend: str, data: np.ndarray, ref: np.ndarray | None) -> dict[str, Any]:
    training = ref is not None
    extra: dict[str, Any] = {"kind": "training" if training else "roofline", "backend": backend,
                             "workload": "crops", "steps": 250, "flops": 27000.0,
                             "dtype": "float32", "compile_s": 0.0, "agrees": True,
                             "max_abs_diff_vs_numpy": 0.0 if training else None}
    if ref is not None:
        norm = data / ref
        extra.update(ref_data=ref.tolist(), norm_data=norm.tolist(),
                     norm_median=float(np.median(norm)), ref_s=float(np.median(ref)))
    return {"group": "crops", "name": name, "fullname": f"bench_training.py::{name}",
            "params": {}, "param": name, "extra_info": extra, "options": {},
            "stats": {"median": float(np.median(data)), "rounds": len(data), "iterations": 1,
                      "data": data.tolist()}}


def fake_part(block: ab.Block, slower: dict[str, float] | None = None,
              rounds: int = 20) -> dict[str, Any]:
    """A process's run: its backend on crops (and the roofline in the numpy process),
    each round paired with a reference round at the same moment of a drifting machine;
    ``slower`` slows backends on the head side (1.25 = 25% slower)."""
    rng = np.random.default_rng([ab.ROLES.index(block.side.role), block.index,
                                 len(block.label)])
    drift = 1 + 0.5 * (rng.random(rounds) < 0.3)  # slow episodes hit both alike
    factor = (slower or {}).get(block.label, 1.0) if block.side.role == "head" else 1.0
    ref = STEP_US["roofline"] * 250e-6 * drift * rng.lognormal(0, 0.02, rounds)
    data = STEP_US[block.label] * 250e-6 * factor * drift * rng.lognormal(0, 0.02, rounds)
    benches = [_bench(f"bench_training[crops-{block.label}]", block.label, data, ref)]
    if block.label == "numpy":
        benches.append(_bench("bench_roofline[crops]", "roofline",
                              ref * rng.lognormal(0, 0.02, rounds), None))
    return {"machine_info": {"machine": "x86_64", "cpu": {"brand_raw": "Test CPU"},
                             "gdbench": {"cpu_model": "Test CPU", "cpu_count": 2, "blas": []}},
            "commit_info": {"id": block.side.sha, "dirty": False},
            "datetime": "2026-01-02T03:04:05+00:00", "benchmarks": benches}


Calls = list[tuple[int, str, str]]


@pytest.fixture
def fake_suite(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Calls]:
    """Replace the probe (every backend known and runnable) and the process runner; the
    runner records (block, side, backend), checks that it runs in the side's worktree at
    the side's commit, and writes constructed rounds. Returns the list of calls."""

    def install(slower: dict[str, float] | None = None,
                fail: Callable[[ab.Block], BaseException | None] = lambda b: None,
                edit: Callable[[ab.Block, dict[str, Any]], None] = lambda b, d: None) -> Calls:
        calls: Calls = []

        def probe(sides: list[ab.Side], wanted: list[str], threads: int | None) -> dict:
            names = implementations.names()
            return {s.role: {"names": names, "status": {n: None for n in wanted or names},
                             "own_workloads": True} for s in sides}

        def run_block(block: ab.Block, args: argparse.Namespace) -> int:
            calls.append((block.index, block.side.role, block.label))
            assert git(block.side.tree, "rev-parse", "HEAD") == block.side.sha
            error = fail(block)
            if error is not None:
                raise error
            doc = fake_part(block, slower)
            edit(block, doc)
            block.json_path.write_text(json.dumps(doc))
            return 0

        monkeypatch.setattr(ab, "probe", probe)
        monkeypatch.setattr(ab, "run_block", run_block)
        return calls

    return install


def ab_args(*argv: str) -> argparse.Namespace:
    """gdbench ab's options as its parser reads ``argv``."""
    parser = argparse.ArgumentParser()
    ab.add_arguments(parser)
    return parser.parse_args(argv)


def run_ab(tmp_path: Path, *argv: str) -> int:
    return cli.main(["ab", *argv, "--out", str(tmp_path / "out")])


# --- worktrees ------------------------------------------------------------------------------

def test_worktrees_are_made_at_each_revision_and_removed_after(
        repo: Path, origin: dict[str, Any]) -> None:
    (repo / "data" / "loader.py").write_text("# the user's own edit\n")
    (repo / "notes.txt").write_text("untracked")
    before = _state(repo)
    with ab.worktrees(repo, {"base": origin["base"], "head": origin["head"]}) as trees:
        assert git(trees["base"], "rev-parse", "HEAD") == origin["base"]
        assert git(trees["head"], "rev-parse", "HEAD") == origin["head"]
        assert not (trees["base"] / "implementations" / "numpy_manual.py").read_text(
        ).endswith("# head\n")
        assert (trees["head"] / "implementations" / "numpy_manual.py").read_text(
        ).endswith("# head\n")
        assert not trees["base"].is_relative_to(repo)  # outside the user's tree
        assert trees["base"].parent.name.startswith("gdbench-ab-")  # whose, if left behind
    assert not trees["base"].exists() and not trees["head"].exists()
    assert not trees["base"].parent.exists()
    assert _state(repo) == before  # HEAD, status, the user's edit, one worktree


def test_a_worktree_git_cannot_make_is_refused_in_one_line(repo: Path,
                                                              origin: dict[str, Any]) -> None:
    missing = "0123456789abcdef" * 2 + "01234567"
    with pytest.raises(InputError) as err, \
            ab.worktrees(repo, {"base": origin["base"], "head": missing}):
        pass
    match = re.fullmatch(r"git worktree add (\S+) 0123456789ab failed: (.+)", str(err.value))
    assert match, str(err.value)
    # git's own last line of complaint ("fatal: invalid reference: <sha>").
    assert Path(match.group(1)).name == "head"
    assert match.group(2).startswith("fatal: ") and missing in match.group(2)
    assert len(git(repo, "worktree", "list").splitlines()) == 1  # base's went too


def test_the_worktrees_go_after_an_error_inside(repo: Path, origin: dict[str, Any]) -> None:
    with pytest.raises(RuntimeError), \
            ab.worktrees(repo, {"base": origin["base"], "head": origin["head"]}) as trees:
        raise RuntimeError("boom")
    assert not trees["base"].parent.exists()
    assert len(git(repo, "worktree", "list").splitlines()) == 1


@pytest.mark.parametrize("error", ["Ctrl-C", "SIGTERM", "RuntimeError"])
def test_an_interrupt_or_error_mid_run_leaves_no_worktree(
        repo: Path, tmp_path: Path, fake_suite: Callable[..., Calls], error: str) -> None:
    (repo / "data" / "loader.py").write_text("# the user's own edit\n")
    before = _state(repo)
    handler = signal.getsignal(signal.SIGTERM)
    seen: list[Path] = []

    def fail(block: ab.Block) -> BaseException | None:
        seen.append(block.side.tree)
        if len(seen) < 3:
            return None
        if error == "SIGTERM":  # a cancelled CI job
            os.kill(os.getpid(), signal.SIGTERM)
        return KeyboardInterrupt() if error == "Ctrl-C" else RuntimeError("the runner broke")

    calls = fake_suite(fail=fail)
    if error == "Ctrl-C":
        assert run_ab(tmp_path, "HEAD~1", "HEAD", "--backends", "numpy", "--allow-dirty") == 130
    elif error == "SIGTERM":  # as gdbench run: the launcher's guard, exit 128 + SIGTERM
        with pytest.raises(SystemExit) as stopped:
            run_ab(tmp_path, "HEAD~1", "HEAD", "--backends", "numpy", "--allow-dirty")
        assert stopped.value.code == 128 + signal.SIGTERM
    else:
        with pytest.raises(RuntimeError):
            run_ab(tmp_path, "HEAD~1", "HEAD", "--backends", "numpy", "--allow-dirty")
    assert len(calls) == 3
    assert seen and not any(tree.exists() for tree in seen)
    assert not seen[0].parent.exists()
    assert _state(repo) == before
    assert not (tmp_path / "out").exists()  # nothing half-saved
    assert signal.getsignal(signal.SIGTERM) == handler  # put back


def test_a_real_interrupted_process_is_stopped_and_cleaned_up(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run_block stops its pytest process when interrupted while reading its output."""
    started: list[subprocess.Popen[str]] = []
    real_popen = subprocess.Popen

    class Interrupting(real_popen):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(["sleep", "30"], stdout=subprocess.DEVNULL)
            started.append(self)
            self.stdout = iter_interrupt()  # type: ignore[assignment]

    def iter_interrupt() -> Iterator[str]:
        raise KeyboardInterrupt
        yield ""

    monkeypatch.setattr(ab.subprocess, "Popen", Interrupting)
    side = ab.Side("base", "HEAD", "0" * 40, repo)
    block = ab.Block(0, side, "numpy", ("--backends", "numpy"), repo / "x.json")
    args = ab._suite_args(argparse.Namespace(dtype="float32", quick=True, backends=["numpy"],
                                             workloads=None, threads=None, max_time=0.1))
    with pytest.raises(KeyboardInterrupt):
        ab.run_block(block, args)
    assert started and started[0].poll() is not None  # the process was stopped


# --- refusals -------------------------------------------------------------------------------

def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("gdbench ab: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("rev", ["no-such-branch", "0123456789abcdef", "HEAD~99"])
def test_an_unknown_revision_is_refused_in_one_line(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], rev: str) -> None:
    before = _state(repo)
    assert run_ab(tmp_path, "HEAD", rev) == 2
    assert repr(rev) in _one_line_error(capsys)
    assert _state(repo) == before
    assert not (tmp_path / "out").exists()


def test_a_revision_from_before_the_package_layout_is_refused(
        repo: Path, origin: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run_ab(tmp_path, origin["old"], "HEAD") == 2
    err = _one_line_error(capsys)
    assert "too old" in err and "benches/__init__.py" in err


def test_the_git_refusals_word_for_word(tmp_path: Path) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    with pytest.raises(InputError) as err:
        ab.repository(outside)
    assert str(err.value) == (f"{outside}: not inside a git repository; gdbench ab compares "
                              "two revisions of the repository it runs in")
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    git(empty, "commit", "-q", "--allow-empty", "-m", "nothing")
    with pytest.raises(InputError) as err:
        ab.resolve(empty, "nowhere")
    assert str(err.value) == (f"unknown revision 'nowhere': not a commit of {empty} (a "
                              "branch, tag, commit id, HEAD~1, origin/main ...; fetch it first "
                              "if it is remote)")
    sha = ab.resolve(empty, "main")
    with pytest.raises(InputError) as err:
        ab.check_layout(empty, "base", "main", sha)
    assert str(err.value) == (
        f"base revision main ({sha[:12]}) is too old for gdbench ab: it lacks data, "
        "implementations, benches/__init__.py, benches/conftest.py, gdbench/__init__.py (the "
        "package layout with data/, implementations/ and benches/ at the top)")


def test_a_side_is_titled_by_its_role_name_and_short_commit(tmp_path: Path) -> None:
    side = ab.Side("base", "main", "0123456789abcdef" * 2 + "01234567", tmp_path)
    assert side.title == "base side (main = 0123456789ab)"


def test_head_names_the_checkout_on_a_branch_and_detached(repo: Path,
                                                           origin: dict[str, Any]) -> None:
    assert ab.names_the_checkout(repo, "HEAD") and ab.names_the_checkout(repo, "main")
    assert not ab.names_the_checkout(repo, origin["head"])  # the same commit, by its id
    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    assert ab.names_the_checkout(repo, "HEAD") and ab.names_the_checkout(repo, "@")
    assert not ab.names_the_checkout(repo, "main")


def test_head_with_uncommitted_changes_is_refused_unless_allowed(
        repo: Path, origin: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], fake_suite: Callable[..., Calls]) -> None:
    fake_suite()
    (repo / "data" / "loader.py").write_text("# uncommitted\n")
    for rev in ("HEAD", "main", "@"):
        assert run_ab(tmp_path, "HEAD~1", rev, "--backends", "numpy") == 2
        err = _one_line_error(capsys)
        assert "uncommitted changes (data/loader.py)" in err and "--allow-dirty" in err
    sha = origin["head"][:12]
    assert err == (f"gdbench ab: error: @ is commit {sha}, but the working tree has "
                   "uncommitted changes (data/loader.py) that gdbench ab would not measure; "
                   "commit them, or pass --allow-dirty to compare the commits\n")
    numpy_file = repo / "implementations" / "numpy_manual.py"
    numpy_file.write_text(numpy_file.read_text() + "# more\n")
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--backends", "numpy") == 2
    assert "(data/loader.py and 1 more) that" in _one_line_error(capsys)
    conftest = repo / "benches" / "conftest.py"
    conftest.write_text(conftest.read_text() + "# more\n")
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--backends", "numpy") == 2
    assert "(benches/conftest.py and 2 more) that" in _one_line_error(capsys)
    # A commit id, or HEAD~1, names no uncommitted work: not refused.
    assert run_ab(tmp_path, "HEAD~1", origin["head"], "--backends", "numpy") == 0
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--backends", "numpy", "--allow-dirty") == 0


def test_a_side_that_disagrees_with_numpy_is_refused(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        fake_suite: Callable[..., Calls]) -> None:
    def wrong(block: ab.Block, doc: dict[str, Any]) -> None:
        if block.side.role == "head" and block.label == "torch-cpu":
            doc["benchmarks"][0]["extra_info"].update(agrees=False, max_abs_diff_vs_numpy=0.03)

    fake_suite(edit=wrong)
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--backends", "numpy", "torch-cpu") == 2
    err = _one_line_error(capsys)
    assert "head side" in err and "torch-cpu disagrees with numpy on crops" in err


def test_a_failed_process_is_refused(repo: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch,
                                     fake_suite: Callable[..., Calls]) -> None:
    fake_suite()
    monkeypatch.setattr(ab, "run_block", lambda block, args: 1)
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--backends", "numpy") == 2
    assert "its numpy process failed in block 1 (pytest exit 1" in _one_line_error(capsys)


def test_an_unknown_backend_is_refused(repo: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str],
                                       fake_suite: Callable[..., Calls]) -> None:
    fake_suite()
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--backends", "tensorflow") == 2
    assert "unknown backend 'tensorflow'" in _one_line_error(capsys)


def test_a_selection_without_a_backend_that_can_run_here_is_refused(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def probe(sides: list[ab.Side], wanted: list[str], threads: int | None) -> dict:
        return {s.role: {"names": ["numpy", "torch-cuda"],
                         "status": {"numpy": None, "torch-cuda": "no CUDA device"}}
                for s in sides}

    monkeypatch.setattr(ab, "probe", probe)
    monkeypatch.setattr(ab, "run_block", lambda block, args: pytest.fail("nothing may run"))
    before = _state(repo)
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--backends", "torch-cuda") == 2
    assert "no selected backend can run here: torch-cuda: no CUDA device" in \
        _one_line_error(capsys)
    assert _state(repo) == before  # its worktrees are gone
    assert not (tmp_path / "out").exists()


# --- the user's own problem -----------------------------------------------------------------

def test_both_sides_time_the_users_shape_and_declared_workload_from_their_definitions(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        fake_suite: Callable[..., Calls]) -> None:
    (repo / "pyproject.toml").write_text(
        (repo / "pyproject.toml").read_text()
        + '\n[tool.gdbench.workloads.wide]\nshape = "512,64,2"\nbatch_size = 32\n')
    git(repo, "commit", "-q", "-am", "a workload of the user's")
    fake_suite()
    seen: list[argparse.Namespace] = []
    faked = ab.run_block
    monkeypatch.setattr(ab, "run_block", lambda block, args: seen.append(args) or faked(block,
                                                                                        args))
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--backends", "numpy", "--workloads", "crops",
                  "wide", "--shape", "256,8,3", "--batch", "16", "--epochs", "2") == 0
    assert seen and all(args.workloads == ["crops", "wide", "256x8x3-b16-e2"] for args in seen)
    definitions = {name: json.loads(text) for name, text in seen[0].definitions}
    assert definitions == {
        "wide": {"shape": [512, 64, 2], "batch_size": 32, "epochs": 1, "lr": 0.05, "seed": 0,
                 "noise": 0.1},
        "256x8x3-b16-e2": {"shape": [256, 8, 3], "batch_size": 16, "epochs": 2, "lr": 0.05,
                           "seed": 0, "noise": 0.1}}
    # ... and each side's suite is given them on its command line.
    side = ab.Side("base", "HEAD~1", "1" * 40, tmp_path / "base")
    cmd = ab.side_job(side, seen[0], "numpy").command(tmp_path / "p.json")
    given = [cmd[i + 1] for i, part in enumerate(cmd) if part == "--workload-def"]
    assert sorted(given) == sorted(f"{name}={text}" for name, text in seen[0].definitions)


def test_a_side_whose_suite_cannot_time_the_users_workload_is_refused(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def probe(sides: list[ab.Side], wanted: list[str], threads: int | None) -> dict:
        return {s.role: {"names": ["numpy"], "status": {"numpy": None},
                         **({"own_workloads": True} if s.role == "head" else {})}
                for s in sides}

    monkeypatch.setattr(ab, "probe", probe)
    monkeypatch.setattr(ab, "run_block", lambda block, args: pytest.fail("nothing may run"))
    before = _state(repo)
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--backends", "numpy", "--shape", "64,3,2",
                  "--batch", "8") == 2
    err = _one_line_error(capsys)
    assert err.startswith("gdbench ab: error: base side (HEAD~1 = ") and \
        "too old to time your own workloads (64x3x2-b8-e1)" in err
    assert _state(repo) == before
    # Without a workload of the user's, an old suite is fine.
    sides = {"base": ab.Side("base", "HEAD~1", "0" * 40, tmp_path)}
    ab._check_own_workloads(sides, {"base": {"names": [], "status": {}}}, ())


def test_the_probe_of_a_real_side_says_its_suite_takes_the_users_workloads(
        repo: Path, origin: dict[str, Any], tmp_path: Path) -> None:
    side = ab.Side("head", "HEAD", origin["head"], repo)
    (answer,) = ab.probe([side], ["numpy"], 1).values()
    assert answer["own_workloads"] is True and answer["status"] == {"numpy": None}


def test_a_side_whose_gdbench_does_not_import_from_its_tree_is_refused(tmp_path: Path) -> None:
    """A tree without gdbench of its own imports the installed one: too old. A tree whose
    gdbench fails to import: the last line of its error says why."""
    bare = tmp_path / "bare"
    bare.mkdir()
    side = ab.Side("base", "v1", "ab" * 20, bare)
    with pytest.raises(InputError) as err:
        ab.probe([side], ["numpy"], 1)
    match = re.fullmatch(r"base side \(v1 = abababababab\) is too old for gdbench ab: its "
                         r"gdbench does not run from a bare checkout \(imported (.+)\)",
                         str(err.value))
    assert match, str(err.value)
    imported = Path(match.group(1))  # the installed gdbench, wherever that is
    assert imported.parts[-2:] == ("gdbench", "__init__.py") and not imported.is_relative_to(bare)
    broken = tmp_path / "broken"
    (broken / "gdbench").mkdir(parents=True)
    (broken / "gdbench" / "__init__.py").write_text("raise ImportError('broken on purpose')\n")
    side = ab.Side("head", "v2", "cd" * 20, broken)
    with pytest.raises(InputError) as err:
        ab.probe([side], ["numpy"], 1)
    assert str(err.value) == ("head side (v2 = cdcdcdcdcdcd): its gdbench does not run from a "
                              "checkout on PYTHONPATH (ImportError: broken on purpose)")


def test_a_failed_probe_stops_the_other_sides_probe(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """base's gdbench fails at once; head's would import for a minute: it is stopped."""
    trees = {}
    for role, body in (("base", "raise ImportError('broken')"), ("head", "import time\n"
                                                                    "time.sleep(60)")):
        (tmp_path / role / "gdbench").mkdir(parents=True)
        (tmp_path / role / "gdbench" / "__init__.py").write_text(body + "\n")
        trees[role] = ab.Side(role, role, "0" * 40, tmp_path / role)
    started: list[subprocess.Popen[str]] = []
    real_popen = subprocess.Popen

    def recording(*args: Any, **kwargs: Any) -> subprocess.Popen[str]:
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(ab.subprocess, "Popen", recording)
    with pytest.raises(InputError, match="ImportError: broken"):
        ab.probe([trees["base"], trees["head"]], ["numpy"], 1)
    assert len(started) == 2 and all(proc.poll() is not None for proc in started)


def test_the_last_line_of_a_processes_complaint() -> None:
    assert ab._last_line("Traceback ...\n  raise\nValueError: bad\n\n  \n") == "ValueError: bad"
    assert ab._last_line("  one  ") == "one"
    assert ab._last_line(" \n\n") == "(no output)"


@pytest.mark.parametrize(("argv", "message"), [
    (("--shape", "64,3,2", "--batch", "0"), "--batch"),
    (("--shape", "64,3"), "--shape"),
    (("--batch", "8"), "--batch describes your own problem"),
    (("--shape", "64,3,2"), "--batch B is needed with --shape or --data"),
    (("--data", "missing.csv", "--batch", "8"), "missing.csv"),
    (("--workloads", "nope"), "unknown workload 'nope'"),
])
def test_bad_own_problems_are_refused_in_one_line_before_any_worktree(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], message: str) -> None:
    monkeypatch.setattr(ab, "worktrees", lambda *a: pytest.fail("no worktree may be made"))
    try:
        code = run_ab(tmp_path, "HEAD~1", "HEAD", *argv)
    except SystemExit as exc:  # argparse's own error
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


# --- the order of the turns -----------------------------------------------------------------

def test_the_sides_take_turns_backend_by_backend_and_swap_who_goes_first(
        repo: Path, tmp_path: Path, fake_suite: Callable[..., Calls]) -> None:
    calls = fake_suite()
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--backends", "numpy", "torch-cpu", "jax",
                  "--blocks", "3") == 0
    assert calls == [
        (0, "base", "numpy"), (0, "head", "numpy"),
        (0, "head", "torch-cpu"), (0, "base", "torch-cpu"),
        (0, "base", "jax"), (0, "head", "jax"),
        (1, "head", "numpy"), (1, "base", "numpy"),
        (1, "base", "torch-cpu"), (1, "head", "torch-cpu"),
        (1, "head", "jax"), (1, "base", "jax"),
        (2, "base", "numpy"), (2, "head", "numpy"),
        (2, "head", "torch-cpu"), (2, "base", "torch-cpu"),
        (2, "base", "jax"), (2, "head", "jax"),
    ]


def test_each_process_saves_its_part_under_its_side_block_and_backend(tmp_path: Path) -> None:
    sides = {role: ab.Side(role, role, "0" * 40, tmp_path / role) for role in ab.ROLES}
    procs = {role: [("numpy", ["-k", "numpy"]), ("jax", ["-k", "jax"])] for role in ab.ROLES}
    plan = ab.schedule(sides, procs, blocks=2, parts=tmp_path / "parts")
    assert [b.json_path.relative_to(tmp_path / "parts").as_posix() for b in plan] == [
        "base-0-numpy.json", "head-0-numpy.json", "head-0-jax.json", "base-0-jax.json",
        "head-1-numpy.json", "base-1-numpy.json", "base-1-jax.json", "head-1-jax.json"]
    assert plan[2].selection == ("-k", "jax")


def test_a_blocks_process_runs_with_its_sides_progress_prefix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def run_job(job: Any, prefix: str, keep: Path) -> Any:
        seen.append((job.tree, prefix, keep))
        return argparse.Namespace(code=3)

    monkeypatch.setattr(ab.launcher, "run_job", run_job)
    args = ab._suite_args(ab_args("base", "head"))
    for role in ab.ROLES:
        side = ab.Side(role, role, "0" * 40, tmp_path / role)
        block = ab.Block(0, side, "numpy", ("-k", "numpy"), tmp_path / f"{role}.json")
        assert ab.run_block(block, args) == 3
    assert seen == [(str(tmp_path / "base"), "  base ", tmp_path / "base.json"),
                    (str(tmp_path / "head"), "  head ", tmp_path / "head.json")]


def test_a_part_that_disagrees_or_a_failed_process_is_refused_word_for_word(
        tmp_path: Path) -> None:
    side = ab.Side("head", "HEAD", "ab" * 20, tmp_path)
    block = ab.Block(1, side, "jax", (), tmp_path / "part.json")
    good = fake_part(block)
    with pytest.raises(InputError) as err:
        ab.check_part(block, 1, good)  # a part saved, but pytest failed
    assert str(err.value) == ("head side (HEAD = abababababab): its jax process failed in "
                              "block 2 (pytest exit 1, output above)")
    with pytest.raises(InputError, match=r"failed in block 2 \(pytest exit 0"):
        ab.check_part(block, 0, None)
    ab.check_part(block, 0, good)
    for bench in good["benchmarks"]:
        bench["extra_info"].update(agrees=False, max_abs_diff_vs_numpy=0.03)
    with pytest.raises(InputError) as err:
        ab.check_part(block, 0, good)
    assert str(err.value) == ("head side (HEAD = abababababab): jax disagrees with numpy on "
                              "crops (weights off by up to 0.03); nothing to compare")


def test_the_backend_refusals_word_for_word() -> None:
    found = {"base": {"names": ["numpy", "jax"], "status": {"numpy": None, "jax": "no jax"}},
             "head": {"names": ["numpy", "torch-cpu"],
                      "status": {"numpy": None, "torch-cpu": "no torch"}}}
    with pytest.raises(InputError) as err:
        ab._selection(argparse.Namespace(backends=["nope"]), found)
    assert str(err.value) == ("unknown backend 'nope'; the known backends are: numpy, jax, "
                              "torch-cpu")
    for role in ab.ROLES:
        found[role]["status"]["numpy"] = "no numpy"
    with pytest.raises(InputError) as err:
        ab._selection(argparse.Namespace(backends=None), found)
    assert str(err.value) == ("no selected backend can run here: numpy: no numpy; jax: no "
                              "jax; torch-cpu: no torch")


def test_without_backends_named_each_side_runs_its_own(tmp_path: Path) -> None:
    found = {"base": {"names": ["numpy", "jax"], "status": {"numpy": None, "jax": None}},
             "head": {"names": ["numpy"], "status": {"numpy": None}}}
    procs, unavailable = ab._selection(argparse.Namespace(backends=None), found)
    labels = {role: [label for label, _ in procs[role]] for role in ab.ROLES}
    assert "jax" in labels["base"] and "jax" not in labels["head"] and unavailable == {}


def test_a_side_too_old_for_the_users_workloads_word_for_word(tmp_path: Path) -> None:
    sides = {role: ab.Side(role, role, "0" * 40, tmp_path) for role in ab.ROLES}
    found = {"base": {"own_workloads": True}, "head": {"own_workloads": False}}
    with pytest.raises(InputError) as err:
        ab._check_own_workloads(sides, found, [("mine", "a.toml"), ("theirs", "b.toml")])
    assert str(err.value) == (
        "head side (head = 000000000000) is too old to time your own workloads (mine, "
        "theirs): its suite has no --workload-def; compare gdbench's own workloads instead")


def test_each_ab_gets_a_folder_of_its_own(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    real = time.strftime  # ab.time is the time module: the clock reads 1970 for this test
    monkeypatch.setattr(ab.time, "strftime", lambda fmt, *_: real(fmt, time.gmtime(0)))
    commits = {"base": "0123456789abcdef" * 2 + "0" * 8, "head": "fedcba9876543210" * 2 + "0" * 8}
    names = []
    for _ in range(3):
        folder = ab._out_dir(tmp_path, commits)
        folder.mkdir()
        names.append(folder.name)
    stem = "19700101-000000_0123456789_fedcba9876"
    assert names == [stem, f"{stem}-2", f"{stem}-3"]


def test_the_neighbour_note_of_a_process_run_again() -> None:
    assert ab._neighbour_note(np.array([True, False, False, False])) == (
        ", or a busy neighbour beside 25% of them")
    assert ab._neighbour_note(np.array([False, False])) == ""
    assert ab._neighbour_note(None) == ""


def test_both_sides_time_float32_unless_told(tmp_path: Path) -> None:
    assert ab_args("a", "b").dtype == "float32"


def test_quick_takes_one_turn_per_backend_still_alternating_who_goes_first(
        repo: Path, tmp_path: Path, fake_suite: Callable[..., Calls]) -> None:
    calls = fake_suite()
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--quick", "--backends", "numpy", "torch-cpu",
                  "jax") == 0
    assert calls == [(0, "base", "numpy"), (0, "head", "numpy"),
                     (0, "head", "torch-cpu"), (0, "base", "torch-cpu"),
                     (0, "base", "jax"), (0, "head", "jax")]


def test_a_backend_that_only_one_side_has_runs_on_that_side_alone(tmp_path: Path) -> None:
    sides = {role: ab.Side(role, role, role * 10, tmp_path / role) for role in ab.ROLES}
    procs = {"base": [("numpy", ["--backends", "numpy"])],
             "head": [("numpy", ["--backends", "numpy"]), ("jax", ["--backends", "jax"])]}
    plan = ab.schedule(sides, procs, 2, tmp_path)
    assert [(b.index, b.side.role, b.label) for b in plan] == [
        (0, "base", "numpy"), (0, "head", "numpy"), (0, "head", "jax"),
        (1, "head", "numpy"), (1, "base", "numpy"), (1, "head", "jax")]
    assert len({b.json_path for b in plan}) == len(plan)


def test_a_confirmation_turn_keeps_each_backends_place_in_the_alternation(
        tmp_path: Path) -> None:
    sides = {role: ab.Side(role, role, role * 10, tmp_path / role) for role in ab.ROLES}
    procs = {role: [(name, ["--backends", name]) for name in ("numpy", "torch-cpu", "jax")]
             for role in ab.ROLES}
    plan = ab.schedule(sides, procs, 1, tmp_path, first=1, only={"torch-cpu", "jax"})
    assert [(b.index, b.side.role, b.label) for b in plan] == [
        (1, "base", "torch-cpu"), (1, "head", "torch-cpu"),
        (1, "head", "jax"), (1, "base", "jax")]


def test_each_side_runs_gdbench_runs_command_on_its_own_suite(tmp_path: Path) -> None:
    side = ab.Side("head", "HEAD", "1" * 40, tmp_path / "head")
    args = ab._suite_args(argparse.Namespace(dtype="float32", quick=True, backends=None,
                                             workloads=["crops"], threads=1, max_time=None))
    cmd = ab.side_job(side, args, "jax", ["--isolated", "--backends", "jax", "--roofline",
                                          "without"]).command(tmp_path / "p.json")
    assert str(tmp_path / "head" / "benches") in cmd
    assert f"--rootdir={tmp_path / 'head' / 'benches'}" in cmd
    assert not any(str(ROOT / "benches") in part for part in cmd)
    for option in ("--quick", "--threads=1", "--benchmark-save-data", "--isolated",
                   f"--benchmark-max-time={ab.QUICK_MAX_TIME_S}", f"--benchmark-json="
                   f"{tmp_path / 'p.json'}"):
        assert option in cmd
    assert cmd[cmd.index("--backends") + 1] == "jax"
    assert ab.side_env(side, 1)["PYTHONPATH"] == str(tmp_path / "head")
    assert ab.side_env(side, 1)["OMP_NUM_THREADS"] == "1"


# --- merging and the gate's verdicts --------------------------------------------------------

def test_merging_blocks_concatenates_the_rounds_of_each_benchmark(tmp_path: Path) -> None:
    side = ab.Side("base", "HEAD", "2" * 40, tmp_path)
    parts = [fake_part(ab.Block(i, side, label, (), tmp_path / "x"))
             for i in range(2) for label in ("numpy", "torch-cpu")]
    parts[3]["benchmarks"][0]["extra_info"]["agrees"] = False
    doc = ab.merge_side(parts, {})
    names = [b["name"] for b in doc["benchmarks"]]
    assert names == ["bench_training[crops-numpy]", "bench_roofline[crops]",
                     "bench_training[crops-torch-cpu]"]
    merged = doc["benchmarks"][0]
    copies = [parts[0]["benchmarks"][0], parts[2]["benchmarks"][0]]
    data = copies[0]["stats"]["data"] + copies[1]["stats"]["data"]
    assert merged["stats"]["data"] == data and merged["stats"]["rounds"] == 40
    assert merged["stats"]["median"] == pytest.approx(float(np.median(data)))
    norm = merged["extra_info"]["norm_data"]
    assert norm == copies[0]["extra_info"]["norm_data"] + copies[1]["extra_info"]["norm_data"]
    assert np.allclose(np.asarray(data) / merged["extra_info"]["ref_data"], norm)  # aligned
    assert merged["extra_info"]["norm_median"] == pytest.approx(float(np.median(norm)))
    assert merged["extra_info"]["step_us"] == pytest.approx(np.median(data) / 250 * 1e6)
    assert merged["extra_info"]["blocks"] == 2
    assert doc["benchmarks"][2]["extra_info"]["agrees"] is False  # one block disagreed


def test_a_25_percent_slower_backend_on_the_head_side_fails_and_is_named(
        repo: Path, origin: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], fake_suite: Callable[..., Calls]) -> None:
    fake_suite(slower={"torch-cpu": 1.25})
    report = tmp_path / "report.md"
    code = run_ab(tmp_path, "HEAD~1", "HEAD", "--backends", "numpy", "torch-cpu", "jax",
                  "--report", str(report))
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL: 1 regression" in out
    rows = {line.split("|")[2].strip(): line for line in out.splitlines()
            if line.startswith("| crops")}
    assert "regression" in rows["torch-cpu"] and "+25" in rows["torch-cpu"]
    assert "ok" in rows["numpy"] and "ok" in rows["jax"]
    assert report.read_text() in out
    (folder,) = (tmp_path / "out").iterdir()
    assert folder.name.endswith(f"_{origin['base'][:10]}_{origin['head'][:10]}")
    base = json.loads((folder / "base.json").read_text())
    head = json.loads((folder / "head.json").read_text())
    assert base["commit_info"]["id"] == origin["base"]
    assert head["commit_info"]["id"] == origin["head"]
    assert head["machine_info"]["gdbench"]["ab"]["role"] == "head"
    assert all(b["stats"]["rounds"] == 2 * 20 for b in head["benchmarks"])
    assert (folder / "report.md").read_text() == report.read_text()
    assert cli.main(["compare", str(folder / "base.json"), str(folder / "head.json")]) == 0
    assert out.splitlines()[0] == (
        f"gdbench ab: base side (HEAD~1 = {origin['base'][:12]}) vs head side (HEAD = "
        f"{origin['head'][:12]}): 2 blocks of 1 s per benchmark, 12 processes in turns, "
        "threads unpinned")


def test_a_slowdown_under_the_threshold_given_passes(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        fake_suite: Callable[..., Calls]) -> None:
    fake_suite(slower={"torch-cpu": 1.25})
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--quick", "--backends", "numpy", "torch-cpu",
                  "--threshold", "30%") == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(
        ": 1 block of 1 s per benchmark, 4 processes in turns, threads unpinned")
    # A namespace built by hand may give the threshold as the command line writes it.
    args = ab_args("HEAD~1", "HEAD", "--quick", "--backends", "numpy", "torch-cpu", "--out",
                   str(tmp_path / "by-hand"))
    args.threshold = "30%"
    assert ab.main(args) == 0
    args.threshold = "20%"
    assert ab.main(args) == 1


def test_the_probe_is_asked_about_the_backends_named_with_the_threads_given(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []

    def probe(sides: list[ab.Side], wanted: list[str], threads: int | None) -> dict:
        asked.append(([s.role for s in sides], list(wanted), threads))
        raise InputError("stop here")

    monkeypatch.setattr(ab, "probe", probe)
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--backends", "numpy", "jax",
                  "--threads", "1") == 2
    assert asked == [(["base", "head"], ["numpy", "jax"], 1)]


def test_confirm_times_the_regressed_backend_again_and_fails_when_it_shows_twice(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        fake_suite: Callable[..., Calls]) -> None:
    calls = fake_suite(slower={"torch-cpu": 1.25})
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--quick", "--confirm", "--backends", "numpy",
                  "torch-cpu", "jax") == 1
    out = capsys.readouterr().out
    # The first turn, then a confirmation turn of torch-cpu alone: two blocks of both
    # sides, the side that went second going first.
    assert calls[2:4] == [(0, "head", "torch-cpu"), (0, "base", "torch-cpu")]
    assert calls[6:] == [(1, "base", "torch-cpu"), (1, "head", "torch-cpu"),
                         (2, "head", "torch-cpu"), (2, "base", "torch-cpu")]
    assert out.rstrip().endswith("gdbench ab: ❌ FAIL: 1 regression in both turns "
                                 "(crops torch-cpu)")
    assert ("gdbench ab: regression in crops torch-cpu; confirming it with another turn of "
            "both sides") in out.splitlines()
    (folder,) = (tmp_path / "out").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == [
        "base.json", "confirm-base.json", "confirm-head.json", "head.json", "report.md"]


def test_the_report_of_two_turns_and_its_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate's report of each turn (a stand-in here), one after the other under a
    heading, then the verdict; markdown headings only in markdown."""
    monkeypatch.setattr(ab.regress, "build_report",
                        lambda base, head, threshold, fmt: (f"{fmt} {base}-{head}\n", 1))
    turns = [("b1", "h1"), ("b2", "h2")]
    assert ab._report(turns[:1], 0.1, "md", None) == "md b1-h1\n"
    assert ab._report(turns, 0.1, "md", "PASS") == (
        "md b1-h1\n\n### Confirmation turn\n\nmd b2-h2\n\n### gdbench ab: PASS\n")
    assert ab._report(turns, 0.1, "table", "FAIL") == (
        "table b1-h1\n\nConfirmation turn\n\ntable b2-h2\n\ngdbench ab: FAIL\n")


def test_regressions_are_named_by_workload_and_backend() -> None:
    frame = pd.DataFrame({"name": ["t[crops-numpy]", "t[small-jax]"],
                          "workload": ["crops", "small"]})
    found = {"t[crops-numpy]": "numpy", "t[small-jax]": "jax", "t[gone-jax]": "jax"}
    assert ab._named(found, frame) == "crops numpy, small jax, ? jax"


def test_two_regressions_confirmed_are_counted_in_the_plural(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        fake_suite: Callable[..., Calls]) -> None:
    fake_suite(slower={"torch-cpu": 1.25, "jax": 1.25})
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--quick", "--confirm", "--backends", "numpy",
                  "torch-cpu", "jax") == 1
    assert capsys.readouterr().out.rstrip().endswith(
        "gdbench ab: ❌ FAIL: 2 regressions in both turns (crops torch-cpu, crops jax)")


def test_confirm_passes_a_regression_that_does_not_show_again(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        fake_suite: Callable[..., Calls]) -> None:
    calls = fake_suite(edit=_fluke("torch-cpu"))
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--quick", "--confirm", "--backends", "numpy",
                  "torch-cpu") == 0
    out = capsys.readouterr().out
    assert len(calls) == 4 + 4
    assert "FAIL: 1 regression" in out  # the first turn's report
    assert out.rstrip().endswith("gdbench ab: ✅ PASS: the first turn's regression "
                                 "(crops torch-cpu) did not show again")
    fake_suite(edit=_fluke("torch-cpu", "jax"))
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--quick", "--confirm", "--backends", "numpy",
                  "torch-cpu", "jax") == 0
    assert capsys.readouterr().out.rstrip().endswith(
        "gdbench ab: ✅ PASS: the first turn's regressions (crops torch-cpu, crops jax) did not "
        "show again")


def _fluke(*backends: str) -> Callable[[ab.Block, dict[str, Any]], None]:
    def fluke(block: ab.Block, doc: dict[str, Any]) -> None:
        """The head's process of the first turn had a bad neighbour throughout."""
        if block.side.role == "head" and block.label in backends and \
                block.json_path.parent.name != "confirm":
            bench = doc["benchmarks"][0]
            bench["stats"]["data"] = [x * 1.3 for x in bench["stats"]["data"]]
            bench["stats"]["median"] *= 1.3
            info = bench["extra_info"]
            info["norm_data"] = [x * 1.3 for x in info["norm_data"]]
    return fluke


def test_the_closing_lines_name_what_was_saved_and_skipped(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        fake_suite: Callable[..., Calls], monkeypatch: pytest.MonkeyPatch) -> None:
    fake_suite()

    def probe(sides: list[ab.Side], wanted: list[str], threads: int | None) -> dict:
        status = {"numpy": None, "jax": "no jax here"}
        return {s.role: {"names": implementations.names(), "status": status,
                         "own_workloads": True} for s in sides}

    monkeypatch.setattr(ab, "probe", probe)
    assert run_ab(tmp_path, "HEAD", "HEAD", "--quick", "--backends", "numpy", "jax",
                  "--format", "table") == 0
    out = capsys.readouterr().out
    (folder,) = (tmp_path / "out").iterdir()
    lines = out.splitlines()
    assert "skipped jax: no jax here" in lines
    saved = next(line for line in lines if line.startswith("saved "))
    match = re.fullmatch(rf"saved {re.escape(str(folder))}/ \(base.json, head.json\) in "
                         r"(\d+) s", saved)
    assert match and int(match.group(1)) < 600
    report = out[out.index(saved) + len(saved) + 2:]
    assert report.strip() and "|" not in report  # the table format, not markdown
    assert "|" in (folder / "report.md").read_text()


def test_without_confirm_a_regression_fails_at_once(
        repo: Path, tmp_path: Path, fake_suite: Callable[..., Calls]) -> None:
    calls = fake_suite(slower={"jax": 1.3})
    assert run_ab(tmp_path, "HEAD~1", "HEAD", "--quick", "--backends", "numpy", "jax") == 1
    assert len(calls) == 4


def test_identical_sides_pass(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              fake_suite: Callable[..., Calls]) -> None:
    fake_suite()
    assert run_ab(tmp_path, "HEAD", "HEAD", "--backends", "numpy", "torch-cpu") == 0
    assert "PASS: 0 regressions" in capsys.readouterr().out


def test_merging_keeps_the_wake_probe_only_where_every_block_has_it(tmp_path: Path) -> None:
    side = ab.Side("base", "HEAD", "2" * 40, tmp_path)
    parts = [fake_part(ab.Block(i, side, "numpy", (), tmp_path / "x")) for i in range(3)]
    for i, part in enumerate(parts):
        part["benchmarks"][0]["extra_info"]["wake_data"] = [float(i + 1)] * 20
    merged = ab.merge_side(parts, {})["benchmarks"][0]["extra_info"]
    assert merged["wake_data"] == [1.0] * 20 + [2.0] * 20 + [3.0] * 20  # in block order
    del parts[1]["benchmarks"][0]["extra_info"]["wake_data"]
    merged = ab.merge_side(parts, {})["benchmarks"][0]["extra_info"]
    assert "wake_data" not in merged  # the first block's alone would be misaligned


def test_merge_refuses_a_block_without_saved_rounds(tmp_path: Path) -> None:
    side = ab.Side("base", "HEAD", "2" * 40, tmp_path)
    part = fake_part(ab.Block(0, side, "jax", (), tmp_path / "x"))
    del part["benchmarks"][0]["stats"]["data"]
    with pytest.raises(InputError, match="saved no rounds"):
        ab.merge_side([part], {})


# --- one real A/B ---------------------------------------------------------------------------

@pytest.mark.e2e
def test_a_real_ab_of_one_tiny_benchmark(repo: Path, origin: dict[str, Any], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Both sides really run their own suite from their worktrees: numpy only, on crops
    and on a tiny problem of the user's (--shape)."""
    before = _state(repo)
    code = run_ab(tmp_path, "HEAD~1", "HEAD", "--backends", "numpy", "--workloads", "crops",
                  "--shape", "64,3,2", "--batch", "16", "--max-time", "0.05",
                  "--threshold", "50%")
    out, err = capsys.readouterr()
    assert code in (0, 1), out + err  # a verdict, whatever this busy machine's noise
    assert "| crops | numpy |" in out and "| 64x3x2-b16-e1 | numpy |" in out
    (folder,) = (tmp_path / "out").iterdir()
    for role in ab.ROLES:
        doc = json.loads((folder / f"{role}.json").read_text())
        assert doc["commit_info"]["id"] == origin[role]  # ran in its own worktree
        training = {b["extra_info"]["workload"]: b for b in doc["benchmarks"]
                    if b["extra_info"]["kind"] == "training"}
        assert set(training) == {"crops", "64x3x2-b16-e1"}
        for bench in training.values():
            # Two blocks, and up to two more per block when the machine was unsettled.
            assert 2 <= bench["extra_info"]["blocks"] <= 6
            assert len(bench["extra_info"]["norm_data"]) == bench["stats"]["rounds"]
        assert training["64x3x2-b16-e1"]["extra_info"]["workload_def"] == {
            "shape": [64, 3, 2], "batch_size": 16, "epochs": 1, "lr": 0.05, "seed": 0,
            "noise": 0.1}
        assert training["64x3x2-b16-e1"]["extra_info"]["steps"] == 4
    assert _state(repo) == before


def _neighbour(rounds: slice, always: bool = False) -> Callable[[ab.Block, dict[str, Any]], None]:
    """An edit for fake_suite: a host neighbour slows the head's numpy process in the
    given rounds, the reference by 25% and numpy's loop by 60% (not alike, as measured),
    in its first run only unless ``always``."""
    def edit(block: ab.Block, doc: dict[str, Any]) -> None:
        if (block.side.role, block.label) != ("head", "numpy"):
            return
        if "again" in block.json_path.name and not always:
            return
        bench = doc["benchmarks"][0]
        info = bench["extra_info"]
        data, ref = np.array(bench["stats"]["data"]), np.array(info["ref_data"])
        data[rounds] *= 1.6
        ref[rounds] *= 1.25
        bench["stats"]["data"] = data.tolist()
        bench["stats"]["median"] = float(np.median(data))
        info.update(ref_data=ref.tolist(), norm_data=(data / ref).tolist())
    return edit


def _calm_parts(tmp_path: Path, edit: Callable[[ab.Block, dict[str, Any]], None]
                ) -> list[tuple[ab.Block, dict[str, Any]]]:
    sides = {role: ab.Side(role, role, sha, tmp_path / role)
             for role, sha in zip(ab.ROLES, ("a" * 40, "b" * 40), strict=True)}
    done = []
    for role in ab.ROLES:
        block = ab.Block(0, sides[role], "numpy", (), tmp_path / f"{role}-0-numpy.json")
        doc = fake_part(block)
        for bench in doc["benchmarks"]:  # a calm machine: no slow episodes
            info = bench["extra_info"]
            if "ref_data" in info:
                ref = np.full(20, float(np.median(info["ref_data"])))
                data = ref * info["norm_median"]
                bench["stats"]["data"] = data.tolist()
                info.update(ref_data=ref.tolist(), norm_data=(data / ref).tolist())
        edit(block, doc)
        done.append((block, doc))
    return done


def test_a_process_with_most_rounds_unsettled_is_named_for_another_run(tmp_path: Path) -> None:
    done = _calm_parts(tmp_path, _neighbour(slice(0, 16)))  # 16 of 20 rounds: 80%
    ((block, why),) = ab.unsettled(done)
    assert (block.side.role, block.label) == ("head", "numpy")
    assert why == ("80% of bench_training.py::bench_training[crops-numpy]'s rounds had a "
                   "reference over 10% above its quiet level")
    assert ab.unsettled(done, tried={block}) == []
    # Half the rounds unsettled is not more than half: the gate has enough of the rest.
    assert ab.unsettled(_calm_parts(tmp_path, _neighbour(slice(0, 10)))) == []
    assert ab.unsettled(_calm_parts(tmp_path, _neighbour(slice(0, 11))))[0][0] == block


def test_an_unsettled_process_is_run_again_and_the_gate_passes(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        fake_suite: Callable[..., Calls]) -> None:
    # Without the new run, the head's numpy keeps 4 settled rounds of 20 (too few), so the
    # gate would compare every round and see a +28% "regression" of the same code.
    parts: list[str] = []
    neighbour = _neighbour(slice(0, 16))

    def edit(block: ab.Block, doc: dict[str, Any]) -> None:
        parts.append(block.json_path.name)
        neighbour(block, doc)

    calls = fake_suite(edit=edit)
    assert run_ab(tmp_path, "HEAD", "HEAD", "--quick", "--backends", "numpy") == 0
    out = capsys.readouterr().out
    assert calls == [(0, "base", "numpy"), (0, "head", "numpy"), (0, "head", "numpy")]
    assert parts == ["base-0-numpy.json", "head-0-numpy.json", "head-0-numpy-again1.json"]
    progress = [line for line in out.splitlines() if line.startswith("-- ")]
    shapes = [r"-- numpy on the base side, block 1 \(process 1/2\) \((\d+) s in\)",
              r"-- numpy on the head side, block 1 \(process 2/2\) \((\d+) s in\)",
              r"-- the machine was unsettled: (\d+)% of .*",
              r"-- numpy on the head side, block 1 again \((\d+) s in\)"]
    assert len(progress) == len(shapes)
    for line, shape in zip(progress, shapes, strict=True):
        match = re.fullmatch(shape, line)
        assert match and int(match.group(1)) < 600, line  # seconds since the start
    assert re.search(r"-- the machine was unsettled: \d+% of \S+crops-numpy\]'s rounds", out)
    assert "-- numpy on the head side, block 1 again" in out
    (folder,) = (tmp_path / "out").iterdir()
    head = json.loads((folder / "head.json").read_text())
    assert [b["extra_info"]["blocks"] for b in head["benchmarks"]] == [2, 2]
    assert head["machine_info"]["gdbench"]["ab"] == {
        "role": "head", "rev": "HEAD", "commit": git(repo, "rev-parse", "HEAD"), "blocks": 1,
        "block_max_time_s": ab.QUICK_MAX_TIME_S}
    assert re.search(r"unsettled rounds left out: baseline \d+ of 20, new \d+ of 40", out)


def test_a_process_unsettled_every_time_is_run_again_at_most_twice(
        repo: Path, tmp_path: Path, fake_suite: Callable[..., Calls]) -> None:
    calls = fake_suite(edit=_neighbour(slice(0, 16), always=True))
    run_ab(tmp_path, "HEAD", "HEAD", "--quick", "--backends", "numpy")
    assert calls == [(0, "base", "numpy")] + [(0, "head", "numpy")] * (1 + retime.AB.passes)
