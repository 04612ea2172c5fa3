"""Distributed training: several processes (one machine or many) train one model together.

    sportsdet train DATA --out RUN --nproc 2                  # N processes here (local_group)
    torchrun --nnodes 2 --nproc-per-node 2 --node-rank R \\
        --master-addr HOST --master-port 29500 -m sportsdet train DATA --out RUN

Every process ("rank") runs the same job. The rules that keep them one job:

- Rank 0 alone plans and writes the run folder (split, config, metrics.csv, curves,
  checkpoints, bundle, evaluation, report) and holds its lock; the others receive the split,
  the resolved options and any checkpoint from it over the process group, so the run folder
  need not be on a shared disk. The data must be at the same path on every machine.
- Before anything, every rank's own call (data, options, model, seed...) is compared: ranks
  started differently stop with one error naming what differs; then every rank checks that it
  sees the same data files (names and sizes).
- Each global batch is split between the ranks (`shard_rows`), so with `--batch-size B` the
  N processes together take the same B photos as one process would; DDP averages the
  gradients, and epoch metrics are summed over the ranks (`all_sum`), so metrics.csv holds
  global numbers. Validation is split between ranks and summed the same way.

Collectives go through torch.distributed: gloo for CPU tensors, NCCL for CUDA tensors when a
GPU is present. Objects travel as JSON and tensors as tensors (never pickles).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from sportsdet.errors import SportsdetError
from sportsdet.run_folder import RunFolder

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# How long a rank waits for the others (rank 0 scans the data alone before the first broadcast).
TIMEOUT_ENV = "SPORTSDET_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800.0


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes files and prints."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    """torchrun (or --nproc's children) set RANK and WORLD_SIZE (and MASTER_ADDR/MASTER_PORT)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and all(k in os.environ for k in ENV_KEYS[:2])


def backend() -> str:
    """gloo for CPU tensors; with a GPU, NCCL for CUDA tensors and gloo for the rest."""
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


def _timeout() -> timedelta:
    return timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))


@contextmanager
def share_cpus(local_world: int) -> Iterator[None]:
    """Each of `local_world` processes on this machine uses its share of the cores (unless
    OMP_NUM_THREADS says otherwise): two processes of two threads each on two cores run slower."""
    before = torch.get_num_threads()
    if local_world > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def from_environment() -> Iterator[bool]:
    """Join the process group torchrun describes in the environment for the duration; yields
    whether there is one. Already initialised (e.g. by the caller or local_group): used as is."""
    if active() or not launched_by_torchrun():
        yield active()
        return
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        raise SportsdetError(
            "RANK/WORLD_SIZE are set but MASTER_ADDR/MASTER_PORT are not: start with torchrun"
        )
    with share_cpus(int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))):
        dist.init_process_group(backend(), timeout=_timeout())
        _collectives_ended.clear()
        try:
            yield True
            end_collectives()
        finally:
            dist.destroy_process_group()


_collectives_ended: list[bool] = []  # [True] once every rank has passed `end_collectives`


def end_collectives() -> None:
    """Every rank has finished its collectives; then rank 0 goes on alone (calibration, the
    bundle, the test evaluation, the report) for as long as that takes, while the others leave.

    Before any rank tears the group down: a rank whose peer closed its sockets while one of its
    gloo threads still waited aborted at exit ("terminate called without an active exception",
    exit code -6), now and then. And not after rank 0's own work: ranks waiting for it in a
    barrier timed out (SPORTSDET_DIST_TIMEOUT_S) when the evaluation took longer, failing a
    finished run.
    """
    if active() and not _collectives_ended:
        dist.barrier()
        _collectives_ended.append(True)


# ----------------------------------------------------------------------------- collectives


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_json(value: Any) -> Any:
    """Rank 0's JSON-able `value` on every rank (the others pass anything, e.g. None)."""
    if not active():
        return value
    data = json.dumps(value).encode() if is_main() else b""
    size = torch.tensor([len(data)], dtype=torch.int64)
    dist.broadcast(size, 0)
    buffer = (
        torch.frombuffer(bytearray(data), dtype=torch.uint8)
        if is_main()
        else torch.empty(int(size), dtype=torch.uint8)
    )
    if int(size):
        dist.broadcast(buffer, 0)
    return json.loads(buffer.numpy().tobytes().decode()) if not is_main() else value


