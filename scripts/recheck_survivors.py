"""Re-apply each mutant that survived a `make mutate` run to a copy of the tree and run the
module's tests on it again: which survivors the tests written since then kill.

    python scripts/recheck_survivors.py build/mutate/gdbench_commands_run.py.txt \
        tests/test_driver.py tests/test_run.py

A full `make mutate` of a large module takes most of an hour on two cores; after new tests
aimed at its survivors, re-running only the survivors tells the new score in minutes. It
is the full run's killed count plus the survivors killed here, valid while the module's
source is the one the full run mutated (a mutant whose diff no longer applies is said,
and counted as a survivor) and no test was removed since. Runs the tests as `make mutate`
does (`-x`, the e2e tests left out), one mutant at a time, in a throwaway copy.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 300  # a mutant whose tests run this long counts as caught, as mutmut's timeout


def survivors(text: str) -> list[tuple[str, str]]:
    """(mutant id, its unified diff) of each mutant that a `make mutate` output file lists
    as survived or suspicious (its tests passed, slowly: not killed either)."""
    starts = [text.index(s) for s in ("Suspicious", "Survived") if s in text]
    if not starts:
        return []
    text = text[min(starts):]
    chunks = re.split(r"^# mutant (\d+)\n", text, flags=re.M)[1:]
    return [(mid, diff.rstrip("\n") + "\n") for mid, diff in zip(chunks[0::2], chunks[1::2],
                                                                 strict=True)]


def _copy_tree(to: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            (to / source.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / source.relative_to(ROOT))
    for folder in ("data", "implementations", "benches"):  # as make mutate links them
        (to / "gdbench" / folder).symlink_to(Path("..") / folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("survivors", type=Path, help="build/mutate/<module>.txt")
    parser.add_argument("tests", nargs="+", help="the module's test files, fast ones first")
    parser.add_argument("--mutants", metavar="ID,ID", default="",
                        help="only these survivors (those an earlier recheck left)")
    args = parser.parse_args(argv)
    found = survivors(args.survivors.read_text())
    if args.mutants:
        only = set(args.mutants.split(","))
        found = [(mid, diff) for mid, diff in found if mid in only]
    caught = 0
    with tempfile.TemporaryDirectory(prefix="gdbench-recheck-") as tmp:
        tree = Path(tmp)
        _copy_tree(tree)
        for mid, diff in found:
            source = tree / re.search(r"^--- (\S+)", diff, re.M).group(1)  # type: ignore[union-attr]
            original = source.read_text()
            applied = subprocess.run(["patch", "-p0", "-s", "--no-backup-if-mismatch",
                                      "-r", "-"], input=diff, text=True, cwd=tree,
                                     capture_output=True)
            added = next((line[1:].strip() for line in diff.splitlines()
                          if line.startswith("+") and not line.startswith("+++")), "")
            if applied.returncode:
                verdict = "NO LONGER APPLIES"
            else:
                try:
                    run = subprocess.run(
                        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                         "--benchmark-disable", "-m", "not e2e", *args.tests], cwd=tree,
                        env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
                        timeout=TIMEOUT_S)
                    verdict = "killed" if run.returncode else "SURVIVED"
                except subprocess.TimeoutExpired:
                    verdict = "timeout"
            source.write_text(original)
            caught += verdict in ("killed", "timeout")
            print(f"mutant {mid:>4}  {verdict:<17} {added[:100]}", flush=True)
    print(f"{caught} of {len(found)} survivors caught now; {len(found) - caught} survive")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
