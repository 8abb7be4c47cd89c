"""Mutation testing of one module: every mutant mutmut makes of it, or the survivors a
run left, each applied to a throwaway copy of the tree and run against the module's tests.

    python scripts/mutate.py gdbench/commands/ab.py tests/test_ab.py \
        --out build/mutate/gdbench_commands_ab.py.txt
    python scripts/mutate.py build/mutate/gdbench_commands_ab.py.txt tests/test_ab.py

The first form scores the module (`make mutate` runs it for each entry of the Makefile's
MUTATE); ``--out`` saves the score and each survivor's diff. The second re-runs only the
survivors of that file, after tests aimed at them: the score is then the first run's
caught plus the survivors caught now, valid while the module's source is the one the
first run mutated (a mutant whose diff no longer applies is said, and counted as a
survivor) and no test was removed since. ``--mutants`` picks mutants by number, so a long
run can be done in parts. Each output line is one mutant's verdict.

A mutant is caught when a test fails or errors on it (pytest ``-x``, the e2e tests left
out) or its tests run past TIMEOUT_S. The tests that reach the mutated function run first:
one traced run of the unmutated tests (coverage.py, a context per test) says which tests
ran each line. A mutant those tests do not catch runs against every test, so a verdict of
"survived" is always the whole tests' verdict; a mutant outside any function (run at
import), or in one no test reaches in this process (only in a child process, say), goes
straight to every test. Mutants run ``--jobs`` at a time (default: one per CPU), each job
in its own copy of the tree.
"""

from __future__ import annotations

import argparse
import ast
import collections
import concurrent.futures
import difflib
import functools
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 300  # a mutant whose tests run this long counts as caught
PYTEST = ["-q", "-p", "no:cacheprovider", "--benchmark-disable", "-m", "not e2e"]
CAUGHT = ("killed", "timeout")

# Runs pytest under coverage.py with the test's node id as the context of every line it
# runs (lines run at import or collection have the empty context), and saves the tests,
# fastest first. argv: coverage data file, the traced source, the order file, pytest's
# arguments.
TRACE = """
import json, sys
import coverage, pytest
data, source, order = sys.argv[1:4]
cov = coverage.Coverage(data_file=data, include=[source])

class Contexts:
    seconds = {}

    def pytest_collection_finish(self, session):
        self.order = [item.nodeid for item in session.items]

    def pytest_runtest_logreport(self, report):
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        cov.switch_context(item.nodeid)
        try:
            return (yield)
        finally:
            cov.switch_context("")

contexts = Contexts()
cov.start()
code = pytest.main(sys.argv[4:], plugins=[contexts])
cov.stop()
cov.save()
with open(order, "w") as f:  # the tests, fastest first
    json.dump(sorted(contexts.order, key=lambda t: contexts.seconds.get(t, 0.0)), f)
sys.exit(code)
"""


@dataclass(frozen=True)
class Mutant:
    id: str
    diff: str  # a unified diff of one source file, paths from the repository's root

    @property
    def path(self) -> str:
        return re.search(r"^--- (\S+)", self.diff, re.M).group(1)  # type: ignore[union-attr]

    @property
    def added(self) -> str:
        """The mutated line as it reads after the mutation."""
        return next((line[1:].strip() for line in self.diff.splitlines()
                     if line.startswith("+") and not line.startswith("+++")), "")

    def line(self, verdict: str) -> str:
        """The output line of this mutant's verdict."""
        return f"mutant {self.id:>4}  {verdict:<17} {self.added[:100]}"


def survivors(text: str) -> list[Mutant]:
    """Each mutant that an output file (``--out``, or mutmut's ``show all``) lists as
    survived or suspicious (its tests passed, slowly: not caught either)."""
    starts = [text.index(s) for s in ("Suspicious", "Survived") if s in text]
    if not starts:
        return []
    chunks = re.split(r"^# mutant (\d+)\n", text[min(starts):], flags=re.M)[1:]
    return [Mutant(mid, diff.rstrip("\n") + "\n")
            for mid, diff in zip(chunks[0::2], chunks[1::2], strict=True)]


def every_mutant(source: str, text: str) -> list[Mutant]:
    """Each mutant mutmut makes of ``text``, the file at ``source`` (a path from the
    repository's root), numbered from 1 in mutmut's order."""
    from mutmut import Context, list_mutations, mutate

    out = []
    for n, mutation in enumerate(list_mutations(Context(source=text, filename=source)), 1):
        mutated, _ = mutate(Context(source=text, mutation_id=mutation, filename=source))
        diff = difflib.unified_diff(text.splitlines(keepends=True),
                                    mutated.splitlines(keepends=True), source, source)
        out.append(Mutant(str(n), "".join(diff)))
    return out