def all_gather_json(value: Any) -> list[Any]:
    """Every rank's JSON-able `value`, in rank order."""
    if not active():
        return [value]
    data = json.dumps(value, sort_keys=True).encode()
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([len(data)], dtype=torch.int64))
    longest = max(int(s) for s in sizes)
    mine = torch.zeros(longest, dtype=torch.uint8)
    if data:
        mine[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    gathered = [torch.zeros(longest, dtype=torch.uint8) for _ in range(world_size())]
    dist.all_gather(gathered, mine)
    return [json.loads(g[: int(s)].numpy().tobytes().decode()) for g, s in zip(gathered, sizes, strict=True)]


def broadcast_tensors(tensors: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Rank 0's named CPU tensors (e.g. a checkpoint it read) on every rank."""
    if not active():
        return tensors or {}
    header = broadcast_json(
        {k: [str(v.dtype).removeprefix("torch."), list(v.shape)] for k, v in tensors.items()}
        if is_main()
        else None
    )
    out: dict[str, torch.Tensor] = {}
    for name, (dtype, shape) in header.items():
        tensor = tensors[name].contiguous() if is_main() else torch.empty(shape, dtype=getattr(torch, dtype))
        dist.broadcast(tensor, 0)
        out[name] = tensor
    return out


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sums over the ranks (epoch loss sums, correct and seen counts)."""
    if not active():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def sync_rng() -> None:
    """Every rank continues with rank 0's torch random state (same shuffles and view picks)."""
    if active():
        torch.random.set_rng_state(
            broadcast_tensors({"rng": torch.random.get_rng_state()} if is_main() else None)["rng"]
        )


def wrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """DistributedDataParallel around `model` when distributed (gradients averaged), else `model`."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model)


# ----------------------------------------------------------------------------- agreement


def fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def check_same(what: dict[str, Any], subject: str = "ranks") -> None:
    """Every rank's `what` ({name: JSON-able}) must be equal; else one error naming what differs.

    Raised on every rank, so none waits for the others in a collective that never comes.
    """
    if not active():
        return
    seen = all_gather_json({key: fingerprint(value) for key, value in what.items()})
    values = all_gather_json(what) if any(s != seen[0] for s in seen) else None
    if values is None:
        return
    differing = sorted({key for s in seen for key in s if s.get(key) != seen[0].get(key)})
    details = "; ".join(
        f"{key}: "
        + ", ".join(f"rank {r} {json.dumps(v.get(key), default=str)[:120]}" for r, v in enumerate(values))
        for key in differing
    )
    raise SportsdetError(
        f"the {world_size()} training processes were started differently ({subject} disagree on "
        f"{', '.join(differing)}): {details}. Start every process with the same command"
    )


IGNORED = -100  # the target of a padding row: cross-entropy leaves it out (its ignore_index)


def _padded_positions(n: int, position: int, count: int) -> list[int]:
    """Positions in a global batch of n rows that rank `position` of `count` takes; n and above are
    padding (the batch's own first rows again)."""
    return list(range(-(-n // count) * count))[position::count]


def shard_rows(rows: Any, position: int | None = None, count: int | None = None) -> Any:
    """This rank's part of one global batch (a list or array): rows[rank::world], after padding the
    batch with its own first rows to a multiple of world, so every rank takes the same number of
    steps and rows (DDP needs both). `padding_rows` says which of them are padding."""
    position = rank() if position is None else position
    count = world_size() if count is None else count
    if count == 1:
        return rows
    picked = [i % len(rows) for i in _padded_positions(len(rows), position, count)]
    return rows[picked] if hasattr(rows, "shape") else [rows[i] for i in picked]


def padding_rows(n: int, position: int | None = None, count: int | None = None) -> list[bool]:
    """Which of this rank's `shard_rows` of a global batch of n rows are padding: their targets are
    IGNORED, so a row is counted once in the loss, the gradient and the training accuracy."""
    position = rank() if position is None else position
    count = world_size() if count is None else count
    if count == 1:
        return [False] * n
    return [i >= n for i in _padded_positions(n, position, count)]


class PaddingMarked:
    """A dataset whose indices past its end stand for padding rows (RankBatches gives them): the
    row of `index - len` with the target IGNORED."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        if index < len(self.dataset):
            return self.dataset[index]
        image, _ = self.dataset[index - len(self.dataset)]
        return image, IGNORED


class RankBatches:
    """A batch sampler: the global batches of `sampler`'s order (batch_size each), this rank's
    part of each (`shard_rows`). `set_epoch` reaches the sampler (an EpochShuffleSampler)."""

    def __init__(self, sampler: Any, batch_size: int) -> None:
        self.sampler, self.batch_size = sampler, batch_size

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order, n = list(self.sampler), len(self.sampler)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            # A padding row's index is past the dataset's end: PaddingMarked ignores its target.
            padding = padding_rows(len(rows))
            yield [i + n if pad else i for i, pad in zip(shard_rows(rows), padding, strict=True)]


# ----------------------------------------------------------------------------- local launcher


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child(target: Callable[..., Any], rank_: int, nproc: int, port: int, kwargs: dict, errors: Any) -> None:
    """A rank started by local_group: the torchrun environment, then the same job as rank 0."""
    # Spawn made this process's default start method "spawn"; DataLoader workers (lambdas inside)
    # need the platform's own, as in a process torchrun starts.
    multiprocessing.set_start_method(None, force=True)
    os.environ.update(
        RANK=str(rank_), WORLD_SIZE=str(nproc), LOCAL_RANK=str(rank_), LOCAL_WORLD_SIZE=str(nproc),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    try:
        target(**kwargs)
    except SportsdetError as exc:  # rank 0 says it (or this rank's own message, if only this one failed)
        errors.put(f"rank {rank_}: {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    # Done, its files written and closed, its process group destroyed. A spawned process then runs
    # the interpreter's whole shutdown, where a gloo thread still waiting on a socket aborted it
    # now and then (exit code -6, "terminate called without an active exception"; seen
    # under load even after the last barrier: once in CI, once in a full local test run). A forked
    # process ends like this anyway.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


_local_children: list[Any] = []  # the ranks local_group started (this process is rank 0)


def peer_interrupted(wait: float = 2.0) -> bool:
    """Whether a rank local_group started ended by Ctrl-C (130, or SIGINT), waiting up to `wait`
    seconds for one to end. Ctrl-C reaches every rank: one that stops first breaks the collective
    rank 0 is in, and rank 0 fails on that ("rank1 ended with exit code 130", a traceback) when its
    own KeyboardInterrupt was lost inside a callback Python ignores."""
    if not _local_children:
        return False
    _wait_for_an_end(_local_children, wait)
    return any(c.exitcode in (130, -signal.SIGINT) for c in _local_children)


def _wait_for_an_end(children: list[Any], wait: float) -> None:
    """Until one of `children` has ended with an exit code, for at most `wait` seconds."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and not any(c.exitcode for c in children):
        time.sleep(0.05)


def _ended_rank(children: list[Any], run_dir: Any = None, wait: float = 2.0) -> str | None:
    """Why the group broke when a rank ended without saying (killed: out of memory?), or None.
    `run_dir`: the run folder, to say whether a checkpoint is there to resume from."""
    _wait_for_an_end(children, wait)
    for child in children:
        if child.exitcode:
            code = child.exitcode
            how = (
                f"was killed by signal {-code}" + (" (out of memory?)" if code == -9 else "")
                if code < 0 else f"ended with exit code {code}"
            )  # fmt: skip
            last = RunFolder(Path(run_dir).expanduser()).last_checkpoint if run_dir else None
            kept = last is None or last.is_file()
            after = (
                "The last checkpoint is kept: continue with the same command and --resume"
                if kept
                else "No epoch had finished: start again with the same command and --force"
            )
            return f"{child.name} {how}; the training stopped. {after}"
    return None


@contextmanager
def local_group(nproc: int, target: Callable[..., Any], kwargs: dict[str, Any]) -> Iterator[None]:
    """This process becomes rank 0 of `nproc` on 127.0.0.1; ranks 1.. run `target(**kwargs)`.

    `target` is the same job (sportsdet.train.train) with the same arguments, started in fresh
    interpreters (spawn). Leaving the block joins them; a rank's own error is raised here.
    """
    if nproc < 1:
        raise SportsdetError(f"--nproc must be at least 1, got {nproc}")
    if active() or launched_by_torchrun():
        raise SportsdetError("--nproc starts its own processes; under torchrun leave it out")
    port = free_port()
    context = multiprocessing.get_context("spawn")
    errors = context.SimpleQueue()
    children = [
        context.Process(
            target=_child, args=(target, r, nproc, port, kwargs, errors), name=f"sportsdet-rank{r}"
        )
        for r in range(1, nproc)
    ]
    for child in children:
        child.start()
    _local_children[:] = children
    failed = True
    try:
        with share_cpus(nproc):
            dist.init_process_group(
                backend(), init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=nproc, timeout=_timeout()
            )
            _collectives_ended.clear()
            try:
                yield
                end_collectives()
                failed = False
            except Exception as exc:
                # A rank that failed alone (e.g. a photo it could not decode) breaks the group: say why.
                if not isinstance(exc, SportsdetError):
                    if not errors.empty():
                        raise SportsdetError(errors.get()) from None
                    ended = _ended_rank(children, kwargs.get("out"))
                    if ended:
                        raise SportsdetError(ended) from None
                raise
            finally:
                dist.destroy_process_group()
    finally:
        for child in children:
            # After a failure or Ctrl-C a rank may be stuck in a collective that will never
            # complete (it never sees its own Ctrl-C there): a short wait, then it is stopped.
            child.join(timeout=None if not failed else 3)
            if child.is_alive():
                child.terminate()
                child.join()
        _local_children.clear()
    bad = [c for c in children if c.exitcode]
    if bad:
        message = (
            errors.get() if not errors.empty() else f"{bad[0].name} ended with exit code {bad[0].exitcode}"
        )
        raise SportsdetError(message)
