"""Several processes, on one host or many, as one set of JAX devices.

``initialize`` is a thin wrapper over ``jax.distributed.initialize`` (JAX's own distributed
runtime: a coordinator served by process 0, cluster auto-detection for Slurm and Open MPI,
Gloo collectives on CPUs, NCCL on GPUs). Call it once in every process, before anything else
touches JAX; afterwards ``jax.devices()`` lists the devices of every process, and the same
``mdhess.hvp(..., devices=jax.devices())`` / ``mdhess.hessian(..., format="bsr", devices=...)``
call, run by every process on the same input, spans all of them (docs/scaling.md, "Several
hosts").

What this wrapper adds: argument checks with clear messages, and no hang or crash on an
unreachable coordinator. JAX aborts the whole process (a fatal log, no Python exception) when its
client cannot register with the coordinator in time, so a process other than 0 first waits for
the coordinator's port to accept a connection, up to ``timeout`` seconds, and raises
``CoordinatorError`` if it never does. Process 0 checks that it can bind the port.
"""

import math
import socket
import time

import jax

from ._errors import InputError

DEFAULT_TIMEOUT = 300.0
"""Seconds ``initialize`` waits for the coordinator and for every process to join (JAX's default)."""


class CoordinatorError(ConnectionError):
    """The distributed coordinator could not be reached (or served) within the timeout."""


def is_initialized() -> bool:
    """Whether JAX's distributed runtime is running in this process."""
    return jax.distributed.is_initialized()


def shutdown() -> None:
    """Leave the distributed runtime (``jax.distributed.shutdown``); a no-op when not initialized."""
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(
            f"mdhess.distributed.initialize(coordinator_address=...) must be 'host:port' (e.g. '10.0.0.1:1234'); "
            f"got {address!r}"
        )
    return host.strip("[]"), int(port)


def _check_int(value, name: str, lo: int):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise InputError(f"mdhess.distributed.initialize({name}=...) must be an integer >= {lo} or None; got {value!r}")
    return value


def wait_for_coordinator(host: str, port: int, timeout: float) -> None:
    """Return once ``host:port`` accepts a TCP connection; CoordinatorError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(min(left, 2.0), 0.05)):
                return
        except OSError as exc:
            last = exc
        if time.monotonic() + 0.2 > deadline:
            raise CoordinatorError(
                f"mdhess.distributed.initialize: no coordinator answered at {host}:{port} within {timeout:g} s "
                f"({last}). Start process 0 (it serves the coordinator) with the same coordinator_address, "
                "or check the address, the port and the firewall."
            )
        time.sleep(0.2)


def _check_bindable(host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise CoordinatorError(f"mdhess.distributed.initialize: cannot resolve coordinator host {host!r}: {exc}") from exc
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", addr[1]) if family == socket.AF_INET else addr)
        except OSError as exc:
            raise CoordinatorError(
                f"mdhess.distributed.initialize: process 0 serves the coordinator at {host}:{port}, but the port "
                f"cannot be bound ({exc}); choose a free port"
            ) from exc


def initialize(coordinator_address=None, num_processes=None, process_id=None, *, timeout=DEFAULT_TIMEOUT,
               local_device_ids=None) -> dict:  # fmt: skip
    """Join JAX's distributed runtime (``jax.distributed.initialize``), once per process, before
    any other JAX work.

    Args:
        coordinator_address: "host:port" of the coordinator, served by process 0; None to let JAX
            detect a cluster (Slurm, Open MPI, ...) and take all three values from it.
        num_processes: how many processes take part (None: detected).
        process_id: this process's rank, 0..num_processes-1 (None: detected).
        timeout: seconds to wait for the coordinator and for every process to join.
        local_device_ids: restrict this process to these local devices (e.g. one GPU per process).

    Returns:
        {"process_index", "process_count", "local_devices", "devices"}: this process's rank, the
        number of processes, and the local and global device counts.

    Raises:
        InputError: a malformed address, count, rank or timeout, or no address and no cluster found.
        CoordinatorError: the coordinator did not answer within ``timeout`` (or, for process 0,
            its port cannot be bound).
        RuntimeError: JAX already ran computations in this process (initialize first).
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0 or not math.isfinite(timeout):
        raise InputError(f"mdhess.distributed.initialize(timeout=...) must be a positive number of seconds; got {timeout!r}")
    num_processes = _check_int(num_processes, "num_processes", 1)
    process_id = _check_int(process_id, "process_id", 0)
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise InputError(
            f"mdhess.distributed.initialize(process_id=...) must be below num_processes={num_processes}; got {process_id}"
        )
    if not jax.distributed.is_initialized():
        if coordinator_address is not None:
            if not isinstance(coordinator_address, str):
                raise InputError(
                    f"mdhess.distributed.initialize(coordinator_address=...) must be a 'host:port' string or None; "
                    f"got {coordinator_address!r}"
                )
            host, port = _split_address(coordinator_address)
            if process_id == 0:
                _check_bindable(host, port)
            elif process_id is not None:
                wait_for_coordinator(host, port, float(timeout))
        try:
            jax.distributed.initialize(
                coordinator_address, num_processes, process_id, local_device_ids=local_device_ids,
                initialization_timeout=max(1, math.ceil(timeout)),
            )  # fmt: skip
        except ValueError as exc:  # JAX found no cluster and no explicit values
            raise InputError(
                "mdhess.distributed.initialize: give coordinator_address, num_processes and process_id, or run "
                f"under a cluster manager JAX detects (Slurm, Open MPI): {exc}"
            ) from exc
        except RuntimeError as exc:
            raise RuntimeError(
                "mdhess.distributed.initialize must run before any JAX computation in this process (call it right "
                f"after the imports): {exc}"
            ) from exc
    return {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "local_devices": jax.local_device_count(),
        "devices": jax.device_count(),
    }
