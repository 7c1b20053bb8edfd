"""mdhess.minimize (FIRE from jax-md, jitted; scipy L-BFGS) and `mdhess hessian|modes --quench`.

References: scipy's L-BFGS-B run here on ``mdhess.energy`` / ``mdhess.forces`` (the host path,
every periodic image; not the jitted custom-jvp energy the minimiser uses), and the forces
recomputed by ``mdhess.forces`` at the positions the minimiser or the CLI returns."""

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize
from scipy.spatial.distance import pdist

import mdhess
from mdhess.io import read_frame_quench, read_hessian, read_modes, write_minimal

sys.path.insert(0, str(Path(__file__).parent / "faults"))
from _cli_util import run_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIG = np.array([[1.0, 0.8], [0.8, 0.88]])
EPS = np.array([[1.0, 1.5], [1.5, 0.5]])


def max_force(pot, R, box=None, species=None):
    F = np.asarray(mdhess.forces(pot, R, box=box, species=species))
    return float(np.sqrt(np.max(np.sum(F * F, axis=1))))


def scipy_lbfgs(pot, R0, box=None, species=None, gtol=1e-9):
    """The reference minimiser: scipy L-BFGS-B on the host-path energy and forces."""

    def fun(x):
        R = x.reshape(-1, 3)
        return float(mdhess.energy(pot, R, box=box, species=species)), -np.asarray(
            mdhess.forces(pot, R, box=box, species=species)
        ).ravel()

    res = scipy.optimize.minimize(fun, R0.ravel(), jac=True, method="L-BFGS-B",
                                  options={"gtol": gtol, "ftol": 0.0, "maxiter": 20000, "maxcor": 20})  # fmt: skip
    return res.x.reshape(-1, 3), res.fun


def icosahedron(scale=1.1):
    p = (1 + 5**0.5) / 2
    v = np.array([[0, 1, p], [0, -1, p], [0, 1, -p], [0, -1, -p], [1, p, 0], [-1, p, 0],
                  [1, -p, 0], [-1, -p, 0], [p, 0, 1], [-p, 0, 1], [p, 0, -1], [-p, 0, -1]], float)  # fmt: skip
    v = v / np.linalg.norm(v[0]) * scale
    return np.vstack([np.zeros(3), v])


def small_glass(cell_kind="orthorhombic", seed=0, rattle=0.06):
    """108 atoms of a binary LJ (KA parameters, cutoff 2.0 sigma, C2 switch from 1.6 sigma) on a
    rattled fcc lattice at density 1.0, 20 % B: (potential, positions, cell, species)."""
    rng = np.random.default_rng(seed)
    a = (4 / 1.0) ** (1 / 3)
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    g = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    frac = ((g + basis[None]).reshape(-1, 3) + 0.25) / 3.0
    L = 3 * a
    cell = np.eye(3) * L
    if cell_kind == "triclinic":
        cell[1, 0] = 0.12 * L  # perpendicular widths stay above 2 x cutoff
    R = frac @ cell + rattle * rng.standard_normal(frac.shape)
    R -= np.floor(R @ np.linalg.inv(cell)) @ cell  # wrapped into the cell
    species = (rng.random(len(R)) < 0.2).astype(np.int32)
    pot = mdhess.lennard_jones(sigma=SIG, epsilon=EPS, cutoff=2.0 * SIG, switch=1.6 * SIG)
    return pot, R, cell, species


# -- the library -------------------------------------------------------------------------------------
def test_minimize_cluster_matches_scipy_lbfgs():
    """LJ13 rattled off the icosahedron: FIRE to 1e-10 and scipy L-BFGS reach the same minimum."""
    pot = mdhess.lennard_jones(cutoff=2.5, switch=2.0)
    R0 = icosahedron() + 0.05 * np.random.default_rng(1).standard_normal((13, 3))
    res = mdhess.minimize(pot, R0, fmax=1e-10)
    assert res.converged and res.method == "fire"
    assert max_force(pot, res.positions) <= 1e-10  # recomputed on the host path
    R_ref, E_ref = scipy_lbfgs(pot, R0)
    # same basin: the energy to ~1e-12 relative (L-BFGS stops at |F| ~ 1e-9: energy error ~ F^2 / k)
    assert res.energy == pytest.approx(E_ref, rel=1e-11, abs=0)

    # the same structure (up to a rigid motion): sorted interatomic distances
    np.testing.assert_allclose(np.sort(pdist(res.positions)), np.sort(pdist(R_ref)), atol=1e-6)
    # mdhess's own L-BFGS: to what an energy line search reaches (docs/quench.md)
    lb = mdhess.minimize(pot, R0, method="lbfgs", fmax=1e-6)
    assert lb.converged and lb.energy == pytest.approx(E_ref, rel=1e-11, abs=0)


