"""mdhess.elastic_constants: Born term, mixed derivatives Xi and stress against jax autodiff of an
independent strained energy; the LJ fcc reference values; zero non-affine part for a Bravais
crystal; a Kob-Andersen glass against matscipy's get_elastic_constants; finite strain of a relaxed
glass (strain, re-minimise, stress difference); rattlers; jammed soft spheres against jax-md's
athermal_moduli; bad input."""

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.optimize

import mdhess
from mdhess import NotAtEquilibriumWarning
from mdhess.modes._elasticity import VOIGT

FCC = np.array([[0.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])
KA_SIG = np.array([[1.0, 0.8], [0.8, 0.88]])
KA_EPS = np.array([[1.0, 1.5], [1.5, 0.5]])


def strain_matrix(e):
    """Symmetric strain tensor from Voigt components with engineering shears (eps_yz = e_4 / 2)."""
    m = [[e[0], e[5] / 2, e[4] / 2], [e[5] / 2, e[1], e[3] / 2], [e[4] / 2, e[3] / 2, e[2]]]
    return jnp.array(m) if isinstance(e, jax.Array) else np.array(m)


def stress_voigt(s):
    return np.array([s[a, b] for a, b in VOIGT])


# -- an independent strained energy: brute-force images, jax autodiff ------------------------------
def image_pairs(R, cell, rc):
    """(i, j, S) of every atom-image pair with r < rc, by brute force over image shifts."""
    h = np.abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    n = np.ceil(rc / h).astype(int) + 1  # + 1: positions span up to one cell
    out = []
    for S in itertools.product(*(range(-k, k + 1) for k in n)):
        d = R[None, :, :] - R[:, None, :] + np.array(S) @ cell
        r = np.linalg.norm(d, axis=-1)
        i, j = np.nonzero((r < rc) & (r > 1e-9))
        keep = (i < j) | ((i == j) & (tuple(S) > (0, 0, 0)))
        # each unordered (i, j, S) once: i < j with every S, or i == j with S > 0 (S and -S are the same pair)
        out += [(a, b, S) for a, b in zip(i[keep], j[keep])]
    i, j, S = zip(*out)
    return np.array(i), np.array(j), np.array(S, dtype=np.float64)


def strained_energy(pot, R, cell, species, rc):
    """E(U, e): positions R + U and cell carried by F = I + eta - eta^2 / 2 (F^T F = I + 2 eta to
    second order, so first and second derivatives at e = 0 are those of the Lagrangian strain)."""
    i, j, S = image_pairs(R, cell, rc)
    pp = pot.pair_params(species[i], species[j])
    d0 = jnp.asarray(R[j] - R[i] + S @ cell)

    def E(U, e):
        eta = strain_matrix(e)
        F = jnp.eye(3) + eta - eta @ eta / 2
        d = (d0 + U[j] - U[i]) @ F.T
        r = jnp.sqrt(jnp.sum(d * d, axis=1))
        return jnp.sum(jax.vmap(pot.phi_eff)(r, pp))

    return E


def test_born_xi_stress_and_nonaffine_equal_autodiff_triclinic():
    """Exact derivatives at a rattled (non-equilibrium) triclinic two-species structure: Born term,
    stress, and the non-affine parts (through Xi and H, both from jax.hessian) agree with autodiff to
    rounding (1e-10 relative: sums of ~1e3 pair terms in another order)."""
    rng = np.random.default_rng(3)
    cell = np.array([[3.6, 0.0, 0.0], [0.7, 3.5, 0.0], [-0.4, 0.5, 3.7]])
    frac = (np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) / 3
    R = frac @ cell + rng.uniform(-0.05, 0.05, (27, 3))
    species = (np.arange(27) % 4 == 0).astype(np.int32)
    rc = 2.0
    pot = mdhess.lennard_jones(sigma=KA_SIG, epsilon=KA_EPS, cutoff=rc)
    with pytest.warns(NotAtEquilibriumWarning, match="max \\|force\\| = "):
        res = mdhess.elastic_constants(pot, R, cell, species=species, solver="direct")
    E = strained_energy(pot, R, cell, species, rc)
    Ez = lambda z: E(z[:81].reshape(27, 3), z[81:])  # noqa: E731
    z0 = jnp.zeros(87)
    V = abs(np.linalg.det(cell))
    full = np.asarray(jax.jit(jax.hessian(Ez))(z0))  # (87, 87): positions, then the 6 strains
    born, Xi, H = full[81:, 81:] / V, full[:81, 81:], full[:81, :81]
    sig = np.asarray(jax.jit(jax.grad(Ez))(z0))[81:] / V
    scale = np.abs(born).max()
    assert np.abs(res.born - born).max() <= 1e-10 * scale
    assert np.abs(stress_voigt(res.stress) - sig).max() <= 1e-10 * scale
    # H^+ Xi with the translations projected (H's only null space here)
    X = np.linalg.pinv(H, rcond=1e-10) @ Xi
    na = -(Xi.T @ X) / V
    assert np.abs(res.nonaffine - na).max() <= 1e-9 * scale
    assert np.abs(res.displacements.reshape(6, 81).T + X).max() <= 1e-9 * np.abs(X).max()
    assert res.n_zero_modes == 3 and res.rattlers.size == 0
    assert np.allclose(res.C, res.born + res.stress_term + res.nonaffine, rtol=0, atol=1e-12 * scale)


# -- LJ fcc ---------------------------------------------------------------------------------------
def relaxed_fcc(rc):
    """Lattice constant of the truncated-shifted LJ fcc crystal at zero pressure (mdhess.stress)."""
    pot = mdhess.lennard_jones(cutoff=rc)
    P = lambda a: np.trace(mdhess.stress(pot, FCC * a, box=a))  # noqa: E731
    return pot, scipy.optimize.brentq(P, 1.50, 1.60, xtol=1e-14, rtol=1e-15)


# (rc, a0, C11, C12 = C44): the values of issue 16, reproduced here to the digits given
FCC_REFERENCE = [(2.5, 1.549603, 97.712, 55.627), pytest.param(3.0, 1.546379, 101.053, 57.277, marks=pytest.mark.slow)]


@pytest.mark.parametrize("rc, a0_ref, c11_ref, c12_ref", FCC_REFERENCE)
def test_lj_fcc_reference_values_and_zero_nonaffine(rc, a0_ref, c11_ref, c12_ref):
    pot, a0 = relaxed_fcc(rc)
    assert abs(a0 - a0_ref) < 1e-6  # the reference's 7 significant digits
    res = mdhess.elastic_constants(pot, FCC * a0, a0)
    C = res.C
    assert abs(C[0, 0] - c11_ref) < 1e-3 and abs(C[0, 1] - c12_ref) < 1e-3 and abs(C[3, 3] - c12_ref) < 1e-3
    # cubic symmetry; Cauchy relation C12 = C44 (central forces, centrosymmetric sites, zero stress)
    assert abs(C[0, 1] - C[3, 3]) < 1e-9 * C[0, 0]
    assert np.allclose(np.diag(C)[:3], C[0, 0], rtol=1e-12) and np.allclose(C[3:, :3], 0, atol=1e-10)
    # a Bravais crystal does not relax: every atom is a centre of inversion, Xi = 0
    assert np.abs(res.nonaffine).max() < 1e-12 * C[0, 0] and np.abs(res.displacements).max() < 1e-12
    # the primitive cell (one atom, its own images only) gives the same tensor
    prim = mdhess.elastic_constants(pot, np.zeros((1, 3)), a0 * np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]))
    assert np.abs(prim.C - C).max() < 1e-10 * C[0, 0]
    # independent check: second differences of mdhess.energy under strain of the cubic cell (no
    # relaxation in a Bravais lattice; zero stress, so born == C). Step 1e-4: truncation
    # h^2 E'''' / 12 ~ 1e-8 C, rounding eps |E| / h^2 ~ 1e-7 -> 1e-4 absolute
    h, V = 1e-4, a0**3
    E = lambda e: mdhess.energy(pot, FCC * a0 @ (np.eye(3) + strain_matrix(e)).T, box=a0 * (np.eye(3) + strain_matrix(e)))  # noqa: E731
    for I, J in [(0, 0), (0, 1), (3, 3)]:
        eI, eJ = np.eye(6)[I] * h, np.eye(6)[J] * h
        d2 = (E(eI + eJ) - E(eI - eJ) - E(-eI + eJ) + E(-eI - eJ)) / (4 * h * h) / V
        assert abs(d2 - res.born[I, J]) < 1e-3, (I, J, d2, res.born[I, J])


