"""Harmonic thermodynamics and the vibrational density of states of a set of normal modes.

Per mode of angular frequency omega > 0, x = hbar omega / (k_B T) (e.g. McQuarrie, Statistical
Mechanics, ch. 8; Ashcroft & Mermin ch. 23):

    quantum:   ZPE = hbar omega / 2
               F   = hbar omega / 2 + k_B T ln(1 - exp(-x))
               U   = hbar omega / 2 + hbar omega / (exp(x) - 1)
               S   = k_B [x / (exp(x) - 1) - ln(1 - exp(-x))]
               C_v = k_B x^2 exp(x) / (exp(x) - 1)^2
    classical: F = k_B T ln(x),  U = k_B T,  S = k_B (1 - ln x),  C_v = k_B,  ZPE = 0

(The classical partition function k_B T / (hbar omega) uses h as the phase-space cell, so the
classical F and S are the high-temperature limits of the quantum ones.) Zero modes (rigid-body
motions, |lambda| <= zero_tol) and imaginary modes (lambda < 0) are skipped and counted.
"""

from dataclasses import dataclass

import numpy as np

from .._errors import InputError


@dataclass(frozen=True)
class HarmonicThermo:
    """Harmonic vibrational thermodynamics at one temperature.

    Energies (zpe, free_energy, internal_energy) are in the unit system's energy unit (eV for
    "metal", kcal/mol for "real", epsilon for "lj"); entropy and heat_capacity in energy unit / K
    (epsilon / (epsilon / k_B) = k_B for "lj"), all for the whole system.
    """

    temperature: float
    quantum: bool
    zpe: float
    free_energy: float
    internal_energy: float
    entropy: float
    heat_capacity: float
    n_modes_used: int
    n_zero_skipped: int
    n_imaginary_skipped: int
    units: str

    def report(self) -> str:
        kind = "quantum" if self.quantum else "classical"
        return (
            f"harmonic ({kind}) T={self.temperature:g}: {self.n_modes_used} modes used, "
            f"{self.n_zero_skipped} zero and {self.n_imaginary_skipped} imaginary modes skipped"
        )


def harmonic_thermo(hw, kT: float, k_B: float, *, quantum: bool):
    """(zpe, F, U, S, C_v) summed over modes with energies hw = hbar omega > 0 (energy units)."""
    hw = np.asarray(hw, dtype=np.float64)
    x = hw / kT
    if quantum:
        em1 = np.expm1(x)  # exp(x) - 1, exact for small x
        l1m = np.log(-np.expm1(-x))  # ln(1 - exp(-x))
        zpe = 0.5 * hw
        F = zpe + kT * l1m
        U = zpe + hw / em1
        S = k_B * (x / em1 - l1m)
        # x^2 e^x / (e^x - 1)^2 = x^2 e^-x / (1 - e^-x)^2, stable for large x
        emx = np.exp(-x)
        C = k_B * x**2 * emx / (-np.expm1(-x)) ** 2
    else:
        zpe = np.zeros_like(hw)
        F = kT * np.log(x)
        U = np.full_like(hw, kT)
        S = k_B * (1.0 - np.log(x))
        C = np.full_like(hw, k_B)
    return tuple(float(np.sum(v)) for v in (zpe, F, U, S, C))


def check_temperature(T, call: str) -> float:
    try:
        t = float(T)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{call}(T=...) must be a number (temperature); got {T!r}") from exc
    if not np.isfinite(t) or t <= 0:
        raise InputError(f"{call}(T=...) must be finite and > 0; got {T!r}")
    return t


def density_of_states(f, *, bins=100, width=None, fmin=None, fmax=None, n_points=None):
    """Vibrational density of states g(f), normalised so that its integral is the number of modes.

    Args:
        f: (m,) frequencies (any unit; imaginary modes as negative numbers are included as such).
        bins: histogram bin count (width None) or the number of grid points for broadening.
        width: None for a histogram; a Gaussian standard deviation (same unit as f) otherwise.
        fmin, fmax: the frequency window (default: the data range, padded by 3 widths).
        n_points: grid size for broadening (default ``bins``).

    Returns:
        (grid (g,), dos (g,)): bin centres or grid points, and g(f) in modes per frequency unit.
    """
    f = np.asarray(f, dtype=np.float64)
    if f.size == 0:
        raise InputError("NormalModes.dos: no modes left to count (all zero modes?)")
    pad = 0.0 if width is None else 3.0 * float(width)
    lo = float(f.min() - pad) if fmin is None else float(fmin)
    hi = float(f.max() + pad) if fmax is None else float(fmax)
    if hi <= lo:
        hi = lo + 1.0
    if width is None:
        if not isinstance(bins, (int, np.integer)) or bins < 1:
            raise InputError(f"NormalModes.dos(bins=...) must be a positive integer; got {bins!r}")
        counts, edges = np.histogram(f, bins=int(bins), range=(lo, hi))
        return 0.5 * (edges[1:] + edges[:-1]), counts / np.diff(edges)
    w = float(width)
    if not np.isfinite(w) or w <= 0:
        raise InputError(
            f"NormalModes.dos(width=...) must be > 0 (a Gaussian standard deviation); got {width!r}"
        )
    grid = np.linspace(lo, hi, int(n_points or bins))
    g = np.zeros_like(grid)
    for chunk in np.array_split(f, max(1, f.size // 4096)):
        g += np.exp(-0.5 * ((grid[:, None] - chunk[None, :]) / w) ** 2).sum(axis=1)
    return grid, g / (w * np.sqrt(2 * np.pi))