@pytest.mark.slow  # importing jax-md costs ~10 s of CPU
def test_fire_step_is_jax_mds_fire_descent(monkeypatch):
    """Our FIRE loop body against jax_md.minimize.fire_descent, step by step (100 steps).

    jax-md casts its parameters to the smallest float type that holds them (float16 for 0.1):
    patched to float64 here so that both run the same numbers. The remaining difference is
    jax-md's 1e-6 under |F|^2 in the mixing step: relative 1e-6 / |F|^2, 1e-9 at the start
    (|F| ~ 30), growing as the forces fall: positions agree to 1e-7 over 100 steps."""
    import jax
    import jax.numpy as jnp

    from mdhess.pair._minimize import FireParams, fire_step

    with jax.numpy_dtype_promotion("standard"):
        import jax_md

        monkeypatch.setattr(jax_md.util, "static_cast", lambda *xs: tuple(jnp.asarray(x, jnp.float64) for x in xs))
        pot = mdhess.lennard_jones(cutoff=2.5, switch=2.0)
        R0 = jnp.asarray(icosahedron(0.98) + 0.05 * np.random.default_rng(2).standard_normal((13, 3)))
        F_of = jax.jit(mdhess.forces_fn(pot))
        p = FireParams(dt_start=0.002, dt_max=0.01)
        init, apply = jax_md.minimize.fire_descent(F_of, lambda x, dx, **kw: x + dx, **vars(p))
        ref = init(R0)
        ours = (R0, jnp.zeros_like(R0), F_of(R0), jnp.asarray(p.dt_start), jnp.asarray(p.alpha_start), jnp.asarray(0))
        step = jax.jit(lambda st: fire_step(F_of, p, st))
        apply = jax.jit(apply)
        assert float(jnp.linalg.norm(ours[2])) > 20
        for _ in range(100):
            ref, ours = apply(ref), step(ours)
            np.testing.assert_allclose(ours[0], ref.position, rtol=0, atol=1e-7)
            np.testing.assert_allclose(ours[3], ref.dt, rtol=1e-12)
            assert int(ours[5]) == int(ref.n_pos)


@pytest.mark.slow  # the host-path scipy reference: ~20 s on a quiet 2-core machine
@pytest.mark.parametrize("cell_kind", ["orthorhombic", "triclinic"])
def test_minimize_periodic_glass_matches_scipy_lbfgs(cell_kind):
    pot, R0, cell, s = small_glass(cell_kind)
    # the reference first (to 1e-6), then FIRE from the same start: one basin, same minimum
    R_ref, E_ref = scipy_lbfgs(pot, R0, cell, s, gtol=1e-6)
    res = mdhess.minimize(pot, R0, box=cell, species=s, fmax=1e-10)
    assert res.converged and res.max_force <= 1e-10
    frac = res.positions @ np.linalg.inv(cell)  # the input was inside the cell: so is the output
    assert np.all((frac >= -1e-12) & (frac < 1 + 1e-12))  # rounding of positions @ inv(cell)
    assert max_force(pot, res.positions, cell, s) <= 1e-10
    if abs(res.energy - E_ref) > 1e-8 * abs(E_ref):  # another local minimum: FIRE from the reference's
        res = mdhess.minimize(pot, R_ref, box=cell, species=s, fmax=1e-10)
    assert res.energy == pytest.approx(E_ref, rel=1e-10, abs=0)  # |F| 1e-6: energy error ~|F|^2/k ~1e-12
    # positions: the same up to a common translation
    d = res.positions - R_ref
    d -= np.round((d - d[0]) @ np.linalg.inv(cell)) @ cell  # same image as atom 0's displacement
    np.testing.assert_allclose(d - d.mean(axis=0), 0, atol=1e-5)