# -- a small Kob-Andersen glass --------------------------------------------------------------------
def newton_relax(pot, R, box, species, steps=8, ftol=1e-11):
    """Newton steps with mdhess's forces and Hessian, scipy.linalg.solve on H + T T^T (T the
    translations: the forces sum to zero, so this is the Newton step)."""
    n = R.shape[0]
    T = np.kron(np.ones((n, 1)), np.eye(3)) / np.sqrt(n)
    for _ in range(steps):
        F = np.asarray(mdhess.forces(pot, R, box=box, species=species)).ravel()
        if np.abs(F).max() < ftol:
            break
        H = np.asarray(mdhess.hessian(pot, R, box=box, species=species))
        R = R + scipy.linalg.solve(H + T @ T.T, F, assume_a="sym").reshape(n, 3)
    return R, float(np.abs(np.asarray(mdhess.forces(pot, R, box=box, species=species))).max())


def ka_energy(L, species, soft=False):
    """Jitted all-pairs minimum-image KA energy (or its harmonic soft-sphere stand-in, contact at
    0.9 sigma_ab) written out here, for the thousands of cheap quench steps; the minimum is then
    polished with mdhess's own forces and Hessian (``newton_relax``)."""
    sig, eps = jnp.asarray(KA_SIG)[species[:, None], species[None, :]], jnp.asarray(KA_EPS)[species[:, None], species[None, :]]
    n = species.size

    def energy(x):
        R = x.reshape(n, 3)
        d = R[:, None, :] - R[None, :, :]
        d = d - L * jnp.round(d / L)
        r2 = jnp.sum(d * d, -1) + jnp.eye(n)
        if soft:
            r = jnp.sqrt(r2)
            phi = 0.5 * jnp.where(r < 0.9 * sig, (1 - r / (0.9 * sig)) ** 2, 0.0)
        else:
            x6 = (sig * sig / r2) ** 3
            phi = jnp.where(r2 < (2.5 * sig) ** 2, 4 * eps * (x6 * x6 - x6 - (2.5**-12 - 2.5**-6)), 0.0)
        return 0.5 * jnp.sum(jnp.where(jnp.eye(n, dtype=bool), 0.0, phi))

    vg = jax.jit(jax.value_and_grad(energy))
    return lambda x: tuple(np.asarray(v, dtype=np.float64) for v in vg(jnp.asarray(x)))


