"""Energy minimisation (quench) of a configuration: FIRE on the mdhess forces, or scipy's
L-BFGS. The inherent structure of an MD frame is where its normal modes mean something.

FIRE (``method="fire"``, the default) is jax-md's ``fire_descent`` algorithm (tested step by step
against it) written here in JAX: importing jax-md costs about 10 s of CPU, and its floor under
|F| damps the last decades of a tight quench. It runs on the mdhess forces (``forces_fn``:
per-pair kernels, custom_jvp) inside one jitted ``lax.while_loop`` per chunk of steps, so the
loop never returns to Python between steps; large systems use a jax-md neighbour list. FIRE uses forces only (no energy
comparisons), so it converges to force levels near the rounding error of the forces
(``fmax=1e-10`` for float64); L-BFGS's line search compares energies and stalls once the energy
change per step falls below the energy's rounding error (about 1e-16 x |E|).

A hard cutoff (``switch=None``) makes the force jump at rc; near a minimum pairs cross rc
back and forth and both methods stall. Minimise with the C2 switch (docs/quench.md).

Periodic boxes are never changed. Positions move without being wrapped (the energy uses the
minimum image), so each atom keeps its image; an input whose atoms all lie inside the cell
(fractional coordinates in [0, 1)) is returned wrapped into the cell again.
"""

import time
import warnings
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_choice, check_positions
from .._errors import InputError, NonFiniteError
from ._autodiff import forces_fn
from ._geometry import as_cell, is_orthorhombic, perpendicular_widths
from ._potential import check_potential

MINIMIZE_METHODS = ("fire", "lbfgs")
FIRE_CHUNK = 1000  # FIRE steps per jitted call (progress and neighbour-list checks between calls)
# FIRE's largest step in units of the stable one 1 / sqrt(largest curvature at the start): the
# start is often far stiffer than the minimum (overlaps), FIRE halves its step when it overshoots
DT_MAX_FACTOR = 4.0
DT_RETRIES = 3  # a run whose forces turn non-finite (atoms thrown together) restarts at dt_max / 4
NEIGHBOR_LIST_MIN_ATOMS = 1500  # all pairs below this many atoms (cheaper than a list there)
_DEFAULT_MAXITER = {"fire": 200_000, "lbfgs": 100_000}


@dataclass(frozen=True)
class Minimized:
    """The result of ``mdhess.minimize``.

    Attributes:
        positions: (N, 3) float64, the minimised positions (length units).
        energy: the energy there (energy units).
        max_force: the largest per-atom force norm there (energy / length), from
            ``mdhess.forces`` (an independent path, every periodic image).
        iterations: FIRE steps, or L-BFGS iterations.
        converged: ``max_force <= fmax``.
        method: "fire" or "lbfgs".
        fmax: the requested force tolerance.
        seconds: wall time.
    """

    positions: np.ndarray
    energy: float
    max_force: float
    iterations: int
    converged: bool
    method: str
    fmax: float
    seconds: float


def max_atom_force(F) -> float:
    """Largest per-atom force norm of an (N, 3) array."""
    F = np.asarray(F, dtype=np.float64)
    return float(np.sqrt(np.max(np.sum(F * F, axis=1)))) if F.size else 0.0


def _check_number(value, name, call, *, minimum=0.0, integer=False):
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))
    if ok and integer:
        ok = float(value) == int(value)
    if not ok or not np.isfinite(value) or value <= minimum:
        kind = "an integer" if integer else "a finite number"
        raise InputError(f"{call}({name}=...) must be {kind} > {minimum:g}; got {value!r}")
    return int(value) if integer else float(value)


