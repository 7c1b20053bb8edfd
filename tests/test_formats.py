"""Trajectory formats beyond HDF5 (extended XYZ, LAMMPS dump and data through ASE; DCD, XTC, TRR
through MDAnalysis) and ``mdhess convert``: the CLI's Hessian of a file equals ``mdhess.hessian``
on the configuration written into it, bit for bit; frames are read one at a time; unknown
formats and unmapped species names are errors that say what to do.

The configuration: 100 atoms (every 5th) of the bundled Kob-Andersen glass's first frame, 80 A +
20 B in its periodic box, positions rounded to 8 decimals so that every text format (extended
XYZ writes 8) stores them exactly: any difference in the Hessians is then a reader's error, not
rounding, and the comparison is exact."""

from pathlib import Path

import h5py
import numpy as np
import pytest

import mdhess
from mdhess import io
from mdhess.cli import main

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "ka500.h5"
KA = mdhess.load_potential("kob-andersen")
KA_SPECIES = ("A", "B")  # its species names


def run_main(args, capsys):
    """Run ``mdhess ARGS`` in-process; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def _round8(x):
    """Values that an 8-decimal text format writes and reads back exactly (the nearest doubles
    to 8-decimal strings)."""
    return np.array([float(f"{v:.8f}") for v in np.ravel(x)]).reshape(np.shape(x))


@pytest.fixture(scope="module")
def ka100():
    """Positions of 3 frames (F, 100, 3), the orthorhombic box, species, a triclinic variant."""
    with mdhess.read_trajectory(DATA) as t:
        fr = t[0]
        R0, box, species = fr.positions[::5], fr.box, fr.species[::5]
    rng = np.random.default_rng(1)
    R = _round8(np.stack([R0 + 0.02 * k * rng.standard_normal(R0.shape) for k in range(3)]))
    L = float(box[0, 0])
    cell = np.array([[L, 0.0, 0.0], [0.25, L, 0.0], [0.5, -0.125, L]])  # exact in binary and in text
    Rtri = _round8((R[0] / L) @ cell)
    return {"R": R, "box": box, "species": species, "cell": cell, "Rtri": Rtri}


@pytest.fixture(scope="module")
def ref(ka100):
    """mdhess.hessian of each configuration (the library, called directly)."""
    d = ka100
    H = {k: np.asarray(mdhess.hessian(KA, d["R"][k], box=d["box"], species=d["species"])) for k in range(3)}
    H["tri"] = np.asarray(mdhess.hessian(KA, d["Rtri"], box=d["cell"], species=d["species"]))
    return H


def _symbols(species):
    return np.where(np.asarray(species) == 0, "Ar", "Kr")


def write_xyz(path, R, cell, species):
    import ase.io
    from ase import Atoms

    frames = [Atoms(symbols=_symbols(species), positions=r, cell=cell, pbc=True) for r in np.reshape(R, (-1,) + R.shape[-2:])]
    ase.io.write(path, frames, format="extxyz")


def write_data(path, R, box, species):
    import ase.io
    from ase import Atoms

    ase.io.write(path, Atoms(symbols=_symbols(species), positions=R, cell=box, pbc=True), format="lammps-data",
                 atom_style="atomic", masses=True, specorder=["Ar", "Kr"])  # fmt: skip


def write_dump(path, R, box, species, *, columns="id type x y z", seed=0):
    """A LAMMPS text dump as LAMMPS writes it (ASE has no dump writer): atoms in a shuffled
    order (LAMMPS writes them in processor order), types 1, 2 for species 0, 1."""
    L = [float(x) for x in np.diag(box)]
    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        for k, r in enumerate(R):
            fh.write(f"ITEM: TIMESTEP\n{1000 * k}\nITEM: NUMBER OF ATOMS\n{len(r)}\nITEM: BOX BOUNDS pp pp pp\n")
            fh.write("".join(f"0.0 {x!r}\n" for x in L))
            fh.write(f"ITEM: ATOMS {columns}\n")
            for i in rng.permutation(len(r)):
                x, y, z = (float(v) for v in r[i])
                fh.write(f"{i + 1} {int(species[i]) + 1} {x!r} {y!r} {z!r}\n")


# -- CLI == library, bit for bit --------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["xyz-triclinic", "lammps-data", "lammps-dump"])
def test_cli_hessian_of_a_text_format_equals_the_library_bit_for_bit(tmp_path, capsys, ka100, ref, kind):
    d = ka100
    extra = []
    if kind == "xyz-triclinic":
        src, key, frame = tmp_path / "t.xyz", "tri", 0
        write_xyz(src, d["Rtri"], d["cell"], d["species"])
        extra = ["--species-map", "Ar=A,Kr=B"]  # element symbols -> the potential's species names
    elif kind == "lammps-data":
        src, key, frame = tmp_path / "t.data", 0, 0
        write_data(src, d["R"][0], d["box"], d["species"])
    else:
        src, key, frame = tmp_path / "t.lammpstrj", 2, 2
        write_dump(src, d["R"], d["box"], d["species"])
    out = tmp_path / "h.h5"
    code, _, err = run_main(["hessian", src, "-p", "kob-andersen", "--frames", frame, "-o", out, "-q", *extra], capsys)
    assert code == 0, err
    assert np.array_equal(mdhess.read_hessian(out, 0), ref[key])  # bit for bit
    with mdhess.read_trajectory(src, species_map="Ar=A,Kr=B" if extra else None) as t:  # the reader itself
        fr = t[frame]
        R, box = (d["Rtri"], d["cell"]) if key == "tri" else (d["R"][key], d["box"])
        assert np.array_equal(fr.positions, R) and np.array_equal(fr.box, box)
        assert np.array_equal(t.species_indices(KA_SPECIES), d["species"])
        assert t.length_unit is None  # these formats record no unit
        if kind == "lammps-data":  # the data file's Masses section, as ASE wrote it
            assert fr.masses is not None and np.allclose(fr.masses[d["species"] == 0], 39.948, rtol=1e-9)
        else:
            assert fr.masses is None  # never ASE's element masses



def test_convert_then_hessian_equals_direct_hessian(tmp_path, capsys, ka100, ref):
    d = ka100
    src = tmp_path / "t.dump"
    write_dump(src, d["R"], d["box"], d["species"])
    out = tmp_path / "t.h5"
    code, so, err = run_main(["convert", src, out, "--units", "lj"], capsys)
    assert code == 0, err
    assert "H5MD 1.1, 3 frames of 100 atoms from lammps-dump-text, length unit sigma" in so
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.dump", "t.h5"]  # no temporary file left
    with h5py.File(out) as f:  # H5MD 1.1 with the unit recorded
        assert f["h5md"].attrs["version"].tolist() == [1, 1]
        assert f["particles/all/position/value"].attrs["unit"] == "sigma"
        assert f["particles/all/box/edges/value"].attrs["unit"] == "sigma"
        assert f["particles/all/species"][()].tolist() == d["species"].tolist()
    with mdhess.read_trajectory(out) as t:
        assert t.layout == "h5md" and t.n_frames == 3
        assert all(np.array_equal(t[k].positions, d["R"][k]) for k in range(3))
    h = tmp_path / "h.h5"
    code, _, err = run_main(["hessian", out, "-p", "kob-andersen", "--frames", "1", "-o", h, "-q"], capsys)
    assert code == 0, err
    assert np.array_equal(mdhess.read_hessian(h, 0), ref[1])
    # an existing output is kept unless --overwrite
    code, _, err = run_main(["convert", src, out, "--units", "lj"], capsys)
    assert code == 2 and "exists; pass --overwrite" in err


def test_convert_records_the_potentials_units_and_matches_names(tmp_path, capsys, ka100):
    d = ka100
    src = tmp_path / "t.xyz"
    write_xyz(src, d["R"][:2], d["box"], d["species"])
    out = tmp_path / "t.h5"
    code, _, err = run_main(["convert", src, out, "-p", "kob-andersen", "--species-map", "Ar=A,Kr=B", "-q"], capsys)
    assert code == 0, err
    with mdhess.read_trajectory(out) as t:
        assert t.length_unit == "sigma" and np.array_equal(t[1].positions, d["R"][1])
        assert np.array_equal(t[0].species, d["species"])
    # names without a map or a potential cannot become integer species
    code, _, err = run_main(["convert", src, tmp_path / "u.h5", "-q"], capsys)
    assert code == 2 and "['Ar', 'Kr']" in err and "--species-map" in err


# -- DCD / XTC / TRR through MDAnalysis ----------------------------------------------------------------
@pytest.mark.parametrize("ext", ["dcd", "xtc", pytest.param("trr", marks=pytest.mark.slow)])
def test_mdanalysis_formats_with_a_topology(tmp_path, capsys, ka100, ext):
    mda = pytest.importorskip("MDAnalysis", reason="DCD/XTC/TRR input needs MDAnalysis (the mdanalysis extra)")
    import warnings

    d = ka100
    n = d["R"].shape[1]
    u = mda.Universe.empty(n, trajectory=True)
    u.add_TopologyAttr("names", np.array(KA_SPECIES)[d["species"]])
    u.dimensions = np.r_[np.diag(d["box"]), 90.0, 90.0, 90.0]
    top, traj = tmp_path / "top.pdb", tmp_path / f"t.{ext}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MDAnalysis's notes on PDB fields it fills with defaults
        u.atoms.write(top)
        # the numbers as they are (reduced units): convert_units=False, except for TRR, whose
        # writer fails without conversion (MDAnalysis 2.11: UnboundLocalError 'dimensions' in
        # TRRWriter._write_next_frame); there Angstrom numbers 10x larger are written as nm
        scale = 10.0 if ext == "trr" else 1.0
        u.dimensions = np.r_[np.diag(d["box"]) * scale, 90.0, 90.0, 90.0]
        with mda.Writer(str(traj), n, convert_units=ext == "trr") as w:
            for r in d["R"][:2]:
                u.atoms.positions = r * scale
                w.write(u.atoms)
        v = mda.Universe(str(top), str(traj), convert_units=False)  # the reference: MDAnalysis directly
        ts = v.trajectory[1]
        R, dims = np.array(ts.positions, dtype=np.float64), np.array(ts.dimensions, dtype=np.float64)
    H = np.asarray(mdhess.hessian(KA, R, box=np.diag(dims[:3]), species=d["species"]))
    out = tmp_path / "h.h5"
    code, _, err = run_main(["hessian", traj, "--topology", top, "-p", "kob-andersen", "--frames", "1", "-o", out, "-q"], capsys)
    assert code == 0, err
    assert np.array_equal(mdhess.read_hessian(out, 0), H)  # bit for bit
    with mdhess.read_trajectory(traj, topology=top) as t:
        assert t.unit_by_convention and t.length_unit == ("Angstrom" if ext == "dcd" else "nm")
    code, _, err = run_main(["hessian", traj, "-p", "kob-andersen", "-o", out, "--overwrite", "-q"], capsys)
    assert code == 2 and "--topology" in err  # coordinates only: the topology is required


# -- streaming ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["xyz", "dump"])
def test_frame_k_is_read_without_parsing_the_frames_before_it(tmp_path, ka100, kind, monkeypatch):
    """Frame 1's atom lines are garbage: reading frame 2 (and 0) still works, so frame 1 was never
    parsed; ASE is handed one frame's text per read."""
    d = ka100
    src = tmp_path / f"t.{kind}"
    (write_xyz if kind == "xyz" else write_dump)(src, d["R"], d["box"], d["species"])
    lines = src.read_text().splitlines(keepends=True)
    per_frame = len(lines) // 3
    lines[per_frame + per_frame - 5] = lines[per_frame + per_frame - 5].replace(".", "x", 2)  # frame 1, an atom line
    src.write_text("".join(lines))
    import ase.io

    sizes = []
    real_read = ase.io.read

    def spy(f, *a, **kw):
        sizes.append(len(f.getvalue()) if hasattr(f, "getvalue") else None)
        return real_read(f, *a, **kw)

    monkeypatch.setattr(ase.io, "read", spy)
    with mdhess.read_trajectory(src) as t:
        assert t.n_frames == 3
        assert np.array_equal(t[2].positions, d["R"][2])
        with pytest.raises(mdhess.InputError, match=rf"{src.name}: frame 1 cannot be read as"):
            t[1]
    assert len(sizes) == 3 and max(sizes) < src.stat().st_size / 2  # frames 0, 2, 1: one frame's text each


