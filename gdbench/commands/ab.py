"""The A/B gate: time two git revisions in turns on this machine, in one job, and compare.

    gdbench ab origin/main HEAD --quick --threads 1

A committed baseline is only valid on the CPU model it was recorded on, and hosted CI
runners change CPU model from job to job. So both revisions are measured here, now:
each side is checked out from its commit into a temporary git worktree (``git worktree
add --detach``) and runs the suite with its own code (``PYTHONPATH=<worktree> python -m
pytest <worktree>/benches``), with the options of ``gdbench run``: one process per
backend (``--isolated``, the rooflines in the numpy process), the same data, workloads,
dtype and thread settings for both sides, so each side's figures come from the same
harness as a normal run. Both sides run here, never through ``gdbench run --executor``:
taking turns on one machine is what makes them comparable.

Turns: the unit is one backend's process. Each side runs every backend's process K
times (--blocks; 1 with --quick, else 2), each for a short --benchmark-max-time
(--max-time) per benchmark. The two sides' processes of one backend run back to back,
seconds apart, so a drift of the machine's speed over the minutes of the job hits both
alike; and the side that goes first alternates from one backend to the next and from
block to block (base, head | head, base | ...: an ABBA order), so that neither side
always runs first. The quick profile's single block keeps a quick A/B within about
twice a quick run (each process costs seconds of start-up, imports and untimed checks
beside its timed rounds); more blocks spread each side's rounds over more processes and
moments. Each side's blocks are then merged into one run: the
rounds of the same benchmark are concatenated (stats.data, and extra_info's norm_data
and ref_data, which stay aligned), and the statistics recomputed from them. The gate of
``gdbench check`` (paired norm_data, bootstrap CI, threshold) compares the two, base as
the baseline and head as the new run, and prints the same report with the same exit
codes: 0 pass, 1 regression, 2 bad input.

Unsettled moments: a host neighbour can slow this machine for seconds to minutes, and
not uniformly (the reference ~20%, a gather-heavy loop ~60%). The gate compares only the
rounds whose reference time was within 10% of its quiet level (see regress); a process
that lost more than half of a benchmark's rounds that way is run again at once, at most
twice over, and its settled rounds join the side's others.

--confirm: when the gate finds a regression, the backends that regressed are timed
again in a fresh turn of both sides: new processes, at least two blocks per side (so
that no one process decides it), continuing the alternation (the side that went second
goes first). Only a benchmark that regresses in the first turn and in the confirmation
turn's merged rounds fails the gate. The rounds of one process share its fate (a
neighbour that stays for the whole process, the process's memory layout): on a busy
2-core machine a medium workload's normalised time moved 15-30% from one process to the
next for the same code, which the bootstrap over one process's rounds cannot see. A
fresh turn does not inherit that, while a real regression shows again. It costs four
processes per regressed backend, and only after a regression.

Both merged runs, and the report, are saved under results/ab/<time>_<base>_<head>/
(base.json, head.json, report.md; confirm-base.json and confirm-head.json after a
confirmation turn) in the current directory, for ``gdbench compare``.

Refused (exit 2, one line): a revision git does not know; a revision older than the
package layout that ab runs (data/, implementations/, benches/__init__.py at the top of
the tree, and a gdbench that runs from a bare checkout); a side whose backend disagrees
with numpy or whose benchmark process fails (nothing to compare with). The user's
working tree is never read or changed: uncommitted changes are not measured. So a
revision that names the checked-out commit symbolically (HEAD, @, the current branch)
is refused while tracked files have uncommitted changes, since the user most likely
meant to measure them; --allow-dirty compares the commits anyway. A revision given as a
commit id, another branch or HEAD~1 is never refused for that. The temporary worktrees
are removed (``git worktree remove --force``, then ``git worktree prune``) on every
exit: errors, Ctrl-C and SIGTERM (a cancelled CI job) included.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gdbench.commands import options
from gdbench.commands.options import positive_float, positive_int
from gdbench.data.errors import InputError
from gdbench.harness import launcher
from gdbench.judge import regress, retime
from gdbench.judge.stats import quiet_level
from gdbench.records import run as run_file
from gdbench.records.results import load_run, write_atomic
from gdbench.records.run import Run, merge_rounds

ROLES = ("base", "head")
QUICK_BLOCKS = 1
DEFAULT_BLOCKS = 2
# The confirmation turn (--confirm) runs at least this many blocks per side.
CONFIRM_BLOCKS = 2
# Seconds of rounds per benchmark in one block; a side gets --blocks times as much.
QUICK_MAX_TIME_S = 1.0
DEFAULT_MAX_TIME_S = 1.0
AB_RUNS = Path("results") / "ab"
# What a revision must hold for a side to run from its worktree.
LAYOUT = ("data", "implementations", "benches/__init__.py", "benches/conftest.py",
          "gdbench/__init__.py")

# Run in each worktree before any timing: which files its gdbench imports (they must be
# the worktree's own), its backends, and why each selected one cannot run here.
_PROBE = """\
import json, sys
import gdbench, gdbench.data, gdbench.benches
from gdbench import implementations as impl
names = impl.names()
default = getattr(impl, "default_names", impl.names)()  # older revisions time every one
wanted = [n for n in (sys.argv[1:] or default) if n in names]
try:  # whether its suite takes the user's own workloads (--workload-def)
    from gdbench.benches.plugin import OPTIONS
    own = any(name == "workload-def" for name, _ in OPTIONS)