@pytest.fixture(scope="module")
def glass():
    """A 160-atom KA glass at density 1.2: random start, scipy L-BFGS (soft spheres, then KA), and
    Newton steps with mdhess's forces and Hessian to max |force| < 1e-10."""
    n_a, n_b = 128, 32
    n = n_a + n_b
    L = (n / 1.2) ** (1 / 3)  # 5.1 > 2 x 2.5: the minimum image suffices for the quench
    species = np.array([0] * n_a + [1] * n_b, dtype=np.int32)
    x = np.random.default_rng(11).uniform(0, L, 3 * n)
    for soft, gtol in ((True, 1e-4), (False, 1e-8)):
        opts = {"maxiter": 20000, "gtol": gtol, "ftol": 0}
        x = scipy.optimize.minimize(ka_energy(L, species, soft), x, jac=True, method="L-BFGS-B", options=opts).x
    ka = mdhess.load_potential("kob-andersen")
    R, fmax = newton_relax(ka, x.reshape(n, 3) % L, L, species)
    assert fmax < 1e-10
    return ka, R, np.full(3, L), species


@pytest.fixture(scope="module")
def glass_result(glass):
    ka, R, box, s = glass
    return mdhess.elastic_constants(ka, R, box, species=s, solver="direct")


@pytest.mark.slow  # peer comparison, ~15 s; the autodiff check of Born, Xi and the non-affine term stays in the default run
def test_glass_equals_matscipy_nonaffine_route(glass, glass_result):
    """matscipy's get_elastic_constants (Born + stress + non-affine by its CG on its own Hessian).
    Its CG stops at rtol 1e-9 (tighter does not converge unpreconditioned); the error of C from a
    residual r is ~ |x| |r| -> 1e-9 x |C| (C ~ 100): 1e-6 absolute."""
    import ase
    from matscipy.calculators.pair_potential import LennardJonesCut, PairPotential
    from matscipy.elasticity import full_3x3x3x3_to_Voigt_6x6

    ka, R, box, s = glass
    calc = PairPotential({(a + 1, b + 1): LennardJonesCut(KA_EPS[a, b], KA_SIG[a, b], 2.5 * KA_SIG[a, b]) for a, b in [(0, 0), (0, 1), (1, 1)]})
    atoms = ase.Atoms(numbers=s + 1, positions=R, cell=np.diag(box), pbc=True)
    atoms.calc = calc
    cg = {"x0": None, "rtol": 1e-9, "maxiter": None, "M": None, "callback": None, "atol": 0.0}
    C_ms = full_3x3x3x3_to_Voigt_6x6(calc.get_elastic_constants(atoms, cg_parameters=cg), check_symmetry=False)
    born_ms = full_3x3x3x3_to_Voigt_6x6(calc.get_born_elastic_constants(atoms), check_symmetry=False)
    res = glass_result
    scale = np.abs(res.C).max()
    # matscipy's Born term carries -sigma_bn delta_am (its Green-Lagrange conversion): the same Born term
    assert np.abs(born_ms - res.born).max() < 1e-12 * np.abs(res.born).max()
    assert np.abs(C_ms - res.C).max() < 1e-8 * scale
    assert np.abs(res.nonaffine).max() > 0.05 * scale  # a glass relaxes: the test is not trivial