def minimize(potential, positions, *, box=None, species=None, method="fire", fmax=1e-10, maxiter=None,
             dt_max=None, progress=False, warn=True) -> Minimized:  # fmt: skip
    """Minimise the energy of a configuration (quench to its inherent structure).

    Args:
        potential: an mdhess potential. Use a C2 switch (``switch=r_on``, or cutoff.treatment =
            "switch" in a TOML file) for tight tolerances: a hard cut's force jump at rc stalls
            minimisers (docs/quench.md).
        positions: (N, 3) starting positions, length units.
        box: None (free space), edge lengths or a (3, 3) cell (rows are cell vectors); never
            changed. Periodic boxes need the cutoff within half the shortest cell width (the
            minimum image is used while minimising).
        species: (N,) integer species, as for ``mdhess.energy``.
        method: "fire" (jax-md's FIRE, jitted; default) or "lbfgs" (scipy's L-BFGS-B).
        fmax: force tolerance, energy / length: converged when every atom's force norm is at most this.
        maxiter: most FIRE steps (default 200000) or L-BFGS iterations (default 100000).
        dt_max: FIRE's largest time step (unit masses); default 4 / sqrt(largest curvature at
            the start), estimated by power iteration on force differences. FIRE starts at a
            quarter of it (half the Verlet stability limit at the start) and adapts its step
            between them; a run whose forces turn non-finite restarts at a 4x smaller dt_max.
        progress: show a tqdm bar on stderr (steps and the current max force).
        warn: issue a ``RuntimeWarning`` when not converged.

    Returns:
        ``Minimized``: positions, energy, max_force, iterations, converged, ...

    Raises:
        InputError: bad arguments (the call, the argument and the value found).
        NonFiniteError: FIRE's forces turned non-finite even with a 64x smaller step.
    """
    call = "minimize"
    t0 = time.perf_counter()
    check_potential(potential, call)
    check_choice(method, MINIMIZE_METHODS, call=call, name="method")
    fmax = _check_number(fmax, "fmax", call)
    maxiter = _DEFAULT_MAXITER[method] if maxiter is None else _check_number(maxiter, "maxiter", call, integer=True)
    if dt_max is not None:
        dt_max = _check_number(dt_max, "dt_max", call)
    R0 = check_positions(positions, call=call, min_atoms=2)
    cell = as_cell(box, call=call)
    # checks species, the cutoff and the cell; cached per system (compiled once for many frames)
    F_of = cached_forces_fn(potential, cell, species, R0.shape[0])
    if method == "fire":
        R, it = _fire(potential, F_of, R0, cell, species, fmax, maxiter, dt_max, progress)
    else:
        R, it = _lbfgs(potential, F_of, R0, cell, species, fmax, maxiter, progress)
    R = _rewrap(R, R0, cell)
    from ._api import energy, forces

    e = energy(potential, R, box=cell, species=species)
    fm = max_atom_force(forces(potential, R, box=cell, species=species))
    res = Minimized(R, float(e), fm, int(it), bool(fm <= fmax), method, fmax, time.perf_counter() - t0)
    if warn and not res.converged:
        hint = "" if getattr(potential, "switch", 1) is not None else "; a hard cutoff stalls minimisers, use a C2 switch"
        warnings.warn(
            f"minimize(method={method!r}) did not converge: max force {fm:.3g} > fmax {fmax:g} after {it} "
            f"{'steps' if method == 'fire' else 'iterations'}{hint} (docs/quench.md)",
            RuntimeWarning,
            stacklevel=2,
        )
    return res


def _rewrap(R, R0, cell):
    """R wrapped into the cell when every atom of R0 was inside it; R unchanged otherwise."""
    if cell is None:
        return R
    inv = np.linalg.inv(cell)
    s0 = R0 @ inv
    if np.all((s0 >= 0) & (s0 < 1)):
        s = R @ inv
        s = s - np.floor(s)
        return np.where(s >= 1.0, s - 1.0, s) @ cell  # s - floor(s) rounds to 1.0 for s = -1e-17
    return R


def _bar(progress, total, method):
    if not progress:
        return None
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc=f"minimize ({method})", unit="step", file=sys.stderr, dynamic_ncols=True, leave=False)


