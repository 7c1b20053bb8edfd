"""Phonons of a periodic crystal from the exact dynamical matrix D(q) (``pair._dynmat``).

``phonons(potential, R, box, ...)`` builds the q-independent lattice sum once and returns
``Phonons``: frequencies at any q, band structures along ASE band paths, the density of states
and harmonic thermodynamics on Monkhorst-Pack meshes, group velocities by autodiff in q, and a
band + DOS plot. No supercell and no finite displacements are involved (docs/phonons.md).

Frequencies follow ``NormalModes``: signed (imaginary as negative), THz for "metal" and "real",
omega / 2 pi in the system's 1 / time unit ("reduced") for "lj" and units=None; ``omega`` gives
the angular frequency sqrt(lambda) in rad per time unit.
"""

import os
from dataclasses import dataclass, field

import numpy as np

from .._errors import InputError
from .._units import frequency_factor, unit_system
from ..pair._dynmat import DynamicalMatrix, check_qpoints
from ._thermo import HarmonicThermo, check_temperature, density_of_states, harmonic_thermo

ZERO_TOL = 1e-11
"""|lambda| <= ZERO_TOL x scale (``DynamicalMatrix.scale``, the onsite Hessian diagonal over the mass) is a zero mode (frequency 0):
the acoustic modes at Gamma come out as rounding noise of about 1e-15 x scale."""

DEGENERACY_TOL = 1e-8
"""Eigenvalues closer than DEGENERACY_TOL x scale form a degenerate set for group velocities."""


def monkhorst_pack(mesh, *, gamma_centered: bool = False, call: str = "Phonons.dos") -> np.ndarray:
    """(M1 M2 M3, 3) reduced q-points of a Monkhorst-Pack mesh (Monkhorst & Pack, PRB 13, 5188
    (1976)): q_k = (2 r - M_k - 1) / (2 M_k), r = 1..M_k (an even M_k skips Gamma), or
    r / M_k (gamma_centered: the q-points of an M1 x M2 x M3 supercell)."""
    m = np.atleast_1d(np.asarray(mesh))
    if m.shape == (1,):
        m = np.repeat(m, 3)
    if m.shape != (3,) or m.dtype.kind not in "iu" or np.any(m < 1):
        raise InputError(f"{call}(mesh=...) must be a positive integer or three of them; got {mesh!r}")
    axes = [(np.arange(k) / k) if gamma_centered else (2.0 * np.arange(1, k + 1) - k - 1) / (2.0 * k) for k in m]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


@dataclass(eq=False)
class BandStructure:
    """Frequencies along a path in the Brillouin zone (from ``Phonons.band_structure``).

    Attributes:
        q: (nq, 3) reduced q-points. x: (nq,) distance along the path, |Delta q_cart| summed
            (1 / length, 2 pi included, as ASE's ``BandPath.get_linear_kpoint_axis``).
        frequencies: (nq, 3n) signed frequencies in ``unit``, ascending at each q.
        special_x, special_labels: positions and names of the special points ("G" is Gamma).
        unit: the frequency unit. path: the path string ("" for explicit q-points).
    """

    q: np.ndarray
    x: np.ndarray
    frequencies: np.ndarray
    special_x: np.ndarray
    special_labels: list
    unit: str
    path: str = ""


@dataclass(eq=False)
class PhononDOS:
    """Broadened phonon density of states per cell: the integral of ``dos`` over ``frequency`` is
    3n (modes per cell); ``mesh`` the Monkhorst-Pack mesh and ``width`` the Gaussian standard
    deviation in ``unit``."""

    frequency: np.ndarray
    dos: np.ndarray
    mesh: tuple
    width: float
    unit: str
    n_q: int = 0
    info: dict = field(default_factory=dict)


