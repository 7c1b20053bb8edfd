"""Normal-mode analysis: mass-weighted Hessian, rigid-body projection, dense / shift-invert /
LOBPCG eigensolvers, frequencies in physical units, thermodynamics, DOS and mode export.

Conventions. A = M^-1/2 H M^-1/2 (M = masses, 3 per atom). The rigid-body directions Y
(mass-weighted translations, and rotations about the centre of mass) are projected out: the
spectrum returned is that of Q A Q with Q = I - Y Y^T, on which the projected directions are exact
zero modes (eigenvalue 0, vector from Y). ``k`` counts every returned mode, projected ones included.
"""

import os
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse

from ._eigensolvers import (
    bsr_diagonal_blocks,
    mass_weighted_sparse,
    operator_blocks_csr,
    solve_dense,
    solve_lobpcg,
)
from .._errors import InputError
from ..pair._geometry import as_cell
from ._shift_invert import cholmod_available, solve_shift_invert
from ._thermo import HarmonicThermo, check_temperature, density_of_states, harmonic_thermo
from .._units import UnitSystem, frequency_factor, unit_system

SOLVERS = ("auto", "dense", "shift-invert", "lobpcg")
PROJECTIONS = ("auto", "none", "translations", "rigid")
WHICH = ("lowest", "highest")
# auto: dense eigh up to this many degrees of freedom, LOBPCG above. Crossovers measured for 20
# modes (2-core CPU, benchmarks in docs/benchmarks.md): with positions (two-level preconditioner)
# 900-1100 (elastic network) and ~1450 (LJ crystal, 16% of the entries stored); without them
# (block Jacobi) ~2000. A matrix more than DENSE_FILL full (all pairs, long cutoffs) makes every
# LOBPCG product cost a dense one: dense eigh up to DENSE_MAX_FULL (at 2400, all-pairs LJ:
# eigh 1.3 s, LOBPCG 9.7 s)
DENSE_MAX = 1200
DENSE_MAX_NO_POSITIONS = 2000
DENSE_MAX_FULL = 2400
DENSE_FILL = 0.25
# auto, when CHOLMOD is installed (the optional cvxopt extra): shift-invert for the lowest modes of
# a sparse matrix in free space (box None) with at most SI_MAX_BLOCKS 3x3 blocks per row (elastic
# networks, contact and nearest-neighbour models) from SI_MIN_DOF to SI_MAX_DOF degrees of freedom.
# Measured (20 modes, tol 1e-8, 2-core CPU): network N = 256 / 1024 / 2048 / 4096 (19 blocks a row)
# 0.017 / 0.082 / 0.23 / 0.69 s against dense 0.046 / 1.16 s and LOBPCG 0.047 / 0.19 / 0.43 / 1.01
# s; at N = 8192 2.9 vs 3.3 s, at 16384 8.5 vs 8.0 s (the factor's fill grows as N^2). Periodic
# boxes double the separators, and the factor's cost with them: fcc with nearest neighbours
# (13 blocks a row) breaks even at N = 2048, a 6.0 A LJ cutoff (19) loses 2x there, so periodic
# systems keep LOBPCG; so do denser rows (79 blocks, 8.5 A argon: 1.5 vs 0.64 s at N = 2048)
SI_MAX_BLOCKS = 25
SI_MIN_DOF = 600
SI_MAX_DOF = 15000
# ... and by the number of modes: LOBPCG's cost grows as k^2 (Rayleigh-Ritz on 3k columns),
# shift-invert's as k (Lanczos vectors), dense eigh's barely (subset by index). Measured at 6144
# degrees of freedom: dense 10-12 s for any k; LOBPCG network k = 100 / 400 1.7 / 16.4 s, argon
# crystal k = 150 / 300 10.1 / 32.4 s (crossover near 3N/36 and 3N/20); shift-invert k = 400
# 5.0 s, k = 1200 49 s; at 1200 degrees of freedom shift-invert k = 120 ties dense (0.22 s).
# So dense when k > 3N / DENSE_K_FRACTION (LOBPCG) or 3N / SI_K_FRACTION (shift-invert), as long
# as the dense matrix stays affordable (up to DENSE_K_MAX degrees of freedom: 3.2 GB)
DENSE_K_FRACTION = 30
SI_K_FRACTION = 10
DENSE_K_MAX = 20000