except ImportError:
    own = False
print(json.dumps({"files": [gdbench.__file__, gdbench.data.__file__, impl.__file__,
                            gdbench.benches.__file__],
                  "names": names, "status": {n: impl.why_unavailable(n) for n in wanted},
                  "own_workloads": own}))
"""


@dataclass(frozen=True)
class Side:
    """One revision under test: its role (base or head), the name given, its commit."""

    role: str
    rev: str
    sha: str
    tree: Path  # its temporary worktree

    @property
    def title(self) -> str:
        return f"{self.role} side ({self.rev} = {self.sha[:12]})"


@dataclass(frozen=True)
class Block:
    """One benchmark process: a side's ``label`` process (one backend) in block ``index``."""

    index: int
    side: Side
    label: str
    selection: tuple[str, ...]  # its pytest options, from launcher.processes
    json_path: Path


# --- git ------------------------------------------------------------------------------------

def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=False)


def repository(start: Path | None = None) -> Path:
    """The top of the git repository holding ``start`` (default: the current directory)."""
    where = start or Path.cwd()
    proc = _git(where, "rev-parse", "--show-toplevel")
    if proc.returncode:
        raise InputError(f"{where}: not inside a git repository; gdbench ab compares two "
                         "revisions of the repository it runs in")
    return Path(proc.stdout.strip())


def resolve(repo: Path, rev: str) -> str:
    """The full commit id that ``rev`` names, else InputError (unknown revision)."""
    proc = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if rev.startswith("-") or proc.returncode or not proc.stdout.strip():
        raise InputError(f"unknown revision {rev!r}: not a commit of {repo} (a branch, tag, "
                         "commit id, HEAD~1, origin/main ...; fetch it first if it is remote)")
    return proc.stdout.strip()


def names_the_checkout(repo: Path, rev: str) -> bool:
    """Whether ``rev`` names the checked-out commit symbolically: HEAD, @, the branch."""
    full = _git(repo, "rev-parse", "--symbolic-full-name", rev).stdout.strip()
    branch = _git(repo, "symbolic-ref", "-q", "HEAD").stdout.strip()
    return full == "HEAD" or (bool(branch) and full == branch)


def uncommitted(repo: Path) -> list[str]:
    """Tracked files with uncommitted changes (untracked files are left out: results/)."""
    proc = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return [line[3:] for line in proc.stdout.splitlines() if line.strip()]


def check_layout(repo: Path, role: str, rev: str, sha: str) -> None:
    """Refuse a revision that predates the package layout gdbench ab runs."""
    missing = [p for p in LAYOUT if _git(repo, "cat-file", "-e", f"{sha}:{p}").returncode]
    if missing:
        raise InputError(f"{role} revision {rev} ({sha[:12]}) is too old for gdbench ab: it "
                         f"lacks {', '.join(missing)} (the package layout with data/, "
                         "implementations/ and benches/ at the top)")