def test_glass_cg_equals_direct_and_fields(glass, glass_result):
    ka, R, box, s = glass
    cg = mdhess.elastic_constants(ka, R, box, species=s, solver="cg", tol=1e-12)
    d = glass_result
    assert cg.solver == "cg" and cg.iterations > 0 and cg.residual < 1e-11 and d.residual < 1e-11
    # error of C ~ |x| |r| with relative residual 1e-12
    assert np.abs(cg.C - d.C).max() < 1e-9 * np.abs(d.C).max()
    assert np.abs(cg.displacements - d.displacements).max() < 1e-8 * np.abs(d.displacements).max()
    assert np.abs(d.displacements.sum(axis=1)).max() < 1e-10  # translations projected out
    assert d.n_zero_modes == 3 and d.rattlers.size == 0 and d.max_force < 1e-10
    (Kv, Gv), (Kr, Gr), (Kh, Gh) = (d.moduli(a) for a in ("voigt", "reuss", "hill"))
    assert Kv >= Kh >= Kr > 0 and Gv >= Gh >= Gr > 0 and (Kh, Gh) == (d.bulk_modulus, d.shear_modulus)
    affine = mdhess.elastic_constants(ka, R, box, species=s, relax=False)
    assert affine.displacements is None and np.array_equal(affine.C, d.born + d.stress_term)
    # relaxation softens: C_affine - C_relaxed = Xi^T H^+ Xi / V is positive semidefinite
    assert np.linalg.eigvalsh(-d.nonaffine).min() > -1e-10 * np.abs(d.C).max()


