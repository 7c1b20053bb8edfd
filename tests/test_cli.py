"""The mdhess command line: results equal the library's frame by frame, every input layout works,
an interrupted (kill -9) run resumes to identical results, and every bad input exits with code 2
and one line on stderr, without a traceback and without a file that looks complete."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import mdhess
from mdhess import io
from mdhess.cli import app, main

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "ka500.h5"
DATA_MDTRAJ = REPO / "data" / "ka500_mdtraj.h5"
KA = mdhess.load_potential("kob-andersen")


def run_main(args, capsys):
    """Run ``mdhess ARGS`` in-process; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def small_traj(tmp_path, n_frames=3, layout="minimal", nan_frame=None):
    """The first frames of the bundled KA glass, rewritten in ``layout``."""
    with mdhess.read_trajectory(DATA) as t:
        R = np.stack([t[k].positions for k in range(n_frames)])
        box, species = t[0].box, t[0].species
    if nan_frame is not None:
        R[nan_frame, 7, 0] = np.nan
    p = tmp_path / f"traj_{layout}.h5"
    if layout == "minimal":
        io.write_minimal(p, R, box=np.diag(box), species=species)
    elif layout == "h5md":
        io.write_h5md(p, R, box=box, species=species)
    else:
        io.write_mdtraj(p, R, box=box, atom_names=np.array(["A", "B"])[species])
    return p, R, box, species