@pytest.mark.slow  # three quenches of 108 atoms
def test_minimize_keeps_images():
    pot, R0, cell, s = small_glass(rattle=0.02)
    R1 = R0.copy()
    R1[0] += cell[0]  # one atom an image away: the input is not wrapped, nor is the output
    res = mdhess.minimize(pot, R1, box=cell, species=s, fmax=1e-8)
    res0 = mdhess.minimize(pot, R0, box=cell, species=s, fmax=1e-8)  # wrapped input: wrapped output
    # the same minimum (modulo the cell); the unwrapped input's atom 0 stays outside the cell,
    # the wrapped input's atoms all inside it
    d = res.positions - res0.positions
    np.testing.assert_allclose(d - np.round(d @ np.linalg.inv(cell)) @ cell, 0, atol=1e-6)
    assert (res.positions[0] @ np.linalg.inv(cell))[0] >= 1
    frac0 = res0.positions @ np.linalg.inv(cell)
    assert np.all((frac0 >= -1e-12) & (frac0 < 1 + 1e-12))


def test_minimize_checks_arguments():
    pot, R0, cell, s = small_glass(rattle=0.02)
    with pytest.raises(mdhess.InputError, match=r"minimize\(method=\.\.\.\).*'newton'"):
        mdhess.minimize(pot, R0, box=cell, species=s, method="newton")
    for bad in (0.0, -1.0, float("nan"), True, "1e-6"):
        with pytest.raises(mdhess.InputError, match=r"minimize\(fmax=\.\.\.\)"):
            mdhess.minimize(pot, R0, box=cell, species=s, fmax=bad)
    with pytest.raises(mdhess.InputError, match=r"minimize\(maxiter=\.\.\.\)"):
        mdhess.minimize(pot, R0, box=cell, species=s, maxiter=0)
    with pytest.raises(mdhess.InputError, match="species"):
        mdhess.minimize(pot, R0, box=cell, species=s[:-1])
    with pytest.warns(RuntimeWarning, match="did not converge: max force"):
        r = mdhess.minimize(pot, R0, box=cell, species=s, fmax=1e-10, maxiter=3)
    assert not r.converged and r.iterations == 3 and r.max_force > 1e-10


# -- the command line --------------------------------------------------------------------------------
KA_C2_TOML = """name = "ka-small-c2"
description = "KA parameters, cutoff 2.0 sigma, C2 switch from 1.6 sigma (test)"
kernel = "lennard_jones"
units = "lj"
reference = "W. Kob and H. C. Andersen, Phys. Rev. E 51, 4626 (1995)"
species = ["A", "B"]
masses = [1.0, 1.0]
[parameters]
sigma = { A-A = 1.0, A-B = 0.8, B-B = 0.88 }
epsilon = { A-A = 1.0, A-B = 1.5, B-B = 0.5 }
[cutoff]
radius = 2.0
scale_by = "sigma"
treatment = "switch"
switch_on = 1.6
"""


@pytest.fixture(scope="module")
def quench_input(tmp_path_factory):
    d = tmp_path_factory.mktemp("quench")
    pot, R0, cell, s = small_glass()
    frames = np.stack([small_glass(seed=k)[1] for k in range(2)])
    write_minimal(d / "traj.h5", frames, box=cell, species=s)
    (d / "pot.toml").write_text(KA_C2_TOML)
    return d, pot, cell, s


