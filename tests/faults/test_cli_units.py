"""No silently wrong number from the CLI because of units, species or declared sizes.

Each case was a silent wrong result (or a runaway allocation) before: a reduced-unit glass read
as Angstrom by a metal potential, a metal-unit file read by a reduced one, a two-species file
computed with a one-species potential, fractional species truncated, species above 2^31 wrapped,
a positions dataset declared with 2e8 atoms read (4.8 GB) before any check, a Hessian file in
reduced units reported in THz by ``modes --units metal``. Now each is an error naming both sides
(exit 2, one line), or, for a physical potential and a file that declares no unit, a one-line
notice. The rules are in docs/cli.md ("Units, species and sizes").
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import mdhess
from mdhess import io
from mdhess.cli._jobs import check_declared_size, estimated_pairs
from mdhess.io import _trajectory
from mdhess.pair._library import load_spec

from ._cli_util import run_main

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data" / "ka500.h5"
ARGON = mdhess.load_potential("argon")
KA = mdhess.load_potential("kob-andersen")


def one_error(code, err, *patterns):
    """Exit 2 with one line on stderr that matches every pattern."""
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "error:" in lines[0], err
    for p in patterns:
        assert re.search(p, lines[0]), (p, lines[0])
    return lines[0]


def fcc_argon(n=3, a=5.26):
    """(N, 3) fcc argon in Angstrom, slightly rattled, and its (3,) cubic box."""
    base = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    cells = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    R = ((cells + base).reshape(-1, 3) * a) + np.random.default_rng(3).normal(0, 0.02, (4 * n**3, 3))
    return R, np.full(3, n * a)


@pytest.fixture(scope="module")
def ka_frames():
    with mdhess.read_trajectory(DATA) as t:
        fr = t[0]
        return fr.positions, fr.box, fr.species


# -- units --------------------------------------------------------------------------------------
def test_reduced_glass_with_a_metal_potential_is_refused(capsys, tmp_path):
    """The bundled KA glass (reduced units, two species) with argon (metal, one species): exit 2
    naming the species and the way out; it was exit 0 with max |H| 3e8 eV/A^2."""
    code, _, err = run_main(["hessian", DATA, "-p", "argon", "--frames", "0", "-o", tmp_path / "h.h5", "-q"], capsys)
    one_error(code, err, r"ka500\.h5 has 2 species \[0, 1\]", r"'argon' has 1 species \(Ar\)", r"--ignore-species")
    assert not (tmp_path / "h.h5").exists()


def test_undeclared_unit_with_a_metal_potential_is_a_notice(capsys, tmp_path):
    R, L = fcc_argon()
    src = tmp_path / "ar.h5"
    io.write_minimal(src, R, box=L)  # no unit attribute
    out = tmp_path / "h.h5"
    code, _, err = run_main(["hessian", src, "-p", "argon", "-o", out, "-q"], capsys)
    assert code == 0, err
    notice = f"mdhess: positions of {src} declare no unit; taken as Angstrom, the length unit of the potential "
    assert err.strip().splitlines() == [notice + "'argon' (metal units)"]
    ref = np.asarray(mdhess.hessian(ARGON, R, box=L))
    np.testing.assert_array_equal(mdhess.read_hessian(out, 0), ref)
    with io.ResultFile(out) as r:
        assert r.attrs["source_length_unit"] == "" and r.attrs["length_scale"] == 1.0
    # declared Angstrom: no notice; --length-scale: no notice (the user said how)
    io.write_minimal(src, R, box=L, unit="Angstrom")
    assert run_main(["hessian", src, "-p", "argon", "-o", tmp_path / "a.h5", "-q"], capsys)[2] == ""
    io.write_minimal(src, R, box=L)
    assert run_main(["hessian", src, "-p", "argon", "--length-scale", "1", "-o", tmp_path / "b.h5", "-q"], capsys)[2] == ""


@pytest.mark.parametrize("layout", ["h5md", "minimal"])
@pytest.mark.parametrize("unit", ["nm", "Angstrom"])
def test_physical_unit_with_a_reduced_potential_is_refused(capsys, tmp_path, ka_frames, layout, unit):
    R, box, species = ka_frames
    src = tmp_path / "ka.h5"
    if layout == "h5md":
        io.write_h5md(src, R[None], box=box, species=species, unit=unit)
    else:
        io.write_minimal(src, R[None], box=np.diag(box), species=species, unit=unit)
    code, _, err = run_main(["hessian", src, "-p", "kob-andersen", "-o", tmp_path / "h.h5", "-q"], capsys)
    one_error(code, err, rf"positions are in '{unit}', a physical length", r"'kob-andersen' \(lj units", r"--length-scale")
    for cmd in (["modes", src, "-p", "kob-andersen", "-k", "4"],):
        code, _, err = run_main([*cmd, "-o", tmp_path / "m.h5", "-q"], capsys)
        one_error(code, err, rf"'{unit}', a physical length", r"'kob-andersen'")


def test_reduced_declarations_and_mdtraj_are_taken_as_they_are(capsys, tmp_path, ka_frames):
    """A reduced potential: no unit, a reduced unit ("sigma") and MDTraj's fixed "nanometers"
    (the layout's convention; examples/make_data.py stores the glass so) are silent."""
    R, box, species = ka_frames
    ref = np.asarray(mdhess.hessian(KA, R, box=box, species=species, format="dense"))
    for i, write in enumerate([
        lambda p: io.write_h5md(p, R[None], box=box, species=species),
        lambda p: io.write_h5md(p, R[None], box=box, species=species, unit="sigma"),
    ]):  # fmt: skip
        src, out = tmp_path / f"s{i}.h5", tmp_path / f"h{i}.h5"
        write(src)
        code, _, err = run_main(["hessian", src, "-p", "kob-andersen", "-o", out, "-q"], capsys)
        assert code == 0 and err == "", err
        np.testing.assert_array_equal(mdhess.read_hessian(out, 0), ref)
    src = tmp_path / "md.h5"
    io.write_mdtraj(src, R[None], box=box, atom_names=np.array(["A", "B"])[species])
    with mdhess.read_trajectory(src) as t:
        assert t.length_unit == "nanometers" and t.unit_by_convention


def test_reduced_unit_with_a_metal_potential_is_refused(capsys, tmp_path):
    R, L = fcc_argon()
    src = tmp_path / "ar.h5"
    io.write_minimal(src, R, box=L, unit="sigma")
    code, _, err = run_main(["hessian", src, "-p", "argon", "-o", tmp_path / "h.h5", "-q"], capsys)
    one_error(code, err, r"position unit 'sigma' is reduced, not a physical length", r"'argon' \(metal units", r"--length-scale")
    io.write_minimal(src, R, box=L, unit="kg")  # not a length at all
    code, _, err = run_main(["hessian", src, "-p", "argon", "-o", tmp_path / "h.h5", "-q"], capsys)
    one_error(code, err, r"position unit 'kg' is not recognised; pass --length-scale", r"'argon'")


def test_modes_units_follow_the_hessian_file(capsys, tmp_path, ka_frames):
    """A reduced-unit Hessian file: --units metal (was: frequencies in THz) is refused naming
    both; --units lj is the file's own."""
    R, _, species = ka_frames
    src, h = tmp_path / "ka100.h5", tmp_path / "h.h5"
    io.write_minimal(src, R[:100], species=species[:100])  # 100 atoms of the glass, free space: fast
    assert run_main(["hessian", src, "-p", "kob-andersen", "-o", h, "-q"], capsys)[0] == 0
    code, _, err = run_main(["modes", h, "-k", "4", "--units", "metal", "-o", tmp_path / "m.h5", "-q"], capsys)
    one_error(code, err, r"--units metal contradicts the units recorded in .*h\.h5 \(lj\)")
    assert not (tmp_path / "m.h5").exists()
    code, _, err = run_main(["modes", DATA, "-p", "kob-andersen", "--frames", "0", "-k", "4", "--units", "real",
                             "-o", tmp_path / "m.h5", "-q"], capsys)  # fmt: skip
    one_error(code, err, r"--units real contradicts the units of the potential 'kob-andersen' \(lj\)")
    out = tmp_path / "m.h5"  # the recorded units, given explicitly (the default is test_cli's)
    code, _, err = run_main(["modes", h, "-k", "4", "--units", "lj", "--solver", "dense", "-o", out, "-q"], capsys)
    assert code == 0, err
    with io.ResultFile(out, "modes") as r:
        assert r.attrs["units"] == "lj" and r.attrs["frequency_unit"] == "reduced"


# -- species ------------------------------------------------------------------------------------
def test_several_species_with_a_one_species_potential(capsys, tmp_path):
    R, L = fcc_argon()
    species = np.arange(len(R)) % 2
    src = tmp_path / "ar.h5"
    io.write_minimal(src, R, box=L, species=species, unit="Angstrom")
    code, _, err = run_main(["hessian", src, "-p", "argon", "-o", tmp_path / "h.h5", "-q"], capsys)
    one_error(code, err, r"ar\.h5 has 2 species \[0, 1\]", r"'argon' has 1 species \(Ar\)", r"pass --ignore-species")
    out = tmp_path / "h.h5"
    code, _, err = run_main(["hessian", src, "-p", "argon", "--ignore-species", "-o", out, "-q"], capsys)
    assert code == 0 and err == "", err
    np.testing.assert_array_equal(mdhess.read_hessian(out, 0), np.asarray(mdhess.hessian(ARGON, R, box=L)))
    with io.ResultFile(out) as r:
        np.testing.assert_array_equal(r.array(r.group(0), "species"), np.zeros(len(R)))  # as used
        assert r.json_attr("settings")["ignore_species"] is True
    # one species, but not species 0 (LAMMPS numbers types from 1): outside the table
    io.write_minimal(src, R, box=L, species=np.ones(len(R), np.int32), unit="Angstrom")
    code, _, err = run_main(["hessian", src, "-p", "argon", "-o", tmp_path / "x.h5", "-q"], capsys)
    one_error(code, err, r"species index 1 \(atom 0; 1 species \[1\] in the file\)", r"1 species \(Ar\), indices 0\.\.0",
              r"--ignore-species")  # fmt: skip


def test_species_beyond_the_table_name_both_counts(capsys, tmp_path, ka_frames):
    R, box, species = ka_frames
    s3 = species.copy()
    s3[7] = 2
    src = tmp_path / "ka3.h5"
    io.write_h5md(src, R[None], box=box, species=s3)
    code, _, err = run_main(["hessian", src, "-p", "kob-andersen", "-o", tmp_path / "h.h5", "-q"], capsys)
    one_error(code, err, r"species index 2 \(atom 7; 3 species \[0, 1, 2\] in the file\)", r"'kob-andersen' has 2 species \(A, B\)")


def test_a_multi_species_potential_needs_species(capsys, tmp_path, ka_frames):
    """kob-andersen on a file without species was every atom A, silently."""
    R, box, _ = ka_frames
    src = tmp_path / "nospecies.h5"
    io.write_h5md(src, R[None], box=box)
    code, _, err = run_main(["hessian", src, "-p", "kob-andersen", "-o", tmp_path / "h.h5", "-q"], capsys)
    one_error(code, err, r"nospecies\.h5 gives no species but the potential 'kob-andersen' has 2 species \(A, B\)",
              r"--ignore-species")  # fmt: skip
    code, _, err = run_main(["modes", src, "-p", "kob-andersen", "-k", "4", "-o", tmp_path / "m.h5", "-q"], capsys)
    one_error(code, err, r"gives no species")


def test_time_dependent_species_are_checked_per_frame(capsys, tmp_path, ka_frames):
    R, box, species = ka_frames
    src = tmp_path / "td.h5"
    io.write_h5md(src, np.stack([R, R]), box=box)
    bad = species.copy()
    bad[3] = 5
    with h5py.File(src, "a") as f:
        f["particles/all/species/value"] = np.stack([species, bad])
    code, _, err = run_main(["hessian", src, "-p", "kob-andersen", "--format", "bsr", "-o", tmp_path / "h.h5", "-q"], capsys)
    one_error(code, err, r"td\.h5 frame 1 has species index 5 \(atom 3", r"2 species \(A, B\)")


@pytest.mark.parametrize("layout", ["minimal", "h5md", "h5md-time"])
def test_fractional_species_are_refused_not_truncated(tmp_path, layout):
    R, L = fcc_argon(2)
    src = tmp_path / "f.h5"
    frac = (np.arange(len(R)) % 2) + 0.5  # 0.5, 1.5: was read as 0, 1
    if layout == "minimal":
        io.write_minimal(src, R, box=L)
    else:
        io.write_h5md(src, R[None], box=L)
    name = {"minimal": "species", "h5md": "particles/all/species", "h5md-time": "particles/all/species/value"}[layout]
    with h5py.File(src, "a") as f:
        f[name] = frac[None] if layout == "h5md-time" else frac
    match = rf"f\.h5: dataset '/{name}(\[0\])?' holds species that are not whole numbers \(0\.5 at atom 0\)"
    with pytest.raises(mdhess.InputError, match=match), mdhess.read_trajectory(src) as t:
        t[0]


def test_integer_valued_float_species_are_accepted(capsys, tmp_path, ka_frames):
    R, box, species = ka_frames
    src = tmp_path / "fl.h5"
    io.write_h5md(src, R[None], box=box)
    with h5py.File(src, "a") as f:
        f["particles/all/species"] = species.astype(np.float64)
    with mdhess.read_trajectory(src) as t:
        assert t[0].species.dtype == np.int32
        np.testing.assert_array_equal(t[0].species, species)
    out = tmp_path / "h.h5"
    assert run_main(["hessian", src, "-p", "kob-andersen", "--format", "bsr", "-o", out, "-q"], capsys)[0] == 0
    ref = mdhess.hessian(KA, R, box=box, species=species, format="bsr")
    assert (mdhess.read_hessian(out, 0) != ref).nnz == 0


@pytest.mark.parametrize("value", [2**31, 2**32, 2**32 + 1, -1, 2.0**40, float("nan")])
def test_species_beyond_int32_do_not_wrap(tmp_path, value):
    """2^32 as int32 is 0 and 2^32 + 1 is 1: they were read as species 0 and 1."""
    R, L = fcc_argon(2)
    src = tmp_path / "big.h5"
    io.write_minimal(src, R, box=L)
    s = np.zeros(len(R), np.float64 if isinstance(value, float) else np.int64)
    s[5] = value
    with h5py.File(src, "a") as f:
        f["species"] = s
    with pytest.raises(mdhess.InputError, match=r"big\.h5: dataset '/species' holds species .* at atom 5"):
        mdhess.read_trajectory(src)
    with pytest.raises(mdhess.InputError, match=r"write_minimal\(species=\.\.\.\) must be integers in 0\.\.2147483647"):
        io.write_minimal(tmp_path / "w.h5", R, species=s)


# -- declared sizes -----------------------------------------------------------------------------
def _guard_reads(monkeypatch, max_bytes=64 * 2**20):
    """Fail a test (instead of allocating) when a trajectory read would take more than max_bytes."""
    real = _trajectory.read_slice

    def guarded(dataset, index, **kw):
        n = dataset.size * dataset.dtype.itemsize
        if index != () and dataset.ndim:
            n //= dataset.shape[0]
        assert n <= max_bytes, f"reads {n} bytes of {dataset.name} {dataset.shape} before refusing"
        return real(dataset, index, **kw)

    monkeypatch.setattr(_trajectory, "read_slice", guarded)


def _huge(path, n_atoms=200_000_000, box=None):
    with h5py.File(path, "w") as f:
        f.create_dataset("positions", shape=(1, n_atoms, 3), chunks=(1, 65536, 3), dtype="f8")  # nothing written
        if box is not None:
            f["box"] = np.asarray(box, dtype=np.float64)
    return path


@pytest.mark.parametrize("command", ["hessian", "modes"])
def test_a_huge_declared_shape_is_refused_before_reading(capsys, tmp_path, monkeypatch, command):
    src = _huge(tmp_path / "huge.h5")
    assert os.path.getsize(src) < 10_000  # 2 kB on disk, 4.8 GB declared
    monkeypatch.setenv("MDHESS_MEMORY_LIMIT", "8G")  # the same on any machine (default: the free memory)
    _guard_reads(monkeypatch)
    code, _, err = run_main([command, src, "-p", "kob-andersen", "-o", tmp_path / "o.h5", "-q"], capsys)
    one_error(code, err, r"huge\.h5: positions declared with shape \(1, 200000000, 3\) need about [0-9.]+ [KMGT]iB",
              r"N=200000000", r"more than the memory limit of", r"refused before reading any frame")  # fmt: skip
    assert not (tmp_path / "o.h5").exists() and not (tmp_path / "o.h5.partial").exists()


def test_the_pair_estimate_uses_density_and_cutoff(capsys, tmp_path, monkeypatch):
    """2e6 atoms at density 2 with the KA cutoff: about 1.3e8 pairs, refused as BSR at 4 GiB;
    the same atoms in a box 1000x larger fit (pairs from density) and get to the frame."""
    monkeypatch.setenv("MDHESS_MEMORY_LIMIT", "4G")
    _guard_reads(monkeypatch, max_bytes=2**20)  # the positions (48 MB, all atoms at 0) are never read
    dense = _huge(tmp_path / "dense.h5", 2_000_000, box=[100.0, 100.0, 100.0])
    code, _, err = run_main(["hessian", dense, "-p", "kob-andersen", "--format", "bsr", "-o", tmp_path / "o.h5", "-q"], capsys)
    line = one_error(code, err, r"shape \(1, 2000000, 3\)", r"format='bsr'")
    pairs = int(re.search(r"pairs=(\d+)", line).group(1))
    assert 1.2e8 < pairs < 1.4e8  # 0.5 N rho (4/3) pi 2.5^3 = 1.31e8
    sparse = _huge(tmp_path / "sparse.h5", 2_000_000, box=[1000.0, 1000.0, 1000.0])
    with mdhess.read_trajectory(sparse) as t:  # density 0.002: about 1.3e5 pairs, 0.5 GiB
        assert 1.2e5 < estimated_pairs(t, load_spec("kob-andersen"), 1.0) < 1.4e5
        check_declared_size(t, load_spec("kob-andersen"), 1.0, "bsr", "float64")
        t.check_frame_size()


def test_reading_a_frame_checks_its_declared_size(tmp_path, monkeypatch):
    monkeypatch.setenv("MDHESS_MEMORY_LIMIT", "1G")
    _guard_reads(monkeypatch)
    with mdhess.read_trajectory(_huge(tmp_path / "huge.h5")) as t:
        assert (t.n_atoms, t.declared_shape) == (200_000_000, (1, 200_000_000, 3))  # opening reads nothing
        with pytest.raises(mdhess.MemoryPlanError, match=r"huge\.h5: positions declared with shape \(1, 200000000, 3\) \(float64\) take about 8\.94 GiB per frame"):
            t[0]


@pytest.mark.parametrize(
    "what, make, match",
    [
        ("species", lambda f: f.create_dataset("species", shape=(10**9,), dtype="i4"), r"/species has shape \(1000000000,\) but the positions have 4 atoms"),
        ("masses", lambda f: f.create_dataset("masses", shape=(10**9,), dtype="f8"), r"/masses has shape \(1000000000,\)"),
        ("box", lambda f: f.create_dataset("box", shape=(10**9,), dtype="f8"), r"dataset 'box' must be \(3,\) edge lengths or a \(3, 3\) cell; got shape \(1000000000,\)"),
        ("box per frame", lambda f: f.create_dataset("box", shape=(1, 2, 2), dtype="f8"), r"dataset 'box' per frame must be \(1, 3\) or \(1, 3, 3\)"),
        ("complex positions", lambda f: f.__setitem__("positions", np.zeros((1, 4, 3), complex)), r"'positions' must be numeric \(integer or float\)"),
        ("2-d positions", lambda f: f.__setitem__("positions", np.zeros((1, 4, 2))), r"'positions' must have shape \(frames, atoms, 3\); got \(1, 4, 2\)"),
        ("positions with no atoms", lambda f: f.__setitem__("positions", np.zeros((1, 0, 3))), r"'positions' has 0 atoms"),
    ],
)
def test_declared_shapes_are_checked_before_reading(tmp_path, monkeypatch, what, make, match):
    p = tmp_path / "t.h5"
    with h5py.File(p, "w") as f:
        f["positions"] = np.arange(12.0).reshape(1, 4, 3)
        if "positions" in what:
            del f["positions"]
        make(f)
    _guard_reads(monkeypatch)
    with pytest.raises(mdhess.InputError, match=match):
        mdhess.read_trajectory(p)


def test_h5md_declared_species_and_box_sizes(tmp_path, monkeypatch):
    R, L = fcc_argon(2)
    p = tmp_path / "t.h5"
    io.write_h5md(p, R[None], box=None)
    with h5py.File(p, "a") as f:
        f.create_dataset("particles/all/species", shape=(10**9,), dtype="i8")
    _guard_reads(monkeypatch)
    with pytest.raises(mdhess.InputError, match=r"species has shape \(1000000000,\)"):
        mdhess.read_trajectory(p)
    io.write_h5md(p, R[None], box=L)
    with h5py.File(p, "a") as f:
        del f["particles/all/box/edges"]
        f.create_dataset("particles/all/box/edges", shape=(10**9,), dtype="f8")
    with pytest.raises(mdhess.InputError, match=r"edges must be \(3,\) edge lengths or a \(3, 3\) cell; got shape \(1000000000,\)"):
        mdhess.read_trajectory(p)


def test_a_huge_declared_shape_keeps_rss_low(tmp_path):
    """The 2 kB file through the real command in a fresh process, a 2 GB memory limit: refused,
    peak RSS well under the 4.8 GB it declares (was: past 2 GB before any check). 3.5 s, most of
    it importing JAX."""
    src = _huge(tmp_path / "huge.h5")
    code = (
        "import resource, sys\n"
        "from mdhess.cli import main\n"
        "try:\n"
        f"    main(['hessian', {str(src)!r}, '-p', 'kob-andersen', '-o', {str(tmp_path / 'o.h5')!r}, '-q'])\n"
        "except SystemExit as e:\n"
        "    print(e.code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    # a fixed limit below the declared 4.8 GB: the default (the machine's free memory) made the
    # path, and so the peak, depend on what else ran beside the test
    env = dict(os.environ, MDHESS_MEMORY_LIMIT="2G")
    res = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    exit_code, rss_kib = map(int, res.stdout.split())
    assert exit_code == 2 and "refused before reading any frame" in res.stderr, res.stderr
    # alone: under 1 GB; inside the full two-worker run the same subprocess peaked at 1.28 GB
    # (2026-12-01, not yet explained). The regression this guards against went past 2 GB.
    assert rss_kib < 1_500_000, f"peak RSS {rss_kib / 1e6:.2f} GB"


# -- frame selection ----------------------------------------------------------------------------
def test_a_frame_out_of_range_is_not_blamed_on_the_syntax(capsys, tmp_path):
    """``--frames 50`` on a 10-frame file said "--frames must be START:STOP:STEP or K"."""
    code, _, err = run_main(["hessian", DATA, "-p", "kob-andersen", "--frames", "50", "-o", tmp_path / "h.h5", "-q"], capsys)
    one_error(code, err, r"frame 50 is out of range \(the input has 10 frames\)")
    assert "START:STOP:STEP" not in err