def changed_line(diff: str) -> int:
    """The first line of the original source that ``diff`` changes."""
    line = 0
    for row in diff.splitlines():
        hunk = re.match(r"^@@ -(\d+)", row)
        if hunk:
            line = int(hunk.group(1))
        elif row.startswith("-") and not row.startswith("---"):
            return line
        elif row.startswith(" "):
            line += 1
    raise ValueError("the diff removes no line")


def function_lines(source: str, line: int) -> range | None:
    """The body's lines of the innermost function around ``line`` (its ``def`` line too),
    or None at module level (a line run at import, a decorator's too). The body, as the
    ``def`` line runs at import, and the body runs when the function is called."""
    best: range | None = None
    for node in ast.walk(ast.parse(source)):
        end = getattr(node, "end_lineno", None) or 0
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                and node.lineno <= line <= end:
            body = range(node.body[0].lineno, end + 1)
            if best is None or len(body) < len(best):
                best = body
    return best


def reaching(source: str, line: int, by_line: dict[int, set[str]],
             order: list[str]) -> list[str]:
    """The tests (node ids, in ``order``) that ran the function around ``line``; none
    where it runs at import or outside every test, where no test ran it, or where every
    test did: then every test decides."""
    span = function_lines(source, line)
    if span is None:
        return []
    contexts = set().union(*(by_line.get(n, set()) for n in span))
    if "" in contexts or contexts >= set(order):
        return []
    return [t for t in order if t in contexts]


class Runner:
    """Runs mutants in copies of the tree, one copy per job."""

    def __init__(self, tests: list[str], jobs: int, workdir: Path) -> None:
        self.tests = tests
        self.trees: queue.Queue[Path] = queue.Queue()
        for n in range(jobs):
            tree = workdir / f"tree{n}"
            copy_tree(tree)
            self.trees.put(tree)
        self.traced: dict[str, tuple[dict[int, set[str]], list[str]]] = {}
        self.kills: collections.Counter[str] = collections.Counter()
        self.killed_by: dict[str, list[Mutant]] = {}  # test -> the mutants it caught first
        self.lock = threading.Lock()

    def trace(self, path: str) -> None:
        """Which test ran each line of ``path``; exits when the tests fail unmutated."""
        tree = self.trees.get()
        try:
            data, order = tree / ".mutate-coverage", tree / ".mutate-order.json"
            run = subprocess.run([sys.executable, "-c", TRACE, str(data), str(tree / path),
                                  str(order), *PYTEST, *self.tests], cwd=tree, env=_env(tree),
                                 capture_output=True, text=True, check=False)
            if run.returncode:
                sys.exit(f"mutate: the tests fail before any mutation:\n{run.stdout[-3000:]}")
            import coverage

            covered = coverage.CoverageData(basename=str(data))
            covered.read()
            by_line = {n: set(c) for n, c in covered.contexts_by_lineno(str(tree / path)).items()}
            self.traced[path] = (by_line, json.loads(order.read_text()))
        finally:
            self.trees.put(tree)

    def verdict(self, mutant: Mutant, every: bool = False) -> str:
        """killed, timeout, SURVIVED or NO LONGER APPLIES; ``every``: run every test at
        once, not those that reach the mutant first."""
        tree = self.trees.get()
        source = tree / mutant.path
        original = source.read_text()
        try:
            applied = subprocess.run(["patch", "-p0", "-s", "--no-backup-if-mismatch", "-r",
                                      "-"], input=mutant.diff, text=True, cwd=tree,
                                     capture_output=True)
            if applied.returncode:
                return "NO LONGER APPLIES"
            first: list[str] = []
            if not every:
                by_line, order = self.traced[mutant.path]
                first = reaching(original, changed_line(mutant.diff), by_line, order)
                with self.lock:
                    first.sort(key=lambda t: -self.kills[t])
            if first:
                verdict, failed = _pytest(tree, first)
                if verdict in CAUGHT:
                    with self.lock:
                        self.kills[failed] += 1
                        self.killed_by.setdefault(failed, []).append(mutant)
                    return verdict
            return _pytest(tree, self.tests)[0]
        finally:
            source.write_text(original)
            self.trees.put(tree)


    def fail_alone(self) -> dict[str, list[Mutant]]:
        """The tests that caught mutants among the tests reaching them but fail alone on
        the unmutated tree (they lean on a test run before them), with their mutants."""
        tree = self.trees.get()
        try:
            return {test: mutants for test, mutants in self.killed_by.items()
                    if test and _pytest(tree, [test])[0] != "SURVIVED"}
        finally:
            self.trees.put(tree)


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


