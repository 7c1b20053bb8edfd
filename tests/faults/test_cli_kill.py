"""kill -9 at random points of a CLI run, the merge included: never a file that looks complete
and is not, and ``--resume`` always finishes with the same frames as an uninterrupted run.

The kill times are drawn over the whole of a clean run's duration (measured first), with a
quarter of the trials in its last 15% where the frames are merged into the output. Each trial is
a fresh ``python -m mdhess.cli`` (JAX start-up included), so they are in the slow set.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ._cli_util import REPO, assert_same_hessians, leftovers, make_traj, run_cli

TRIALS = 8


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume(tmp_path):
    src = make_traj(tmp_path / "in.h5", n_frames=6)
    args = ["hessian", src, "-p", "kob-andersen", "--format", "dense", "-q"]
    ref = tmp_path / "ref.h5"
    t0 = time.perf_counter()
    res = run_cli([*args, "-o", ref])
    clean_seconds = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr
    rng = np.random.default_rng(2026)
    fractions = np.concatenate([rng.uniform(0.2, 0.85, TRIALS - TRIALS // 4), rng.uniform(0.85, 1.0, TRIALS // 4)])
    outcomes = []
    for trial, frac in enumerate(fractions):
        out = tmp_path / f"out{trial}.h5"
        proc = subprocess.Popen([sys.executable, "-m", "mdhess.cli", *map(str, args), "-o", str(out)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(frac * clean_seconds)
        finished_before_kill = proc.poll() is not None
        if not finished_before_kill:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        if out.exists():  # only a finished, verified file may stand under the output's name
            assert_same_hessians(out, ref)
        res = run_cli([*args, "-o", out, "--resume"])
        assert res.returncode == 0, (trial, frac, res.stderr)
        assert_same_hessians(out, ref)
        assert leftovers(tmp_path, out.name) == [], (trial, leftovers(tmp_path, out.name))
        outcomes.append("finished" if finished_before_kill else ("complete" if "already complete" in res.stderr else "resumed"))
    assert outcomes.count("resumed") >= TRIALS // 2, outcomes  # most kills landed inside the run
