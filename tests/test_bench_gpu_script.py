"""benchmarks/bench_gpu.py, the one prepared script for a lent GPU machine, run here on the CPU
with small sizes (--quick), so that it works the first time a GPU is there: its checks pass, its
JSON has every step, and a budget that runs out stops the scale part and keeps what finished."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
pytestmark = pytest.mark.slow


def run(tmp_path, *args, timeout=400):
    out = tmp_path / "gpu.json"
    res = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out), *args],
                         capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(out.read_text())


def test_quick_run_checks_and_steps(tmp_path):
    d = run(tmp_path, "--n-atoms", "2000", "--modes", "10,10m")
    assert d["correct"] and d["scale_exit"] == 0
    steps = {s["step"]: s for s in d["scale"]}
    assert list(steps) == ["system", "bsr", "bsr_check", "modes k=10 float64", "modes k=10 mixed"]
    assert steps["system"]["n_atoms"] == 2000
    assert steps["bsr_check"]["ok"] and steps["bsr_check"]["fd_rel"] < 1e-6 and d["targets"]["bsr_fd_check"]
    w64, wmx = steps["modes k=10 float64"], steps["modes k=10 mixed"]
    for s in (w64, wmx):  # the solver's test: ||r|| <= sqrt(tol) |lam| with tol 1e-10, checked independently
        assert s["converged"] == 7 and s["max_rel_residual"] <= 1.5e-5
    assert wmx["precision"] == "mixed" and wmx["iterations_float32"] > 0
    assert abs(w64["lowest"][3] - wmx["lowest"][3]) <= 1e-8 * w64["lowest"][3]


def test_budget_stops_the_scale_part(tmp_path):
    d = run(tmp_path, "--skip-dense", "--n-atoms", "2000", "--modes", "30,30,30", "--budget", "25")
    assert str(d["scale_exit"]).startswith("stopped at the budget")
    names = [s["step"] for s in d["scale"]]
    assert names[:1] == ["system"] and len(names) < 6  # what finished before the stop is kept
    assert d["total_s"] < 60