# -- FIRE --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FireParams:
    """FIRE's parameters (Bitzek et al., Phys. Rev. Lett. 97, 170201 (2006)); the defaults are
    jax-md's ``fire_descent``'s apart from the steps, which ``minimize`` sets from the curvature."""

    dt_start: float = 0.1
    dt_max: float = 0.4
    n_min: int = 5
    f_inc: float = 1.1
    f_dec: float = 0.5
    alpha_start: float = 0.1
    f_alpha: float = 0.99


def fire_step(F_of, p: FireParams, state):
    """One FIRE step: velocity Verlet with unit masses, then FIRE's mixing and step control.

    The same algorithm as ``jax_md.minimize.fire_descent`` (momenta, the sign of F.P, n_min,
    f_inc, f_dec, alpha_start, f_alpha), tested step by step against it in tests/test_quench.py,
    but without its floor of 1e-6 under |F|^2 (jax-md's own comment: wrong below |F| ~ 1e-3),
    which would damp the last decades of a 1e-10 quench. ``state`` is (R, P, F, dt, alpha, n_pos).
    """
    R, P, F, dt, alpha, n_pos = state
    P = P + 0.5 * dt * F
    R = R + dt * P
    F = F_of(R)
    P = P + 0.5 * dt * F
    F_norm = jnp.sqrt(jnp.sum(F * F))
    P_norm = jnp.sqrt(jnp.sum(P * P))
    F_dot_P = jnp.sum(F * P)
    P = P + alpha * (F * (P_norm / jnp.maximum(F_norm, jnp.finfo(F.dtype).tiny)) - P)
    n_pos = jnp.where(F_dot_P >= 0, n_pos + 1, 0)
    grow = (F_dot_P > 0) & (n_pos > p.n_min)
    dt = jnp.where(grow, jnp.minimum(dt * p.f_inc, p.dt_max), dt)
    alpha = jnp.where(grow, alpha * p.f_alpha, alpha)
    dt = jnp.where(F_dot_P < 0, dt * p.f_dec, dt)
    alpha = jnp.where(F_dot_P < 0, p.alpha_start, alpha)
    P = jnp.where(F_dot_P >= 0, P, jnp.zeros_like(P))
    return R, P, F, dt, alpha, n_pos


def _jax_md():
    with jax.numpy_dtype_promotion("standard"):  # jax-md's import-time code
        import jax_md.partition
        import jax_md.space
    return jax_md


def _neighbor_fns(potential, cell, n_atoms):
    """A jax-md Sparse neighbour-list builder (cutoff + skin), or None to use all pairs (small
    systems: cheaper, and no jax-md import, which costs about 10 s of CPU)."""
    rc = potential.max_cutoff
    if rc is None or n_atoms < NEIGHBOR_LIST_MIN_ATOMS or potential.bonds() is not None:
        return None
    if cell is not None:
        skin = float(min(0.3 * rc, 0.5 * float(np.min(perpendicular_widths(cell))) - rc))
        if skin <= 0.01 * rc:
            return None  # a list would be rebuilt every step
    jm = _jax_md()
    kw = {"format": jm.partition.NeighborListFormat.Sparse, "capacity_multiplier": 1.5}
    if cell is None:
        disp, _ = jm.space.free()
        skin, jbox = 0.3 * rc, 1.0
        kw["disable_cell_list"] = True
    elif is_orthorhombic(cell):
        jbox = jnp.asarray(np.diag(cell))
        disp, _ = jm.space.periodic(jbox)
    else:
        jbox = jnp.asarray(cell.T)
        disp, _ = jm.space.periodic_general(jbox, fractional_coordinates=False)
        kw["disable_cell_list"] = True
    with jax.numpy_dtype_promotion("standard"):  # jax-md probes the displacement with float32 shapes
        return jm.partition.neighbor_list(disp, jbox, rc, dr_threshold=skin, **kw)