# -- CLI == library ------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["dense", "bsr"])
def test_hessian_cli_equals_library_frame_by_frame(tmp_path, fmt):
    out = tmp_path / "h.h5"
    res = CliRunner().invoke(app, ["hessian", str(DATA), "-p", "kob-andersen", "--frames", "1:8:3", "--format", fmt, "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "hessian: 3/3" in res.output  # plain progress lines (not a terminal)
    with mdhess.read_trajectory(DATA) as t, io.ResultFile(out, "hessian") as r:
        assert r.frame_index.tolist() == [1, 4, 7]
        for slot, k in enumerate([1, 4, 7]):
            fr = t[k]
            ref = mdhess.hessian(KA, fr.positions, box=fr.box, species=fr.species, format=fmt)
            got = mdhess.read_hessian(out, slot)
            if fmt == "bsr":
                assert got.blocksize == (3, 3)
                np.testing.assert_array_equal(got.indptr, ref.indptr)
                np.testing.assert_array_equal(got.indices, ref.indices)
                np.testing.assert_array_equal(got.data, ref.data)  # same code path: bit-identical
            else:
                np.testing.assert_array_equal(got, np.asarray(ref))
            g = r.group(slot)
            np.testing.assert_array_equal(r.array(g, "positions"), fr.positions)
            np.testing.assert_array_equal(r.array(g, "species"), fr.species)
        pot = r.json_attr("potential")
        assert pot["name"] == "kob-andersen" and pot["parameters"]["epsilon"] == [[1.0, 1.5], [1.5, 0.5]]
        assert r.attrs["format"] == fmt and r.attrs["units"] == "lj"


@pytest.mark.parametrize("fmt", ["dense", "bsr"])
def test_batch_frames_gives_the_unbatched_files(tmp_path, capsys, fmt):
    """--batch-frames 3 (batches of 3 + 1 frames, jax.vmap) writes the same frames as one at a time:
    same positions, species and sparsity, Hessians equal to rounding (the batched kernel sums
    in another order: <= 1e-13 relative)."""
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    args = ["hessian", DATA, "-p", "kob-andersen", "--frames", "0:8:2", "--format", fmt, "-q"]
    assert run_main([*args, "-o", a], capsys)[0] == 0  # on a CPU: one frame at a time
    assert run_main([*args, "-o", b, "--batch-frames", "3"], capsys)[0] == 0
    with io.ResultFile(a, "hessian") as ra, io.ResultFile(b, "hessian") as rb:
        assert ra.frame_index.tolist() == rb.frame_index.tolist() == [0, 2, 4, 6]
        for slot in range(4):
            for name in ("positions", "species", "box"):
                np.testing.assert_array_equal(ra.array(ra.group(slot), name), rb.array(rb.group(slot), name))
            ha, hb = mdhess.read_hessian(a, slot), mdhess.read_hessian(b, slot)
            if fmt == "bsr":
                np.testing.assert_array_equal(ha.indptr, hb.indptr)
                np.testing.assert_array_equal(ha.indices, hb.indices)
                ha, hb = ha.data, hb.data
            assert ha.shape == hb.shape and np.abs(ha - hb).max() <= 1e-13 * np.abs(ha).max()
    assert run_main([*args, "-o", tmp_path / "c.h5", "--batch-frames", "-1"], capsys)[0] == 2


@pytest.mark.parametrize("layout", ["minimal", "h5md", "mdtraj"])
def test_every_layout_through_the_cli(tmp_path, capsys, layout):
    p, R, box, species = small_traj(tmp_path, 2, layout)
    out = tmp_path / "h.h5"
    code, _, err = run_main(["hessian", p, "-p", "kob-andersen", "-o", out, "--dtype", "float32", "-q"], capsys)
    assert code == 0 and err == ""  # --quiet: nothing on stderr
    with mdhess.read_trajectory(p) as t:
        for k in range(2):
            fr = t[k]
            ref = np.asarray(mdhess.hessian(KA, fr.positions, box=fr.box, species=species, dtype="float32"))
            got = mdhess.read_hessian(out, k)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, ref)
    if layout == "mdtraj":  # float32 storage: same structure as the float64 H5MD original, to float32 accuracy
        ref64 = np.asarray(mdhess.hessian(KA, R[1], box=box, species=species))
        assert np.linalg.norm(mdhess.read_hessian(out, 1) - ref64) <= 1e-4 * np.linalg.norm(ref64)


def test_modes_cli_equals_library(tmp_path, capsys):
    hfile, mfile, tfile = tmp_path / "h.h5", tmp_path / "m.h5", tmp_path / "mt.h5"
    assert run_main(["hessian", DATA, "-p", "kob-andersen", "--frames", "0:2", "--format", "bsr", "-o", hfile, "-q"], capsys)[0] == 0
    png = tmp_path / "dos.png"
    code, _, err = run_main(["modes", hfile, "-k", "8", "--solver", "shift-invert", "-o", mfile, "--temperature", "0.3",
                             "--hbar", "0.05", "--plot", png, "-q"], capsys)  # fmt: skip
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = run_main(["info", mfile], capsys)
    assert code == 0 and "mdhess modes file" in out and "lowest frequencies: [0.0, 0.0, 0.0," in out
    code, _, err = run_main(["modes", DATA, "-p", "kob-andersen", "--frames", "0:2", "-k", "8", "--solver", "lobpcg", "-o", tfile, "-q"], capsys)
    assert code == 0, err
    with mdhess.read_trajectory(DATA) as t:
        for k in range(2):
            fr = t[k]
            H = np.asarray(mdhess.hessian(KA, fr.positions, box=fr.box, species=fr.species))
            ref = mdhess.normal_modes(H, np.ones(500), k=8, units="lj", solver="dense", box=fr.box)
            for path in (mfile, tfile):
                nm = mdhess.read_modes(path, k)
                assert nm.info["source_frame"] == k
                # eigenvalues of the same matrix by different solvers: 1e-10 relative (solver tolerance)
                np.testing.assert_allclose(nm.eigenvalues, ref.eigenvalues, rtol=1e-9, atol=1e-10)
                # subspace projectors: eigenvalues converged to ~1e-10 relative give vectors to about
                # sqrt(1e-10 lambda / gap) ~ 1e-5 (LOBPCG); 1e-4 leaves margin, a wrong mode gives ~1
                P, Q = nm.vectors @ nm.vectors.T, ref.vectors @ ref.vectors.T
                assert np.linalg.norm(P - Q) <= 1e-4
            th = ref.thermodynamics(0.3, hbar=0.05)
            with h5py.File(mfile) as f:
                a = f[f"frames/{k:06d}"].attrs
                assert abs(a["thermo_free_energy"] - th.free_energy) <= 1e-9 * abs(th.free_energy)
                np.testing.assert_allclose(f[f"frames/{k:06d}/frequencies"][()], ref.frequencies, rtol=1e-9, atol=1e-10)


def test_potentials_and_info(tmp_path, capsys):
    code, out, _ = run_main(["potentials"], capsys)
    assert code == 0
    for s in mdhess.list_potentials():
        assert s.name in out and s.reference in out
    code, out, _ = run_main(["potentials", "argon"], capsys)
    assert "units:       metal" in out and "sigma = 3.4" in out
    code, out, _ = run_main(["info", DATA_MDTRAJ], capsys)
    assert code == 0 and "trajectory (mdtraj), 10 frames of 500 atoms" in out and "A: 400, B: 100" in out
    hfile = tmp_path / "h.h5"
    run_main(["hessian", DATA, "-p", "kob-andersen", "--frames", "3", "--format", "bsr", "-o", hfile, "-q"], capsys)
    code, out, _ = run_main(["info", hfile], capsys)
    assert code == 0 and "mdhess hessian file" in out and "1 frames" in out and "frames [3]" in out


def test_demo(tmp_path, capsys):
    code, out, err = run_main(["demo", "--out-dir", tmp_path, "-k", "6", "-q"], capsys)
    assert code == 0, err
    assert "ka500_modes.h5" in out and out.count("\n") >= 12
    with mdhess.read_trajectory(DATA) as t:
        fr = t[9]
        ref = mdhess.hessian(KA, fr.positions, box=fr.box, species=fr.species, format="bsr")
    np.testing.assert_array_equal(mdhess.read_hessian(tmp_path / "ka500_hessians.h5", 9).toarray(), ref.toarray())
    nm = mdhess.read_modes(tmp_path / "ka500_modes.h5", 9)
    assert nm.n_zero == 3 and nm.n_imaginary == 0  # frames are energy minima (data/ recipe)


# -- resume after kill -9 -----------------------------------------------------------------------
def _finished(partial) -> int:
    """Frames marked complete in an interrupted run's work file (0 before it exists)."""
    from mdhess.io._readers import read_partial_run

    run = read_partial_run(partial) if partial.is_dir() else None
    return 0 if run is None else run.finished


def test_resume_after_kill_gives_identical_results(tmp_path, capsys):
    with mdhess.read_trajectory(DATA) as t:
        base = np.stack([t[k].positions for k in range(10)])
        box, species = t[0].box, t[0].species
    rng = np.random.default_rng(0)
    R = np.concatenate([base + rng.normal(0, 1e-3, base.shape) for _ in range(2)])  # 20 frames
    n = len(R)
    src = tmp_path / "in.h5"
    io.write_minimal(src, R, box=np.diag(box), species=species)
    args = ["hessian", str(src), "-p", "kob-andersen", "--format", "bsr"]
    out, ref = tmp_path / "out.h5", tmp_path / "ref.h5"
    proc = subprocess.Popen([sys.executable, "-m", "mdhess.cli", *args, "-q", "-o", str(out)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    partial = tmp_path / "out.h5.partial"
    deadline = time.time() + 120
    while time.time() < deadline and _finished(partial) < 3 and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _finished(partial)
    assert 3 <= done < n, "the run finished before it could be killed"
    assert not out.exists()  # nothing that looks complete
    code, stdout, err = run_main([*args, "-o", out, "--resume"], capsys)
    assert code == 0, err
    assert f"{n} frames ({n - done} computed)" in stdout  # finished frames were skipped
    assert run_main([*args, "-o", ref, "-q"], capsys)[0] == 0
    for k in range(n):
        a, b = mdhess.read_hessian(out, k), mdhess.read_hessian(ref, k)
        np.testing.assert_array_equal(a.indptr, b.indptr)
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.data, b.data)
    assert not partial.exists()


# -- bad input: exit 2, one line, no traceback, no complete-looking file --------------------------
def _ka_free(tmp_path):
    p = tmp_path / "free.toml"
    p.write_text('kernel = "lennard_jones"\nunits = "lj"\nreference = "x"\n[parameters]\nsigma = 1.0\n')
    return p


BAD = {
    "missing file": (lambda d: ["hessian", d / "nope.h5", "-p", "kob-andersen"], r"file not found.*nope.h5"),
    "not hdf5": (lambda d: ["hessian", d / "text.h5", "-p", "kob-andersen"], r"text.h5.*not an HDF5 file"),
    "missing datasets": (lambda d: ["hessian", d / "empty.h5", "-p", "kob-andersen"], r"holds no trajectory"),
    "truncated": (lambda d: ["hessian", d / "cut.h5", "-p", "kob-andersen"], r"cut.h5.*(truncated|damaged)"),
    "atom count changes": (lambda d: ["hessian", d / "nchange.h5", "-p", "kob-andersen"], r"must not change between frames"),
    "nan coordinates": (lambda d: ["hessian", d / "traj_minimal.h5", "-p", "kob-andersen"], r"frame 1 has non-finite coordinates"),
    "unknown potential": (lambda d: ["hessian", d / "ok.h5", "-p", "kob-anderson"], r"unknown potential 'kob-anderson'"),
    "malformed toml": (lambda d: ["hessian", d / "ok.h5", "-p", d / "bad.toml"], r"bad.toml: malformed TOML"),
    "unknown toml key": (lambda d: ["hessian", d / "ok.h5", "-p", d / "key.toml"], r"key.toml.*unknown key 'colour'"),
    "periodic without cutoff": (lambda d: ["hessian", d / "ok.h5", "-p", d / "free.toml", "--ignore-species"], r"frame 0: .*periodic.*no cutoff"),
    "bad frames": (lambda d: ["hessian", d / "ok.h5", "-p", "kob-andersen", "--frames", "1:x"], r"--frames must be START:STOP:STEP"),
    "empty frames": (lambda d: ["hessian", d / "ok.h5", "-p", "kob-andersen", "--frames", "5:9"], r"selects no frames"),
    "bad format": (lambda d: ["hessian", d / "ok.h5", "-p", "kob-andersen", "--format", "csr"], r"--format must be one of"),
    "bad dtype": (lambda d: ["hessian", d / "ok.h5", "-p", "kob-andersen", "--dtype", "float16"], r"--dtype must be one of"),
    "modes k too large": (lambda d: ["modes", d / "ok.h5", "-p", "kob-andersen", "-k", "99999"], r"-k 99999 exceeds"),
    "modes without potential": (lambda d: ["modes", d / "ok.h5"], r"--potential is required"),
    "modes unknown units": (lambda d: ["modes", d / "ok.h5", "-p", "kob-andersen", "--units", "cgs"], r"--units must be one of"),
    "lj thermo without hbar": (lambda d: ["modes", d / "ok.h5", "-p", "kob-andersen", "-T", "0.3"], r"needs --hbar"),
    "missing option": (lambda d: ["hessian", d / "ok.h5"], r"Missing option '--potential'"),
    "bad option value": (lambda d: ["modes", d / "ok.h5", "-k", "ten"], r"Invalid value for '-k'"),
}


@pytest.fixture
def bad_inputs(tmp_path):
    small_traj(tmp_path, 2, "minimal", nan_frame=1)
    ok, *_ = small_traj(tmp_path, 1, "h5md")
    os.replace(ok, tmp_path / "ok.h5")
    (tmp_path / "text.h5").write_text("not hdf5\n")
    h5py.File(tmp_path / "empty.h5", "w").close()
    data = DATA.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 3])
    io.write_h5md(tmp_path / "nchange.h5", np.zeros((2, 4, 3)) + np.arange(4)[:, None], species=np.zeros(5, np.int32))
    (tmp_path / "bad.toml").write_text('kernel = "lennard_jones"\nunits = "lj\n')
    (tmp_path / "key.toml").write_text('colour = "red"\nkernel = "lennard_jones"\nunits = "lj"\nreference = "x"\n[parameters]\n')
    _ka_free(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "case", sorted(BAD)
)
def test_bad_input_exit_2_one_line(bad_inputs, capsys, case):
    args, match = BAD[case]
    out = bad_inputs / "out.h5"
    code, stdout, err = run_main([*args(bad_inputs), "-o", out, "-q"], capsys)
    assert code == 2, (stdout, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], err
    assert "Traceback" not in err + stdout
    import re

    assert re.search(match, lines[0]), lines[0]
    assert not out.exists()
    if case not in ("nan coordinates",):  # a failure on the first frame leaves no partial run behind
        assert not (bad_inputs / "out.h5.partial").exists()


