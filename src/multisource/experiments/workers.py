"""The worker processes of a run, and stopping them: task execution in spawned workers with
the parent's thread counts, the run's lock, SIGTERM/SIGINT handling (every worker stopped, the
checkpoint kept) and workers that end when their parent does."""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from multisource.common.validation import InputError
from multisource.experiments import get


class Terminated(KeyboardInterrupt):
    """A run stopped by SIGTERM. A KeyboardInterrupt, so that every path that keeps the
    checkpoint and stops the workers on Ctrl-C does the same on SIGTERM."""


class WorkerDied(RuntimeError):
    """A worker process ended without finishing its task (killed from outside, or out of
    memory); the finished tasks are in the checkpoint."""


# Set by the SIGTERM handler: a worker pool broken by the same group-wide signal is reported
# as the termination it is, not as a worker that died.
_TERMINATED = threading.Event()


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While the run lasts, SIGTERM raises `Terminated` in the main thread (SIGINT raises
    KeyboardInterrupt already), so that the workers are stopped and the checkpoint kept."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        _TERMINATED.set()
        raise Terminated()

    _TERMINATED.clear()
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def _run_lock(path: Path, name: str, profile: str) -> Iterator[None]:
    """Hold an exclusive lock on `path` (which records this process's PID) for the run; a run
    that finds it held raises InputError naming the holder's PID. The file is removed on the
    way out, and a lock taken on a file that a previous holder removed meanwhile is retried."""
    try:
        import fcntl
    except ImportError:   # no flock (Windows): runs are not locked
        yield
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise InputError(f"{name}[{profile}] is already running in {who} (it holds "
                             f"{path.name}); wait for it to finish, or stop it "
                             f"{f'(`kill {holder}`) ' if holder.isdigit() else ''}and run "
                             f"this again to resume") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)   # the previous holder removed the file after we opened it: retry
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def _run_in_worker(name: str, module: str, config: Any, task: dict[str, Any], device: str,
                   threads: tuple[int, int | None]) -> tuple[list[dict[str, Any]], float]:
    """One task in a worker process: its rows and its compute seconds. The worker uses the
    parent's torch and BLAS thread counts: a reduction split over another number of threads
    can differ in the last bit, and the table must not depend on how many workers ran it.
    `module` registers the experiment (one outside this package is found too)."""
    import torch
    from threadpoolctl import threadpool_limits

    from multisource import experiments

    importlib.import_module(module)
    # registered by `module`: no need to import every other experiment in each worker
    experiment = experiments._REGISTRY.get(name) or get(name)
    torch.set_num_threads(threads[0])
    with threadpool_limits(limits=threads[1], user_api="blas"):
        started = time.perf_counter()
        rows = experiment.run_task(config, task, torch.device(device))
        return rows, time.perf_counter() - started


# How often a worker checks that its parent is alive where the kernel cannot tell it.
PARENT_CHECK_S = 1.0


def _worker_init(parent_pid: int) -> None:
    """Set up a worker process: Ctrl-C on the terminal reaches the whole process group, and
    the parent stops the workers itself, so a worker ignores SIGINT; and a worker never
    outlives its parent (the kernel kills it on Linux; elsewhere it checks every second)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:   # the parent died before the line above
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="multisource-parent-watch", daemon=True).start()


def _thread_counts() -> tuple[int, int | None]:
    """This process's torch intra-op threads and BLAS threads (None: no BLAS loaded)."""
    import torch
    from threadpoolctl import threadpool_info

    blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return torch.get_num_threads(), (min(blas) if blas else None)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while worker processes are started: they inherit the ignored signal, so
    a Ctrl-C to the process group never interrupts a worker's interpreter start-up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


# Seconds the workers get to exit after SIGTERM before they are killed.
WORKER_STOP_S = 5.0


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued tasks and end every worker process (SIGTERM, then SIGKILL)."""
    from multiprocessing.connection import wait

    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            process.terminate()
    deadline = time.monotonic() + WORKER_STOP_S
    running = {process.sentinel: process for process in processes}
    while running and time.monotonic() < deadline:
        for sentinel in wait(list(running), timeout=max(0.0, deadline - time.monotonic())):
            running.pop(sentinel, None)
    for process in running.values():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            process.kill()


def _completed_tasks(name: str, module: str, config: Any,
                     pending: list[tuple[dict[str, Any], str]], device: Any, workers: int
                     ) -> Iterator[tuple[str, list[dict[str, Any]], float]]:
    """Yield (key, rows, seconds) for every pending task as it finishes.

    One worker runs the tasks in order in this process. More workers run them in separate
    processes (spawned, so each imports torch afresh); every experiment seeds its tasks from
    the task itself, so the rows do not depend on which process ran them or when. However
    the generator ends (an exception, an interruption, closed early), no worker outlives it.
    """
    if workers == 1 or len(pending) <= 1:
        experiment = get(name)
        for task, key in pending:
            started = time.perf_counter()
            rows = experiment.run_task(config, task, device)
            yield key, rows, time.perf_counter() - started
        return
    threads = _thread_counts()
    context = multiprocessing.get_context("spawn")
    with _sigint_ignored():
        pool = ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=context,
                                   initializer=_worker_init, initargs=(os.getpid(),))
    try:
        with _sigint_ignored():
            futures = {pool.submit(_run_in_worker, name, module, config, task, str(device),
                                   threads): key for task, key in pending}
        for future in as_completed(futures):
            rows, seconds = future.result()
            yield futures[future], rows, seconds
    except BrokenProcessPool:
        _stop_workers(pool)
        if _TERMINATED.is_set():
            raise Terminated() from None
        raise WorkerDied("a worker process ended without finishing its task (killed from "
                         "outside, or out of memory)") from None
    except BaseException:
        _stop_workers(pool)
        raise
    pool.shutdown(wait=True)