@contextlib.contextmanager
def worktrees(repo: Path, commits: dict[str, str]) -> Iterator[dict[str, Path]]:
    """A detached temporary worktree per role at its commit; all removed on exit.

    They live in a fresh temporary folder outside the repository, so the user's working
    tree, index and branches are untouched. Removal runs on every exit (an error, Ctrl-C)
    and forgets the worktrees in git's records too.
    """
    root = Path(tempfile.mkdtemp(prefix="gdbench-ab-"))
    made: list[Path] = []
    try:
        trees: dict[str, Path] = {}
        for role, sha in commits.items():
            tree = root / role
            made.append(tree)
            proc = _git(repo, "worktree", "add", "--detach", str(tree), sha)
            if proc.returncode:
                raise InputError(f"git worktree add {tree} {sha[:12]} failed: "
                                 f"{_last_line(proc.stderr)}")
            trees[role] = tree
        yield trees
    finally:
        for tree in made:
            _git(repo, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(root, ignore_errors=True)
        _git(repo, "worktree", "prune")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


# --- each side's suite ----------------------------------------------------------------------

def side_env(side: Side, threads: int | None) -> dict[str, str]:
    """The environment of a side's processes: its own code first on the path, and the
    same thread settings for both sides."""
    return launcher.Job("probe", threads=threads, tree=str(side.tree)).env()


def probe(sides: Sequence[Side], wanted: Sequence[str],
          threads: int | None) -> dict[str, dict[str, Any]]:
    """Each side's backend names and {selected backend: None or why it cannot run here},
    asked of its own code (both probes at once: nothing is timed yet).

    Refuses a side whose gdbench does not import from its own worktree (a revision from
    before gdbench ran from a bare checkout would silently import the installed code).
    """
    procs = {side.role: subprocess.Popen(
        [sys.executable, "-c", _PROBE, *wanted], cwd=side.tree, env=side_env(side, threads),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for side in sides}
    found: dict[str, dict[str, Any]] = {}
    try:
        for side in sides:
            out, err = procs[side.role].communicate()
            try:
                answer = json.loads(out.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                raise InputError(f"{side.title}: its gdbench does not run from a checkout "
                                 f"on PYTHONPATH ({_last_line(err)})") from None
            outside = [f for f in answer["files"]
                       if not Path(f).resolve().is_relative_to(side.tree.resolve())]
            if outside:
                raise InputError(f"{side.title} is too old for gdbench ab: its gdbench does "
                                 f"not run from a bare checkout (imported {outside[0]})")
            found[side.role] = answer
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return found


def side_job(side: Side, args: argparse.Namespace, label: str,
             selection: Sequence[str] = ()) -> launcher.Job:
    """gdbench run's job ``label`` for one side: its own suite and code, from its worktree."""
    return launcher.Job.of(args, label, selection, tree=str(side.tree))


def run_block(block: Block, args: argparse.Namespace) -> int:
    """Run one benchmark process of one side, in its worktree, saving its run at
    ``block.json_path``; pytest's exit code.

    Its progress lines are echoed with the side's role; its whole output goes to stderr
    only when it fails. Interrupted, the process is stopped before this returns.
    """
    job = side_job(block.side, args, block.label, block.selection)
    return launcher.run_job(job, prefix=f"  {block.side.role:>4} ", keep=block.json_path).code


def turn(block: int, position: int) -> tuple[str, str]:
    """The order of the two sides for the process at ``position`` in block ``block``:
    base first, then head first, alternating along the processes and the blocks."""
    return ROLES if (block + position) % 2 == 0 else (ROLES[1], ROLES[0])


def schedule(sides: dict[str, Side], procs: dict[str, list[tuple[str, list[str]]]],
             blocks: int, parts: Path, first: int = 0,
             only: set[str] | None = None) -> list[Block]:
    """Every benchmark process in run order, for blocks ``first`` to ``first + blocks - 1``.

    Block by block; in a block, process by process (numpy, then each other backend); for
    each process the two sides back to back, in the order of :func:`turn`. A process that
    only one side has (a backend new in head) runs on that side alone. ``only`` keeps
    some processes and leaves each its place in the alternation: a confirmation turn that
    continues the blocks (``first`` = the blocks already run) puts first the side that
    went second before, when the blocks run were odd in number.
    """
    labels = list(dict.fromkeys(label for role in ROLES for label, _ in procs[role]))
    plan = []
    for index in range(first, first + blocks):
        for position, label in enumerate(labels):
            if only is not None and label not in only:
                continue
            for role in turn(index, position):
                selection = dict(procs[role]).get(label)
                if selection is not None:
                    path = parts / f"{role}-{index}-{label}.json"
                    plan.append(Block(index, sides[role], label, tuple(selection), path))
    return plan


# --- merging a side's blocks ----------------------------------------------------------------

def merge_side(parts: Sequence[dict[str, Any]], unavailable: dict[str, str]) -> dict[str, Any]:
    """One side's run from the runs of all its processes in all blocks.

    run_file.merge joins the processes as gdbench run does (machine_info, commit_info and
    the fingerprint); then the entries of the same benchmark (one per block) become one,
    in the order the benchmarks first ran.
    """
    doc = run_file.merge(parts, unavailable)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for bench in Run(doc).benchmarks:
        by_name.setdefault(bench.key, []).append(bench.raw)
    doc["benchmarks"] = [merge_rounds(copies) for copies in by_name.values()]
    return doc


def check_part(block: Block, code: int, part: dict[str, Any] | None) -> None:
    """Refuse a side whose backend disagrees with numpy, or whose process failed."""
    for bench in Run(part or {}).benchmarks:
        if bench.disagrees:
            raise InputError(f"{block.side.title}: {bench.backend} disagrees with numpy "
                             f"on {bench.workload} (weights off by up to "
                             f"{bench.extra.get('max_abs_diff_vs_numpy')}); nothing to compare")
    if code or part is None:
        raise InputError(f"{block.side.title}: its {block.label} process failed in block "
                         f"{block.index + 1} (pytest exit {code}, output above)")


# --- the command ----------------------------------------------------------------------------



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", metavar="BASE",
                        help="the revision to compare against (origin/main, a merge base ...)")
    parser.add_argument("head", metavar="HEAD", help="the revision under test (HEAD, a SHA ...)")
    parser.add_argument("--quick", action="store_true",
                        help=f"the CI profile: crops, small and medium, {QUICK_BLOCKS} block "
                             f"of {QUICK_MAX_TIME_S:g} s per benchmark (default: crops to "
                             f"large, {DEFAULT_BLOCKS} blocks of {DEFAULT_MAX_TIME_S:g} s)")
    parser.add_argument("--blocks", type=positive_int, metavar="K",
                        help="how many times each side runs each backend's process, taking "
                             f"turns (default: {QUICK_BLOCKS} with --quick, else "
                             f"{DEFAULT_BLOCKS})")
    parser.add_argument("--max-time", type=positive_float, metavar="SECONDS",
                        help="seconds of rounds per benchmark in one block (default: "
                             f"{QUICK_MAX_TIME_S} with --quick, else {DEFAULT_MAX_TIME_S})")
    parser.add_argument("--backends", nargs="+", metavar="NAME",
                        help="only these backends (default: every backend of either side but the "
                             "data-parallel ones)")
    parser.add_argument("--workloads", nargs="+", metavar="NAME",
                        help="only these workloads, gdbench's or those declared under "
                             "[tool.gdbench.workloads.NAME] in pyproject.toml (default: the "
                             "profile's)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="pin both sides to N CPUs and cap every library at N threads "
                             "(the CI gate uses 1)")
    parser.add_argument("--threshold", type=options.threshold,
                        default=regress.DEFAULT_THRESHOLD, metavar="PCT",
                        help="the slowdown that fails the gate: '15%%' or '0.15' (default: "
                             f"{regress.DEFAULT_THRESHOLD.replace('%', '%%')})")
    parser.add_argument("--report", metavar="PATH",
                        help="also write the markdown report to PATH (atomically)")
    parser.add_argument("--out", type=Path, default=AB_RUNS, metavar="DIR",
                        help=f"where to save the two sides' runs (default: {AB_RUNS})")
    parser.add_argument("--confirm", action="store_true",
                        help="on a regression, time the backends that regressed again, in a "
                             "fresh turn of both sides; fail only on a benchmark that "
                             "regresses both times (what CI does)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="compare the commits even when a revision is HEAD (or the "
                             "current branch) and the working tree has uncommitted changes, "
                             "which are not measured")
    parser.add_argument("--format", choices=["md", "table"], default="md",
                        help="what to print (default: md); --report is always markdown")
    options.add_own_problem(parser)


def _resolve_all(repo: Path, args: argparse.Namespace) -> dict[str, str]:
    commits = {role: resolve(repo, rev) for role, rev in zip(ROLES, (args.base, args.head),
                                                            strict=True)}
    changed = uncommitted(repo)
    for rev in (args.base, args.head):
        if changed and not args.allow_dirty and names_the_checkout(repo, rev):
            raise InputError(f"{rev} is commit {resolve(repo, rev)[:12]}, but the working tree "
                             f"has uncommitted changes ({changed[0]}"
                             f"{f' and {len(changed) - 1} more' if len(changed) > 1 else ''}) "
                             "that gdbench ab would not measure; commit them, or pass "
                             "--allow-dirty to compare the commits")
    for role, rev in zip(ROLES, (args.base, args.head), strict=True):
        check_layout(repo, role, rev, commits[role])
    return commits


def _selection(args: argparse.Namespace, found: dict[str, dict[str, Any]]) -> tuple[
        dict[str, list[tuple[str, list[str]]]], dict[str, str]]:
    """Each side's processes, and the selected backends that cannot run here (why)."""
    known = list(dict.fromkeys(n for role in ROLES for n in found[role]["names"]))
    for name in args.backends or []:
        if name not in known:
            raise InputError(f"unknown backend {name!r}; the known backends are: "
                             f"{', '.join(known)}")
    procs: dict[str, list[tuple[str, list[str]]]] = {}
    unavailable: dict[str, str] = {}
    for role in ROLES:
        status: dict[str, str | None] = found[role]["status"]
        names = [n for n in (args.backends or found[role]["names"]) if n in status]
        unavailable.update({n: why for n in names if (why := status[n])})
        procs[role] = launcher.processes(names, status)
    if not any(label != "roofline" for role in ROLES for label, _ in procs[role]):
        raise InputError("no selected backend can run here: "
                         + "; ".join(f"{n}: {why}" for n, why in unavailable.items()))
    return procs, unavailable


def _blocks(args: argparse.Namespace) -> int:
    return int(args.blocks or (QUICK_BLOCKS if args.quick else DEFAULT_BLOCKS))


def _max_time(args: argparse.Namespace) -> float:
    return float(args.max_time or (QUICK_MAX_TIME_S if args.quick else DEFAULT_MAX_TIME_S))


def _suite_args(args: argparse.Namespace) -> argparse.Namespace:
    """gdbench run's options for every process of both sides (pytest_command reads them)."""
    max_time = _max_time(args)
    return argparse.Namespace(dtype=args.dtype, quick=args.quick, backends=args.backends,
                              workloads=args.workloads, threads=args.threads,
                              definitions=tuple(getattr(args, "definitions", None) or ()),
                              pytest_args=[f"--benchmark-max-time={max_time}"])


def _check_own_workloads(sides: dict[str, Side], found: dict[str, dict[str, Any]],
                         definitions: Sequence[tuple[str, str]]) -> None:
    """Refuse a side whose suite cannot time the user's own workloads, when there are any:
    both sides time the same problems, from the same definitions."""
    if not definitions:
        return
    for role, side in sides.items():
        if not found[role].get("own_workloads"):
            names = ", ".join(name for name, _ in definitions)
            raise InputError(f"{side.title} is too old to time your own workloads ({names}): "
                             "its suite has no --workload-def; compare gdbench's own "
                             "workloads instead")


def _out_dir(out: Path, commits: dict[str, str]) -> Path:
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}_{commits['base'][:10]}_{commits['head'][:10]}"
    path, n = out / stem, 2
    while path.exists():
        path, n = out / f"{stem}-{n}", n + 1
    return path


def _references(part: dict[str, Any]) -> dict[str, list[float]]:
    """{benchmark name: its rounds' reference times} of a process's training benchmarks."""
    return {bench.key: bench.ref_data or [] for bench in Run(part).paired_training()}


def unsettled(done: Sequence[tuple[Block, dict[str, Any]]],
              tried: set[Block] | None = None) -> list[tuple[Block, str]]:
    """The processes to run again, and why: those where more than half the rounds of a
    training benchmark were unsettled (reference more than retime.AB.tolerance over its quiet
    level, pooled over every process of both sides, as the gate judges them; or a busy
    neighbour on its CPUs, :func:`gdbench.judge.retime.neighbours`).

    The gate leaves unsettled rounds out; a process that lost most of them to a host
    neighbour leaves its side short of rounds, or, when the slow moment lasted the whole
    process, makes the gate compare all rounds again. Another process, moments later,
    adds settled rounds in their place (the spoiled process's rounds stay, and the gate
    leaves out its unsettled ones). Processes in ``tried`` were run again already.
    """
    pooled: dict[str, list[float]] = {}
    for _, part in done:
        for name, refs in _references(part).items():
            pooled.setdefault(name, []).extend(refs)
    levels = {name: quiet_level(refs) for name, refs in pooled.items()}
    redo = []
    for block, part in done:
        if tried and block in tried:
            continue
        seen = {b.key: retime.neighbours(b) for b in Run(part).paired_training()}
        judged = {name: retime.AB.spoiled(refs, levels[name], seen.get(name))
                  for name, refs in _references(part).items()}
        spoiled = [(share, name) for name, (mostly, share) in judged.items() if mostly]
        if spoiled:
            share, name = max(spoiled)
            redo.append((block, f"{share:.0%} of {name}'s rounds had a reference over "
                                f"{retime.AB.tolerance:.0%} above its quiet level"
                                + _neighbour_note(seen.get(name))))
    return redo


def _neighbour_note(seen: Any) -> str:
    return "" if seen is None or not seen.any() else \
        f", or a busy neighbour beside {seen.mean():.0%} of them"


def _measure(plan: Sequence[Block], suite: argparse.Namespace, started: float,
             unavailable: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Run the plan's processes in order, then again those the machine's unsettled
    moments spoiled (at most retime.AB.passes times over); each side's merged run."""
    done: list[tuple[Block, dict[str, Any]]] = []

    def run_one(block: Block, what: str) -> None:
        print(f"-- {block.label} on the {block.side.role} side, {what} "
              f"({time.monotonic() - started:.0f} s in)", flush=True)
        code = run_block(block, suite)
        part = launcher.read_part(block.json_path)
        check_part(block, code, part)
        assert part is not None
        done.append((block, part))

    for i, block in enumerate(plan):
        run_one(block, f"block {block.index + 1} (process {i + 1}/{len(plan)})")
    tried: set[Block] = set()
    for again in range(1, retime.AB.passes + 1):
        for block, why in unsettled(done, tried):
            tried.add(block)
            print(f"-- the machine was unsettled: {why}", flush=True)
            retry = dataclasses.replace(block, json_path=block.json_path.with_name(
                f"{block.json_path.stem}-again{again}.json"))
            run_one(retry, f"block {block.index + 1} again")
    parts = {role: [part for block, part in done if block.side.role == role] for role in ROLES}
    return {role: merge_side(parts[role], unavailable) for role in ROLES}


def _save(docs: dict[str, dict[str, Any]], folder: Path, prefix: str, sides: dict[str, Side],
          blocks: int, max_time: float) -> dict[str, Path]:
    """Write each side's merged run as folder/<prefix><role>.json."""
    paths = {role: folder / f"{prefix}{role}.json" for role in ROLES}
    for role in ROLES:
        docs[role]["machine_info"]["gdbench"]["ab"] = {
            "role": role, "rev": sides[role].rev, "commit": sides[role].sha,
            "blocks": blocks, "block_max_time_s": max_time}
        write_atomic(paths[role], json.dumps(docs[role], indent=1))
    return paths


def _regressed(base: Any, head: Any, threshold: float) -> dict[str, str]:
    """{benchmark name: backend} of the gate's regressions."""
    gate = regress.compare_runs(base, head, threshold)
    rows = gate[gate["verdict"] == regress.REGRESSION]
    return dict(zip(rows["name"], rows["backend"], strict=True))


def _named(found: dict[str, str], frame: Any) -> str:
    where = dict(zip(frame["name"], frame["workload"], strict=True))
    return ", ".join(f"{where.get(name, '?')} {backend}" for name, backend in found.items())


def _report(turns: Sequence[tuple[Any, Any]], threshold: float, fmt: str,
            verdict: str | None) -> str:
    """The gate's report of each turn (the first, then the confirmation turn), and the
    final verdict line when there was a confirmation."""
    texts = [regress.build_report(base, head, threshold, fmt)[0] for base, head in turns]
    if verdict is None:
        return texts[0]
    heading = "### " if fmt == "md" else ""
    return (f"{texts[0]}\n{heading}Confirmation turn\n\n{texts[1]}\n"
            f"{heading}gdbench ab: {verdict}\n")


def main(args: argparse.Namespace) -> int:
    threshold = args.threshold
    if isinstance(threshold, str):  # a Namespace built by hand, not by the parser
        threshold = regress.parse_threshold(threshold)
    options.resolve_workloads(args)  # an unknown name is an InputError listing the known
    repo = repository()
    commits = _resolve_all(repo, args)
    suite = _suite_args(args)
    blocks, max_time = _blocks(args), _max_time(args)
    folder = _out_dir(args.out, commits)
    started = time.monotonic()
    verdict = None
    with launcher.terminate_as_exit(), worktrees(repo, commits) as trees:
        sides = {role: Side(role, rev, commits[role], trees[role])
                 for role, rev in zip(ROLES, (args.base, args.head), strict=True)}
        found = probe(list(sides.values()), args.backends or [], args.threads)
        _check_own_workloads(sides, found, args.definitions)
        procs, unavailable = _selection(args, found)
        parts = trees["base"].parent / "parts"
        plan = schedule(sides, procs, blocks, parts)
        parts.mkdir()
        print(f"gdbench ab: {sides['base'].title} vs {sides['head'].title}: {blocks} "
              f"block{'s' * (blocks != 1)} of {max_time:g} s per benchmark, "
              f"{len(plan)} processes in turns, threads {args.threads or 'unpinned'}",
              flush=True)
        docs = _measure(plan, suite, started, unavailable)
        paths = _save(docs, folder, "", sides, blocks, max_time)
        turns = [(load_run(paths["base"]), load_run(paths["head"]))]
        code = regress.build_report(*turns[0], threshold, "md")[1]
        first = _regressed(*turns[0], threshold) if code == 1 and args.confirm else {}
        if first:
            # A fresh turn of both sides, in new processes, for the backends that regressed:
            # a fluke as wide as a process (a neighbour for its whole life, its memory
            # layout) does not carry over to new processes; a real regression does.
            print(f"gdbench ab: regression in {_named(first, turns[0][1])}; confirming it "
                  "with another turn of both sides", flush=True)
            again = max(blocks, CONFIRM_BLOCKS)
            plan = schedule(sides, procs, again, parts / "confirm", first=blocks,
                            only=set(first.values()))
            (parts / "confirm").mkdir()
            docs = _measure(plan, suite, started, unavailable)
            paths = _save(docs, folder, "confirm-", sides, again, max_time)
            turns.append((load_run(paths["base"]), load_run(paths["head"])))
            second = _regressed(*turns[1], threshold)
            both = {name: backend for name, backend in first.items() if name in second}
            code = int(bool(both))
            if both:
                verdict = (f"FAIL: {len(both)} regression{'s' * (len(both) != 1)} in both "
                           f"turns ({_named(both, turns[0][1])})")
            else:
                verdict = (f"PASS: the first turn's regression{'s' * (len(first) != 1)} "
                           f"({_named(first, turns[0][1])}) did not show again")
    markdown = _report(turns, threshold, "md",
                       verdict and f"{'❌' if code else '✅'} {verdict}")
    write_atomic(folder / "report.md", markdown)
    if args.report:
        write_atomic(args.report, markdown)
    for name, why in unavailable.items():
        print(f"skipped {name}: {why}")
    saved = ", ".join(sorted(p.name for p in folder.glob("*.json")))
    print(f"saved {folder}/ ({saved}) in {time.monotonic() - started:.0f} s\n")
    print(markdown if args.format == "md" else _report(turns, threshold, "table", verdict),
          end="")
    return code
