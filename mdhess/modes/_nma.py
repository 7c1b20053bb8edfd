"""Normal-mode analysis, the public entry point: ``normal_modes`` checks its arguments, builds the
rigid-body directions, chooses a solver ("auto"), runs it, and merges the projected zero modes.

Conventions. A = M^-1/2 H M^-1/2 (M = masses, 3 per atom). The rigid-body directions Y
(mass-weighted translations, and rotations about the centre of mass) are projected out: the
spectrum returned is that of Q A Q with Q = I - Y Y^T, on which the projected directions are exact
zero modes (eigenvalue 0, vector from Y). ``k`` counts every returned mode, projected ones included.

The pieces: mdhess/modes/_input.py (the Hessian in one representation), _rigid.py (the
rigid-body directions), _solve.py (dense eigh and the dispatch), _shift_invert.py, _lobpcg.py and
_precond.py (the iterative solvers), _result.py (``NormalModes``), _thermo.py.
"""

import numpy as np

from .._checks import check_choice, check_positions
from .._errors import InputError
from .._progress import check_progress
from .._units import unit_system
from ..pair._geometry import as_cell
from ._input import SolveRequest, check_masses, hessian_input, solver_bytes
from ._lobpcg import solver_columns
from ._result import NormalModes
from ._rigid import merge_zero_modes, rigid_directions, rotations_wanted
from ._shift_invert import cholmod_available
from ._solve import vibrational_modes

__all__ = ["NormalModes", "normal_modes"]

SOLVERS = ("auto", "dense", "shift-invert", "lobpcg", "jax-lobpcg")
PROJECTIONS = ("auto", "none", "translations", "rigid")
WHICH = ("lowest", "highest")
PRECISIONS = ("float64", "mixed")

# The "auto" rule (choose_solver); crossovers measured: docs/normal-modes.md, "Solvers" ("auto").
# Dense eigh up to DENSE_MAX degrees of freedom with positions (two-level preconditioner for
# LOBPCG), DENSE_MAX_NO_POSITIONS without (block Jacobi only), DENSE_MAX_FULL when more than
# DENSE_FILL of the matrix is stored (each LOBPCG product then costs a dense one); LOBPCG above
DENSE_MAX = 1200
DENSE_MAX_NO_POSITIONS = 2000
DENSE_MAX_FULL = 2400
DENSE_FILL = 0.25
# Shift-invert (when CHOLMOD is installed) for the lowest modes of a sparse matrix in free space
# with at most SI_MAX_BLOCKS 3x3 blocks a row and SI_MIN_DOF to SI_MAX_DOF degrees of freedom
# (periodic boxes and denser rows fill the factor in: they keep LOBPCG)
SI_MAX_BLOCKS = 25
SI_MIN_DOF = 600
SI_MAX_DOF = 15000
# Many modes: LOBPCG's cost grows as k^2, shift-invert's as k, dense eigh's barely. Dense when
# k > 3N / DENSE_K_FRACTION (instead of LOBPCG) or 3N / SI_K_FRACTION (instead of shift-invert),
# as long as the dense matrix stays affordable (up to DENSE_K_MAX degrees of freedom: 3.2 GB)
DENSE_K_FRACTION = 30
SI_K_FRACTION = 10
DENSE_K_MAX = 20000


# LOBPCG on the device (JAX, "jax-lobpcg") on an accelerator, where it keeps every vector on the
# device; on a CPU backend the host's (numpy, "lobpcg") below JAX_LOBPCG_CPU_MIN_DOF degrees of
# freedom and JAX's from there: on 2 CPU cores, same run, JAX / numpy wall time 0.97 at N = 13,500,
# 0.94 at 32,000 (par) and 0.73 at 108,000 atoms (CPU time 1.3, 1.3, 1.03; docs/benchmarks.md,
# "Device-resident LOBPCG on the CPU"); the crossover is put between 96,000 and 324,000
JAX_LOBPCG_CPU_MIN_DOF = 180_000


def on_cpu() -> bool:
    """True when JAX's default backend is the CPU."""
    import jax

    return jax.default_backend() == "cpu"


# -- steps --------------------------------------------------------------------------------------
def _check_choices(*, which, project, solver, sigma, precision="float64") -> None:
    check_choice(which, WHICH, call="normal_modes", name="which")
    check_choice(project, PROJECTIONS, call="normal_modes", name="project")
    check_choice(solver, SOLVERS, call="normal_modes", name="solver")
    check_choice(precision, PRECISIONS, call="normal_modes", name="precision")
    if precision == "mixed" and solver != "jax-lobpcg":
        raise InputError(
            f"normal_modes(precision='mixed') needs solver='jax-lobpcg' (the float32 products run "
            f"there); got solver={solver!r}"
        )
    if sigma is not None and (
        isinstance(sigma, bool)
        or not isinstance(sigma, (int, float, np.integer, np.floating))
        or not np.isfinite(sigma)
    ):
        raise InputError(f"normal_modes(sigma=...) must be a finite real number or None; got {sigma!r}")


