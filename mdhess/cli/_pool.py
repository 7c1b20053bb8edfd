"""Frames computed in several processes (``--processes N``): this process and N - 1 workers. The
parent hands out slots, receives each finished frame (its arrays pickled through a pipe), computes
frames itself while no worker's frame is ready, and writes every frame (``ResultRun`` has one
writer, the parent).

Workers are started with ``spawn``, never ``fork``: JAX's runtime threads do not survive a fork.
Each worker builds its own job once (``factory()``: opens the input, checks it, builds the
potential; JAX compiles on its first frame) and then computes one slot per task. On a CPU each
worker's XLA runs single-threaded (``--xla_cpu_multi_thread_eigen=false``), so N workers use N
cores without oversubscribing them; off the CPU the workers do not preallocate device memory.

At most two frames per worker are in flight, so the parent never holds more than that many
frames whatever the relative speeds; frames are written in the order they finish (the file
does not depend on it). An error in any
frame (an ``InputError`` naming the frame, a ``NonFiniteError``, ...) is raised in the parent
with its type and message; the other workers are stopped at once, as on Ctrl-C.
"""

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator

_JOB: Callable | None = None  # in a worker: slot -> Computed


def _start(factory: Callable) -> None:
    global _JOB
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the workers
    _JOB = factory()


def _one(slot: int):
    return _JOB(slot)


def cpu_count() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_env(backend: str) -> dict:
    """Environment variables a worker starts with (added to the parent's)."""
    env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    if backend == "cpu":
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_cpu_multi_thread_eigen" not in flags:
            env["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    return env


def compute_in_processes(factory: Callable, local: Callable, todo: list, processes: int) -> Iterator:
    """Yield the ``Computed`` of every slot of ``todo`` (in the order they finish), computed by
    this process and ``processes - 1`` spawned workers.

    This process computes too: a slot whose turn comes while no worker's frame is ready is
    computed here, so the workers' start-up (imports, opening the input, JAX compilation: a few
    seconds) costs no throughput, and a worker that dies or hangs on start-up cannot stall the
    run for longer than its frames in flight.

    Args:
        factory: picklable; called once in each worker, returns ``slot -> Computed``.
        local: ``slot -> Computed`` in this process.
        todo: the slots to compute.
        processes: processes computing, this one included (at most one per slot).
    """
    n = max(1, min(int(processes), len(todo))) - 1
    if n == 0:
        for slot in todo:
            yield local(slot)
        return
    import jax

    env = worker_env(jax.default_backend())
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # spawned children copy the parent's environment when they start
    try:
        pool = multiprocessing.get_context("spawn").Pool(n, initializer=_start, initargs=(factory,))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    finished = False
    try:
        slots = deque(todo)
        waiting: deque = deque()  # frames handed to the workers, oldest first
        while slots or waiting:
            while slots and len(waiting) < 2 * n:
                waiting.append(pool.apply_async(_one, (slots.pop(),)))  # workers take from the end
            if waiting and (waiting[0].ready() or not slots):
                yield waiting.popleft().get()
            else:  # nothing ready: compute the next slot here
                yield local(slots.popleft())
        finished = True
    finally:
        if finished:
            pool.close()
            pool.join()
        else:  # an error, Ctrl-C, or the consumer stopped: stop the workers now
            pool.terminate()
            pool.join()
