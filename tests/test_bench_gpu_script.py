"""benchmarks/bench_gpu.py, the one prepared script for a lent GPU machine, run here on the CPU
with small sizes (--quick), so that it works the first time a GPU is there: its checks pass, its
JSON has every step, and a budget that runs out stops the scale part and keeps what finished."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
pytestmark = pytest.mark.slow


def run(tmp_path, *args, timeout=400, python=(), **kw):
    """The script's --quick run (``python``: interpreter arguments before it; ``kw``: for
    subprocess.run, e.g. env, cwd), its JSON."""
    out = tmp_path / "gpu.json"
    res = subprocess.run([sys.executable, *python, str(SCRIPT), "--quick", "--json", str(out), *args],
                         capture_output=True, text=True, timeout=timeout, **kw)  # fmt: skip
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
    # benchmarks/gpu_table.py: the same figures as the rows of docs/benchmarks.md
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu_table
    finally:
        sys.path.remove(str(SCRIPT.parent))
    text = "\n".join(gpu_table.rows(d))
    assert f"| dense float32 N = 600 <= 1.5x XLA's write of the same bytes | {d['dense_ratio']:.2f}x" in text
    assert f"| BSR vs central differences of the forces | {steps['bsr_check']['seconds']:.2f} |" in text
    for name in ("modes k=10 float64", "modes k=10 mixed"):
        assert f"| {name} | {steps[name]['seconds']:.1f} | {steps[name]['iterations']} iterations" in text
    assert all(line.count("|") in (0, 4) for line in text.splitlines())  # 3 cells a row, no stray "|"


def test_budget_stops_the_scale_part(tmp_path):
    # ten solves of ~3-10 s each against the ~15 s the child is left: three took under 15 s on a
    # quiet machine, and the run then ended before the budget (the test failed)
    modes = ",".join(["30"] * 10)
    d = run(tmp_path, "--skip-dense", "--n-atoms", "2000", "--modes", modes, "--budget", "25")
    assert str(d["scale_exit"]).startswith("stopped at the budget")
    names = [s["step"] for s in d["scale"]]
    assert names[:1] == ["system"] and len(names) < 3 + 10  # what finished before the stop is kept
    assert d["total_s"] < 60


def _site_dirs():
    import sysconfig

    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def test_runs_from_a_checkout_without_mdhess_installed(tmp_path):
    # a lent GPU machine has JAX, numpy, scipy, h5py but no mdhess (nothing can be installed from
    # the network there): the script must import mdhess from its own checkout. `python -S` with
    # site-packages on PYTHONPATH keeps the libraries but skips the .pth file of this
    # environment's editable install, so mdhess is importable only from the checkout.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(_site_dirs())}
    probe = subprocess.run([sys.executable, "-S", "-c", "import mdhess.pair"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)  # fmt: skip
    assert probe.returncode != 0 and "No module named 'mdhess" in probe.stderr  # the premise holds
    d = run(tmp_path, "--n-atoms", "1000", "--modes", "5", python=["-S"], env=env, cwd=tmp_path)
    assert d["correct"] and d["scale_exit"] == 0  # both parts (this process and its child) ran
    assert [s["step"] for s in d["scale"]] == ["system", "bsr", "bsr_check", "modes k=5 float64"]


def test_device_run_script_preflight_and_outputs(tmp_path):
    # benchmarks/device_run.sh, the one command of a GPU run, rehearsed here on the CPU: it checks
    # the imports, writes preflight.txt, runs the script and leaves its files in $OUT
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "BUDGET": "200", "TMPDIR": str(tmp_path)}
    script = SCRIPT.parent / "device_run.sh"
    res = subprocess.run(["bash", str(script), "--quick", "--skip-dense", "--n-atoms", "1000", "--modes", "5"],
                         env=env, capture_output=True, text=True, timeout=400)  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    pre = (out / "preflight.txt").read_text()
    for name in ("jax", "numpy", "scipy", "h5py", "vesin", "mdhess"):
        assert any(line.startswith(name + " ") for line in pre.splitlines()), pre
    assert "devices" in pre
    assert {p.name for p in out.iterdir()} >= {"preflight.txt", "log.txt", "gpu.json", "gpu.json.steps"}
    assert json.loads((out / "gpu.json").read_text())["scale_exit"] == 0


ACCELERATOR = """
import runpy, sys, jax
jax.default_backend = lambda: "gpu"  # mdhess's accelerator branches, on the CPU
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_accelerator_branches_run_on_the_cpu(tmp_path):
    # mdhess takes other branches where jax.default_backend() is not "cpu" (pair chunks of 2^20,
    # dense row blocks of 2^24 elements, the JAX LOBPCG's padded rows sent to the device, the
    # automatic solver). A GPU run is rare and short: their Python logic is run here first, with
    # the backend's name imitated, on the scale part's steps
    steps = tmp_path / "steps.jsonl"
    res = subprocess.run(
        [sys.executable, "-c", ACCELERATOR, str(SCRIPT), "--worker", "scale", "--n-atoms", "1000", "--modes", "6,6m",
         "--json", str(steps)],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    got = {s["step"]: s for s in map(json.loads, steps.read_text().splitlines())}
    assert list(got) == ["system", "bsr", "bsr_check", "modes k=6 float64", "modes k=6 mixed"]
    assert got["bsr_check"]["ok"]
    for k in ("modes k=6 float64", "modes k=6 mixed"):
        assert got[k]["converged"] == 3 and got[k]["max_rel_residual"] <= 1.5e-5
    assert got["modes k=6 mixed"]["iterations_float32"] > 0
    # the dense part (this process's half of the script): row blocks sized for an accelerator
    d = run(tmp_path, "--skip-scale", python=["-c", ACCELERATOR])
    assert d["correct"] and d["float32_vs_float64_rel"] < 1e-5 and d["component_layout_rel_diff"] <= 1e-13