def _fill(kind, H, n3: int) -> float:
    """Fraction of the (3N)^2 entries that are stored or structurally non-zero."""
    if kind == "dense":
        return np.count_nonzero(H) / float(n3) ** 2
    if kind == "sparse":
        return H.nnz / float(n3) ** 2
    slots = H.n_pair_slots
    if slots is None:
        return 1.0  # an operator of unknown structure
    return min(9.0 * (2 * slots + n3 // 3) / float(n3) ** 2, 1.0)


# -- input checks -------------------------------------------------------------------------------
def _classify(H):
    """('dense', ndarray) | ('sparse', csr/bsr) | ('operator', HessianOperator)."""
    from ..pair._operators import HessianOperator

    if isinstance(H, HessianOperator):
        return "operator", H
    if scipy.sparse.issparse(H):
        if H.ndim != 2 or H.shape[0] != H.shape[1]:
            raise InputError(f"normal_modes(H=...) must be a square (3N, 3N) matrix; got shape {H.shape}")
        return "sparse", H
    try:
        A = np.asarray(H, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(
            "normal_modes(H=...) must be a (3N, 3N) array, a scipy sparse matrix or an mdhess "
            f"HessianOperator; got {type(H).__name__}"
        ) from exc
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise InputError(f"normal_modes(H=...) must be a square (3N, 3N) matrix; got shape {A.shape}")
    return "dense", A


def _check_symmetric(kind, H, n3):
    if kind == "dense":
        if not np.all(np.isfinite(H)):
            raise InputError("normal_modes(H=...) has non-finite entries (NaN or inf)")
        D = np.abs(H - H.T)
        scale = max(float(np.abs(H).max()), 1e-300)
        a, b = np.unravel_index(int(np.argmax(D)), D.shape)
        dev = float(D[a, b])
    elif kind == "sparse":
        if not np.all(np.isfinite(H.data)):
            raise InputError("normal_modes(H=...) has non-finite entries (NaN or inf)")
        C = H.tocsr()
        x, y = np.random.default_rng(0).standard_normal((2, n3))
        hx, hy = C @ x, C @ y
        if abs(float(x @ hy - y @ hx)) <= 1e-12 * float(np.linalg.norm(hx) * np.linalg.norm(y)):
            # a random probe of x.(Hy) - y.(Hx) is zero for symmetric H (and almost surely not otherwise)
            return
        D = abs(C - C.T).tocoo()
        scale = max(float(abs(C).max()), 1e-300)
        if D.nnz == 0:
            return
        p = int(np.argmax(D.data))
        a, b, dev = int(D.row[p]), int(D.col[p]), float(D.data[p])
    else:  # operator: one random probe, x.(Hy) against y.(Hx)
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((2, n3))
        hx, hy = np.asarray(H @ x), np.asarray(H @ y)
        dev = abs(float(x @ hy - y @ hx))
        scale = max(float(np.linalg.norm(hx) * np.linalg.norm(y)), 1e-300)
        if dev > 1e-10 * scale:
            raise InputError(
                f"normal_modes(H=...) operator is not symmetric: x.(H y) - y.(H x) = {dev:.3g} "
                f"for random x, y (relative {dev / scale:.2g})"
            )
        return
    if dev > 1e-10 * scale:
        raise InputError(
            f"normal_modes(H=...) is not symmetric: |H[{a}, {b}] - H[{b}, {a}]| = {dev:.3g} "
            f"(relative to max |H| = {scale:.3g}: {dev / scale:.2g}); symmetrise it or check its assembly"
        )


def _check_masses(masses, n_atoms):
    if masses is None:
        return np.ones(n_atoms)
    try:
        m = np.asarray(masses, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"normal_modes(masses=...) must be numeric; got {type(masses).__name__}") from exc
    if m.ndim == 0:
        m = np.full(n_atoms, float(m))
    if m.shape != (n_atoms,):
        raise InputError(
            f"normal_modes(masses=...) needs one mass per atom: shape ({n_atoms},) for a "
            f"({3 * n_atoms}, {3 * n_atoms}) Hessian; got shape {m.shape}"
        )
    bad = ~np.isfinite(m) | (m <= 0)
    if bad.any():
        a = int(np.argmax(bad))
        raise InputError(f"normal_modes(masses=...) must be finite and > 0; got {m[a]!r} at atom {a}")
    return m


def _check_positions(positions, n_atoms):
    if positions is None:
        return None
    try:
        R = np.asarray(positions, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"normal_modes(positions=...) must be a numeric (N, 3) array; got {type(positions).__name__}"
        ) from exc
    if R.shape != (n_atoms, 3):
        raise InputError(
            f"normal_modes(positions=...) expects shape ({n_atoms}, 3) to match H; got {R.shape}"
        )
    if not np.all(np.isfinite(R)):
        raise InputError("normal_modes(positions=...) has non-finite coordinates")
    return R


# -- rigid-body basis ---------------------------------------------------------------------------
def rigid_body_basis(masses, positions=None, *, rotations: bool = True):
    """(3N, c) orthonormal mass-weighted rigid-body directions: 3 translations, plus the rotations
    about the centre of mass when positions are given (2 for a linear molecule, 0 for one atom).
    """
    m = np.asarray(masses, dtype=np.float64)
    n = m.size
    sm = np.sqrt(m)
    cols = []
    for a in range(3):
        t = np.zeros((n, 3))
        t[:, a] = sm
        cols.append(t.ravel())
    if rotations and positions is not None:
        R = np.asarray(positions, dtype=np.float64)
        r = R - (m[:, None] * R).sum(0) / m.sum()
        for a in range(3):
            e = np.zeros(3)
            e[a] = 1.0
            cols.append((sm[:, None] * np.cross(e, r)).ravel())
    Y = np.stack(cols, axis=1)
    U, s, _ = np.linalg.svd(Y / np.linalg.norm(Y, axis=0).clip(1e-300), full_matrices=False)
    rank = int(np.sum(s > 1e-8 * s[0]))
    Yt = np.linalg.qr(Y[:, :3])[0]  # keep the three translations as the first (nice) vectors
    if rank == 3:
        return Yt
    extra = U[:, :rank] - Yt @ (Yt.T @ U[:, :rank])
    Ue = np.linalg.svd(extra, full_matrices=False)[0]
    return np.hstack([Yt, Ue[:, : rank - 3]])


# -- result ---------------------------------------------------------------------------------------
@dataclass(eq=False)
class NormalModes:
    """Normal modes of a mass-weighted Hessian (from ``mdhess.normal_modes``).

    Attributes:
        eigenvalues: (m,) ascending eigenvalues of Q M^-1/2 H M^-1/2 Q, in the input units
            energy / (length^2 mass) = omega^2 in (rad / time unit)^2.
        vectors: (3N, m) mass-weighted orthonormal eigenvectors (columns), row 3*i + a.
        masses: (N,) masses used (ones when none were given).
        units: the UnitSystem (None: input units unspecified; only "reduced" frequencies).
        solver: the solver that ran ("dense", "shift-invert" or "lobpcg"; "auto" resolved).
        n_projected: rigid-body directions projected out (returned as exact zero modes).
        projected: which ones, e.g. "translations + rotations".
        zero_tol: |lambda| <= zero_tol * scale counts as a zero mode; ``scale`` is max diag(A).
        scale: the eigenvalue scale used by the zero test (largest diagonal entry of A).
        positions, box: as given (for export), or None.
        info: solver details (iterations, preconditioner, ...).
    """

    eigenvalues: np.ndarray
    vectors: np.ndarray
    masses: np.ndarray
    units: UnitSystem | None
    solver: str
    n_projected: int
    projected: str
    zero_tol: float
    scale: float
    positions: np.ndarray | None = None
    box: np.ndarray | None = None
    which: str = "lowest"
    info: dict = field(default_factory=dict)

    # -- basic derived quantities ---------------------------------------------------------------
    @property
    def n_atoms(self) -> int:
        return self.masses.size

    @property
    def n_modes(self) -> int:
        return self.eigenvalues.size

    @property
    def zero_mask(self) -> np.ndarray:
        return np.abs(self.eigenvalues) <= self.zero_tol * self.scale

    @property
    def imaginary_mask(self) -> np.ndarray:
        return (self.eigenvalues < 0) & ~self.zero_mask

    @property
    def n_zero(self) -> int:
        """Zero modes among those returned: projected ones plus any numerically zero eigenvalue."""
        return int(self.zero_mask.sum())

    @property
    def n_imaginary(self) -> int:
        return int(self.imaginary_mask.sum())

    @property
    def omega(self) -> np.ndarray:
        """Signed angular frequencies sign(lambda) sqrt(|lambda|), rad per the system's time unit
        (rad/ps for "metal", rad/fs for "real", rad/tau for "lj"); imaginary modes negative."""
        w = np.sign(self.eigenvalues) * np.sqrt(np.abs(self.eigenvalues))
        w[self.zero_mask] = 0.0
        if self.units is not None and not self.units.reduced:
            w = w * self.units.omega_si * self.units.time_si
        return w

    @property
    def frequencies(self) -> np.ndarray:
        """nu = omega / 2 pi, THz for "metal" and "real", 1/tau for "lj" (input units when units is
        None); imaginary modes as negative numbers, zero modes exactly 0."""
        return self.frequencies_in("THz" if self.units is not None and not self.units.reduced else "reduced")

    def frequencies_in(self, unit: str = "THz") -> np.ndarray:
        """Signed frequencies in "THz", "cm^-1", "meV" (h nu), "Hz", "rad/s" or "reduced"."""
        w = np.sign(self.eigenvalues) * np.sqrt(np.abs(self.eigenvalues))
        w[self.zero_mask] = 0.0
        return w * frequency_factor(self.units, unit)

    @property
    def displacements(self) -> np.ndarray:
        """(m, N, 3) Cartesian displacement patterns M^-1/2 e, each scaled to unit Euclidean norm."""
        d = (self.vectors / np.repeat(np.sqrt(self.masses), 3)[:, None]).T.reshape(
            self.n_modes, self.n_atoms, 3
        )
        return d / np.linalg.norm(d.reshape(self.n_modes, -1), axis=1).clip(1e-300)[:, None, None]

    @property
    def participation_ratio(self) -> np.ndarray:
        """(m,) PR = (sum_i |e_i|^2)^2 / (N sum_i |e_i|^4) of the mass-weighted eigenvector (Bell
        and Dean, Discuss. Faraday Soc. 50, 55 (1970)): 1 for a uniform mode, 1/N on one atom."""
        p = (self.vectors.T.reshape(self.n_modes, self.n_atoms, 3) ** 2).sum(axis=2)
        return p.sum(axis=1) ** 2 / (self.n_atoms * (p**2).sum(axis=1)).clip(1e-300)

    def summary(self) -> str:
        f = self.frequencies
        vib = f[~self.zero_mask]
        unit = "THz" if self.units is not None and not self.units.reduced else "reduced"
        rng = f"{vib.min():.6g} .. {vib.max():.6g} {unit}" if vib.size else "none"
        return (
            f"{self.n_modes} modes of {self.n_atoms} atoms ({self.which}), solver={self.solver}, "
            f"units={None if self.units is None else self.units.name}; projected {self.n_projected} "
            f"({self.projected}); zero modes {self.n_zero}, imaginary {self.n_imaginary}; "
            f"non-zero frequencies {rng}"
        )

    __str__ = summary

    # -- thermodynamics -----------------------------------------------------------------------
    def thermodynamics(self, T, *, quantum: bool = True, hbar=None) -> HarmonicThermo:
        """Harmonic free energy, entropy, heat capacity and zero-point energy at temperature T.

        Args:
            T: temperature, K ("metal", "real") or epsilon / k_B ("lj").
            quantum: quantum (Bose-Einstein) oscillators; False for classical ones.
            hbar: Planck's constant / 2 pi in reduced units (needed for "lj" or units=None, where
                hbar omega has no value otherwise; ignored for physical units).

        Returns:
            HarmonicThermo (totals over the returned modes; zero and imaginary modes skipped and
            counted). For a partial spectrum (k < 3N) the sums cover only the returned modes.
        """
        t = check_temperature(T, "NormalModes.thermodynamics")
        us = self.units
        keep = ~self.zero_mask & ~self.imaginary_mask
        if us is not None and not us.reduced:
            hw = us.hbar * self.omega[keep] / us.time_si
            k_B = us.k_B
        else:
            if hbar is None:
                raise InputError(
                    "NormalModes.thermodynamics(hbar=...) is needed in reduced units "
                    f"(units={None if us is None else us.name!r}): hbar omega has no value otherwise"
                )
            hw = float(hbar) * self.omega[keep]
            k_B = 1.0
        zpe, F, U, S, C = harmonic_thermo(hw, k_B * t, k_B, quantum=quantum)
        return HarmonicThermo(
            t,
            bool(quantum),
            zpe,
            F,
            U,
            S,
            C,
            int(keep.sum()),
            self.n_zero,
            self.n_imaginary,
            "none" if us is None else us.name,
        )

    # -- density of states ----------------------------------------------------------------------
    def dos(
        self, *, unit=None, bins: int = 100, width=None, fmin=None, fmax=None, include_zero: bool = False
    ):
        """Vibrational density of states g(nu) (histogram, or Gaussian broadening of ``width``).

        Args:
            unit: frequency unit (default THz for physical units, "reduced" otherwise).
            bins: histogram bins, or grid points when ``width`` is given.
            width: Gaussian standard deviation in ``unit`` (None: histogram).
            fmin, fmax: window in ``unit``.
            include_zero: count the zero modes too (default: skipped).

        Returns:
            (nu, g): grid and modes per unit frequency; the integral of g is the number of modes counted.
        """
        unit = unit or ("THz" if self.units is not None and not self.units.reduced else "reduced")
        f = self.frequencies_in(unit)
        if not include_zero:
            f = f[~self.zero_mask]
        return density_of_states(f, bins=bins, width=width, fmin=fmin, fmax=fmax)

    def plot_dos(self, path, **kwargs) -> str:
        """Write a PNG of the density of states (matplotlib, Agg canvas; ``pip install mdhess[plot]``).

        Keyword arguments go to ``dos``. Returns the path written.
        """
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as exc:  # pragma: no cover - optional extra
            raise ImportError("NormalModes.plot_dos needs matplotlib: pip install 'mdhess[plot]'") from exc
        unit = kwargs.get("unit") or (
            "THz" if self.units is not None and not self.units.reduced else "reduced"
        )
        nu, g = self.dos(**kwargs)
        fig = Figure(figsize=(6, 4))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        if kwargs.get("width") is None:
            ax.bar(nu, g, width=(nu[1] - nu[0]) if nu.size > 1 else 1.0, color="tab:blue")
        else:
            ax.plot(nu, g, color="tab:blue")
        ax.set_xlabel(f"frequency ({unit})")
        ax.set_ylabel(f"g (modes / {unit})")
        ax.set_title(f"vibrational DOS, {int(np.sum(~self.zero_mask))} modes")
        fig.tight_layout()
        fig.savefig(os.fspath(path), format="png", dpi=120)
        return os.fspath(path)

    # -- export ---------------------------------------------------------------------------------
    def write_xyz(
        self, path, mode: int, *, amplitude: float = 0.3, frames: int = 20, symbols=None, positions=None
    ) -> str:
        """Write a multi-frame extended-XYZ animation of one mode (one period, ``frames`` frames).

        Args:
            path: output file.
            mode: index into the returned modes (0 = first, negative counts from the end).
            amplitude: largest atomic displacement, length units.
            frames: frames per period (>= 2).
            symbols: (N,) element symbols or one symbol (default "X").
            positions: (N, 3) equilibrium positions (default: those given to normal_modes).

        Returns:
            The path written. Each frame holds species, pos and the displacement pattern ("mode").
        """
        R = self.positions if positions is None else _check_positions(positions, self.n_atoms)
        if R is None:
            raise InputError(
                "NormalModes.write_xyz(positions=...) is needed: normal_modes was called without positions"
            )
        if not -self.n_modes <= int(mode) < self.n_modes:
            raise InputError(
                f"NormalModes.write_xyz(mode=...) must be in [-{self.n_modes}, {self.n_modes}); got {mode}"
            )
        if int(frames) < 2:
            raise InputError(f"NormalModes.write_xyz(frames=...) must be >= 2; got {frames}")
        sym = np.broadcast_to(np.asarray("X" if symbols is None else symbols, dtype=object), (self.n_atoms,))
        d = self.displacements[int(mode)]
        d = d * (float(amplitude) / max(float(np.linalg.norm(d, axis=1).max()), 1e-300))
        f = self.frequencies[int(mode)]
        head = ""
        if self.box is not None:
            head = 'Lattice="' + " ".join(f"{x:.10g}" for x in self.box.ravel()) + '" pbc="T T T" '
        lines = []
        for t in range(int(frames)):
            phase = np.sin(2 * np.pi * t / int(frames))
            X = R + phase * d
            lines.append(f"{self.n_atoms}")
            lines.append(
                f"{head}Properties=species:S:1:pos:R:3:mode:R:3 mode={int(mode)} frequency={f:.8g} "
                f"frame={t} phase={phase:.6f}"
            )
            for a in range(self.n_atoms):
                x, u = X[a], d[a]
                lines.append(f"{sym[a]} {x[0]:.8f} {x[1]:.8f} {x[2]:.8f} {u[0]:.8f} {u[1]:.8f} {u[2]:.8f}")
        with open(path, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        return os.fspath(path)


def _vibrational(kind, H, s_atom, Y, kv, which, solver, R, cell, tol, maxiter, sigma, seed, k):
    """(w, V, info, scale): kv eigenpairs of Q A Q in the complement of Y, by ``solver``."""
    n3 = 3 * s_atom.size
    c = Y.shape[1]
    info = {}
    A_csr = None
    if solver == "dense":
        if kind == "dense":
            A = H * np.repeat(s_atom, 3)[:, None] * np.repeat(s_atom, 3)[None, :]
        elif kind == "sparse":
            A = mass_weighted_sparse(H, s_atom)[0].toarray()
        else:
            Hd = np.asarray(H.as_matrix(), dtype=np.float64)
            A = Hd * np.repeat(s_atom, 3)[:, None] * np.repeat(s_atom, 3)[None, :]
        scale = float(np.abs(np.diag(A)).max()) or 1.0
        w, V = solve_dense(A, Y, kv, which)
    else:
        if kind == "dense":
            A_csr = scipy.sparse.csr_matrix(H * np.repeat(s_atom, 3)[:, None] * np.repeat(s_atom, 3)[None, :])
        elif kind == "sparse":
            A_csr = mass_weighted_sparse(H, s_atom)[0]
        elif solver == "shift-invert":
            A_csr = mass_weighted_sparse(operator_blocks_csr(H), s_atom)[0]
        if A_csr is not None:
            scale = float(np.abs(A_csr.diagonal()).max()) or 1.0
        else:
            D = np.asarray(H.diagonal_blocks())
            scale = float(np.abs(np.einsum("naa->na", D) * (s_atom**2)[:, None]).max()) or 1.0
        if kv + c > n3 - 2:
            raise InputError(
                f"normal_modes(k={k}) leaves too few other modes for solver={solver!r} ({n3} degrees of "
                "freedom); use solver='dense'"
            )
        if kv == 0:
            w, V = np.zeros(0), np.zeros((n3, 0))
        elif solver == "shift-invert":
            w, V, info = solve_shift_invert(A_csr, Y, kv, which, sigma, scale=scale, tol=tol, seed=seed)
        else:
            w, V, info = solve_lobpcg(kind, H, A_csr, s_atom, Y, kv, which, R, cell, tol, maxiter, seed)
    return w, V, info, scale


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
            Lanczos on the sparse matrix, shift ``sigma``), or "lobpcg" (preconditioned, on a sparse
            matrix or the operator). "auto" takes "dense" up to 1200 degrees of freedom when
            positions are given (2000 without: LOBPCG is then preconditioned by block Jacobi
            only; 2400 when over a quarter of the matrix is non-zero), or when more than 1/30
            of the modes are wanted (up to 20000 degrees of freedom), and "lobpcg" above; but
            "shift-invert" for up to 1/10 of the modes of a sparse matrix (scipy sparse, or a
            dense array mostly zeros) in free space (box None) with at most 25 3x3 blocks a row
            (networks, contact models) and 600 to 15000 degrees of freedom when CHOLMOD is
            installed (``pip install mdhess[cholmod]``: 2-3x faster there).
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

    Returns:
        NormalModes.

    Raises:
        InputError: H not square or not symmetric (the asymmetry found is stated), N not a whole
            number of atoms, masses of the wrong length or not positive, k out of range, unknown
            which/project/units/solver, positions of the wrong shape, rotations asked for a
            periodic box or without positions, sigma not a finite number or at an eigenvalue.
    """
    kind, H = _classify(H)
    n3 = int(H.shape[0])
    if n3 % 3 or n3 == 0:
        raise InputError(
            f"normal_modes(H=...) must be (3N, 3N); got {H.shape} ({n3} is not a positive multiple of 3)"
        )
    n_atoms = n3 // 3
    _check_symmetric(kind, H, n3)
    m = _check_masses(masses, n_atoms)
    if which not in WHICH:
        raise InputError(f"normal_modes(which=...) must be one of {WHICH}; got {which!r}")
    if project not in PROJECTIONS:
        raise InputError(f"normal_modes(project=...) must be one of {PROJECTIONS}; got {project!r}")
    if solver not in SOLVERS:
        raise InputError(f"normal_modes(solver=...) must be one of {SOLVERS}; got {solver!r}")
    if sigma is not None and (
        isinstance(sigma, bool)
        or not isinstance(sigma, (int, float, np.integer, np.floating))
        or not np.isfinite(sigma)
    ):
        raise InputError(f"normal_modes(sigma=...) must be a finite real number or None; got {sigma!r}")
    us = unit_system(units)
    R = _check_positions(positions, n_atoms)
    cell = as_cell(box, call="normal_modes")
    if k is None:
        k = n3
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= n3:
        raise InputError(f"normal_modes(k=...) must be an integer in 1..{n3} (3N for N={n_atoms}); got {k!r}")
    k = int(k)
    if project == "rigid":
        if R is None:
            raise InputError("normal_modes(project='rigid') needs positions=... to build the rotations")
        if cell is not None:
            raise InputError(
                "normal_modes(project='rigid'): rotations are not zero modes of a periodic box; "
                "use 'translations'"
            )
    rot = (project == "rigid") or (project == "auto" and cell is None and R is not None)
    if project == "none":
        Y = np.zeros((n3, 0))
        projected = "none"
    else:
        Y = rigid_body_basis(m, R, rotations=rot)
        projected = "translations" + (f" + {Y.shape[1] - 3} rotations" if Y.shape[1] > 3 else "")
    c = Y.shape[1]
    s_atom = 1.0 / np.sqrt(m)

    # the solver
    if solver == "auto":
        fill = _fill(kind, H, n3)
        if fill > DENSE_FILL:
            limit = DENSE_MAX_FULL
        else:
            limit = DENSE_MAX if R is not None else DENSE_MAX_NO_POSITIONS
        small = n3 <= limit or (k > n3 // DENSE_K_FRACTION and n3 <= DENSE_K_MAX)
        solver = "dense" if small else "lobpcg"
        if (
            kind in ("sparse", "dense")  # a dense array of a sparse matrix is converted to CSR
            and which == "lowest"
            and cell is None
            and k <= n3 // SI_K_FRACTION
            and SI_MIN_DOF <= n3 <= SI_MAX_DOF
            and fill * n3 <= 3 * SI_MAX_BLOCKS
            and cholmod_available()
        ):
            solver = "shift-invert"
    if solver == "shift-invert" and kind == "operator" and not H.has_blocks:
        raise InputError(
            "normal_modes(solver='shift-invert') needs a matrix: a dense or sparse H, or an mdhess operator"
        )
    # vibrational modes to compute: k - c for "lowest" suffices unless more than k - c of them are
    # negative (then the k lowest of the projected spectrum are imaginary and zero modes): redo with k
    kv = min(k if which == "highest" or k <= c else k - c, n3 - c)
    while True:
        w, V, info, scale = _vibrational(
            kind, H, s_atom, Y, kv, which, solver, R, cell, tol, maxiter, sigma, seed, k
        )
        if which == "highest" or kv >= min(k, n3 - c) or (w.size and w[-1] >= 0):
            break
        kv = min(k, n3 - c)
    # merge the projected zero modes and keep k
    if which == "lowest":
        w_all = np.concatenate([w, np.zeros(c)])
        V_all = np.hstack([V, Y])
        order = np.argsort(w_all, kind="stable")[:k]
    else:
        w_all = np.concatenate([np.zeros(c), w])
        V_all = np.hstack([Y, V])
        order = np.argsort(w_all, kind="stable")[-k:]
    return NormalModes(
        eigenvalues=w_all[order],
        vectors=V_all[:, order],
        masses=m,
        units=us,
        solver=solver,
        n_projected=c,
        projected=projected,
        zero_tol=float(zero_tol),
        scale=scale,
        positions=R,
        box=cell,
        which=which,
        info=info,
    )