def relaxed_stress(pot, R, box, species, e):
    """Cauchy stress after the strain F = I + eps(e) of positions and cell and re-minimisation."""
    F = np.eye(3) + strain_matrix(e)
    cell = np.diag(box) @ F.T
    Rs, fmax = newton_relax(pot, R @ F.T, cell, species)
    assert fmax < 1e-10
    return mdhess.stress(pot, Rs, box=cell, species=species)


@pytest.mark.parametrize("I", [0] + [pytest.param(k, marks=pytest.mark.slow) for k in range(1, 6)])
def test_glass_finite_strain_stress_difference(glass, glass_result, I):
    """Column I of C against (sigma(+h) - sigma(-h)) / 2h of the re-minimised strained glass. Error
    model: the difference of the estimates at h and 2h bounds the truncation (h^2 term, x 4/3);
    rounding: stress to ~1e-13 over 2h."""
    ka, R, box, s = glass
    h = 1e-5
    D = {}
    for step in (h, 2 * h):
        e = np.eye(6)[I] * step
        D[step] = stress_voigt(relaxed_stress(ka, R, box, s, e) - relaxed_stress(ka, R, box, s, -e)) / (2 * step)
    trunc = np.abs(D[2 * h] - D[h]).max() * 4 / 3
    err = np.abs(D[h] - glass_result.C[:, I]).max()
    assert err <= 3 * trunc + 1e-6, (err, trunc)
    assert err < 1e-3 * np.abs(glass_result.C).max()


# -- rattlers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["cg", pytest.param("direct", marks=pytest.mark.slow)])
def test_rattler_projected_and_counted(glass, glass_result, solver):
    """An extra atom of a species that interacts with nothing (cutoff 0.05) is a rattler: its three
    zero modes are projected out and counted, and the constants are those of the glass alone."""
    ka, R, box, s = glass
    sig = np.array([[1.0, 0.8, 0.05], [0.8, 0.88, 0.05], [0.05, 0.05, 0.05]])
    eps = np.array([[1.0, 1.5, 1.0], [1.5, 0.5, 1.0], [1.0, 1.0, 1.0]])
    pot = mdhess.lennard_jones(sigma=sig, epsilon=eps, cutoff=2.5 * sig)
    # a point at least 0.2 from every atom (periodic distances)
    grid = np.stack(np.meshgrid(*[np.linspace(0, box[0], 12, endpoint=False)] * 3, indexing="ij"), -1).reshape(-1, 3)
    dist = np.linalg.norm((grid[:, None] - R[None] + box / 2) % box - box / 2, axis=-1).min(axis=1)
    extra = grid[np.argmax(dist)]
    assert dist.max() > 0.2
    R2, s2 = np.vstack([R, extra]), np.append(s, 2).astype(np.int32)
    res = mdhess.elastic_constants(pot, R2, box, species=s2, solver=solver)
    assert res.rattlers.tolist() == [R.shape[0]] and res.n_zero_modes == 6
    assert np.abs(res.C - glass_result.C).max() < 1e-8 * np.abs(res.C).max()
    assert np.abs(res.displacements[:, -1]).max() == 0.0