class Phonons:
    """Harmonic phonons of a periodic cell (from ``mdhess.phonons``).

    Attributes:
        dynmat: the ``DynamicalMatrix`` (cell, positions, masses, ``at(q)``).
        units: the UnitSystem, or None (input units; "reduced" frequencies only).
        unit: the default frequency unit ("THz" for metal and real, "reduced" otherwise).
    """

    def __init__(self, dynmat: DynamicalMatrix, units):
        self.dynmat = dynmat
        self.units = units
        self.unit = "THz" if units is not None and not units.reduced else "reduced"

    @property
    def n_atoms(self) -> int:
        return self.dynmat.n_atoms

    @property
    def cell(self) -> np.ndarray:
        return self.dynmat.cell

    def _unit(self, unit):
        return self.unit if unit is None else unit

    # -- eigenvalues and frequencies ------------------------------------------------------------
    def eigenvalues(self, q) -> np.ndarray:
        """(3n,) or (nq, 3n) ascending eigenvalues lambda = omega^2 of D(q), energy / (length^2 mass)."""
        qr, single = check_qpoints(q, call="Phonons.eigenvalues")
        lam = np.linalg.eigvalsh(self.dynmat.at(qr))
        return lam[0] if single else lam

    def _signed_root(self, lam):
        w = np.sign(lam) * np.sqrt(np.abs(lam))
        w[np.abs(lam) <= ZERO_TOL * self.dynmat.scale] = 0.0
        return w

    def omega(self, q) -> np.ndarray:
        """Signed angular frequencies sign(lambda) sqrt(|lambda|), rad per the system's time unit
        (rad/ps for metal, rad/fs for real, rad/tau for lj); (3n,) or (nq, 3n)."""
        w = self._signed_root(self.eigenvalues(q))
        us = self.units
        return w * us.omega_si * us.time_si if us is not None and not us.reduced else w

    def frequencies(self, q, *, unit=None) -> np.ndarray:
        """Signed frequencies nu = omega / 2 pi at reduced q (imaginary as negative, zero modes 0).

        Args:
            q: (3,) or (nq, 3) reduced q-points.
            unit: "THz" (default for metal, real), "cm^-1", "meV", "Hz", "rad/s" or "reduced"
                (default for lj and units=None: omega / 2 pi in 1 / time unit).

        Returns:
            (3n,) or (nq, 3n), ascending at each q.
        """
        f = frequency_factor(self.units, self._unit(unit), call="Phonons.frequencies")
        return self._signed_root(self.eigenvalues(q)) * f

    # -- group velocities -------------------------------------------------------------------------
    def group_velocities(self, q, *, direction=None) -> np.ndarray:
        """Group velocities d omega / d q_cart of every branch, by autodiff of D(q) in q.

        v_a = Re <e_a| dD/dq |e_a> / (2 |omega_a|) (Hellmann-Feynman): the gradient of the signed
        frequency, so for an imaginary mode (negative frequency -sqrt(-lambda)) it is the slope of
        that negative number. Within a degenerate set
        (eigenvalues within DEGENERACY_TOL x scale) the eigenvectors are first rotated to
        diagonalise the derivative of D along ``direction`` (degenerate perturbation theory, as
        phonopy does), so v . direction is the slope of each branch leaving q along
        ``direction``. Zero modes (acoustic at Gamma, where the slope depends on the direction
        of approach) get v = 0.

        Args:
            q: (3,) or (nq, 3) reduced q-points.
            direction: Cartesian (3,) direction that splits degeneracies; default: the Cartesian
                image of the reduced direction (1, 2, 3) (generic, like phonopy's default).

        Returns:
            (3n, 3) or (nq, 3n, 3) in length / time units of the system (A/ps for metal, A/fs for
            real, sigma/tau for lj), rows ordered as ``frequencies(q)``.
        """
        qr, single = check_qpoints(q, call="Phonons.group_velocities")
        if direction is None:
            t = self.dynmat.cartesian(np.array([[1.0, 2.0, 3.0]]))[0]
        else:
            t = np.asarray(direction, dtype=np.float64)
            if t.shape != (3,) or not np.all(np.isfinite(t)) or not np.any(t):
                raise InputError(f"Phonons.group_velocities(direction=...) must be a non-zero (3,) vector; got {direction!r}")
        t = t / np.linalg.norm(t)
        D, dD = self.dynmat.with_gradient(qr)
        lam, E = np.linalg.eigh(D)
        scale = self.dynmat.scale
        out = np.zeros(lam.shape + (3,))
        for k in range(lam.shape[0]):
            Ek = E[k]
            a = 0
            while a < lam.shape[1]:
                b = a + 1
                while b < lam.shape[1] and lam[k, b] - lam[k, b - 1] <= DEGENERACY_TOL * scale:
                    b += 1
                P = Ek[:, a:b]
                if b - a > 1:  # rotate the degenerate set to diagonalise the derivative along t
                    Mt = P.conj().T @ np.einsum("c,cij->ij", t, dD[k]) @ P
                    _, U = np.linalg.eigh(0.5 * (Mt + Mt.conj().T))
                    P = P @ U
                dl = np.einsum("ia,cij,ja->ac", P.conj(), dD[k], P).real  # d lambda / d q_c
                w = np.sqrt(np.abs(lam[k, a:b]))
                zero = np.abs(lam[k, a:b]) <= ZERO_TOL * scale
                out[k, a:b] = np.where(zero[:, None], 0.0, dl / (2.0 * np.where(zero, 1.0, w))[:, None])
                a = b
        us = self.units
        if us is not None and not us.reduced:
            out = out * us.omega_si * us.time_si
        return out[0] if single else out

    # -- band structure ---------------------------------------------------------------------------
    def band_structure(self, path=None, npoints: int = 200, *, unit=None) -> BandStructure:
        """Frequencies along a path.

        Args:
            path: an ASE ``BandPath``; a string of special points of the cell's Bravais lattice
                (ASE's names, e.g. "GXKGL" for fcc, "," for a break); None for ASE's default
                path of this lattice; or explicit (nq, 3) reduced q-points.
            npoints: points along a string or default path (ASE distributes them by length).
            unit: frequency unit (default as ``frequencies``).

        Returns:
            BandStructure.
        """
        unit = self._unit(unit)
        if path is None or isinstance(path, str):
            if isinstance(npoints, bool) or not isinstance(npoints, (int, np.integer)) or npoints < 2:
                raise InputError(f"Phonons.band_structure(npoints=...) must be an integer >= 2; got {npoints!r}")
            from ase.cell import Cell

            try:
                path = Cell(self.cell).bandpath(path, npoints=int(npoints))
            except (ValueError, KeyError) as exc:
                raise InputError(f"Phonons.band_structure(path={path!r}): {exc}") from None
        if hasattr(path, "kpts") and hasattr(path, "get_linear_kpoint_axis"):
            q = np.asarray(path.kpts, dtype=np.float64)
            x, X, labels = path.get_linear_kpoint_axis()
            return BandStructure(q, np.asarray(x), self.frequencies(q, unit=unit), np.asarray(X), list(labels), unit, path.path)
        q, _ = check_qpoints(path, call="Phonons.band_structure", name="path")
        qc = self.dynmat.cartesian(q)
        x = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(qc, axis=0), axis=1))])
        return BandStructure(q, x, self.frequencies(q, unit=unit), np.array([x[0], x[-1]]), ["", ""], unit)

    # -- mesh quantities ----------------------------------------------------------------------------
    def mesh_frequencies(self, mesh, *, gamma_centered: bool = False, unit=None) -> tuple[np.ndarray, np.ndarray]:
        """(q (nq, 3), frequencies (nq, 3n)) on a full Monkhorst-Pack mesh (no symmetry reduction).
        With gamma_centered=True the frequencies are those of the M1 x M2 x M3 supercell."""
        q = monkhorst_pack(mesh, gamma_centered=gamma_centered, call="Phonons.mesh_frequencies")
        return q, self.frequencies(q, unit=unit)

    def dos(self, mesh=16, width=None, *, n_points: int = 400, gamma_centered: bool = False, unit=None,
            fmin=None, fmax=None) -> PhononDOS:  # fmt: skip
        """Phonon density of states per cell on a full Monkhorst-Pack mesh, Gaussian-broadened.

        No symmetry is used: every mesh point is computed (exact, and cheap for a pair lattice
        sum). Zero modes (the acoustic modes at Gamma of a Gamma-centred mesh) are included.

        Args:
            mesh: points per reciprocal axis, an integer or three.
            width: Gaussian standard deviation in ``unit``; default 1/100 of the largest frequency.
            n_points: frequency grid points.
            gamma_centered: Gamma-centred mesh instead of Monkhorst-Pack's shifted one.
            unit: frequency unit (default as ``frequencies``).
            fmin, fmax: frequency window (default: the range, padded by 3 widths).

        Returns:
            PhononDOS, whose ``dos`` integrates to 3n over ``frequency``.
        """
        unit = self._unit(unit)
        q = monkhorst_pack(mesh, gamma_centered=gamma_centered, call="Phonons.dos")
        f = self.frequencies(q, unit=unit)
        if width is None:
            width = max(float(np.abs(f).max()), 1e-300) / 100.0
        grid, g = density_of_states(f.ravel(), width=width, n_points=int(n_points), fmin=fmin, fmax=fmax)
        m = tuple(int(k) for k in np.broadcast_to(np.atleast_1d(mesh), (3,)))
        return PhononDOS(grid, g / q.shape[0], m, float(width), unit, q.shape[0])

    def thermodynamics(self, T, mesh=16, *, quantum: bool = True, hbar=None, gamma_centered: bool = False) -> HarmonicThermo:
        """Harmonic free energy, entropy, heat capacity and zero-point energy per cell, averaged
        over a full Monkhorst-Pack mesh (``mdhess.modes``' harmonic formulas, docs/normal-modes.md).

        Args:
            T: temperature, K (metal, real) or epsilon / k_B (lj).
            mesh: an integer or three.
            quantum: Bose-Einstein oscillators (False: classical).
            hbar: hbar in reduced units (needed for lj and units=None).
            gamma_centered: Gamma-centred mesh (then the three acoustic zero modes at Gamma are
                skipped and counted, as for normal modes).

        Returns:
            HarmonicThermo per cell (energies in the system's energy unit, S and C_v in energy / K;
            n_modes_used etc. count mesh modes).
        """
        t = check_temperature(T, "Phonons.thermodynamics")
        us = self.units
        q = monkhorst_pack(mesh, gamma_centered=gamma_centered, call="Phonons.thermodynamics")
        lam = self.eigenvalues(q).ravel()
        zero = np.abs(lam) <= ZERO_TOL * self.dynmat.scale
        imag = (lam < 0) & ~zero
        keep = ~zero & ~imag
        w = np.sqrt(lam[keep])
        if us is not None and not us.reduced:
            hw, k_B = us.hbar * w * us.omega_si, us.k_B
        else:
            if hbar is None:
                raise InputError(
                    "Phonons.thermodynamics(hbar=...) is needed in reduced units "
                    f"(units={None if us is None else us.name!r}): hbar omega has no value otherwise"
                )
            hw, k_B = float(hbar) * w, 1.0
        nq = q.shape[0]
        zpe, F, U, S, C = (v / nq for v in harmonic_thermo(hw, k_B * t, k_B, quantum=quantum))
        return HarmonicThermo(t, bool(quantum), zpe, F, U, S, C, int(keep.sum()), int(zero.sum()), int(imag.sum()),
                              "none" if us is None else us.name)  # fmt: skip

    # -- plot -----------------------------------------------------------------------------------------
    def plot(self, path=None, npoints: int = 200, *, mesh=16, width=None, unit=None, output=None, bands=None, dos=None):
        """Bands beside the density of states (matplotlib; ``pip install mdhess[plot]``).

        Args:
            path, npoints: as for ``band_structure`` (ignored when ``bands`` is given).
            mesh, width: as for ``dos`` (ignored when ``dos`` is given).
            unit: frequency unit.
            output: a PNG path to write, or None.
            bands, dos: a ``BandStructure`` / ``PhononDOS`` already computed.

        Returns:
            The matplotlib Figure.
        """
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as exc:  # pragma: no cover - optional extra
            raise ImportError("Phonons.plot needs matplotlib: pip install 'mdhess[plot]'") from exc
        bs = bands if bands is not None else self.band_structure(path, npoints, unit=unit)
        ds = dos if dos is not None else self.dos(mesh, width, unit=bs.unit)
        fig = Figure(figsize=(8, 4.5))
        FigureCanvasAgg(fig)
        ax, ax2 = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 1], "wspace": 0.05})
        ax.plot(bs.x, bs.frequencies, color="tab:blue", lw=1.2)
        for xs in bs.special_x:
            ax.axvline(xs, color="0.6", lw=0.6)
        ax.axhline(0.0, color="0.3", lw=0.6)
        ax.set_xticks(bs.special_x)
        ax.set_xticklabels(["\u0393" if s == "G" else s for s in bs.special_labels])
        ax.set_xlim(bs.x[0], bs.x[-1])
        ylab = "frequency (THz)" if bs.unit == "THz" else f"frequency ({bs.unit})"
        if bs.unit == "reduced":
            ylab = "frequency \u03c9/2\u03c0 (1 / time unit)"
        ax.set_ylabel(ylab)
        ax.set_title(f"phonon bands {bs.path}".strip())
        ax2.plot(ds.dos, ds.frequency, color="tab:red", lw=1.2)
        ax2.set_xlabel(f"DOS (modes / cell / {ds.unit})")
        ax2.set_xlim(left=0.0)
        ax2.set_title(f"mesh {'x'.join(map(str, ds.mesh))}")
        if output is not None:
            fig.savefig(os.fspath(output), format="png", dpi=120, bbox_inches="tight")
        return fig


def phonons(potential, R, box, *, masses=None, species=None, units=None) -> Phonons:
    """Harmonic phonons of a periodic cell from the exact lattice-sum dynamical matrix.

    Args:
        potential: an mdhess potential.
        R: (n, 3) positions of the atoms of the cell (at mechanical equilibrium), length units.
        box: the periodic cell ((3,) edge lengths or a (3, 3) matrix, rows are cell vectors).
        masses: (n,) masses (or one for all), mass units; None: unit masses.
        species: (n,) species indices, as for ``mdhess.hessian``.
        units: "lj", "metal", "real" or None, as for ``normal_modes`` (THz for metal and real).

    Returns:
        ``Phonons``.

    Raises:
        InputError: no periodic box, bad positions, masses, species or units. Warns
        ``NotAtEquilibriumWarning`` (with the largest force) when the cell is not at equilibrium.
    """
    us = unit_system(units, call="phonons")
    return Phonons(DynamicalMatrix(potential, R, box, masses=masses, species=species, call="phonons"), us)