def test_nan_frame_keeps_finished_frames_only_as_partial(bad_inputs, capsys):
    out = bad_inputs / "o.h5"
    code, _, err = run_main(["hessian", bad_inputs / "traj_minimal.h5", "-p", "kob-andersen", "-o", out, "-q"], capsys)
    assert code == 2 and "frame 1" in err
    assert not out.exists() and _finished(bad_inputs / "o.h5.partial") == 1


def test_existing_output_and_resume_with_other_settings(tmp_path, capsys):
    out = tmp_path / "h.h5"
    assert run_main(["hessian", DATA, "-p", "kob-andersen", "--frames", "0", "-o", out, "-q"], capsys)[0] == 0
    code, _, err = run_main(["hessian", DATA, "-p", "kob-andersen", "--frames", "0", "-o", out, "-q"], capsys)
    assert code == 2 and "exists; pass --overwrite" in err
    code, _, err = run_main(["hessian", DATA, "-p", "kob-andersen", "--frames", "0", "-o", out, "--resume"], capsys)
    assert code == 0 and "already complete" in err
    code, _, err = run_main(["hessian", DATA, "-p", "harmonic-spheres", "--frames", "0", "-o", out, "--resume"], capsys)
    assert code == 2 and "other settings" in err


def test_subprocess_error_is_one_line_and_help_is_light(tmp_path):
    res = subprocess.run([sys.executable, "-m", "mdhess.cli", "hessian", str(tmp_path / "x.h5"), "-p", "argon", "-o", str(tmp_path / "o.h5")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "file not found" in res.stderr
    code = "import sys; from mdhess.cli import main\ntry:\n    main(['hessian', '--help'])\nexcept SystemExit:\n    pass\nprint([m for m in ('h5py', 'matplotlib', 'tqdm', 'vesin') if m in sys.modules])"
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--potential" in res.stdout
    assert res.stdout.strip().splitlines()[-1] == "[]"  # --help imports no I/O, plotting or neighbour-list code


@pytest.mark.parametrize("fmt", ["bsr", "dense"])
def test_frames_prepared_ahead_give_the_serial_run(tmp_path, capsys, monkeypatch, fmt):
    """Small frames are read and prepared one ahead on a thread (``_hessians_ahead``): the same
    file, frame for frame, as one frame at a time; a bad frame still ends the run at that frame
    with the frames before it kept."""
    from mdhess.cli import _jobs

    prepared = []
    prepare = _jobs.TrajectorySource.prepare

    def counting(self, fr, *a, **kw):
        prepared.append(fr.index)
        return prepare(self, fr, *a, **kw)

    monkeypatch.setattr(_jobs.TrajectorySource, "prepare", counting)
    args = ["hessian", DATA, "-p", "kob-andersen", "--format", fmt, "--frames", "0:6", "-q"]
    code, _, err = run_main([*args, "-o", tmp_path / "ahead.h5"], capsys)
    assert code == 0 and prepared == list(range(6)), (err, prepared)
    monkeypatch.setattr(_jobs, "PREFETCH_MAX_ATOMS", 0)  # one frame at a time
    code, _, err = run_main([*args, "-o", tmp_path / "serial.h5"], capsys)
    assert code == 0 and prepared == list(range(6)), err
    with io.ResultFile(tmp_path / "ahead.h5", "hessian") as a, io.ResultFile(tmp_path / "serial.h5", "hessian") as b:
        assert a.frame_index.tolist() == b.frame_index.tolist() == list(range(6))
        for slot in range(6):
            ha, hb = a.hessian(slot), b.hessian(slot)
            assert (ha != hb).nnz == 0 if fmt == "bsr" else np.array_equal(ha, hb)
    monkeypatch.undo()
    traj = tmp_path / "bad.h5"
    with mdhess.read_trajectory(DATA) as t:
        R = np.stack([t[k].positions for k in range(5)])
        box, species = t[0].box, t[0].species
    R[3, 7] = np.nan
    io.write_minimal(traj, R, box=np.diag(box), species=species)
    out = tmp_path / "bad_out.h5"
    code, _, err = run_main(["hessian", traj, "-p", "kob-andersen", "--format", fmt, "-q", "-o", out], capsys)
    assert code == 2 and "frame 3" in err and "atom 7" in err, err
    with h5py.File(tmp_path / "bad_out.h5.partial" / "frames.h5") as f:
        assert sorted(k for k in f["frames"] if f["frames"][k].attrs.get("complete")) == ["000000", "000001", "000002"]


QUICK_EXIT = """
import atexit, sys, threading, time
import h5py, numpy as np
from mdhess.cli import quick_exit
case, out = sys.argv[1], sys.argv[2]
atexit.register(lambda: open(out + ".atexit", "w").write("ran"))
print("unflushed", end="")  # a pipe: block-buffered, so still in the buffer
if case == "open-hdf5":  # left open: only the library's own exit handler completes it
    f = h5py.File(out, "w")
    f["x"] = np.arange(1000.0)
if case == "thread":  # a non-daemon thread still at work
    threading.Thread(target=lambda: (time.sleep(0.5), open(out, "w").write("done"))).start()
quick_exit({"int": 3, "str": "bye", "none": None}.get(case, 0))
"""


@pytest.mark.parametrize("case", ["int", "str", "none", "open-hdf5", "thread"])
def test_quick_exit_loses_nothing(tmp_path, case):
    """``mdhess`` ends with ``quick_exit``: os._exit after the atexit handlers and the flushes, or
    the normal exit while an HDF5 file is open or another thread works (nothing lost either way)."""
    out = str(tmp_path / "out")
    res = subprocess.run([sys.executable, "-c", QUICK_EXIT, case, out], cwd=REPO, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert res.returncode == {"int": 3, "str": 1}.get(case, 0), res.stderr
    assert res.stdout == "unflushed" and Path(out + ".atexit").read_text() == "ran"
    if case == "str":
        assert res.stderr.strip() == "bye"
    if case == "open-hdf5":
        with h5py.File(out, "r") as f:
            assert np.array_equal(f["x"][()], np.arange(1000.0))
    if case == "thread":
        assert Path(out).read_text() == "done"


@pytest.mark.slow
def test_demo_from_a_non_editable_install(tmp_path):
    """Build the wheel, install it (no deps, into a fresh venv that sees this one's packages) and run
    `mdhess demo` from a folder outside the repository: potentials and data come from the wheel."""
    pytest.importorskip("hatchling")
    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path / "dist")],
                   cwd=REPO, check=True, capture_output=True)  # fmt: skip
    (whl,) = (tmp_path / "dist").glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    import site

    sp = subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True, text=True)
    # the test environment's packages (jax, h5py, ...) after the venv's own, so the wheel's mdhess wins
    (Path(sp.stdout.strip()) / "test_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(whl)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    res = subprocess.run([str(venv / "bin" / "mdhess"), "demo", "--out-dir", str(work / "out"), "-q"], cwd=work,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "site-packages/mdhess/_data/ka500.h5" in res.stdout
    assert (work / "out" / "ka500_modes.h5").is_file()


def test_elastic_network_reference_frame(tmp_path, capsys):
    rng = np.random.default_rng(5)
    steps = rng.normal(size=(40, 3))
    R0 = np.cumsum(3.8 * steps / np.linalg.norm(steps, axis=1, keepdims=True), axis=0)
    R = np.stack([R0 + rng.normal(0, 0.3, R0.shape) for _ in range(3)])  # frames 0..2 (Angstrom)
    src = tmp_path / "ca.h5"
    io.write_minimal(src, R)
    out = tmp_path / "anm.h5"
    code, _, err = run_main(["hessian", src, "-p", "calpha-anm", "--reference-frame", "1", "-o", out, "-q"], capsys)
    assert code == 0, err
    net = mdhess.load_potential("calpha-anm", positions=R[1])  # springs and rest lengths of frame 1
    for k in range(3):
        np.testing.assert_array_equal(mdhess.read_hessian(out, k), np.asarray(mdhess.hessian(net, R[k])))
    code, _, err = run_main(["hessian", src, "-p", "calpha-anm", "--reference-frame", "7", "-o", tmp_path / "x.h5", "-q"], capsys)
    assert code == 2 and "frame 7 is out of range" in err


def test_length_units_are_converted_for_physical_potentials(tmp_path, capsys):
    ase_build = pytest.importorskip("ase.build")
    atoms = ase_build.bulk("Ar", "fcc", a=5.26, cubic=True).repeat((3, 3, 3))
    atoms.rattle(0.05, seed=2)
    R_nm = np.stack([atoms.positions, atoms.positions[::-1]]) / 10.0
    src = tmp_path / "ar_nm.h5"
    io.write_h5md(src, R_nm, box=atoms.cell[:] / 10.0, unit="nm")
    out = tmp_path / "h.h5"
    assert run_main(["hessian", src, "-p", "argon", "-o", out, "-q"], capsys)[0] == 0
    ref = np.asarray(mdhess.hessian(mdhess.load_potential("argon"), R_nm[1] * 10.0, box=atoms.cell[:]))
    np.testing.assert_allclose(mdhess.read_hessian(out, 1), ref, rtol=0, atol=1e-12 * np.abs(ref).max())  # x10 rounding
    with io.ResultFile(out) as r:
        assert r.attrs["length_scale"] == 10.0
    with h5py.File(src, "a") as f:
        f["particles/all/position/value"].attrs["unit"] = "furlong"
        f["particles/all/box/edges/value"].attrs["unit"] = "furlong"
    code, _, err = run_main(["hessian", src, "-p", "argon", "-o", tmp_path / "f.h5", "-q"], capsys)
    assert code == 2 and "unit 'furlong' is not recognised; pass --length-scale" in err
    assert run_main(["hessian", src, "-p", "argon", "--length-scale", "10", "-o", tmp_path / "f.h5", "-q"], capsys)[0] == 0


def test_info_on_interrupted_run(tmp_path, capsys):
    run = io.ResultRun(tmp_path / "o.h5", "hessian", {"input": "x"}, [0, 1, 2])
    run.write_frame(0, lambda g: None)
    code, out, _ = run_main(["info", tmp_path / "o.h5.partial"], capsys)
    assert code == 0 and "1 of 3 frames finished" in out


def test_modes_cli_mixed_precision(tmp_path, capsys, monkeypatch):
    """``--precision mixed`` reaches ``normal_modes`` (its float32 phase ran) and gives the
    float64 eigenvalues (same convergence test: 1e-9 relative leaves an order of margin over its
    ~1e-10); without ``--solver jax-lobpcg`` it is refused before any output exists."""
    out = tmp_path / "m.h5"
    args = ["modes", DATA, "-p", "kob-andersen", "--frames", "0", "-k", "8", "-o", out, "-q"]
    code, _, err = run_main(args + ["--precision", "mixed"], capsys)
    assert code == 2 and "--precision mixed needs --solver jax-lobpcg (its float32 products); got --solver auto" in err
    assert not out.exists()
    code, _, err = run_main(args + ["--precision", "half"], capsys)
    assert code == 2 and "--precision must be one of ('float64', 'mixed'); got 'half'" in err
    infos, original = [], mdhess.normal_modes

    def recording(*a, **kw):
        nm = original(*a, **kw)
        infos.append(nm.info)
        return nm

    monkeypatch.setattr(mdhess, "normal_modes", recording)
    code, _, err = run_main(args + ["--solver", "jax-lobpcg", "--precision", "mixed"], capsys)
    assert code == 0, err
    assert infos[0]["precision"] == "mixed" and infos[0]["iterations_float32"] > 0
    nm = mdhess.read_modes(out, 0)
    with mdhess.read_trajectory(DATA) as t:
        fr = t[0]
    H = mdhess.hessian(KA, fr.positions, box=fr.box, species=fr.species, format="bsr")
    ref = mdhess.normal_modes(H, k=8, units="lj", positions=fr.positions, box=fr.box, solver="dense")
    np.testing.assert_allclose(nm.eigenvalues, ref.eigenvalues, rtol=1e-9, atol=1e-10)
