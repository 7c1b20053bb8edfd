"""Helpers of the CLI fault tests: small trajectories, in-process and subprocess runs, and the
comparison of a result file with a clean run's."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mdhess
from mdhess import io
from mdhess.cli import main

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data" / "ka500.h5"
SUBPROCESS_TIMEOUT = 300  # s: a hang is a failure


def run_main(args, capsys):
    """Run ``mdhess ARGS`` in-process; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def run_cli(args, timeout=SUBPROCESS_TIMEOUT, **kw):
    """Run ``python -m mdhess.cli ARGS`` in a subprocess (with a timeout)."""
    return subprocess.run([sys.executable, "-m", "mdhess.cli", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, **kw)  # fmt: skip


def make_traj(path, n_frames=4, noise_seed=None):
    """The first ``n_frames`` frames of the bundled KA glass in the minimal layout (optionally
    with the positions moved by 1e-3 noise: a same-size file with other contents)."""
    with mdhess.read_trajectory(DATA) as t:
        R = np.stack([t[k].positions for k in range(n_frames)])
        box, species = t[0].box, t[0].species
    if noise_seed is not None:
        R = R + np.random.default_rng(noise_seed).normal(0, 1e-3, R.shape)
    io.write_minimal(path, R, box=np.diag(box), species=species)
    return path


def variant_potential(path):
    """A Kob-Andersen variant (epsilon_AA = 1.1): same species and units, other Hessians."""
    text = (REPO / "potentials" / "kob-andersen.toml").read_text()
    text = text.replace('name = "kob-andersen"', 'name = "ka-variant"').replace("A-A = 1.0, A-B = 1.5", "A-A = 1.1, A-B = 1.5")
    path.write_text(text)
    return path


def assert_same_hessians(a, b):
    """Two Hessian files hold the same frames, bit for bit."""
    with io.ResultFile(a, "hessian") as ra, io.ResultFile(b, "hessian") as rb:
        assert ra.frame_index.tolist() == rb.frame_index.tolist()
        for slot in range(ra.n_frames):
            ha, hb = ra.hessian(slot), rb.hessian(slot)
            if hasattr(ha, "indptr"):
                np.testing.assert_array_equal(ha.indptr, hb.indptr)
                np.testing.assert_array_equal(ha.indices, hb.indices)
                ha, hb = ha.data, hb.data
            np.testing.assert_array_equal(ha, hb)
            np.testing.assert_array_equal(ra.array(ra.group(slot), "positions"), rb.array(rb.group(slot), "positions"))


def leftovers(folder, output_name):
    """Temporaries, locks and partial folders of ``output_name`` left in ``folder``."""
    return sorted(
        n for n in os.listdir(folder)
        if n.startswith(f".{output_name}.tmp") or n in (f"{output_name}.lock", f"{output_name}.partial")
    )  # fmt: skip