# -- errors -------------------------------------------------------------------------------------------
def test_unknown_format_lists_the_formats_read(tmp_path, capsys):
    for name in ("notes.txt", "text.h5"):
        p = tmp_path / name
        p.write_text("hello\nworld\n")
        with pytest.raises(mdhess.InputError, match="not an HDF5 file") as info:
            mdhess.read_trajectory(p)
        for fmt in ("H5MD", "MDTraj", "extended XYZ", "LAMMPS dump", "data", "DCD, XTC or TRR"):
            assert fmt in str(info.value), (name, fmt)
    code, _, err = run_main(["hessian", tmp_path / "notes.txt", "-p", "kob-andersen", "-o", tmp_path / "h.h5"], capsys)
    assert code == 2 and "not an HDF5 file" in err and "extended XYZ" in err and "Traceback" not in err
    code, _, err = run_main(["hessian", tmp_path / "notes.txt", "-p", "kob-andersen", "-o", tmp_path / "h.h5",
                             "--input-format", "pdb"], capsys)  # fmt: skip
    assert code == 2 and "--input-format must be one of" in err


def test_species_names_not_in_the_potential_are_named(tmp_path, capsys, ka100):
    d = ka100
    src = tmp_path / "t.xyz"
    write_xyz(src, d["R"][0], d["box"], d["species"])
    base = ["hessian", src, "-p", "kob-andersen", "-o", tmp_path / "h.h5", "-q"]
    code, _, err = run_main(base, capsys)
    assert code == 2
    assert "atom names ['Ar', 'Kr'] are not species of the potential ['A', 'B']" in err
    assert "--species-map 'Ar=A,Kr=B'" in err  # what to do, in command-line terms
    code, _, err = run_main(base + ["--species-map", "Ar=A"], capsys)
    assert code == 2 and "has no entry for the atom labels ['Kr']" in err
    code, _, err = run_main(base + ["--species-map", "Ar=A,Kr=C"], capsys)
    assert code == 2 and "maps 'Kr' to 'C', which is not among the potential's species ['A', 'B']" in err
    code, _, err = run_main(base + ["--species-map", "Ar=0,Kr=2"], capsys)  # index beyond the tables
    assert code == 2 and "species index 2" in err
    code, _, err = run_main(base + ["--species-map", "Ar"], capsys)
    assert code == 2 and "each entry must be LABEL=SPECIES" in err