def test_cli_quench_hessian_and_modes(quench_input, capsys):
    d, pot, cell, s = quench_input
    fmax = 1e-9
    code, _, err = run_main(["hessian", d / "traj.h5", "-p", d / "pot.toml", "--quench", "--fmax", fmax,
                             "-o", d / "h.h5", "-q"], capsys)  # fmt: skip
    assert code == 0, err
    for k in range(2):
        q = read_frame_quench(d / "h.h5", k)
        assert q["converged"] and q["max_force"] <= fmax and q["method"] == "fire" and q["fmax"] == fmax
        with mdhess.io.ResultFile(d / "h.h5") as r:
            R = r.array(r.group(k), "positions")
        assert max_force(pot, R, cell, s) <= fmax * (1 + 1e-6)  # the stored positions are the minimum
        np.testing.assert_allclose(read_hessian(d / "h.h5", k), mdhess.hessian(pot, R, box=cell, species=s), atol=1e-12)
    # modes straight from the trajectory (one frame), and from the quenched Hessian file (record carried)
    code, _, err = run_main(["modes", d / "traj.h5", "-p", d / "pot.toml", "--quench", "--fmax", fmax, "--frames", "1",
                             "-k", "12", "-o", d / "m.h5", "-q"], capsys)  # fmt: skip
    assert code == 0, err
    nm = read_modes(d / "m.h5", 0)
    assert nm.info["quench"]["max_force"] <= fmax
    assert nm.n_imaginary == 0  # a minimum: no imaginary modes beyond the zero-mode tolerance
    code, _, err = run_main(["modes", d / "h.h5", "-k", "12", "-o", d / "m2.h5", "--frames", "1", "-q"], capsys)
    assert code == 0, err
    assert read_frame_quench(d / "m2.h5", 0) == read_frame_quench(d / "h.h5", 1)
    np.testing.assert_allclose(read_modes(d / "m2.h5", 0).eigenvalues, nm.eigenvalues, rtol=1e-8, atol=1e-10)
    # no quench on Hessian input; a bad --fmax
    code, _, err = run_main(["modes", d / "h.h5", "--quench", "-o", d / "m3.h5"], capsys)
    assert code == 2 and "--quench needs a trajectory input" in err
    code, _, err = run_main(["hessian", d / "traj.h5", "-p", d / "pot.toml", "--quench", "--fmax", "-1", "-o", d / "x.h5"],
                            capsys)  # fmt: skip
    assert code == 2 and "--fmax must be a finite number > 0" in err


def test_files_without_quench_read_as_none(quench_input, capsys):
    d, *_ = quench_input
    code, _, err = run_main(["hessian", d / "traj.h5", "-p", d / "pot.toml", "--frames", "0", "-o", d / "plain.h5", "-q"],
                            capsys)  # fmt: skip
    assert code == 0, err
    assert read_frame_quench(d / "plain.h5", 0) is None


@pytest.mark.slow
def test_quenched_bundled_glass_has_no_imaginary_modes(tmp_path, capsys):
    """data/ka500.h5 frame 0 through `mdhess modes --quench` with the C2-switched KA potential."""
    toml = KA_C2_TOML.replace("radius = 2.0", "radius = 2.5").replace("switch_on = 1.6", "switch_on = 2.0")
    (tmp_path / "ka.toml").write_text(toml)
    code, _, err = run_main(["modes", REPO / "data" / "ka500.h5", "-p", tmp_path / "ka.toml", "--quench", "--frames", "0:2",
                             "-k", "20", "-o", tmp_path / "m.h5", "-q"], capsys)  # fmt: skip
    assert code == 0, err
    for k in range(2):
        nm = read_modes(tmp_path / "m.h5", k)
        assert nm.info["quench"]["converged"] and nm.info["quench"]["max_force"] <= 1e-10
        assert nm.n_imaginary == 0 and nm.n_zero == 3  # three translations, nothing soft below zero
        assert nm.eigenvalues[3] > 1e-3


@pytest.mark.slow
def test_lbfgs_stalls_where_fire_converges():
    """docs/quench.md: L-BFGS's energy line search stalls far above 1e-10 (energy rounding)."""
    with mdhess.read_trajectory(REPO / "data" / "ka500.h5") as t:
        fr = t[0]
    pot = mdhess.lennard_jones(sigma=SIG, epsilon=EPS, cutoff=2.5 * SIG, switch=2.0 * SIG)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lb = mdhess.minimize(pot, fr.positions, box=fr.box, species=fr.species, method="lbfgs", fmax=1e-10)
    fire = mdhess.minimize(pot, fr.positions, box=fr.box, species=fr.species, fmax=1e-10)
    assert fire.converged and not lb.converged and lb.max_force > 1e-8
    assert fire.energy == pytest.approx(lb.energy, rel=1e-10)