# -- bad input ------------------------------------------------------------------------------------
def test_bad_input():
    pot = mdhess.lennard_jones(cutoff=2.5)
    R, a = FCC * 1.55, 1.55
    with pytest.raises(mdhess.InputError, match=r"box=None.*periodic"):
        mdhess.elastic_constants(pot, R, None)
    with pytest.raises(mdhess.InputError, match=r"relax=.*got 'yes'"):
        mdhess.elastic_constants(pot, R, a, relax="yes")
    with pytest.raises(mdhess.InputError, match=r"solver=.*got 'qr'"):
        mdhess.elastic_constants(pot, R, a, solver="qr")
    for tol in (0, 1.5, "1e-8", True, float("nan")):
        with pytest.raises(mdhess.InputError, match=r"tol=.*must be a number in \(0, 1\)"):
            mdhess.elastic_constants(pot, R, a, tol=tol)
    with pytest.raises(mdhess.InputError, match=r"positions=.*shape"):
        mdhess.elastic_constants(pot, R[:, :2], a)
    net = mdhess.elastic_network(R, cutoff=1.5, box=a)
    with pytest.raises(mdhess.InputError, match="PairPotential.*ElasticNetwork"):
        mdhess.elastic_constants(net, R, a)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = mdhess.elastic_constants(pot, FCC * 1.55, 1.55)  # a compressed crystal at equilibrium: no warning
    with pytest.raises(mdhess.InputError, match="average"):
        res.moduli("mean")
    R_off = R.copy()
    R_off[0] += 0.01
    with pytest.warns(NotAtEquilibriumWarning, match=r"not at mechanical equilibrium: max \|force\| = [0-9.]+"):
        mdhess.elastic_constants(pot, R_off, a)


# -- the command line ---------------------------------------------------------------------------
def test_cli_elastic_equals_library_and_info(tmp_path, capsys):
    from pathlib import Path

    from mdhess import io
    from mdhess.cli import main

    def run(args):
        with pytest.raises(SystemExit) as info:
            main([str(a) for a in args])
        out = capsys.readouterr()
        return info.value.code, out.out, out.err

    data = Path(__file__).resolve().parents[1] / "data" / "ka500.h5"
    out = tmp_path / "e.h5"
    code, _, err = run(["elastic", data, "-p", "kob-andersen", "--frames", "0:2", "--displacements", "-o", out])
    assert code == 0, err
    ka = mdhess.load_potential("kob-andersen")
    with mdhess.read_trajectory(data) as t, io.ResultFile(out, "elastic") as r:
        assert r.frame_index.tolist() == [0, 1] and r.kind == "elastic"
        for slot in range(2):
            fr = t[slot]
            ref = mdhess.elastic_constants(ka, fr.positions, fr.box, species=fr.species)
            got = io.read_elastic(out, slot)
            for name in ("C", "born", "stress_term", "nonaffine", "stress", "displacements"):
                assert np.array_equal(getattr(got, name), getattr(ref, name)), name
            assert got.n_zero_modes == 3 and got.solver == ref.solver
    code, text, _ = run(["info", out])
    assert code == 0 and "mdhess elastic file" in text and "bulk (Hill)" in text
    code, _, err = run(["elastic", data, "-p", "kob-andersen", "--frames", "0:2", "--displacements", "-o", out, "--resume"])
    assert code == 0 and "already complete" in err
    # bad input: one line, exit code 2, nothing written
    code, _, err = run(["elastic", data, "-p", "kob-andersen", "--frames", "0", "-o", tmp_path / "x.h5", "--solver", "qr"])
    assert code == 2 and "--solver" in err and not (tmp_path / "x.h5").exists()
    code, _, err = run(["elastic", data, "-p", "kob-andersen", "--frames", "0", "-o", out])
    assert code == 2 and "exists" in err
    free = tmp_path / "free.h5"
    io.write_minimal(free, np.random.default_rng(0).uniform(0, 5, (1, 20, 3)))
    code, _, err = run(["elastic", free, "-p", "argon", "-o", tmp_path / "y.h5"])
    assert code == 2 and "periodic" in err and len(err.strip().splitlines()) == 1


