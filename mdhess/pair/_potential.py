"""Pair potentials: a scalar kernel, per-species-pair parameter tables and a cutoff treatment.

A ``PairPotential`` is a JAX pytree (its parameter tables are leaves, the kernel is static), so
it can be passed through ``jax.jit`` and differentiated with respect to its parameters.

Cutoff treatments (per species pair ``rc``):
- ``switch=None``: hard cut with the energy shifted to zero at rc (LAMMPS ``pair_modify shift
  yes``, matscipy's ``LennardJonesCut``). Energy is continuous; forces and blocks jump at rc.
- ``switch=r_on``: phi(r) S(x) with the quintic smoothstep S(x) = 1 - 10x^3 + 15x^4 - 6x^5,
  x = (r - r_on) / (rc - r_on). S, S' and S'' are 1, 0, 0 at r_on and 0, 0, 0 at rc, so the
  energy is C2 everywhere and Hessian blocks are continuous when a pair crosses the shell.
  (jax-md's multiplicative switch is a cubic: only C1, its second derivative jumps.)
- ``switch=r_on, smoothness=4``: the degree-9 smoothstep S(x) = 1 - x^5 (126 - 420x + 540x^2
  - 315x^3 + 70x^4), whose first four derivatives vanish at both ends: the energy is C4, so
  third- and fourth-order force constants (``mdhess.contract3``, ``third_order``, nonlinear
  modes) are continuous too when a pair crosses the shell.
"""

import abc
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_real_array
from .._errors import InputError
from . import _kernels
from ._pairs import PairList, all_pairs, neighbor_pairs


def smoothstep_c2(x):
    """Quintic switch S(x) = 1 - 10x^3 + 15x^4 - 6x^5 on x in [0, 1] (S(0)=1, S(1)=0, C2)."""
    return 1.0 - x**3 * (10.0 - 15.0 * x + 6.0 * x * x)


def smoothstep_c4(x):
    """Degree-9 switch S(x) = 1 - x^5 (126 - 420x + 540x^2 - 315x^3 + 70x^4) on [0, 1]: S(0) = 1,
    S(1) = 0, and the first four derivatives of S vanish at both ends (C4)."""
    return 1.0 - x**5 * (126.0 + x * (-420.0 + x * (540.0 + x * (-315.0 + 70.0 * x))))


SMOOTHSTEPS = {2: smoothstep_c2, 4: smoothstep_c4}
"""Switch polynomials by smoothness (the order of the last continuous derivative of the energy)."""


def inside_cutoff(r, rc):
    """The cutoff rule, written once: a pair interacts when r < rc (strictly). Used by the energy
    (``phi_eff``), the host pair lists and the jax-md plugin's list filter; numpy or JAX arrays."""
    return r < rc


