"""The CLI's words under faults: damaged run records and result files, a tampered BSR Hessian,
a missing file, a closed stdout and a partial-spectrum thermodynamics sum each give one clear
line (exit 2, or a notice), never a traceback or a misleading word."""

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from mdhess import io
from mdhess.cli import app

from ._cli_util import DATA, REPO, SUBPROCESS_TIMEOUT, make_traj, run_main


def one_error_line(code, err):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, (code, err)
    return lines[0]


RUN_RECORDS = {
    "not JSON": "{\"kind\": \"hessian\", ",
    "a JSON list": "[1, 2, 3]",
    "settings not an object": json.dumps({"kind": "hessian", "settings": [1], "frames": [0, 1]}),
}


@pytest.mark.parametrize("case", sorted(RUN_RECORDS))
def test_info_and_resume_on_a_damaged_run_record(tmp_path, capsys, case):
    traj = make_traj(tmp_path / "traj.h5", n_frames=2)
    out = tmp_path / "out.h5"
    partial = tmp_path / "out.h5.partial"
    partial.mkdir()
    (partial / "run.json").write_text(RUN_RECORDS[case])
    for target in (partial, out):  # the folder, or the output it belongs to
        line = one_error_line(*run_main(["info", target], capsys)[::2])
        assert "run.json" in line and ("not readable JSON" in line or "not an mdhess run record" in line)
    code, _, err = run_main(["hessian", traj, "-p", "kob-andersen", "--format", "bsr", "-q", "-o", out, "--resume"], capsys)
    assert code == 0 and "no readable run.json; starting over" in err and "Traceback" not in err, err


@pytest.fixture(scope="module")
def bsr_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("bsr")
    traj = make_traj(d / "traj.h5", n_frames=1)
    out = d / "h.h5"
    res = CliRunner().invoke(app, ["hessian", str(traj), "-p", "kob-andersen", "--format", "bsr", "-q", "-o", str(out)])
    assert res.exit_code == 0, res.output
    return out


def _tamper(f, case):
    h = f["frames/000000/hessian"]
    if case == "shape (3, 3)":
        h.attrs["shape"] = np.array([3, 3], np.int64)
    elif case == "shape of 501 atoms":
        h.attrs["shape"] = np.array([1503, 1503], np.int64)
    elif case == "blocksize (2, 2)":
        h.attrs["blocksize"] = np.array([2, 2], np.int64)
    elif case == "indptr":
        h["indptr"][7] = 10**6
    elif case == "indices":
        h["indices"][3] = 10**6
    elif case == "settings attribute":
        f.attrs["settings"] = "{not json"
    else:
        raise ValueError(case)


@pytest.mark.parametrize("case", ["shape (3, 3)", "shape of 501 atoms", "blocksize (2, 2)", "indptr", "indices", "settings attribute"])
def test_a_tampered_hessian_file_is_named_not_a_traceback(bsr_file, tmp_path, capsys, case):
    h = tmp_path / "h.h5"
    shutil.copy(bsr_file, h)
    with h5py.File(h, "r+") as f:
        _tamper(f, case)
    line = one_error_line(*run_main(["modes", h, "-k", "5", "-o", tmp_path / "m.h5", "-q"], capsys)[::2])
    assert str(h) in line
    if case != "settings attribute":
        assert "frame 0" in line and "inconsistent" in line and "damaged" in line
    else:
        assert "settings attribute" in line
    assert not (tmp_path / "m.h5").exists()
    one_error_line(*run_main(["info", h], capsys)[::2])


def test_missing_files_are_worded_once(tmp_path, capsys):
    line = one_error_line(*run_main(["info", tmp_path / "nope.h5"], capsys)[::2])
    assert "file not found" in line and "file file" not in line and "nope.h5" in line
    line = one_error_line(*run_main(["modes", tmp_path / "nope.h5", "-p", "kob-andersen", "-o", tmp_path / "m.h5"], capsys)[::2])
    assert "input file not found" in line


def test_a_closed_stdout_ends_quietly(tmp_path):
    """`mdhess potentials | head -1`: the reader went away; no "error: Broken pipe", exit 0."""
    r, w = os.pipe()
    os.close(r)  # nobody reads: the first write fails with EPIPE
    try:
        res = subprocess.run([sys.executable, "-m", "mdhess.cli", "potentials"], cwd=REPO, stdout=w,
                             stderr=subprocess.PIPE, text=True, timeout=SUBPROCESS_TIMEOUT)  # fmt: skip
    finally:
        os.close(w)
    assert res.returncode == 0 and res.stderr == "", (res.returncode, res.stderr)
    res = subprocess.run(f"'{sys.executable}' -m mdhess.cli potentials | head -2", shell=True, cwd=REPO,
                         capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)  # fmt: skip
    assert len(res.stdout.splitlines()) == 2 and res.stderr == "", res.stderr


def test_partial_spectrum_thermodynamics_are_called_partial(tmp_path, capsys):
    m = tmp_path / "m.h5"
    code, _, err = run_main(["modes", DATA, "-p", "kob-andersen", "--frames", "0", "-k", "20", "-T", "0.3",
                             "--hbar", "0.05", "-o", m, "-q"], capsys)  # fmt: skip
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if "thermodynamics" in ln]
    assert len(lines) == 1, err
    assert "thermodynamics from 17 of 1497 vibrational modes (-k 20): a partial sum" in lines[0]
    assert "-k 1500" in lines[0]
    nm = io.read_modes(m, 0)
    assert nm.thermodynamics(0.3, hbar=0.05).n_modes_used == 17
