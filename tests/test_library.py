"""Named potentials (potentials/*.toml via mdhess.load_potential): each bundled file is checked
against an independent reference (matscipy, ProDy or the closed-form energy), and every schema
violation is rejected with a message naming the file and the key."""

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import TOL

import mdhess
from mdhess.pair import _library

REPO = Path(__file__).resolve().parents[1]


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def ka_glass(n=108, density=1.2, seed=0):
    """Rattled simple-cubic KA-like configuration (80:20) at the given density."""
    rng = np.random.default_rng(seed)
    m = int(round(n ** (1 / 3)))
    L = (m**3 / density) ** (1 / 3)
    g = (np.arange(m) + 0.5) * (L / m)
    R = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    R = R + rng.uniform(-0.05, 0.05, R.shape)
    s = np.zeros(len(R), np.int32)
    s[rng.permutation(len(R))[: len(R) // 5]] = 1
    return R, np.full(3, L), s


def test_bundled_names_and_metadata():
    specs = {s.name: s for s in mdhess.list_potentials()}
    assert {"argon", "kob-andersen", "harmonic-spheres", "hertzian-spheres", "calpha-anm"} <= set(specs)
    for s in specs.values():
        assert s.units in ("lj", "metal", "real")
        assert s.reference and s.formula
        assert Path(s.path).stem == s.name  # bundled files are named after their potential


def test_kob_andersen_values_are_the_published_ones():
    # Kob & Andersen, PRE 51, 4626 (1995), Table/Eq. 1: species 0 = A, 1 = B.
    s = _library.load_spec("kob-andersen")
    assert s.species == ("A", "B") and s.units == "lj" and s.treatment == "shift" and s.switch is None
    np.testing.assert_array_equal(s.parameters["sigma"], [[1.0, 0.8], [0.8, 0.88]])
    np.testing.assert_array_equal(s.parameters["epsilon"], [[1.0, 1.5], [1.5, 0.5]])
    np.testing.assert_allclose(s.cutoff, 2.5 * np.array([[1.0, 0.8], [0.8, 0.88]]), rtol=0, atol=1e-15)


def _matscipy_ka_hessian(R, box, species):
    ase = pytest.importorskip("ase")
    pp = pytest.importorskip("matscipy.calculators.pair_potential")
    sig = {(1, 1): 1.0, (1, 2): 0.8, (2, 2): 0.88}
    eps = {(1, 1): 1.0, (1, 2): 1.5, (2, 2): 0.5}
    calc = pp.PairPotential({k: pp.LennardJonesCut(epsilon=eps[k], sigma=sig[k], cutoff=2.5 * sig[k]) for k in sig})
    atoms = ase.Atoms(numbers=species + 1, positions=R, cell=np.diag(box), pbc=True)
    atoms.calc = calc
    return atoms.get_potential_energy(), calc.get_hessian(atoms, format="sparse").toarray()


def test_kob_andersen_matches_matscipy():
    R, box, s = ka_glass()
    pot = mdhess.load_potential("kob-andersen")
    E_ref, H_ref = _matscipy_ka_hessian(R, box, s)
    H = np.asarray(mdhess.hessian(pot, R, box=box, species=s))
    # matscipy's LennardJonesCut is also shifted to zero at rc; same sums in another order.
    assert abs(mdhess.energy(pot, R, box=box, species=s) - E_ref) <= 1e-11 * abs(E_ref)
    assert rel(H, H_ref) <= TOL["peer"] * 10


def test_argon_matches_matscipy():
    ase_build = pytest.importorskip("ase.build")
    pp = pytest.importorskip("matscipy.calculators.pair_potential")
    atoms = ase_build.bulk("Ar", "fcc", a=5.26, cubic=True).repeat((3, 3, 3))
    atoms.rattle(0.05, seed=1)
    calc = pp.PairPotential({(18, 18): pp.LennardJonesCut(epsilon=0.0104, sigma=3.4, cutoff=8.5)})
    H_ref = calc.get_hessian(atoms, format="sparse").toarray()
    spec = _library.load_spec("argon")
    assert spec.units == "metal" and spec.masses == (39.948,)
    H = np.asarray(mdhess.hessian(spec.build(), atoms.positions, box=atoms.cell[:]))
    assert rel(H, H_ref) <= TOL["peer"] * 10


@pytest.mark.parametrize("name,alpha", [("harmonic-spheres", 2.0), ("hertzian-spheres", 2.5)])
def test_soft_spheres_closed_form(name, alpha):
    pot = mdhess.load_potential(name)
    d = {0: 1.0, 1: 1.4}  # diameters; sigma_ab = (d_a + d_b) / 2 is the contact distance
    for a, b in [(0, 0), (0, 1), (1, 1)]:
        sig = 0.5 * (d[a] + d[b])
        for r in (0.7 * sig, 0.95 * sig, 1.01 * sig):
            R = np.array([[0.0, 0.0, 0.0], [r, 0.0, 0.0]])
            ref = (1.0 / alpha) * max(1.0 - r / sig, 0.0) ** alpha
            assert abs(mdhess.energy(pot, R, species=[a, b]) - ref) <= 1e-15


def test_soft_sphere_without_cutoff_ends_at_sigma(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('kernel = "soft_sphere"\nunits = "lj"\nreference = "x"\n[parameters]\nsigma = 1.3\n')
    pot = mdhess.load_potential(str(p))
    assert pot.describe() == mdhess.soft_sphere(sigma=1.3).describe()  # the constructor's convention


def test_calpha_anm_matches_prody():
    prody = pytest.importorskip("prody")
    rng = np.random.default_rng(3)
    # a random-walk "chain" of 60 C-alpha atoms 3.8 A apart
    steps = rng.normal(size=(60, 3))
    R = np.cumsum(3.8 * steps / np.linalg.norm(steps, axis=1, keepdims=True), axis=0)
    with pytest.raises(mdhess.InputError, match="calpha-anm.*positions"):
        mdhess.load_potential("calpha-anm")
    net = mdhess.load_potential("calpha-anm", positions=R)
    H = np.asarray(mdhess.hessian(net, R))
    anm = prody.ANM("chain")
    anm.buildHessian(R, cutoff=15.0, gamma=1.0)
    assert rel(H, anm.getHessian()) <= 1e-12  # both k sum u u^T at the reference; rounding only


# -- schema errors ------------------------------------------------------------------------------
GOOD = """
kernel = "lennard_jones"
units = "lj"
reference = "test"
species = ["A", "B"]
[parameters]
sigma = { A-A = 1.0, A-B = 0.9, B-B = 1.1 }
epsilon = 1.0
[cutoff]
radius = 2.5
scale_by = "sigma"
treatment = "switch"
switch_on = 2.0
"""


def write(tmp_path, text, name="pot.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_user_file_with_switch_and_scaled_cutoff(tmp_path):
    p = write(tmp_path, GOOD)
    pot = mdhess.load_potential(str(p))
    sig = np.array([[1.0, 0.9], [0.9, 1.1]])
    ref = mdhess.lennard_jones(sigma=sig, epsilon=1.0, cutoff=2.5 * sig, switch=2.0 * sig)
    R, box, s = ka_glass(64, density=0.9)
    np.testing.assert_allclose(
        mdhess.hessian(pot, R, box=box, species=s), mdhess.hessian(ref, R, box=box, species=s), rtol=0, atol=0
    )
    assert mdhess.load_potential(p) is not None  # a Path works too


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda t: 'colour = "red"\n' + t, r"pot.toml: unknown key 'colour'"),
        (lambda t: t.replace("epsilon = 1.0", "epsilon = 1.0\nepsilonn = 2.0"), r"\[parameters\].*unknown key 'epsilonn'"),
        (lambda t: t.replace('"lennard_jones"', '"lennard_jonez"'), r"unknown kernel 'lennard_jonez'"),
        (lambda t: t.replace('units = "lj"', 'units = "si"'), r"'units'.*'si'"),
        (lambda t: t.replace('reference = "test"\n', ""), r"missing required key 'reference'"),
        (lambda t: t.replace("A-B = 0.9", "A-C = 0.9"), r"unknown key 'A-C'"),
        (lambda t: t.replace("A-B = 0.9, ", ""), r"missing the species pairs \['A-B'\]"),
        (lambda t: t.replace("switch_on = 2.0\n", ""), r"switch_on"),
        (lambda t: t.replace('treatment = "switch"', 'treatment = "smooth"'), r"treatment.*'smooth'"),
        (lambda t: t.replace('scale_by = "sigma"', 'scale_by = "sigmaa"'), r"scale_by names 'sigmaa'"),
        (lambda t: t.replace("switch_on = 2.0", "switch_on = 3.0"), r"switch < cutoff"),
        (lambda t: t.replace("epsilon = 1.0", "epsilon = [[1.0, 2.0], [3.0, 1.0]]"), r"parameters.epsilon.*symmetric"),
        (lambda t: t.replace("epsilon = 1.0", 'epsilon = "one"'), r"parameters.epsilon must be a number"),
        (lambda t: t.replace("[cutoff]", "[cutoff]\nrc = 3"), r"\[cutoff\]: unknown key 'rc'"),
        (lambda t: t.replace("epsilon = 1.0", "epsilon = 1.0 ="), r"malformed TOML"),
        (lambda t: "masses = [1.0]\n" + t, r"'masses' has 1 entries for 2 species"),
    ],
)
def test_schema_errors_name_file_and_key(tmp_path, edit, match):
    p = write(tmp_path, edit(GOOD))
    with pytest.raises(mdhess.InputError, match=match) as info:
        mdhess.load_potential(str(p))
    assert str(p) in str(info.value)


def test_elastic_network_schema(tmp_path):
    base = 'kernel = "elastic_network"\nunits = "real"\nreference = "x"\n[parameters]\nk = 2.0\n[cutoff]\nradius = 7.0\n'
    R = np.cumsum(np.full((10, 3), 2.0), axis=0)
    net = mdhess.load_potential(str(write(tmp_path, base)), positions=R)
    ref = mdhess.elastic_network(R, 7.0, 2.0)
    np.testing.assert_array_equal(mdhess.hessian(net, R), mdhess.hessian(ref, R))
    bad = write(tmp_path, base.replace("k = 2.0", "k = 2.0\nr0 = 1.0"), "bad.toml")
    with pytest.raises(mdhess.InputError, match=r"bad.toml.*unknown key 'r0'"):
        mdhess.load_potential(str(bad))
    bad2 = write(tmp_path, base + 'treatment = "switch"\n', "bad2.toml")
    with pytest.raises(mdhess.InputError, match=r"bad2.toml.*only 'radius'"):
        mdhess.load_potential(str(bad2))


def test_unknown_name_and_missing_file(tmp_path):
    with pytest.raises(mdhess.InputError, match=r"unknown potential 'kob-anderson'.*kob-andersen"):
        mdhess.load_potential("kob-anderson")
    with pytest.raises(mdhess.InputError, match=r"file not found.*nope.toml"):
        mdhess.load_potential(str(tmp_path / "nope.toml"))
    p = tmp_path / "bin.toml"
    p.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(mdhess.InputError, match=r"not UTF-8"):
        mdhess.load_potential(str(p))


def test_package_data_is_searched_first(tmp_path, monkeypatch):
    # An installed wheel has mdhess/_potentials; a source checkout has ../potentials. Simulate the
    # installed layout with a copy of the package and check the copy's data is found.
    import shutil

    pkg = tmp_path / "mdhess"
    shutil.copytree(REPO / "mdhess", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "_potentials").mkdir()
    (pkg / "_potentials" / "only-here.toml").write_text(GOOD)
    code = "import mdhess; print(sorted(s.name for s in mdhess.list_potentials()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['only-here']"  # no top-level potentials/ next to this copy


@pytest.mark.slow
def test_wheel_ships_potentials(tmp_path):
    """The built wheel contains every potentials/*.toml as mdhess/_potentials/*.toml."""
    pytest.importorskip("hatchling")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (whl,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    for p in (REPO / "potentials").glob("*.toml"):
        assert f"mdhess/_potentials/{p.name}" in names
    assert "mdhess/_data/ka500.h5" in names  # mdhess demo's input, for non-editable installs
