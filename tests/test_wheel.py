"""The built wheel, installed alone into a fresh virtual environment, works.

The other tests import the editable install, which reads the repository's folders in
place. This one builds the wheel, checks that its only top-level name is ``gdbench`` (data/,
implementations/ and benches/ live inside it) and that the data file and the benchmark
suite are packaged, installs it into a new venv that cannot see the editable install, and
runs it from a user's project that has its own ``data`` package.

The wheel is built without build isolation when pyproject.toml's build requirements are
installed here (no download); a venv made by Python 3.11's ensurepip has an older
setuptools, so then pip fetches them, and the test skips if it cannot.

The new venv gets the declared dependencies (and theirs) from the running environment
through a folder of links, so nothing is downloaded: only what the wheel declares is
visible, and the editable finder (``__editable__*gdbench*``) is not.
"""

from __future__ import annotations

import email
import importlib.metadata as md
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What the wheel is built from: everything pyproject.toml names, nothing else.
SOURCES = ["pyproject.toml", "README.md", "gdbench", "data", "implementations", "benches"]
TIMEOUT = 120


def _run(cmd: list[str], cwd: Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


def _requires_closure(names: list[str]) -> list[md.Distribution]:
    """The installed distributions of ``names`` and, recursively, of what they require
    (markers evaluated for this interpreter, no extras)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, md.Distribution] = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        dist = md.distribution(name)
        seen[name] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def _link_dependencies(wheel_requires: list[str], into: Path) -> None:
    """Symlink the top-level entries (packages, modules, .dist-info) of the wheel's
    dependency closure, as installed here, into ``into``."""
    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in wheel_requires]
    names = [r.name for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]
    into.mkdir()
    for dist in _requires_closure(names):
        if dist.files is None:
            pytest.skip(f"{dist.metadata['Name']} has no RECORD: cannot tell its files apart")
        for f in dist.files:
            top = f.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            target = Path(str(dist.locate_file(top)))
            link = into / top
            if not link.exists() and target.exists():
                link.symlink_to(target)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def _build_requirements_installed() -> bool:
    """Whether pyproject.toml's [build-system] requires are all installed here, in
    versions that satisfy them (then the wheel builds offline, without isolation)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        return False
    from packaging.requirements import Requirement

    with open(REPO / "pyproject.toml", "rb") as f:
        requires = tomllib.load(f).get("build-system", {}).get("requires", [])
    for line in requires:
        req = Requirement(line)
        try:
            version = md.version(req.name)
        except md.PackageNotFoundError:
            return False
        if not req.specifier.contains(version, prereleases=True):
            return False
    return True


def _build_wheel(src: Path, dist: Path) -> Path:
    """Build with the installed setuptools when it is new enough (no download); else let
    pip fetch the build requirements into an isolated environment, and skip if it cannot."""
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
           "-w", str(dist), str(src)]
    if _build_requirements_installed():
        build = _run([*cmd, "--no-build-isolation", "--no-index"])
        if build.returncode != 0:
            pytest.fail(f"pip wheel failed:\n{build.stdout}\n{build.stderr}")
    else:
        build = _run(cmd)
        if build.returncode != 0:
            tail = "\n".join(build.stderr.strip().splitlines()[-5:])
            pytest.skip("the build requirements in pyproject.toml are not installed here and "
                        f"pip could not build in an isolated environment:\n{tail}")
    (wheel,) = dist.glob("gdbench-*.whl")
    return wheel


def test_wheel_installs_alone_and_runs_next_to_a_user_data_package(tmp_path: Path) -> None:
    if importlib.util.find_spec("pip") is None:
        pytest.skip("no pip in this interpreter: cannot build or install the wheel")
    if importlib.util.find_spec("packaging") is None:
        pytest.skip("packaging is not installed here: cannot read the wheel's requirements")

    # --- build, from a copy so that build/ and *.egg-info stay out of the repository ---
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(path, src / name)
    wheel = _build_wheel(src, tmp_path / "dist")

    # --- contents: one top-level name ---
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    tops = {n.split("/", 1)[0] for n in names}
    assert all(t == "gdbench" or re.fullmatch(r"gdbench-[^/]+\.dist-info", t) for t in tops), tops
    for required in ["gdbench/data/crops.csv", "gdbench/benches/bench_training.py",
                     "gdbench/implementations/__init__.py", "gdbench/commands/cli.py"]:
        assert required in names, f"{required} missing from {wheel.name}"
    requires = email.message_from_bytes(metadata).get_all("Requires-Dist") or []
    assert requires, "the wheel declares no dependencies"

    # --- a fresh venv: the wheel, plus links to its dependencies only ---
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert made.returncode == 0, made.stderr
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env.update(PYTHONNOUSERSITE="1", MPLBACKEND="Agg", VIRTUAL_ENV=str(venv),
               PATH=str(bindir) + os.pathsep + env.get("PATH", ""))
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                         "['purelib'])"], env=env).stdout.strip())
    assert purelib.is_dir(), purelib
    deps = tmp_path / "deps"
    _link_dependencies(requires, deps)
    # A plain path line: it puts deps/ on sys.path without running the .pth files there.
    (purelib / "gdbench-test-deps.pth").write_text(f"{deps}\n")
    install = _run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--no-deps", "--no-index", "--disable-pip-version-check", str(wheel)],
                   env=env)
    assert install.returncode == 0, f"{install.stdout}\n{install.stderr}"
    assert not list(purelib.glob("__editable__*"))

    # --- a user's project with its own data package, on the path ahead of everything ---
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "__init__.py").write_text('"""The user\'s own data package."""\n')
    (project / "data" / "errors.py").write_text("class UserError(Exception):\n    pass\n")
    runs = sorted((REPO / "results" / "runs").glob("*.json"))
    assert runs, "no committed run under results/runs"
    shutil.copy2(runs[0], project / "run.json")
    env["PYTHONPATH"] = str(project)

    before = _snapshot(purelib)

    where = _run([str(python), "-c", (
        "import sys, gdbench, gdbench.data, gdbench.data.errors, gdbench.implementations, data\n"
        "print(gdbench.__file__); print(gdbench.data.__file__)\n"
        "print(gdbench.implementations.__file__); print(data.__file__)\n"
        "print(any('editable' in repr(f).lower() for f in sys.meta_path))\n"
    )], cwd=project, env=env)
    assert where.returncode == 0, where.stderr
    gd, gd_data, gd_impl, user_data, editable = where.stdout.split("\n")[:5]
    for module_file in (gd, gd_data, gd_impl):
        assert Path(module_file).resolve().is_relative_to(purelib.resolve()), module_file
    assert Path(user_data).resolve() == (project / "data" / "__init__.py").resolve()
    assert editable == "False", "the editable finder is visible in the fresh venv"

    train = _run([str(bindir / "gdbench"), "train"], cwd=project, env=env)
    assert train.returncode == 0, f"{train.stdout}\n{train.stderr}"
    assert "final loss" in train.stdout, train.stdout

    load = _run([str(python), "-c", (
        "import sys, data.errors\n"
        "from gdbench.records.results import load_run\n"
        "frame = load_run(sys.argv[1])\n"
        "assert issubclass(data.errors.UserError, Exception)\n"
        "print(len(frame))\n"
    ), "run.json"], cwd=project, env=env)
    assert load.returncode == 0, load.stderr
    assert int(load.stdout.strip().splitlines()[-1]) > 0, load.stdout

    assert _snapshot(purelib) == before, "running gdbench wrote into site-packages"