class _FireRunner:
    """The jitted FIRE loop for one potential, cell, species and step size, kept between calls
    (the frames of a trajectory share it: compiled once)."""

    def __init__(self, F_of, cell, nfns, params: FireParams):
        inv = None if cell is None else jnp.asarray(np.linalg.inv(cell))
        cellj = None if cell is None else jnp.asarray(cell)
        self.nfns = nfns

        def wrapped(x):  # positions inside the cell, for jax-md's cell lists only
            if cellj is None:
                return x
            s = x @ inv
            return (s - jnp.floor(s)) @ cellj

        self.wrapped = wrapped

        def fmax2_of(F):
            return jnp.max(jnp.sum(F * F, axis=1))

        def run(state, nbrs, steps, fmax2):
            def cond(c):
                st, nb, it = c
                f2 = fmax2_of(st[2])
                go = (it < steps) & (f2 > fmax2) & jnp.isfinite(f2)  # non-finite: stop, the caller retries
                return go if nb is None else go & ~nb.did_buffer_overflow

            def body(c):
                st, nb, it = c
                st = fire_step(lambda x: F_of(x, neighbor=nb), params, st)
                nb = None if nb is None else nb.update(wrapped(st[0]))
                return st, nb, it + 1

            return jax.lax.while_loop(cond, body, (state, nbrs, jnp.zeros((), jnp.int32)))

        self.run = jax.jit(run)
        self.fmax2_of = jax.jit(fmax2_of)


_CACHE: dict = {}  # a few recent systems -> forces and FIRE loops (compiled once)
_CACHE_MAX = 4


def _cached(key, potential, make):
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is potential:  # the key holds id(potential): check it is the same one
        return hit[1]
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.pop(next(iter(_CACHE)))
    val = make()
    _CACHE[key] = (potential, val)
    return val


def _system_key(potential, cell, species, n_atoms):
    sp = None if species is None else np.asarray(species).tobytes()
    return (id(potential), None if cell is None else cell.tobytes(), sp, n_atoms)


def cached_forces_fn(potential, cell, species, n_atoms):
    """The jitted ``forces_fn(potential, box=cell, species=species)``, the same object for the
    same system (compiled once for all the frames of a trajectory)."""
    key = ("forces",) + _system_key(potential, cell, species, n_atoms)
    return _cached(key, potential, lambda: jax.jit(forces_fn(potential, box=cell, species=species)))


def largest_curvature(F_of, R, *, iters: int = 30, eps: float = 1e-6) -> float:
    """Largest Hessian eigenvalue (unit masses) by power iteration on central differences of
    the forces, H v ~ -(F(R + e v) - F(R - e v)) / 2e (reuses the compiled forces: nothing new
    to compile). A 10 % estimate is enough for a step size."""
    v = np.random.default_rng(0).standard_normal(np.shape(R))
    v /= np.linalg.norm(v)
    lam = 0.0
    for _ in range(iters):
        w = -(np.asarray(F_of(R + eps * v)) - np.asarray(F_of(R - eps * v))) / (2 * eps)
        lam = float(np.vdot(v, w))
        nw = np.linalg.norm(w)
        if not nw > 0:
            break
        v = w / nw
    return lam


def _step_size(F_of, R) -> float:
    """FIRE's dt_max: DT_MAX_FACTOR / sqrt(largest curvature), rounded down to a power of
    2^(1/4) (frames of one trajectory then share one compiled loop)."""
    lam = largest_curvature(F_of, R)
    if not (np.isfinite(lam) and lam > 0):
        return 0.1
    return float(2.0 ** (np.floor(4 * np.log2(DT_MAX_FACTOR / np.sqrt(lam))) / 4))


def _fire(potential, F_of, R0, cell, species, fmax, maxiter, dt_max, progress):
    """FIRE until max force <= fmax or maxiter; restarted with a 4x smaller step when the forces
    turn non-finite (a step so long that atoms were thrown together). Returns (positions, steps)."""
    if dt_max is None:
        dt_max = _step_size(F_of, jnp.asarray(R0))
    for _ in range(DT_RETRIES + 1):
        R, done, finite = _fire_run(potential, F_of, R0, cell, species, fmax, maxiter, dt_max, progress)
        if finite:
            return R, done
        dt_max = dt_max / 4
    raise NonFiniteError(
        f"minimize(method='fire'): the forces became non-finite, also with the step cut to dt_max = {dt_max * 4:.3g}: "
        "overlapping atoms or a potential without a repulsive core at short range"
    )


