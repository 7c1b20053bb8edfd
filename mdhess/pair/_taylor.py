"""Beyond the second derivative: Taylor coefficients of the energy along a direction, and the
third- and fourth-order force-constant tensors contracted or per pair.

Taylor mode. Along a direction z, every pair's squared distance is exactly quadratic in t:

    |d + t delta|^2 = r^2 + 2 t (d . delta) + t^2 |delta|^2,     delta = z_j - z_i

so seeding ``jax.experimental.jet`` with that polynomial, applied to the plain scalar
``phi_eff(sqrt(s))`` of each pair, gives every derivative d^n/dt^n E(R + t z) at t = 0 from the
pair kernel alone, at a cost linear in the order (nested ``jax.jvp`` grows exponentially).
``jet`` does not accept ``custom_jvp`` functions (jax#30352); the pair kernels are plain JAX.

Tensors. The third- and fourth-derivative tensors of phi(|d|) are closed forms in the radial
derivatives phi^(k)(r) (``_blocks.pair_third_apply``, ``pair_fourth_apply``,
``pair_third_tensors``): the derivatives come from autodiff of phi(r) only.
"""

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.jet import jet

from .._checks import check_positions
from .._device import jit, to_device
from .._errors import InputError
from . import _planner
from ._blocks import pair_fourth_apply, pair_third_apply, pair_third_tensors
from ._compute import pair_geometry, segment_pair_sum
from ._prepare import Prepared, raise_nonfinite

MAX_ORDER = 64
"""Largest Taylor order accepted (derivatives grow like n!; float64 overflows beyond ~170)."""


def _check_order(order, call: str) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)):
        raise InputError(f"{call}(order=...) must be an integer >= 0; got {order!r}")
    if not 0 <= int(order) <= MAX_ORDER:
        raise InputError(f"{call}(order=...) must be in 0..{MAX_ORDER}; got {int(order)}")
    return int(order)


def _check_vectors(p: Prepared, vectors: dict, call: str, *, nonzero: bool = False):
    out = []
    for name, v in vectors.items():
        V = check_positions(v, call=call, name=name, n_atoms=p.n_atoms)
        if nonzero and not np.any(V):
            raise InputError(f"{call}({name}=...) is zero everywhere; a direction must be non-zero")
        out.append(to_device(V, np.float64))
    return out


@partial(jit, static_argnames=("order",))
def _taylor_pairs(potential, R, species, i, j, shift, mask, Z, order: int):
    """(order + 1,) derivatives of the energy along Z (t = 0), summed over the pairs."""
    d, pp = pair_geometry(potential, R, species, i, j, shift)
    delta = Z[j] - Z[i]
    s0 = jnp.where(mask, jnp.sum(d * d, axis=-1), 1.0)
    s1 = jnp.where(mask, 2.0 * jnp.sum(d * delta, axis=-1), 0.0)  # ds/dt
    s2 = jnp.where(mask, 2.0 * jnp.sum(delta * delta, axis=-1), 0.0)  # d2s/dt2

    def one(s0_, s1_, s2_, pp1):
        f = lambda s: potential.phi_eff(jnp.sqrt(s), pp1)  # noqa: E731
        if order == 0:
            return f(s0_)[None]
        series = (s1_, s2_) + (jnp.zeros_like(s0_),) * (order - 2) if order >= 2 else (s1_,)
        e0, terms = jet(f, (s0_,), (series,))
        return jnp.stack([e0, *terms])

    per_pair = jax.vmap(one)(s0, s1, s2, pp)  # (p, order + 1)
    return jnp.sum(jnp.where(mask[:, None], per_pair, 0.0), axis=0)


