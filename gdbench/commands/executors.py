"""Where ``gdbench run`` runs its jobs: the --executor options and the executor they make.

``local`` (the default) runs the jobs here, one at a time. ``dask`` runs every job on
every kind of machine of a dask.distributed cluster, ``slurm`` each job as a SLURM job
with a node to itself (through submitit); both need the ``cluster`` extra. ``gdbench
audit`` and ``gdbench ab`` always run here: they compare timings taken on one machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gdbench.data.errors import InputError
from gdbench.harness import cluster, dask_executor, slurm_executor

EXECUTORS = ("local", "dask", "slurm")
# submitit's folder (pickled jobs, their logs), one per SLURM job; relative like the runs',
# so under the directory gdbench run starts from, which the nodes must share.
SLURM_FOLDER = Path("results") / "slurm" / "%j"
_DASK_ONLY = ("scheduler",)
_SLURM_ONLY = ("slurm_partition", "slurm_gres", "slurm_account")


def slurm_time(text: str) -> int:
    """A SLURM time limit in minutes, else argparse's one-line error."""
    try:
        return slurm_executor.parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group(
        "where the jobs run (gdbench audit and gdbench ab always run here)")
    g.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: here, one job at a time (default); dask: every job on every "
                        "kind of machine of a dask cluster; slurm: each job a SLURM job with "
                        "a node to itself. One run is saved per machine (dask and slurm need "
                        "pip install 'gdbench[cluster]')")
    g.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="the dask scheduler (default: dask's scheduler-address setting); "
                        "each machine runs one 'dask worker --nthreads 1 --resources bench=1' "
                        "(bench=1,GPU=1 with a GPU)")
    g.add_argument("--slurm-partition", metavar="NAME", help="the partition of every job")
    g.add_argument("--slurm-time", type=slurm_time, metavar="TIME",
                   help="each job's time limit: minutes, H:MM:SS or D-HH:MM:SS (default: "
                        f"{slurm_executor.DEFAULT_TIME_MIN} minutes)")
    g.add_argument("--slurm-gres", metavar="SPEC",
                   help="each job's generic resources, e.g. gpu:1 (the CUDA backends need a GPU)")
    g.add_argument("--slurm-account", metavar="NAME", help="the account charged for the jobs")


def from_args(args: argparse.Namespace) -> cluster.MatrixExecutor:
    """The executor that ``args`` ask for; InputError (one line) for an option of another
    executor, a missing extra, an unreachable dask scheduler, or no SLURM here."""
    kind = getattr(args, "executor", "local")
    for name in _DASK_ONLY + _SLURM_ONLY + ("slurm_time",):
        wanted = "dask" if name in _DASK_ONLY else "slurm"
        if getattr(args, name, None) is not None and kind != wanted:
            raise InputError(f"--{name.replace('_', '-')} is an option of --executor {wanted}")
    if kind == "dask":
        return dask_executor.connect(args.scheduler)
    if kind == "slurm":
        options = slurm_executor.SlurmOptions(
            args.slurm_partition, args.slurm_time or slurm_executor.DEFAULT_TIME_MIN,
            args.slurm_gres, args.slurm_account)
        engine = slurm_executor.slurm_engine(options, SLURM_FOLDER)
        partition = options.partition or "(the default partition)"
        return slurm_executor.SlurmExecutor(engine, where=f"SLURM {partition}")
    return cluster.LocalMatrix()