def test_species_map_on_lammps_types_and_integer_species(tmp_path, ka100):
    d = ka100
    src = tmp_path / "t.lammpstrj"
    write_dump(src, d["R"][:1], d["box"], d["species"])
    with mdhess.read_trajectory(src) as t:
        assert t.label_kind == "lammps-type" and np.array_equal(t.species_indices(KA_SPECIES), d["species"])
    with mdhess.read_trajectory(src, species_map="1=B,2=A") as t:  # swapped, by name
        assert np.array_equal(t.species_indices(KA_SPECIES), 1 - d["species"])
    with mdhess.read_trajectory(DATA, species_map={0: 1, 1: 0}) as t:  # H5MD integer species, swapped
        assert np.array_equal(t.species_indices(KA_SPECIES), 1 - t[0].species)
    assert io.parse_species_map("Ar=0, Kr = B") == {"Ar": 0, "Kr": "B"}
    with pytest.raises(mdhess.InputError, match="maps 'Ar' twice"):
        io.parse_species_map("Ar=0,Ar=1")


def test_info_reads_a_text_trajectory(tmp_path, capsys, ka100):
    d = ka100
    src = tmp_path / "t.lammpstrj"
    write_dump(src, d["R"], d["box"], d["species"])
    code, so, err = run_main(["info", src], capsys)
    assert code == 0, err
    assert "trajectory (lammps-dump-text), 3 frames of 100 atoms" in so and "1: 80, 2: 20" in so