def taylor(potential, positions, direction, order, *, box=None, species=None) -> np.ndarray:
    """Derivatives d^n/dt^n E(R + t z) at t = 0, n = 0..order, by pair-seeded Taylor mode.

    Args:
        potential: an mdhess potential.
        positions: (N, 3), length units.
        direction: (N, 3) direction z (not normalised here), length units.
        order: highest derivative, an integer 0..64. The cost grows linearly with it.
        box, species: as for ``mdhess.energy`` (every periodic image within the cutoff).

    Returns:
        numpy float64 (order + 1,): [E, dE/dt, d2E/dt2, ...] in energy units (per length^n of z).
        Entry 2 equals z . H z, entry 1 is -F . z.

    Raises:
        InputError: bad positions, box, species, a zero or non-finite direction, or an order that
            is not an integer in 0..64.
        NonFiniteError: a coefficient came out NaN or infinite.
    """
    call = "taylor"
    order = _check_order(order, call)
    p = Prepared(potential, positions, box, species, call)
    (Z,) = _check_vectors(p, {"direction": direction}, call, nonzero=True)
    out = np.asarray(_taylor_pairs(*p.arrays(np.float64), Z, order=order), dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise_nonfinite(call, "Taylor coefficients")
    return out


@partial(jit, static_argnames=("n_atoms",))
def _contract3(potential, R, species, i, j, shift, mask, U, V, n_atoms: int):
    d, pp = pair_geometry(potential, R, species, i, j, shift)
    w = pair_third_apply(potential.phi_eff, d, pp, U[j] - U[i], V[j] - V[i], mask)
    return -segment_pair_sum(w, i, j, n_atoms)


@partial(jit, static_argnames=("n_atoms",))
def _contract4(potential, R, species, i, j, shift, mask, U, V, W, n_atoms: int):
    d, pp = pair_geometry(potential, R, species, i, j, shift)
    w = pair_fourth_apply(potential.phi_eff, d, pp, U[j] - U[i], V[j] - V[i], W[j] - W[i], mask)
    return -segment_pair_sum(w, i, j, n_atoms)


def contract3(potential, positions, u, v, *, box=None, species=None):
    """sum_{jb,kc} Phi3[ia, jb, kc] u[jb] v[kc]: the third-order tensor contracted twice, matrix-free.

    Phi3 is the third derivative of the energy with respect to the positions. O(pairs) time and
    memory; symmetric in u and v; ``contract3(pot, R, z, z) . z`` is the third Taylor coefficient.

    Args:
        potential, positions, box, species: as for ``mdhess.energy``.
        u, v: (N, 3) vectors, length units.

    Returns:
        (N, 3) JAX float64 array, energy / length^3 times the units of u and v.
    """
    call = "contract3"
    p = Prepared(potential, positions, box, species, call)
    U, V = _check_vectors(p, {"u": u, "v": v}, call)
    out = _contract3(*p.arrays(np.float64), U, V, n_atoms=p.n_atoms)
    if not bool(jnp.all(jnp.isfinite(out))):
        raise_nonfinite(call, "contraction")
    return out


def contract4(potential, positions, u, v, w, *, box=None, species=None):
    """sum Phi4[ia, jb, kc, ld] u[jb] v[kc] w[ld]: the fourth-order tensor contracted three times.

    Arguments as for ``contract3`` plus a third vector ``w``; returns (N, 3), symmetric in u, v, w.
    """
    call = "contract4"
    p = Prepared(potential, positions, box, species, call)
    U, V, W = _check_vectors(p, {"u": u, "v": v, "w": w}, call)
    out = _contract4(*p.arrays(np.float64), U, V, W, n_atoms=p.n_atoms)
    if not bool(jnp.all(jnp.isfinite(out))):
        raise_nonfinite(call, "contraction")
    return out


@dataclass(frozen=True)
class PairTensors:
    """Third-order force constants of a pair energy, one tensor per pair.

    The energy's third derivative is Phi3[x a, y b, z c] = sum over pairs p with x, y, z in
    {i_p, j_p} of s_x s_y s_z T_p[a, b, c], with s = +1 for j_p and -1 for i_p (the pair's
    displacement is d = r_j - r_i + shift).

    Attributes:
        i, j: (p,) atom indices. shift: (p, 3) Cartesian image shifts (zeros in free space).
        T: (p, 3, 3, 3) tensors, energy / length^3. n_atoms: N.
    """

    i: np.ndarray
    j: np.ndarray
    shift: np.ndarray
    T: np.ndarray
    n_atoms: int

    def to_dense(self) -> np.ndarray:
        """(3N, 3N, 3N) dense tensor (small systems)."""
        n = self.n_atoms
        out = np.zeros((n, 3, n, 3, n, 3))
        for sx, x in ((-1.0, self.i), (1.0, self.j)):
            for sy, y in ((-1.0, self.i), (1.0, self.j)):
                for sz, z in ((-1.0, self.i), (1.0, self.j)):
                    np.add.at(out, (x, slice(None), y, slice(None), z, slice(None)),
                              (sx * sy * sz) * self.T)  # fmt: skip
        return out.reshape(3 * n, 3 * n, 3 * n)


THIRD_ORDER_FORMATS = ("pairs", "dense")


@jit
def _third_tensors(potential, R, species, i, j, shift, mask):
    d, pp = pair_geometry(potential, R, species, i, j, shift)
    return pair_third_tensors(potential.phi_eff, d, pp, mask)


def third_order(potential, positions, *, box=None, species=None, format="pairs", memory_limit=None):
    """Exact third-order force constants of a pair energy.

    Args:
        potential, positions, box, species: as for ``mdhess.energy``.
        format: "pairs" -> ``PairTensors`` (one (3, 3, 3) tensor per pair, with its indices);
            "dense" -> the (3N, 3N, 3N) numpy array (small systems; refused by the memory planner
            with the estimate when it cannot fit).
        memory_limit: bytes or a string such as "8G" (default as for ``mdhess.hessian``).

    Raises:
        InputError: bad arguments. MemoryPlanError: a dense tensor too large for the limit.
    """
    call = "third_order"
    if format not in THIRD_ORDER_FORMATS:
        raise InputError(f"{call}(format=...) must be one of {THIRD_ORDER_FORMATS}; got {format!r}")
    p = Prepared(potential, positions, box, species, call)
    n3 = 3 * p.n_atoms
    if format == "dense":
        plan = _planner.MemoryPlan(f"third_order(format='dense', N={p.n_atoms})", 2 * 8 * n3**3,
                                   {"output and its scatter": 2 * 8 * n3**3})  # fmt: skip
        _planner.check(plan, memory_limit, suggestion="Use format='pairs' or mdhess.contract3.")
    args = p.arrays(np.float64)
    T = np.asarray(_third_tensors(*args))[: p.pairs.n_pairs]
    if not np.all(np.isfinite(T)):
        raise_nonfinite(call, "tensors")
    pl = p.pairs
    shift = np.zeros((pl.n_pairs, 3)) if pl.shift is None else pl.shift
    out = PairTensors(pl.i.copy(), pl.j.copy(), shift, T, p.n_atoms)
    return out.to_dense() if format == "dense" else out
