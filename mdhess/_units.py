"""Unit systems for normal modes and harmonic thermodynamics, as in LAMMPS's ``units`` command.

A Hessian in a unit system's energy / length^2, divided by masses in its mass unit, gives
eigenvalues lambda = omega^2 in (energy / (length^2 mass)). ``omega_si`` converts sqrt(lambda) to
rad/s; from there every frequency unit follows from exact SI constants.

Sources:
- SI 2019 exact defining constants: e = 1.602176634e-19 C, h = 6.62607015e-34 J s,
  k_B = 1.380649e-23 J/K, N_A = 6.02214076e23 /mol, c = 299792458 m/s.
- CODATA 2018 (NIST SP 961, May 2019): atomic mass constant m_u = 1.66053906660e-27 kg.
- Thermochemical calorie: 1 cal = 4.184 J (LAMMPS ``units real``: kcal/mol, Angstrom, g/mol, fs).
- LAMMPS documentation, ``units`` command: lj (reduced, k_B = 1), metal (eV, Angstrom, g/mol = amu,
  ps, K), real (kcal/mol, Angstrom, g/mol = amu, fs, K).
"""

from dataclasses import dataclass

import numpy as np

from ._errors import InputError

# SI 2019 exact constants and CODATA 2018
E_CHARGE = 1.602176634e-19  # C (J per eV)
H_PLANCK = 6.62607015e-34  # J s
HBAR = H_PLANCK / (2 * np.pi)  # J s
K_BOLTZMANN = 1.380649e-23  # J / K
N_AVOGADRO = 6.02214076e23  # 1 / mol
C_LIGHT = 299792458.0  # m / s
AMU = 1.66053906660e-27  # kg (CODATA 2018)
ANGSTROM = 1e-10  # m
KCAL_PER_MOL = 4184.0 / N_AVOGADRO  # J (thermochemical calorie)


@dataclass(frozen=True)
class UnitSystem:
    """Energy, length and mass units of a Hessian and what sqrt(eigenvalue) means.

    Attributes:
        name: "lj", "metal" or "real".
        energy, length, mass, time, temperature: unit names (documentation only).
        energy_si, length_si, mass_si: the units in J, m, kg (None for reduced "lj").
        time_si: the time unit in s (None for "lj").
        k_B: Boltzmann constant in energy units per temperature unit (1 for "lj").
    """

    name: str
    energy: str
    length: str
    mass: str
    time: str
    temperature: str
    energy_si: float | None
    length_si: float | None
    mass_si: float | None
    time_si: float | None
    k_B: float

    @property
    def reduced(self) -> bool:
        return self.energy_si is None

    @property
    def omega_si(self) -> float:
        """rad/s per sqrt(eigenvalue unit): sqrt(energy / (length^2 mass)) in SI."""
        if self.reduced:
            raise InputError(f"units={self.name!r} is reduced: frequencies have no SI value")
        return float(np.sqrt(self.energy_si / (self.length_si**2 * self.mass_si)))

    @property
    def hbar(self) -> float | None:
        """hbar in energy units x seconds (None for "lj")."""
        return None if self.reduced else HBAR / self.energy_si


UNIT_SYSTEMS: dict[str, UnitSystem] = {
    "lj": UnitSystem(
        "lj",
        "epsilon",
        "sigma",
        "m",
        "tau = sigma sqrt(m / epsilon)",
        "epsilon / k_B",
        None,
        None,
        None,
        None,
        1.0,
    ),
    "metal": UnitSystem(
        "metal",
        "eV",
        "Angstrom",
        "amu (g/mol)",
        "ps",
        "K",
        E_CHARGE,
        ANGSTROM,
        AMU,
        1e-12,
        K_BOLTZMANN / E_CHARGE,
    ),
    "real": UnitSystem(
        "real",
        "kcal/mol",
        "Angstrom",
        "amu (g/mol)",
        "fs",
        "K",
        KCAL_PER_MOL,
        ANGSTROM,
        AMU,
        1e-15,
        K_BOLTZMANN / KCAL_PER_MOL,
    ),
}

# frequency units: name -> factor from nu in Hz (nu = omega / 2 pi)
FREQUENCY_UNITS = {
    "THz": 1e-12,
    "cm^-1": 1.0 / (100.0 * C_LIGHT),  # wavenumber nu / c, c in cm/s
    "meV": 1e3 * H_PLANCK / E_CHARGE,  # h nu in meV
    "Hz": 1.0,
}


def unit_system(units, *, call: str = "normal_modes") -> UnitSystem | None:
    """Resolve ``units`` (None, a name in UNIT_SYSTEMS or a UnitSystem) or raise InputError."""
    if units is None or isinstance(units, UnitSystem):
        return units
    if isinstance(units, str) and units.lower() in UNIT_SYSTEMS:
        return UNIT_SYSTEMS[units.lower()]
    raise InputError(f"{call}(units=...) must be None or one of {sorted(UNIT_SYSTEMS)}; got {units!r}")


def frequency_factor(us: UnitSystem | None, unit: str, *, call: str = "NormalModes.frequencies_in") -> float:
    """Factor turning sqrt(eigenvalue) (an angular frequency in the system's units) into ``unit``.

    ``unit``: "THz", "cm^-1", "meV", "Hz", "rad/s", or "reduced" (omega / 2 pi in the system's
    own 1 / time unit, e.g. 1/tau for "lj"; the only choice when units is None or "lj").
    """
    if unit == "reduced":
        return 1.0 / (2 * np.pi)
    if us is None or us.reduced:
        raise InputError(
            f"{call}(unit={unit!r}) needs physical units; the modes were computed with "
            f"units={None if us is None else us.name!r} (only 'reduced' is available). Pass "
            "units='metal' or 'real' to normal_modes"
        )
    if unit == "rad/s":
        return us.omega_si
    if unit not in FREQUENCY_UNITS:
        raise InputError(
            f"{call}(unit=...) must be one of {['THz', 'cm^-1', 'meV', 'Hz', 'rad/s', 'reduced']}; got {unit!r}"
        )
    return us.omega_si / (2 * np.pi) * FREQUENCY_UNITS[unit]