# -- jammed soft spheres vs jax-md -----------------------------------------------------------------
@pytest.mark.slow
def test_jammed_soft_spheres_equal_jax_md_athermal_moduli():
    """64 bidisperse harmonic spheres (diameters 1 and 1.4) at packing fraction 0.70, minimised
    (scipy L-BFGS, then Newton with a pseudo-inverse for rattlers); jax-md's athermal_moduli (its
    own energy, strain F = I + eps, CG with tether 1e-10 to tol 1e-10). jax-md differentiates with
    respect to the small strain eps: its tensor is C_relaxed + sigma : d2(eps^2 / 2)/d eps^2 (the
    extra term computed here by jax.hessian). Tolerance 1e-7 x |C|: its CG and the tether."""
    with jax.numpy_dtype_promotion("standard"):
        from jax_md import elasticity, energy, space
    from matscipy.elasticity import full_3x3x3x3_to_Voigt_6x6

    n = 64
    species = (np.arange(n) >= n // 2).astype(np.int32)
    sig = np.array([[1.0, 1.2], [1.2, 1.4]])
    L = (n / 2 * np.pi / 6 * (1 + 1.4**3) / 0.70) ** (1 / 3)
    pot = mdhess.soft_sphere(sigma=sig, epsilon=1.0, alpha=2.0)
    s_ij = jnp.asarray(sig)[species[:, None], species[None, :]]

    def e_all(x):
        R = x.reshape(n, 3)
        d = R[:, None] - R[None]
        d = d - L * jnp.round(d / L)
        r = jnp.sqrt(jnp.sum(d * d, -1) + jnp.eye(n))
        return 0.25 * jnp.sum(jnp.where((r < s_ij) & ~jnp.eye(n, dtype=bool), (1 - r / s_ij) ** 2, 0.0))

    vg = jax.jit(jax.value_and_grad(e_all))
    fun = lambda x: tuple(np.asarray(v, np.float64) for v in vg(jnp.asarray(x)))  # noqa: E731
    x = np.random.default_rng(5).uniform(0, L, 3 * n)
    x = scipy.optimize.minimize(fun, x, jac=True, method="L-BFGS-B", options={"maxiter": 50000, "gtol": 1e-12, "ftol": 0}).x
    R = x.reshape(n, 3) % L
    for _ in range(10):  # Newton; lstsq handles the translations and any rattler
        F = np.asarray(mdhess.forces(pot, R, box=L, species=species)).ravel()
        if np.abs(F).max() < 1e-13:
            break
        H = np.asarray(mdhess.hessian(pot, R, box=L, species=species))
        R = R + np.linalg.lstsq(H, F, rcond=1e-10)[0].reshape(n, 3)
    res = mdhess.elastic_constants(pot, R, np.full(3, L), species=species)
    assert res.max_force < 1e-12 and -np.trace(res.stress) > 0  # jammed: a positive pressure

    with jax.numpy_dtype_promotion("standard"):
        disp, _ = space.periodic_general(jnp.eye(3) * L, fractional_coordinates=True)
        efn = energy.soft_sphere_pair(disp, species=jnp.asarray(species), sigma=jnp.asarray(sig), epsilon=1.0, alpha=2.0)
        C_t, converged = elasticity.athermal_moduli(efn, cg_tol=1e-10, check_convergence=True)(jnp.asarray(R / L), jnp.eye(3) * L)
    assert bool(converged)
    C_jm = full_3x3x3x3_to_Voigt_6x6(np.asarray(C_t), check_symmetry=False)
    sigma = jnp.asarray(res.stress)
    extra = np.asarray(jax.hessian(lambda e: 0.5 * jnp.trace(sigma @ strain_matrix(e) @ strain_matrix(e)))(jnp.zeros(6)))
    expected = res.born + res.nonaffine + extra
    assert np.abs(C_jm - expected).max() < 1e-7 * np.abs(res.C).max(), np.abs(C_jm - expected).max()
    assert np.abs(res.nonaffine).max() > 0.1 * np.abs(res.C).max()  # jammed packings relax a lot
