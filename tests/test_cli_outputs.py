"""CLI outputs people read: `modes --csv`, thermodynamics in `mdhess info`, the broadened DOS of
`--plot`, `--version`, help metavars, a demo that leaves nothing behind; progress of long
library calls (`progress=True`), on when the CLI runs a single frame.

References: the modes file read with h5py directly (not through mdhess's readers) and the
thermodynamics recomputed from the stored modes."""

import csv
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import mdhess
from mdhess.cli import app
from mdhess.io import read_modes, write_minimal
from mdhess.io._readers import read_mode_spectra

sys.path.insert(0, str(Path(__file__).parent / "faults"))
sys.path.insert(0, str(Path(__file__).parent))
from _cli_util import run_main  # noqa: E402
from test_quench import KA_C2_TOML, small_glass  # noqa: E402

T, HBAR = 0.5, 1.0


@pytest.fixture(scope="module")
def modes_run(tmp_path_factory):
    """`mdhess modes --quench` on two frames of a 108-atom periodic glass, with thermodynamics and CSV."""
    d = tmp_path_factory.mktemp("outputs")
    pot, R0, cell, s = small_glass()
    write_minimal(d / "traj.h5", np.stack([small_glass(seed=k)[1] for k in range(2)]), box=cell, species=s)
    (d / "pot.toml").write_text(KA_C2_TOML)
    args = ["modes", d / "traj.h5", "-p", d / "pot.toml", "-k", "8", "-T", T, "--hbar", HBAR, "--csv", d / "m.csv",
            "--plot", d / "dos.png", "--width", "0.05", "--quench", "--fmax", "1e-6", "-o", d / "m.h5"]  # fmt: skip
    return d, args


