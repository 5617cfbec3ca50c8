"""Starting pipeline ranks on this machine, one process each, and ending them all on a fault.

`launch(worker, world_size, args, backend, timeout_s)` starts `world_size` processes (spawned,
so each has its own interpreter and torch), initialises torch.distributed in each (gloo on CPU,
NCCL on GPU; MASTER_ADDR/MASTER_PORT on this host), and runs `worker(rank, world_size, *args)`.
It returns the workers' results in rank order, or raises `LaunchError` listing every rank's
error. When one rank fails, the others are given the receive timeout (plus a grace period) to
fail on their own, naming what they waited for; any rank still running after that is killed and
reported as such. Nothing is left hanging.

Under torchrun (RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set), `init_from_environment()`
initialises the process group from those variables instead; the caller runs its rank itself.
"""

from __future__ import annotations

import datetime
import os
import pickle
import queue
import socket
import time
import traceback
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


class LaunchError(RuntimeError):
    """One or more ranks failed; `errors` maps rank -> message."""

    def __init__(self, errors: dict[int, str]):
        self.errors = errors
        lines = [f"rank {r}: {message}" for r, message in sorted(errors.items())]
        super().__init__(f"{len(errors)} rank(s) failed:\n  " + "\n  ".join(lines))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_from_environment(backend: str | None = None, timeout_s: float = 300.0) -> tuple[int, int]:
    """Initialises torch.distributed from torchrun's variables; returns (rank, world size)."""
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise RuntimeError(f"dip.torch: {name} is not set (start the ranks with torchrun, or use dip.torch.launch)")
    dist.init_process_group(backend or default_backend(), timeout=datetime.timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size()


def _rank_main(rank: int, world_size: int, port: int, backend: str, timeout_s: float, threads: int,
               worker: Callable, args: tuple, results) -> None:
    try:
        torch.set_num_threads(threads)
        if backend == "nccl":
            torch.cuda.set_device(rank % torch.cuda.device_count())
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
        result = worker(rank, world_size, *args)
        # Pickled here, by value: torch's queue would share a tensor through a file descriptor
        # that dies with this process (os._exit below).
        results.put(("ok", rank, pickle.dumps(result)))
    except BaseException as error:  # noqa: BLE001 -- reported to the launcher, then this rank ends
        detail = str(error) if str(error) else type(error).__name__
        if not isinstance(error, (RuntimeError, ValueError, TimeoutError)):
            detail += "\n" + traceback.format_exc()
        results.put(("error", rank, detail))
    finally:
        # A rank must not wait in the process group's destructor for peers that may be gone.
        results.close()
        results.join_thread()
        os._exit(0)


def launch(worker: Callable, world_size: int, args: tuple = (), *, backend: str | None = None,
           timeout_s: float = 60.0, threads: int = 1) -> list[Any]:
    """Runs `worker(rank, world_size, *args)` on `world_size` new processes (see module docs).
    `timeout_s` is each receive's timeout; `threads` the torch threads per process."""
    backend = backend or default_backend()
    context = mp.get_context("spawn")
    results = context.Queue()
    port = free_port()
    processes = [context.Process(target=_rank_main, daemon=True,
                                 args=(r, world_size, port, backend, timeout_s, threads, worker, args, results))
                 for r in range(world_size)]
    for p in processes:
        p.start()
    done: dict[int, Any] = {}
    errors: dict[int, str] = {}
    deadline = None  # set when the first rank fails
    while len(done) + len(errors) < world_size:
        wait = 1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            status, rank, payload = results.get(timeout=wait)
        except queue.Empty:
            if deadline is not None and time.monotonic() >= deadline:
                break
            for r, p in enumerate(processes):  # a rank that died without reporting (killed, crashed)
                if not p.is_alive() and r not in done and r not in errors and p.exitcode not in (0, None):
                    errors[r] = f"the process ended with exit code {p.exitcode} without reporting"
                    deadline = deadline or time.monotonic() + timeout_s + 5.0
            continue
        if status == "ok":
            done[rank] = pickle.loads(payload)
        else:
            errors[rank] = payload
            deadline = deadline or time.monotonic() + timeout_s + 5.0
    for r, p in enumerate(processes):
        if r not in done and r not in errors:
            errors[r] = f"still running {timeout_s + 5.0:g} s after another rank failed; killed"
        p.join(timeout=5.0)
        if p.is_alive():
            p.kill()
            p.join()
    if errors:
        raise LaunchError(errors)
    return [done[r] for r in range(world_size)]
