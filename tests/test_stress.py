"""mdhess.stress: central finite differences of mdhess.energy under a homogeneous strain of cell
and positions, every registered potential on every periodic geometry; and peers (matscipy, ASE)."""

import numpy as np
import pytest
from conftest import POTENTIALS, species_for, structure

import mdhess
import mdhess.pair._prepare

PERIODIC = ["orthorhombic", "triclinic", "small_cell"]
ALL_CASES = [(n, g, two) for n in POTENTIALS for g in PERIODIC for two in (False, True)]
# Default run: every potential once, geometries and species counts rotated through (the full
# product runs with -m slow).
FAST = {(n, PERIODIC[k % 3], bool(k % 2)) for k, n in enumerate(POTENTIALS)}
CASES = [c if c in FAST else pytest.param(*c, marks=pytest.mark.slow) for c in ALL_CASES]

# Strain step and error model: E is smooth in the strain (no pair sits at a cutoff in these
# structures), so central differences have truncation h^2 |E'''| / 6 ~ 1e-12 |E| and rounding
# eps |E| / h ~ 1e-11 |E| (h = 1e-5). Relative to the stress scale sum_p |g_p| |d_p| / V
# (which is the size of each term before cancellation) 1e-7 leaves margin for stiff cores.
STRAIN_STEP = 1e-5
FD_TOL = 1e-7


def _cell(box):
    b = np.asarray(box, dtype=np.float64)
    return np.diag(np.broadcast_to(b, (3,))) if b.ndim <= 1 else b


def strain_fd(pot, R, box, s, h=STRAIN_STEP):
    """(1/V) dE/d eps_ab by central differences; r -> (I + eps) r for positions and cell rows."""
    cell = _cell(box)
    V = abs(np.linalg.det(cell))
    out = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            e = np.zeros((3, 3))
            e[a, b] = h
            Ep = mdhess.energy(pot, R @ (np.eye(3) + e).T, box=cell @ (np.eye(3) + e).T, species=s)
            Em = mdhess.energy(pot, R @ (np.eye(3) - e).T, box=cell @ (np.eye(3) - e).T, species=s)
            out[a, b] = (Ep - Em) / (2 * h) / V
    return out


def stress_scale(pot, R, box, s):
    """sum_p |g_p| |d_p| / V: the magnitude of the individual pair terms before they cancel."""
    cell = _cell(box)
    p = mdhess.pair._prepare.Prepared(pot, R, cell, s, "test")
    d = p.pairs.displacements(p.R)
    F = np.asarray(mdhess.forces(pot, R, box=box, species=s))  # only to make sure forces are finite
    assert np.all(np.isfinite(F))
    r = np.linalg.norm(d, axis=1)
    import jax

    pp = pot.pair_params(p.species[p.pairs.i], p.species[p.pairs.j])
    d1 = jax.vmap(jax.grad(pot.phi_eff))(r, pp)
    return float(np.sum(np.abs(np.asarray(d1)) * r) / abs(np.linalg.det(cell)))


@pytest.mark.parametrize("name,geometry,two", CASES)
def test_stress_matches_strain_finite_differences(name, geometry, two):
    R, box, rc = structure(geometry)
    if geometry == "small_cell":
        # the 2.2 cube puts every atom's own image at r = 2.2, exactly the B-B cutoff of
        # "per_pair_cutoff": central differences would straddle the kink of the shifted cut there.
        box = np.asarray(box) * 1.01
    pot = POTENTIALS[name](two, rc)
    s = species_for(len(R), two)
    S = mdhess.stress(pot, R, box=box, species=s)
    assert S.shape == (3, 3) and S.dtype == np.float64
    assert np.array_equal(S, S.T)
    scale = stress_scale(pot, R, box, s)
    assert scale > 0 and np.abs(S).max() > 1e-6 * scale, "a vanishing stress would make the check vacuous"
    assert np.abs(S - strain_fd(pot, R, box, s)).max() <= FD_TOL * scale


def test_stress_is_rotation_covariant(rng):
    R, box, rc = structure("triclinic")
    pot = POTENTIALS["lennard_jones"](True, rc)
    s = species_for(len(R), True)
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    S = mdhess.stress(pot, R, box=box, species=s)
    S_rot = mdhess.stress(pot, R @ Q.T, box=np.asarray(box) @ Q.T, species=s)
    assert np.abs(S_rot - Q @ S @ Q.T).max() <= 1e-12 * np.abs(S).max()


@pytest.mark.parametrize("geometry", PERIODIC)
def test_stress_matches_matscipy(geometry):
    # matscipy's LennardJonesCut is the same shifted hard cut; its virial is summed in another
    # order, so agreement is to rounding: 1e-11 of the largest entry.
    pytest.importorskip("matscipy")
    import ase
    import matscipy.calculators.pair_potential as pp

    R, box, rc = structure(geometry)
    cell = _cell(box)
    pot = mdhess.lennard_jones(sigma=1.0, epsilon=1.0, cutoff=rc)
    atoms = ase.Atoms("H" * len(R), positions=R, cell=cell, pbc=True)
    atoms.calc = pp.PairPotential({(1, 1): pp.LennardJonesCut(epsilon=1.0, sigma=1.0, cutoff=rc)})
    ref = atoms.get_stress(voigt=False)
    S = mdhess.stress(pot, R, box=box)
    assert np.abs(S - ref).max() <= 1e-11 * np.abs(ref).max()


def test_pressure_sign_follows_ase():
    # A compressed LJ crystal pushes outwards: energy falls on expansion, so the stress is
    # negative (compressive) and the pressure -trace/3 positive, as in ASE and LAMMPS.
    a = 1.3  # fcc lattice constant well below the LJ minimum (~1.55 sigma)
    base = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    g = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    R = ((g + base).reshape(-1, 3)) * a
    S = mdhess.stress(mdhess.lennard_jones(cutoff=1.9), R, box=3 * a)
    assert np.all(np.diag(S) < 0)
    assert np.allclose(S, np.diag(np.diag(S)), atol=1e-12 * np.abs(S).max())  # cubic symmetry


def test_stress_errors():
    R, box, rc = structure("orthorhombic")
    pot = mdhess.lennard_jones(cutoff=rc)
    with pytest.raises(mdhess.InputError, match="box=None"):
        mdhess.stress(pot, R, box=None)
    with pytest.raises(mdhess.InputError, match="positions"):
        mdhess.stress(pot, R[:, :2], box=box)
    enm = mdhess.elastic_network(R, cutoff=rc, box=box)
    with pytest.raises(mdhess.InputError, match="PairPotential"):
        mdhess.stress(enm, R, box=box)
    with pytest.raises(mdhess.InputError, match="box"):
        mdhess.stress(pot, R, box=[4.4, -1.0, 4.4])
