"""``--processes N``: frames computed by this process and N - 1 spawned workers give the same file
as one process; a bad frame in a worker is one clear error with the finished frames kept; a kill
-9 of a multi-process run resumes to the same file."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mdhess
from mdhess import io

from ._cli_util import REPO, assert_same_hessians, leftovers, make_traj, run_cli, run_main


@pytest.fixture(scope="module")
def traj6(tmp_path_factory):
    d = tmp_path_factory.mktemp("procs")
    return make_traj(d / "traj.h5", n_frames=6)


def test_two_processes_write_the_same_hessians_as_one(traj6, tmp_path):
    args = ["hessian", traj6, "-p", "kob-andersen", "--format", "bsr", "-q"]
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    r1 = run_cli([*args, "-o", one])
    r2 = run_cli([*args, "-o", two, "--processes", "2"])
    assert r1.returncode == 0 and r2.returncode == 0, (r1.stderr, r2.stderr)
    assert r2.stderr == "", r2.stderr  # the workers' notices are the parent's to give, once
    assert_same_hessians(two, one)  # bit for bit: every frame, whichever process computed it
    with io.ResultFile(one, "hessian") as a, io.ResultFile(two, "hessian") as b:
        assert a.json_attr("settings") == b.json_attr("settings")  # --processes is not a setting
    assert leftovers(tmp_path, "two.h5") == []


@pytest.mark.slow
def test_two_processes_write_the_same_modes_as_one(traj6, tmp_path):
    args = ["modes", traj6, "-p", "kob-andersen", "-k", "8", "-q"]
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    r1 = run_cli([*args, "-o", one])
    r2 = run_cli([*args, "-o", two, "-j", "2"])
    assert r1.returncode == 0 and r2.returncode == 0, (r1.stderr, r2.stderr)
    for k in range(6):
        a, b = mdhess.read_modes(one, k), mdhess.read_modes(two, k)
        # same solver on the same matrix; the worker's BLAS may sum in another order: 1e-10 relative
        np.testing.assert_allclose(b.eigenvalues, a.eigenvalues, rtol=1e-10, atol=1e-12)
    with io.ResultFile(two, "modes") as r:
        assert r.attrs["frequency_unit"] == "reduced"  # recorded from the workers' frames too


@pytest.mark.slow  # a spawned worker's start-up: ~6 s CPU
def test_a_bad_frame_in_a_worker_is_one_error_and_keeps_the_finished_frames(tmp_path, capsys):
    with mdhess.read_trajectory(make_traj(tmp_path / "t.h5", 5)) as t:
        R = np.stack([t[k].positions for k in range(5)])
        box, species = t[0].box, t[0].species
    R[3, 7] = np.nan
    src = tmp_path / "nan.h5"
    io.write_minimal(src, R, box=np.diag(box), species=species)
    out = tmp_path / "o.h5"
    code, _, err = run_main(
        ["hessian", src, "-p", "kob-andersen", "--format", "bsr", "-q", "-o", out, "-j", "2"], capsys
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "frame 3" in lines[0] and "Traceback" not in err, err
    assert not out.exists() and leftovers(tmp_path, "o.h5") == ["o.h5.partial"]


@pytest.mark.parametrize(
    "extra, words",
    [(["--processes", "-1"], "--processes must be an integer >= 0"),
     (["--processes", "2", "--batch-frames", "2"], "exclude each other")],
)  # fmt: skip
def test_bad_process_counts(traj6, tmp_path, capsys, extra, words):
    code, _, err = run_main(
        ["hessian", traj6, "-p", "kob-andersen", "-q", "-o", tmp_path / "o.h5", *extra], capsys
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and words in lines[0], err


@pytest.mark.slow
def test_kill_9_of_a_two_process_run_then_resume(tmp_path):
    src = make_traj(tmp_path / "in.h5", n_frames=10)
    args = ["hessian", src, "-p", "kob-andersen", "--format", "bsr", "-q"]
    ref = tmp_path / "ref.h5"
    assert run_cli([*args, "-o", ref]).returncode == 0
    out = tmp_path / "out.h5"
    from mdhess.io._readers import read_partial_run

    def finished():
        p = tmp_path / "out.h5.partial"
        run = read_partial_run(p) if p.is_dir() else None
        return 0 if run is None else run.finished

    proc = subprocess.Popen([sys.executable, "-m", "mdhess.cli", *map(str, args), "-o", str(out), "-j", "2"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and finished() < 3 and proc.poll() is None:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the parent and its workers
    proc.wait()
    assert not out.exists()
    res = run_cli([*args, "-o", out, "--resume", "-j", "2"])
    assert res.returncode == 0, res.stderr
    assert_same_hessians(out, ref)
    assert leftovers(tmp_path, "out.h5") == []


# -- --distributed: processes of JAX's distributed runtime -------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def distributed_run(args, n=2, timeout=300):
    """``mdhess ARGS --distributed`` as ``n`` processes on 127.0.0.1; [(returncode, stdout, stderr)]."""
    address = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mdhess.cli",
                *map(str, args),
                "--distributed",
                "--coordinator",
                address,
                "--num-processes",
                str(n),
                "--process-id",
                str(r),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for r in range(n)
    ]
    out = []
    for p in procs:
        so, se = p.communicate(timeout=timeout)
        out.append((p.returncode, so, se))
    return out


@pytest.mark.slow  # two fresh JAX processes plus Gloo set-up per run
def test_two_distributed_processes_write_the_same_file_as_one(traj6, tmp_path):
    args = ["hessian", traj6, "-p", "kob-andersen", "--format", "bsr", "-q"]
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    assert run_cli([*args, "-o", one]).returncode == 0
    res = distributed_run([*args, "-o", two])
    assert all(r[0] == 0 for r in res), res
    assert_same_hessians(two, one)
    with io.ResultFile(one, "hessian") as a, io.ResultFile(two, "hessian") as b:
        assert a.json_attr("settings") == b.json_attr("settings")
    assert leftovers(tmp_path, "two.h5") == []
    # modes: the same eigenvalues (other processes' BLAS may sum in another order: 1e-10)
    margs = ["modes", traj6, "-p", "kob-andersen", "-k", "6", "-q"]
    assert run_cli([*margs, "-o", tmp_path / "m1.h5"]).returncode == 0
    res = distributed_run([*margs, "-o", tmp_path / "m2.h5"])
    assert all(r[0] == 0 for r in res), res
    for k in range(6):
        a, b = mdhess.read_modes(tmp_path / "m1.h5", k), mdhess.read_modes(tmp_path / "m2.h5", k)
        np.testing.assert_allclose(b.eigenvalues, a.eigenvalues, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_one_frame_for_two_distributed_processes_is_sharded_between_them(traj6, tmp_path):
    """Fewer frames than processes: both compute the frame together (sharded operator over
    both processes' devices); process 0 writes it. BSR equal to one process's bit for bit (the
    same blocks, gathered); the modes' eigenvalues to 1e-10 (products summed in another order)."""
    args = ["hessian", traj6, "-p", "kob-andersen", "--format", "bsr", "-q", "--frames", "2"]
    assert run_cli([*args, "-o", tmp_path / "one.h5"]).returncode == 0
    res = distributed_run([*args, "-o", tmp_path / "two.h5"])
    assert all(r[0] == 0 for r in res), res
    assert "sharded over all 2 devices" in res[0][2], res[0][2]
    a, b = mdhess.read_hessian(tmp_path / "one.h5", 0), mdhess.read_hessian(tmp_path / "two.h5", 0)
    assert (a != b).nnz == 0
    margs = ["modes", traj6, "-p", "kob-andersen", "-k", "8", "-q", "--frames", "2"]
    assert run_cli([*margs, "-o", tmp_path / "m1.h5"]).returncode == 0
    res = distributed_run([*margs, "-o", tmp_path / "m2.h5"])
    assert all(r[0] == 0 for r in res), res
    x, y = mdhess.read_modes(tmp_path / "m1.h5", 0), mdhess.read_modes(tmp_path / "m2.h5", 0)
    np.testing.assert_allclose(y.eigenvalues, x.eigenvalues, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_a_bad_frame_in_one_distributed_process_stops_all_and_resume_finishes(tmp_path):
    with mdhess.read_trajectory(make_traj(tmp_path / "t.h5", 6)) as t:
        R = np.stack([t[k].positions for k in range(6)])
        box, species = t[0].box, t[0].species
    src = tmp_path / "in.h5"
    io.write_minimal(src, R, box=np.diag(box), species=species)
    ref = tmp_path / "ref.h5"
    args = ["hessian", src, "-p", "kob-andersen", "--format", "bsr", "-q"]
    assert run_cli([*args, "-o", ref]).returncode == 0
    out = tmp_path / "out.h5"
    # process 1 computes slots 1, 3, 5: make its second frame fail once (a flaky node), via a sitecustomize hook
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap_hook(tmp_path / "failed-once"))
    env_extra = {"PYTHONPATH": f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    res = distributed_run_env([*args, "-o", out], env_extra)
    assert [r[0] for r in res] == [2, 2], res
    e0, e1 = (r[2].strip().splitlines() for r in res)
    assert len(e0) == 1 and "process 1 failed" in e0[0] and "--resume" in e0[0], e0
    assert len(e1) == 1 and "frame 3" in e1[0] and "injected" in e1[0], e1
    assert not out.exists()
    res = run_cli([*args, "-o", out, "--resume"])  # one process carries over both processes' frames
    assert res.returncode == 0, res.stderr
    assert_same_hessians(out, ref)
    assert leftovers(tmp_path, "out.h5") == []


def textwrap_hook(flag) -> str:
    return f"""
import os
if os.environ.get("MDHESS_TEST_FAIL_FRAME") and not os.path.exists({str(flag)!r}):
    import mdhess.cli._jobs as jobs
    real = jobs.TrajectorySource.hessian

    def hessian(self, fr, fmt, dtype, **kw):
        if fr.index == int(os.environ["MDHESS_TEST_FAIL_FRAME"]) and not os.path.exists({str(flag)!r}):
            open({str(flag)!r}, "w").close()
            raise jobs.InputError(f"frame {{fr.index}}: injected failure")
        return real(self, fr, fmt, dtype, **kw)

    jobs.TrajectorySource.hessian = hessian
"""


def distributed_run_env(args, env_extra, n=2, timeout=300):
    old = {k: os.environ.get(k) for k in env_extra}
    os.environ.update(env_extra, MDHESS_TEST_FAIL_FRAME="3")
    try:
        return distributed_run(args, n, timeout)
    finally:
        os.environ.pop("MDHESS_TEST_FAIL_FRAME", None)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_distributed_without_a_coordinator_is_a_clear_error_not_a_hang(traj6, tmp_path, capsys):
    t0 = time.perf_counter()
    code, _, err = run_main(
        ["hessian", traj6, "-p", "kob-andersen", "-q", "-o", tmp_path / "o.h5", "--distributed",
         "--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2", "--process-id", "1",
         "--coordinator-timeout", "1"], capsys,
    )  # fmt: skip
    lines = err.strip().splitlines()
    assert (
        code == 2 and len(lines) == 1 and "no coordinator answered" in lines[0] and "within 1 s" in lines[0]
    ), err
    assert time.perf_counter() - t0 < 30
    assert not (tmp_path / "o.h5.partial").exists()


def test_distributed_options_need_distributed(traj6, tmp_path, capsys):
    code, _, err = run_main(
        ["hessian", traj6, "-p", "kob-andersen", "-q", "-o", tmp_path / "o.h5", "--num-processes", "2"],
        capsys,
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--num-processes need --distributed" in lines[0], err
