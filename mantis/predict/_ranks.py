"""Ranks started by a cluster launcher (``torchrun``, SLURM ``srun``) rather than by mantis.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and ``MASTER_ADDR`` /
``MASTER_PORT``); ``srun`` sets ``SLURM_PROCID``, ``SLURM_NTASKS`` and ``SLURM_LOCALID``.
Each launched process runs `mantis.predict.predict_catalog` on its own shard of chunks
(``k % world == rank``), writes its parts, waits for the others at a gloo barrier, and rank 0
merges. The barrier runs over ``MASTER_ADDR:MASTER_PORT``, which SLURM does not set by itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from mantis.predict._parts import PredictionError

__all__ = ["BARRIER_TIMEOUT", "LaunchedRank", "launched_group", "launcher_rank"]

# Ranks that finish early wait for the slowest one: allow a long catalogue's worth of time.
# A rank that dies closes its connection, and the others fail at once rather than wait.
BARRIER_TIMEOUT = timedelta(days=7)

_TORCHRUN = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
_SLURM = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")


@dataclass(frozen=True)
class LaunchedRank:
    """Where this process sits among the launched ones.

    Attributes
    ----------
    rank : int
        Global rank, 0 .. world - 1.
    world : int
        Number of processes.
    local_rank : int
        Rank on this node.
    launcher : str
        ``'torchrun'`` or ``'slurm'``.
    """

    rank: int
    world: int
    local_rank: int
    launcher: str


def _integer(env: Mapping[str, str], name: str) -> int:
    value = env.get(name, "0")
    try:
        return int(value)
    except ValueError:
        raise PredictionError(
            f"environment variable {name}={value!r} is not an integer; launchers set it to a "
            "rank or a process count"
        ) from None


def launcher_rank(env: Mapping[str, str] | None = None) -> LaunchedRank | None:
    """Return the launcher's rank of this process; None outside a launcher or in a world of one.

    ``RANK``/``WORLD_SIZE`` take precedence over the SLURM variables.

    Raises
    ------
    PredictionError
        If the variables are not integers or the rank lies outside ``0 .. world - 1``.
    """
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        names, launcher = _TORCHRUN, "torchrun"
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        names, launcher = _SLURM, "slurm"
    else:
        return None
    rank, world, local = (_integer(env, n) for n in names)
    if world < 1 or not 0 <= rank < world:
        raise PredictionError(
            f"{names[0]}={rank} and {names[1]}={world} from the environment: the rank must lie "
            f"in 0 .. {names[1]} - 1 and {names[1]} must be >= 1"
        )
    if world == 1:
        return None
    return LaunchedRank(rank, world, local, launcher)


@contextmanager
def launched_group(launched: LaunchedRank) -> Iterator[None]:
    """Join the launched processes in a gloo group for the final barrier.

    Raises
    ------
    PredictionError
        If ``MASTER_ADDR``/``MASTER_PORT`` are missing (SLURM: export them, see the README).
    """
    import torch.distributed as dist

    missing = [n for n in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(n)]
    if missing:
        raise PredictionError(
            f"{launched.launcher} rank {launched.rank} of {launched.world}: "
            f"{' and '.join(missing)} not set; export the first node's address and a free "
            "port (torchrun sets them itself)"
        )
    started_here = not dist.is_initialized()
    if started_here:
        dist.init_process_group(
            "gloo", rank=launched.rank, world_size=launched.world, timeout=BARRIER_TIMEOUT
        )
    try:
        yield
        dist.barrier()
    finally:
        if started_here:
            dist.destroy_process_group()