def test_labels_that_are_not_elements(tmp_path):
    """Glass models name their species A, B; LAMMPS's "dump xyz" writes type numbers: ASE reads
    such frames only with element symbols, so the labels are kept beside it, in atom-id order."""
    (tmp_path / "ab.xyz").write_text(
        '3\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3 pbc="T T T"\nA 0 0 0\nB 1 1 1\nA 2 2 2\n'
    )
    (tmp_path / "num.xyz").write_text("3\n Atoms. Timestep: 0\n1 0 0 0\n2 1 1 1\n1 2 2 2\n")  # LAMMPS dump xyz
    (tmp_path / "el.dump").write_text(
        "ITEM: TIMESTEP\n0\nITEM: NUMBER OF ATOMS\n3\nITEM: BOX BOUNDS pp pp pp\n0 5\n0 5\n0 5\n"
        "ITEM: ATOMS id type element x y z\n3 1 A 2 2 2\n1 1 A 0 0 0\n2 2 B 1 1 1\n"
    )
    for name, kind, box in (("ab.xyz", "name", 5.0 * np.eye(3)), ("num.xyz", "lammps-type", None), ("el.dump", "name", 5.0 * np.eye(3))):
        with mdhess.read_trajectory(tmp_path / name) as t:
            assert t.label_kind == kind, name
            assert np.array_equal(t.species_indices(KA_SPECIES), [0, 1, 0]), name
            fr = t[0]
            assert np.array_equal(fr.positions, [[0, 0, 0], [1, 1, 1], [2, 2, 2]]), name
            assert (fr.box is None and box is None) or np.array_equal(fr.box, box), name


@pytest.mark.parametrize("kind", ["xyz", "dump"])
def test_a_declared_atom_count_that_cannot_fit_is_refused_before_parsing(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("MDHESS_MEMORY_LIMIT", "1GB")
    p = tmp_path / f"huge.{kind}"
    if kind == "xyz":  # the scan counts the lines a count declares (nothing parsed): a short frame is named
        p.write_text("200000000\ncomment\n" + "Ar 0 0 0\n" * 3)
        with pytest.raises(mdhess.InputError, match=r"frame 0 is truncated \(3 of 200000000 atom lines\)"):
            mdhess.read_trajectory(p)
        return
    p.write_text("ITEM: TIMESTEP\n0\nITEM: NUMBER OF ATOMS\n200000000\nITEM: BOX BOUNDS pp pp pp\n0 5\n0 5\n0 5\n"
                 "ITEM: ATOMS id type x y z\n1 1 0 0 0\n")  # fmt: skip
    with pytest.raises(mdhess.MemoryPlanError, match="200000000 atoms takes about .* more than the memory limit"):
        mdhess.read_trajectory(p)