class Potential(abc.ABC):
    """What the engine asks of a potential: the interface every mdhess potential implements.

    The engine (``mdhess.pair``) never branches on a potential's class; it asks these:

    - ``phi_eff(r, pp)``: energy of one pair at distance r (length units) with its gathered
      parameters ``pp``, cutoff treatment included; a JAX scalar function (the ONLY physics).
    - ``pair_params(si, sj, index)``: per-pair parameter arrays for species (si, sj) and the
      pairs' positions ``index`` in the pair list (bonded potentials use the index).
    - ``pair_list(positions, cell, species, call=...)``: the host list of interacting pairs.
    - ``n_species`` (S of its (S, S) tables, or None), ``max_cutoff`` (length, or None),
      ``all_pairs`` (True: every pair interacts, free space, no list needed),
      ``bonds()`` (fixed bonds with their own image shifts, or None: pairs follow the
      positions and the box), ``describe()`` (plain-Python description for files).

    Implementations are JAX pytrees (parameters as leaves) so they pass through ``jax.jit``.
    """

    name: str = "custom"

    @property
    @abc.abstractmethod
    def n_species(self) -> int | None:
        """S for (S, S) parameter tables, None when every parameter is a scalar."""

    @property
    @abc.abstractmethod
    def max_cutoff(self) -> float | None:
        """The largest cutoff (length units), None without a cutoff."""

    @property
    def all_pairs(self) -> bool:
        """True when every pair of atoms interacts (free space only; the dense layout then needs
        no pair list)."""
        return False

    def bonds(self):
        """(i, j, shift) of fixed bonds whose image shifts do not follow the box (elastic
        networks), or None (pairs are found from the positions and the box)."""
        return None

    @abc.abstractmethod
    def pair_params(self, si, sj, index=None) -> dict:
        """Per-pair parameter arrays for species indices (si, sj) and list positions ``index``."""

    @abc.abstractmethod
    def phi_eff(self, r, pp: dict):
        """Energy of one pair at distance r with its gathered parameters (JAX scalar function)."""

    @abc.abstractmethod
    def pair_list(self, positions: np.ndarray, cell, species: np.ndarray, *, call: str) -> PairList:
        """Host-side list of the interacting pairs of ``positions`` in ``cell``."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """Plain-Python description (kernel, parameters, cutoff) for files and logs."""


def check_potential(potential, call: str) -> "Potential":
    """``potential`` if it is an mdhess potential, else InputError naming ``call``."""
    if not isinstance(potential, Potential):
        raise InputError(
            f"{call}(potential=...) must be an mdhess potential (e.g. mdhess.lennard_jones(...)); "
            f"got {type(potential).__name__}"
        )
    return potential


def _as_table(value, name: str, call: str) -> np.ndarray:
    a = check_real_array(value, call=call, name=name, what="a real number or a symmetric (S, S) table")
    if a.ndim == 0:
        if not np.isfinite(a):
            raise InputError(f"{call}({name}=...) must be finite; got {float(a)}")
        return a
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise InputError(
            f"{call}({name}=...) must be a scalar or a square (S, S) table indexed by species; "
            f"got shape {a.shape}"
        )
    if not np.all(np.isfinite(a)):
        raise InputError(f"{call}({name}=...) has non-finite entries: {a.tolist()}")
    if not np.array_equal(a, a.T):
        raise InputError(f"{call}({name}=...) must be symmetric (table[a, b] == table[b, a]); got {a.tolist()}")
    return a


@jax.tree_util.register_pytree_node_class
class PairPotential(Potential):
    """A pair energy E = sum over pairs of phi_eff(r; params of the species pair).

    Use the constructors (``mdhess.lennard_jones`` ...) or ``mdhess.pair_potential``.

    Attributes:
        phi: scalar kernel phi(r, **params) in energy units.
        params: name -> scalar or symmetric (S, S) table.
        cutoff: None (no cutoff, free space only), scalar or (S, S) table, length units.
        switch: None (shifted hard cut) or r_on, scalar or (S, S) table, length units.
        name: kernel name for display and file metadata ("custom" for user functions).
        smoothness: 2 (quintic switch, C2) or 4 (degree-9 switch, C4); used only with a switch.
    """

    def __init__(self, phi: Callable, params: dict, cutoff=None, switch=None, name: str = "custom",
                 smoothness: int = 2):  # fmt: skip
        self.phi = phi
        self.params = dict(params)
        self.cutoff = cutoff
        self.switch = switch
        self.name = name
        self.smoothness = smoothness

    # -- pytree -----------------------------------------------------------------------------
    def tree_flatten(self):
        keys = tuple(sorted(self.params))
        children = (tuple(self.params[k] for k in keys), self.cutoff, self.switch)
        return children, (self.phi, keys, self.name, self.smoothness)

    @classmethod
    def tree_unflatten(cls, aux, children):
        phi, keys, name, smoothness = aux
        values, cutoff, switch = children
        obj = object.__new__(cls)
        obj.phi, obj.params, obj.cutoff, obj.switch, obj.name = phi, dict(zip(keys, values)), cutoff, switch, name
        obj.smoothness = smoothness
        return obj

    # -- species tables ---------------------------------------------------------------------
    @property
    def n_species(self) -> int | None:
        """S for (S, S) tables, None when every parameter and cutoff is a scalar."""
        for v in [*self.params.values(), self.cutoff, self.switch]:
            if v is not None and np.ndim(v) == 2:
                return int(np.shape(v)[0])
        return None

    @property
    def max_cutoff(self) -> float | None:
        return None if self.cutoff is None else float(np.max(self.cutoff))

    @property
    def all_pairs(self) -> bool:
        return self.cutoff is None

    def pair_cutoffs(self, si, sj) -> np.ndarray:
        """Host (p,) cutoffs of the species pairs (si, sj) (numpy; the table or the scalar)."""
        c = np.asarray(self.cutoff)
        return c[si, sj] if c.ndim == 2 else np.broadcast_to(c, np.shape(si))

    def pair_params(self, si, sj, index=None) -> dict:
        """Per-pair parameter arrays, gathered from the tables at species (si, sj).

        ``index`` (position in the pair list) is unused here; bonded potentials use it."""
        out = {}
        tables = dict(self.params)
        if self.cutoff is not None:
            tables["cutoff"] = self.cutoff
        if self.switch is not None:
            tables["switch"] = self.switch
        for k, v in tables.items():
            v = jnp.asarray(v)
            out[k] = v[si, sj] if v.ndim == 2 else jnp.broadcast_to(v, jnp.shape(si))
        return out

    def pair_list(self, positions: np.ndarray, cell, species: np.ndarray, *, call: str) -> PairList:
        """Host-side list of interacting pairs: all pairs without a cutoff, else a neighbour list
        filtered by the per-species-pair cutoffs (r < rc)."""
        if self.cutoff is None:
            if cell is not None:
                raise InputError(
                    f"{call}(box=...) is periodic but the potential ({self.name}) has no cutoff; "
                    "periodic boxes need a potential built with cutoff=..."
                )
            return all_pairs(positions.shape[0])
        return neighbor_pairs(
            positions, cell, self.max_cutoff, call=call,
            keep=lambda i, j, r: inside_cutoff(r, self.pair_cutoffs(species[i], species[j])),
        )  # fmt: skip

    # -- the effective scalar energy ----------------------------------------------------------
    def phi_eff(self, r, pp: dict):
        """Energy of one pair at distance r with its gathered parameters, cutoff treatment included."""
        kp = {k: pp[k] for k in self.params}
        e = self.phi(r, **kp)
        if self.cutoff is None:
            return e
        rc = pp["cutoff"]
        if self.switch is None:
            e = e - self.phi(rc, **kp)
        else:
            r_on = pp["switch"]
            x = jnp.clip((r - r_on) / (rc - r_on), 0.0, 1.0)
            e = e * SMOOTHSTEPS[self.smoothness](x)
        return jnp.where(inside_cutoff(r, rc), e, 0.0)

    def describe(self) -> dict:
        """Plain-Python description (kernel, parameters, cutoff treatment) for files and logs."""

        def plain(v):
            return None if v is None else np.asarray(v).tolist()

        out = {
            "kernel": self.name,
            "params": {k: plain(v) for k, v in self.params.items()},
            "cutoff": plain(self.cutoff),
            "switch": plain(self.switch),
        }
        if self.switch is not None:
            out["smoothness"] = self.smoothness
        return out

    def __repr__(self):
        d = self.describe()
        return f"PairPotential({d['kernel']}, params={d['params']}, cutoff={d['cutoff']}, switch={d['switch']})"


def pair_potential(
    phi: Callable, *, cutoff=None, switch=None, name: str = "custom", smoothness: int = 2, **params
) -> PairPotential:
    """Build a pair potential from any JAX scalar function ``phi(r, **params)``.

    Args:
        phi: JAX-traceable function of a scalar distance r (length units) returning energy.
        cutoff: None, a scalar, or a symmetric (S, S) table of per-species-pair cutoffs (> 0).
        switch: None for a hard cut with energy shift at the cutoff; r_on (scalar or (S, S)
            table, 0 <= r_on < cutoff) for a smooth switch from r_on to the cutoff.
        name: label used in files and messages.
        smoothness: the switch's polynomial: 2 (quintic, energy C2: continuous Hessians) or 4
            (degree 9, energy C4: continuous third and fourth derivatives too).
        **params: scalars or symmetric (S, S) tables passed to phi by keyword.

    Returns:
        PairPotential.

    Raises:
        InputError: a non-callable phi, non-positive cutoff, switch without cutoff or outside
            [0, cutoff), smoothness not 2 or 4 (or not 2 without a switch), tables that are not
            symmetric or disagree on S.
    """
    call = name if name != "custom" else "pair_potential"
    if isinstance(smoothness, bool) or smoothness not in SMOOTHSTEPS:
        raise InputError(f"{call}(smoothness=...) must be 2 (C2 switch) or 4 (C4 switch); got {smoothness!r}")
    if smoothness != 2 and switch is None:
        raise InputError(
            f"{call}(smoothness={smoothness!r}) shapes the switch and needs switch=r_on; got switch=None "
            "(the shifted hard cut is only C0)"
        )
    if not callable(phi):
        raise InputError(f"pair_potential(phi=...) must be callable; got {phi!r}")
    tables = {k: _as_table(v, k, call) for k, v in params.items()}
    cut = None if cutoff is None else _as_table(cutoff, "cutoff", call)
    if cut is not None and np.any(cut <= 0):
        raise InputError(f"{call}(cutoff=...) must be > 0; got {cut.tolist()}")
    sw = None
    if switch is not None:
        if cut is None:
            raise InputError(f"{call}(switch={switch!r}) needs a cutoff; got cutoff=None")
        sw = _as_table(switch, "switch", call)
        if np.any(sw < 0) or np.any(np.broadcast_to(sw, np.broadcast_shapes(sw.shape, cut.shape)) >= cut):
            raise InputError(
                f"{call}(switch=...) must satisfy 0 <= switch < cutoff; got switch={sw.tolist()}, cutoff={cut.tolist()}"
            )
    sizes = {
        n: a.shape[0]
        for n, a in [*tables.items(), ("cutoff", cut), ("switch", sw)]
        if a is not None and a.ndim == 2
    }
    if len(set(sizes.values())) > 1:
        raise InputError(f"{call}(...) species tables disagree on the number of species S: {sizes}")
    _probe_phi(phi, tables, call)
    return PairPotential(phi, tables, cut, sw, name, int(smoothness))


def _probe_phi(phi, tables: dict, call: str) -> None:
    """Trace ``phi(r, **params)`` once on an abstract scalar r (``jax.eval_shape``: nothing is
    computed) so that a pair function that is not a scalar JAX function of a scalar r is refused
    when the potential is built, naming ``pair_potential(phi=...)``, instead of failing later
    inside jit with a raw JAX error."""
    from jax.errors import ConcretizationTypeError, TracerArrayConversionError

    dt = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32
    scalar = jax.ShapeDtypeStruct((), dt)
    kw = {k: scalar for k in tables}
    what = (
        f"{call}(phi=...) must be a JAX function of a scalar distance r returning a scalar energy "
        "(phi(r, **params) with jax.numpy operations"
    )
    try:
        out = jax.eval_shape(lambda r, p: phi(r, **p), scalar, kw)
    except (ConcretizationTypeError, TracerArrayConversionError) as exc:
        raise InputError(
            f"{what}; branch with jnp.where(cond, a, b), not a Python `if` on r, and use jax.numpy, "
            f"not numpy or float()); tracing it failed with {type(exc).__name__}"
        ) from exc
    except Exception as exc:  # any failure to trace is a bad pair function
        raise InputError(f"{what}); calling it on a scalar r failed: {type(exc).__name__}: {exc}"[:600]) from exc
    shape = getattr(out, "shape", None)
    if shape != () or not jnp.issubdtype(getattr(out, "dtype", np.int8), jnp.floating):
        found = f"shape {shape}, dtype {getattr(out, 'dtype', type(out).__name__)}"
        raise InputError(f"{what}); it returned {found} for a scalar r")


def _named(kernel: str, cutoff, switch, smoothness=2, **params) -> PairPotential:
    return pair_potential(
        _kernels.KERNELS[kernel].fn, cutoff=cutoff, switch=switch, name=kernel, smoothness=smoothness, **params
    )


def lennard_jones(sigma=1.0, epsilon=1.0, cutoff=None, switch=None, smoothness=2) -> PairPotential:
    """Lennard-Jones 12-6, 4 eps [(sigma/r)^12 - (sigma/r)^6] (Lennard-Jones 1924).

    sigma in length units, epsilon in energy units; scalars or (S, S) species tables.
    """
    return _named("lennard_jones", cutoff, switch, smoothness, sigma=sigma, epsilon=epsilon)


def morse(D=1.0, a=1.0, r0=1.0, cutoff=None, switch=None, smoothness=2) -> PairPotential:
    """Morse, D (1 - exp(-a (r - r0)))^2 - D (Morse 1929). D energy, a inverse length, r0 length."""
    return _named("morse", cutoff, switch, smoothness, D=D, a=a, r0=r0)


def soft_sphere(sigma=1.0, epsilon=1.0, alpha=2.0, cutoff=None, switch=None, smoothness=2) -> PairPotential:
    """Finite-range soft spheres, (eps/alpha)(1 - r/sigma)^alpha for r < sigma (O'Hern et al. 2003).

    alpha = 2: harmonic spheres; alpha = 5/2: Hertzian spheres. sigma is the contact distance
    (sum of radii) and is also the natural cutoff: with cutoff=None the cutoff is sigma.
    """
    if cutoff is None:
        cutoff = sigma
    return _named("soft_sphere", cutoff, switch, smoothness, sigma=sigma, epsilon=epsilon, alpha=alpha)


def coulomb(
    qq=None, *, charges=None, k_e=1.0, damping=None, cutoff=None, switch=None, smoothness=2
) -> PairPotential:
    """Coulomb k_e q_i q_j / r, bare or damped shifted force (Fennell & Gezelter 2006).

    Args:
        qq: charge products q_i q_j, scalar or (S, S) table. Give either qq or charges.
        charges: per-species charges (S,), turned into the table q_a q_b.
        k_e: Coulomb constant in energy x length / charge^2 (14.399645 eV A / e^2 in metal units).
        damping: None for bare Coulomb; alpha (inverse length) for damped shifted force, which
            needs a cutoff and goes smoothly (energy and force) to zero there.
    """
    if (qq is None) == (charges is None):
        raise InputError(f"coulomb(...) needs exactly one of qq or charges; got qq={qq!r}, charges={charges!r}")
    if charges is not None:
        q = check_real_array(charges, call="coulomb", name="charges", what="a real (S,) vector of per-species charges")
        if q.ndim != 1:
            raise InputError(f"coulomb(charges=...) must be a (S,) vector of per-species charges; got shape {q.shape}")
        qq = np.outer(q, q)
    if damping is None:
        return _named("coulomb", cutoff, switch, smoothness, qq=qq, k_e=k_e)
    if cutoff is None:
        raise InputError(f"coulomb(damping={damping!r}) (damped shifted force) needs a cutoff; got cutoff=None")
    return _named("coulomb_dsf", cutoff, switch, smoothness, qq=qq, k_e=k_e, alpha=damping, r_c=cutoff)


def buckingham(A=1.0, rho=1.0, C=0.0, cutoff=None, switch=None, smoothness=2) -> PairPotential:
    """Buckingham, A exp(-r/rho) - C/r^6 (Buckingham 1938)."""
    return _named("buckingham", cutoff, switch, smoothness, A=A, rho=rho, C=C)


def yukawa(A=1.0, kappa=1.0, cutoff=None, switch=None, smoothness=2) -> PairPotential:
    """Yukawa, A exp(-kappa r)/r (Yukawa 1935)."""
    return _named("yukawa", cutoff, switch, smoothness, A=A, kappa=kappa)


def gaussian(sigma=1.0, epsilon=1.0, cutoff=None, switch=None, smoothness=2) -> PairPotential:
    """Gaussian core, eps exp(-(r/sigma)^2) (Stillinger 1976)."""
    return _named("gaussian", cutoff, switch, smoothness, sigma=sigma, epsilon=epsilon)


def harmonic(k=1.0, r0=1.0, cutoff=None, switch=None, smoothness=2) -> PairPotential:
    """Harmonic spring between every pair, k/2 (r - r0)^2. See elastic_network for bonded springs."""
    return _named("harmonic", cutoff, switch, smoothness, k=k, r0=r0)