@functools.cache
def isolated() -> tuple[str, ...]:
    """A prefix that runs a command in a PID namespace of its own, with its own /proc,
    where this system allows one (as root, else as a user namespace's root); empty where it
    does not. A mutant of code that signals processes (say, one that makes
    ``cluster.stop_jobs`` match every process) then reaches only its own tests' processes,
    not this machine's, nor the tests of another job running beside it."""
    for prefix in (("unshare", "--pid", "--fork", "--kill-child", "--mount-proc"),
                   ("unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child",
                    "--mount-proc")):
        try:
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0:
                return prefix
        except (OSError, subprocess.TimeoutExpired):
            continue
    return ()


def _pytest(tree: Path, tests: list[str]) -> tuple[str, str]:
    """The verdict of the tests on the tree as it is, and the test that failed first."""
    try:
        run = subprocess.run([*isolated(), sys.executable, "-m", "pytest", "-x", *PYTEST,
                              *tests],
                             cwd=tree, env=_env(tree), capture_output=True, text=True,
                             timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    failed = re.search(r"^FAILED (\S+)", run.stdout, re.M)
    return ("killed" if run.returncode else "SURVIVED"), failed.group(1) if failed else ""


def copy_tree(to: Path) -> None:
    """The repository's files (tracked and untracked, not ignored), with the top-level
    packages linked under gdbench/ as in the installed layout."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            (to / source.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / source.relative_to(ROOT))
    for folder in ("data", "implementations", "benches"):
        if (to / "gdbench").is_dir() and (to / folder).is_dir():
            (to / "gdbench" / folder).symlink_to(Path("..") / folder)


def report(module: str, verdicts: dict[Mutant, str]) -> str:
    """The ``--out`` file: the score, then each survivor as a diff (what ``survivors``
    reads back)."""
    left = [m for m, v in verdicts.items() if v not in CAUGHT]
    caught = len(verdicts) - len(left)
    share = f" ({100 * caught / len(verdicts):.1f}%)" if verdicts else ""
    lines = [f"{module}: {caught} of {len(verdicts)} mutants caught{share}", "",
             f"Survived ({len(left)})", ""]
    for m in sorted(left, key=lambda m: int(m.id)):
        lines += [f"# mutant {m.id}", m.diff]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", help="a module's source (gdbench/report/tables.py): every "
                        "mutant of it; or an --out file (build/mutate/<module>.txt): its "
                        "survivors")
    parser.add_argument("tests", nargs="+", help="the module's test files")
    parser.add_argument("--mutants", metavar="ID,ID", default="",
                        help="only these mutants, by number")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="mutants run at a time (default: one per CPU)")
    parser.add_argument("--out", type=Path, help="save the score and the survivors' diffs "
                        "here")
    args = parser.parse_args(argv)
    what = Path(args.what)
    if not what.is_file():
        parser.exit(2, f"mutate: no file {what}\n")
    if what.suffix == ".py":
        found = every_mutant(args.what, what.read_text())
    else:
        found = survivors(what.read_text())
    if args.mutants:
        only = set(args.mutants.split(","))
        found = [m for m in found if m.id in only]
    verdicts: dict[Mutant, str] = {}
    with tempfile.TemporaryDirectory(prefix="gdbench-mutate-") as tmp:
        runner = Runner(args.tests, max(1, args.jobs), Path(tmp))
        for path in dict.fromkeys(m.path for m in found):
            runner.trace(path)
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futures = {pool.submit(runner.verdict, m): m for m in found}
            for future in concurrent.futures.as_completed(futures):
                m = futures[future]
                verdicts[m] = future.result()
                print(m.line(verdicts[m]), flush=True)
        for test, mutants in runner.fail_alone().items():
            print(f"mutate: {test} fails alone on the unmutated code; the {len(mutants)} "
                  "mutants it caught run again against every test", flush=True)
            for m in mutants:
                verdicts[m] = runner.verdict(m, every=True)
                print(m.line(verdicts[m]), flush=True)
    text = report(args.what, {m: verdicts[m] for m in found})
    print(text.splitlines()[0])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
