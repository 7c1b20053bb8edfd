"""``NormalModes``, the result of ``mdhess.normal_modes``: eigenpairs of the mass-weighted Hessian
and what follows from them (frequencies in physical units, zero and imaginary modes, Cartesian
displacements, participation ratios), harmonic thermodynamics, the density of states and its
plot, and mode animations as extended XYZ.
"""

import os
from dataclasses import dataclass, field

import numpy as np

from .._checks import check_positions
from .._errors import InputError
from .._units import UnitSystem, frequency_factor
from ._thermo import HarmonicThermo, check_temperature, density_of_states, harmonic_thermo


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
        R = self.positions if positions is None else check_positions(positions, call="NormalModes.write_xyz", n_atoms=self.n_atoms)
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