def _check_numbers(*, tol, maxiter, zero_tol, seed) -> None:
    """The solver's numeric options: real finite tolerances, integer counts (bools refused)."""
    for name, v, lo in (("tol", tol, 0.0), ("zero_tol", zero_tol, 0.0)):
        ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
        if not ok or not np.isfinite(v) or v < lo or (name == "tol" and v <= 0):
            rule = "> 0" if name == "tol" else ">= 0"
            raise InputError(f"normal_modes({name}=...) must be a finite real number {rule}; got {v!r}")
    for name, v, lo in (("maxiter", maxiter, 1), ("seed", seed, 0)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < lo:
            raise InputError(f"normal_modes({name}=...) must be an integer >= {lo}; got {v!r}")


def _check_k(k, n3: int) -> int:
    if k is None:
        return n3
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= n3:
        raise InputError(f"normal_modes(k=...) must be an integer in 1..{n3} (3N for N={n3 // 3}); got {k!r}")
    return int(k)


def lobpcg_block_fits(n3: int, k: int) -> bool:
    """Whether a LOBPCG block of ``k`` wanted modes (SOLVER_BLOCKS arrays of (3N, k + k/4)
    float64) fits in the memory available (or $MDHESS_MEMORY_LIMIT)."""
    from ..pair._planner import memory_limit

    return solver_bytes(n3, solver_columns(k)) <= memory_limit()


def choose_solver(solver: str, inp, *, k: int, which: str, positions, cell) -> str:
    """The solver to run: ``solver``, or for "auto" the measured rule (constants above).
    InputError for shift-invert on an operator without blocks."""
    if solver == "auto":
        n3 = inp.n3
        fill = inp.fill()
        if fill > DENSE_FILL:
            limit = DENSE_MAX_FULL
        else:
            limit = DENSE_MAX if positions is not None else DENSE_MAX_NO_POSITIONS
        small = n3 <= limit or (k > n3 // DENSE_K_FRACTION and n3 <= DENSE_K_MAX)
        # not on an operator sharded across processes: the numpy LOBPCG's branches (columns kept
        # by SVQB, converged ones) come from each process's own arithmetic; the JAX LOBPCG takes
        # them from process 0 (process_zero_decides), so processes whose rounding differs stay in
        # step (same time: two processes, N = 1372, lowest 20, 2.5-3.0 s vs 2.6-2.8 s)
        mesh = getattr(getattr(inp, "H", None), "mesh", None)
        across = mesh is not None and mesh.is_multi_process
        host = on_cpu() and n3 < JAX_LOBPCG_CPU_MIN_DOF and lobpcg_block_fits(n3, k) and not across
        # (the JAX LOBPCG solves in batches of modes where one block does not fit)
        solver = "dense" if small else ("lobpcg" if host else "jax-lobpcg")
        if (
            inp.is_matrix  # a dense array of a sparse matrix is converted to CSR
            and which == "lowest"
            and cell is None
            and k <= n3 // SI_K_FRACTION
            and SI_MIN_DOF <= n3 <= SI_MAX_DOF
            and fill * n3 <= 3 * SI_MAX_BLOCKS
            and cholmod_available()
        ):
            solver = "shift-invert"
    if solver == "shift-invert" and not inp.can_factorise:
        raise InputError(
            "normal_modes(solver='shift-invert') needs a matrix: a dense or sparse H, or an mdhess operator"
        )
    return solver


# -- public entry point -----------------------------------------------------------------------------
def normal_modes(
    H,
    masses=None,
    *,
    k=None,
    which="lowest",
    project="auto",
    units=None,
    solver="auto",
    box=None,
    positions=None,
    tol: float = 1e-10,
    maxiter: int = 1000,
    sigma=None,
    zero_tol: float = 1e-8,
    seed: int = 0,
    progress: bool = False,
    precision: str = "float64",
) -> NormalModes:
    """Normal modes (eigenpairs of the mass-weighted Hessian) with rigid-body modes projected out.

    Args:
        H: the Hessian, (3N, 3N), energy / length^2: a dense array (numpy or JAX), a scipy sparse
            matrix (BSR from ``mdhess.hessian(format="bsr")`` or any other), or the operator from
            ``mdhess.hvp`` (never densified unless it is small).
        masses: (N,) masses (or one for all), mass units; None means unit masses.
        k: number of modes (projected zero modes included); None means all 3N.
        which: "lowest" or "highest".
        project: "auto" (translations always; rotations too when box is None and positions are
            given), "translations", "rigid" (translations + rotations; needs positions and free
            space), or "none".
        units: None, "lj", "metal" or "real" (LAMMPS unit systems) for frequencies and thermodynamics.
        solver: "auto", "dense" (LAPACK eigh, all or an index subset), "shift-invert" (ARPACK
            Lanczos on the sparse matrix, shift ``sigma``), "lobpcg" (preconditioned, on a sparse
            matrix or the operator, numpy on the host) or "jax-lobpcg" (the same method in JAX,
            every vector on the JAX device: GPU; see docs/normal-modes.md). "auto" takes "dense"
            up to 1200 degrees of freedom when positions are given (2000 without: LOBPCG is then
            preconditioned by block Jacobi only; 2400 when over a quarter of the matrix is
            non-zero), or when more than 1/30 of the modes are wanted (up to 20000 degrees of
            freedom), and "lobpcg" above ("jax-lobpcg" when JAX's default backend is not the
            CPU, or from 180,000 degrees of freedom on the CPU); but
            "shift-invert" for up to 1/10 of the modes of a sparse matrix (scipy sparse, or a
            dense array mostly zeros) in free space (box None) with at most 25 3x3 blocks a row
            (networks, contact models) and 600 to 15000 degrees of freedom when CHOLMOD is
            installed (``pip install mdhess[cholmod]``: faster there, see docs/normal-modes.md).
            ``NormalModes.solver`` says which ran, ``info["factorization"]`` which factor.
        box: None (free space) or the periodic box (decides rotations for project="auto", and the
            periodic coarse grid of the LOBPCG preconditioner).
        positions: (N, 3) positions, length units: rotations, the preconditioner's coarse grid
            (much faster LOBPCG) and mode export need them.
        tol: LOBPCG relative eigenvalue accuracy (default 1e-10); for shift-invert, ARPACK's
            relative residual tolerance of the inverted operator.
        maxiter: LOBPCG iteration limit.
        sigma: shift-invert shift; the modes nearest it are returned. Default: -1e-6 of the
            largest diagonal entry (just below zero), moved below the whole spectrum when the
            factor of A - sigma I shows eigenvalues below it (an unstable structure), so that
            which="lowest" holds; ``info`` reports the sigma used and the factorization. In the
            mass-weighted Hessian's units.
        zero_tol: |lambda| <= zero_tol * max diag(A) counts as a zero mode.
        seed: random initial block of LOBPCG.
        progress: show the solve's progress on stderr (quiet by default): LOBPCG iterations or
            shift-invert solves as a tqdm bar, the phases of a dense solve (mass weighting,
            ``eigh``) with their times.
        precision: "float64" (default) or "mixed" (solver="jax-lobpcg" only): the iterations
            run with float32 products (everything else float64) until the residuals reach the
            float32 rounding level, then go on with float64 products to the same convergence
            test, so the accuracy is the float64 solver's. ``info`` reports "precision" and the
            iterations of each phase ("iterations_float32", "iterations_float64"). The float32
            copy of the matrix costs half its float64 padded rows while it lives; an operator
            from ``mdhess.hvp``, or a product left on the host for lack of memory, runs float64
            (``info["precision"]`` says so). See docs/normal-modes.md.

    Returns:
        NormalModes.

    Raises:
        InputError: H not square or not symmetric (the asymmetry found is stated), N not a whole
            number of atoms, masses of the wrong length or not positive, k out of range, unknown
            which/project/units/solver/precision (or "mixed" with another solver than
            "jax-lobpcg"), positions of the wrong shape, rotations asked for a
            periodic box or without positions, sigma not a finite number or at an eigenvalue.
        MemoryPlanError: solver="jax-lobpcg" whose arrays exceed the free memory (or
            $MDHESS_MEMORY_LIMIT) even in batches of 16 modes, before the solve starts (where
            the ~20 arrays of (3N, k + k/4) float64 of one block do not fit, the modes are
            found in batches, each kept off those found before it: ``info["batches"]``).

    A BSR matrix of 3x3 blocks is read in place (no CSR of the mass-weighted matrix is made
    unless it fits; docs/scaling.md, "Normal modes of 10^6 atoms").
    """
    # validate the inputs
    inp = hessian_input(H)
    inp.check_symmetric()
    m = check_masses(masses, inp.n_atoms)
    _check_choices(which=which, project=project, solver=solver, sigma=sigma, precision=precision)
    us = unit_system(units)
    R = None if positions is None else check_positions(
        positions, call="normal_modes", n_atoms=inp.n_atoms, shape_hint=" to match H"
    )
    cell = as_cell(box, call="normal_modes")
    k = _check_k(k, inp.n3)
    _check_numbers(tol=tol, maxiter=maxiter, zero_tol=zero_tol, seed=seed)
    progress = check_progress(progress, "normal_modes")
    # the rigid-body basis
    rotations = rotations_wanted(project, R, cell)
    Y, projected = rigid_directions(project, m, R, rotations=rotations, n3=inp.n3)
    # choose the solver and solve
    solver = choose_solver(solver, inp, k=k, which=which, positions=R, cell=cell)
    request = SolveRequest(
        k=k,
        which=which,
        solver=solver,
        positions=R,
        cell=cell,
        tol=tol,
        maxiter=maxiter,
        sigma=sigma,
        seed=seed,
        progress=progress,
        precision=precision,
    )
    w, V, info, scale = vibrational_modes(inp, m, Y, request)
    # merge the projected zero modes and keep k
    eigenvalues, vectors = merge_zero_modes(w, V, Y, k, which)
    return NormalModes(
        eigenvalues=eigenvalues,
        vectors=vectors,
        masses=m,
        units=us,
        solver=solver,
        n_projected=Y.shape[1],
        projected=projected,
        zero_tol=float(zero_tol),
        scale=scale,
        positions=R,
        box=cell,
        which=which,
        info=info,
    )