def test_csv_equals_the_hdf5_content(modes_run, capsys):
    d, args = modes_run
    code, out, err = run_main(args, capsys)
    assert code == 0, err
    assert f"wrote {d / 'm.csv'}" in out and f"wrote {d / 'm.frames.csv'}" in out
    with open(d / "m.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["frame", "mode", "frequency", "participation_ratio"]
    with h5py.File(d / "m.h5", "r") as f:
        frame_index = f["frame_index"][()]
        n = 0
        for slot, frame in enumerate(frame_index):
            g = f[f"frames/{slot:06d}"]
            freq, pr = g["frequencies"][()], g["participation_ratio"][()]
            mine = [r for r in rows if int(r["frame"]) == frame]
            assert [int(r["mode"]) for r in mine] == list(range(8))
            # written with repr: the float64 values come back exactly
            np.testing.assert_array_equal([float(r["frequency"]) for r in mine], freq)
            np.testing.assert_array_equal([float(r["participation_ratio"]) for r in mine], pr)
            n += len(mine)
        assert n == len(rows) == 16
        with open(d / "m.frames.csv") as fh:
            frows = list(csv.DictReader(fh))
        for slot, r in enumerate(frows):
            a = f[f"frames/{slot:06d}"].attrs
            assert int(r["frame"]) == frame_index[slot]
            for key in ("free_energy", "entropy", "heat_capacity", "internal_energy", "zpe"):
                assert float(r[f"thermo_{key}"]) == a[f"thermo_{key}"]
            assert int(r["thermo_n_modes_used"]) == a["thermo_n_modes_used"] == 5  # 8 minus 3 translations
            assert float(r["quench_max_force"]) == a["quench_max_force"] <= 1e-6 and r["quench_converged"] == "true"
            # and the stored thermodynamics are those of the stored modes, recomputed
            th = read_modes(d / "m.h5", slot).thermodynamics(T, hbar=HBAR)
            assert float(r["thermo_free_energy"]) == pytest.approx(th.free_energy, rel=1e-12)
    assert (d / "dos.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_info_shows_thermodynamics(modes_run, capsys):
    d, args = modes_run
    if not (d / "m.h5").exists():
        assert run_main(args, capsys)[0] == 0
    code, out, err = run_main(["info", d / "m.h5"], capsys)
    assert code == 0, err
    assert "thermodynamics (harmonic, quantum, T = 0.5" in out and "modes used" in out
    assert "8 per frame of 324" in out
    with h5py.File(d / "m.h5", "r") as f:
        fe = f["frames/000000"].attrs["thermo_free_energy"]
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("0 "))
    assert float(line.split()[1]) == pytest.approx(fe, rel=1e-5) and "5 (skipped: 3 zero, 0 imaginary)" in line


def test_broadened_dos_counts_the_modes(modes_run, capsys):
    from mdhess.cli._jobs import broadened_dos

    d, args = modes_run
    if not (d / "m.h5").exists():
        assert run_main(args, capsys)[0] == 0
    spectra = read_mode_spectra(d / "m.h5")
    grid, g, width = broadened_dos(spectra, 0.05)
    assert width == 0.05 and g.shape == (2, grid.size)
    for row, f in zip(g, spectra.frequencies):
        # a Gaussian per non-zero mode: the integral counts them (3 widths of padding: < 0.3 % lost)
        assert np.trapezoid(row, grid) == pytest.approx(np.count_nonzero(f), rel=3e-3)
    _, _, auto = broadened_dos(spectra)
    assert auto > 0
    code, _, err = run_main(args[:-2] + ["--width", "0", "-o", d / "bad.h5"], capsys)
    assert code == 2 and "--width must be a finite number > 0" in err


def test_version_and_help_metavars(capsys):
    code, out, _ = run_main(["--version"], capsys)
    assert code == 0 and out.strip() == f"mdhess {mdhess.__version__}"
    names = [c.name for c in app.registered_commands]
    assert {"hessian", "modes", "info", "demo"} <= set(names)
    for name in names:
        code, out, _ = run_main([name, "--help"], capsys)
        assert code == 0
        assert "<bool>" not in out, name
        usage = next(ln for ln in out.splitlines() if "Usage:" in ln)
        assert "{" not in usage, usage
    code, out, _ = run_main(["modes", "--help"], capsys)
    assert "Usage: mdhess modes [OPTIONS] INPUT" in out and "--quench" in out and "--csv" in out


@pytest.mark.slow  # the whole demo: 10 frames of 500 atoms
def test_demo_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    import tempfile

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    code, out, err = run_main(["demo", "-k", "4", "-q"], capsys)
    assert code == 0, err
    assert list(tmp.iterdir()) == [] and "now removed" in out
    code, out, err = run_main(["demo", "-k", "4", "-q", "--output-dir", tmp_path / "keep"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "keep").iterdir()) == ["ka500_hessians.h5", "ka500_modes.h5"]


# -- progress ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def glass_hessian():
    pot, R0, cell, s = small_glass()
    return mdhess.hessian(pot, R0, box=cell, species=s, format="bsr"), R0, cell


@pytest.mark.parametrize("solver", ["dense", "lobpcg", "shift-invert", "jax-lobpcg"])
def test_normal_modes_progress_is_opt_in(glass_hessian, solver, capsys):
    H, R, cell = glass_hessian
    kw = dict(k=8, solver=solver, box=cell, positions=R)
    quiet = mdhess.normal_modes(H, **kw)
    assert capsys.readouterr().err == ""  # the default is quiet
    loud = mdhess.normal_modes(H, progress=True, **kw)
    err = capsys.readouterr().err
    assert f"normal_modes ({solver}" in err
    np.testing.assert_array_equal(loud.eigenvalues, quiet.eigenvalues)  # the same computation
    with pytest.raises(mdhess.InputError, match=r"normal_modes\(progress=\.\.\.\)"):
        mdhess.normal_modes(H, progress="yes", **kw)


def test_single_frame_cli_runs_show_library_progress(modes_run, capsys):
    d, _ = modes_run
    code, _, err = run_main(["modes", d / "traj.h5", "-p", d / "pot.toml", "-k", "6", "--frames", "0",
                             "--solver", "dense", "-o", d / "one.h5"], capsys)  # fmt: skip
    assert code == 0 and "normal_modes (dense" in err and "LAPACK eigh" in err
    code, _, err = run_main(["modes", d / "traj.h5", "-p", d / "pot.toml", "-k", "6", "--frames", "0",
                             "--solver", "dense", "-o", d / "one-q.h5", "-q"], capsys)  # fmt: skip
    assert code == 0 and err == ""