def _fire_run(potential, F_of, R0, cell, species, fmax, maxiter, dt_max, progress):
    """One FIRE run: (positions, steps, whether the forces stayed finite)."""
    R = jnp.asarray(R0)
    n = R0.shape[0]
    params = FireParams(dt_start=dt_max / DT_MAX_FACTOR, dt_max=dt_max)
    nfns = _cached(("nlist",) + _system_key(potential, cell, species, n), potential,
                   lambda: _neighbor_fns(potential, cell, n))  # fmt: skip
    rn = _cached(("fire", dt_max) + _system_key(potential, cell, species, n), potential,
                 lambda: _FireRunner(F_of, cell, nfns, params))  # fmt: skip
    with jax.numpy_dtype_promotion("standard"):  # jax-md's lists mix float32 boxes and float64
        nbrs = None if nfns is None else nfns.allocate(rn.wrapped(R))
        F = F_of(R) if nbrs is None else F_of(R, neighbor=nbrs)
        zero = jnp.zeros((), R.dtype)
        state = (R, jnp.zeros_like(R), F, zero + params.dt_start, zero + params.alpha_start, jnp.zeros((), jnp.int32))
        fmax2 = jnp.asarray(fmax * fmax, R.dtype)
        done, bar = 0, _bar(progress, maxiter, "fire")
        try:
            while done < maxiter:
                steps = min(FIRE_CHUNK, maxiter - done)
                new, nb, it = rn.run(state, nbrs, jnp.asarray(steps, jnp.int32), fmax2)
                if nb is not None and bool(nb.did_buffer_overflow):
                    nbrs = nfns.allocate(rn.wrapped(state[0]))  # a larger list; redo the chunk
                    continue
                state, nbrs, it = new, nb, int(it)
                done += it
                fm = float(np.sqrt(rn.fmax2_of(state[2])))
                if not np.isfinite(fm):
                    return R0, done, False
                if bar is not None:
                    bar.update(it)
                    bar.set_postfix_str(f"max force {fm:.2e}")
                if fm <= fmax:
                    if nbrs is None:
                        break
                    nbrs = nfns.allocate(rn.wrapped(state[0]))  # the forces on a fresh list: exact
                    state = state[:2] + (F_of(state[0], neighbor=nbrs),) + state[3:]
                    if float(np.sqrt(rn.fmax2_of(state[2]))) <= fmax:
                        break
        finally:
            if bar is not None:
                bar.close()
    return np.asarray(state[0], dtype=np.float64), done, True


# -- L-BFGS ------------------------------------------------------------------------------------------
def _lbfgs(potential, F_of, R0, cell, species, fmax, maxiter, progress):
    """scipy L-BFGS-B on the jitted energy and forces; returns (positions, iterations)."""
    import scipy.optimize

    from ._autodiff import energy_fn

    E_of = energy_fn(potential, box=cell, species=species)
    shape = R0.shape

    @jax.jit
    def e_and_f(x):
        x = x.reshape(shape)
        return E_of(x), F_of(x)

    def fun(x):
        e, F = e_and_f(jnp.asarray(x))
        return float(e), -np.asarray(F, dtype=np.float64).ravel()

    bar = _bar(progress, maxiter, "lbfgs")

    def callback(xk):
        if bar is not None:
            bar.update(1)

    try:
        # gtol is scipy's largest gradient component: fmax / sqrt(3) bounds every atom's norm
        res = scipy.optimize.minimize(
            fun, R0.ravel(), jac=True, method="L-BFGS-B", callback=callback,
            options={"maxiter": maxiter, "maxfun": 2 * maxiter + 100, "gtol": fmax / np.sqrt(3.0), "ftol": 0.0,
                     "maxcor": 20},
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    return np.asarray(res.x, dtype=np.float64).reshape(shape), int(res.nit)
