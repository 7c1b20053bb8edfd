"""Pure scalar pair kernels phi(r; params).

Each kernel is a plain JAX function of one distance ``r`` and keyword parameters. It knows
nothing about pairs, species, cutoffs or layouts: those live in ``_potential`` (cutoff
treatment, species tables) and ``_blocks`` (the only place second derivatives are formed).
Derivatives are always taken by autodiff of these scalars.

Every kernel is registered in ``KERNELS`` with its formula, parameter defaults and literature
reference, which the docs, the TOML loader and ``mdhess potentials`` read.
"""

from dataclasses import dataclass, field
from typing import Callable

import jax.numpy as jnp
from jax.scipy.special import erfc


def lennard_jones(r, sigma=1.0, epsilon=1.0):
    """Lennard-Jones 12-6: 4 eps [(sigma/r)^12 - (sigma/r)^6]."""
    x6 = (sigma / r) ** 6
    return 4.0 * epsilon * (x6 * x6 - x6)


def morse(r, D=1.0, a=1.0, r0=1.0):
    """Morse: D (1 - exp(-a (r - r0)))^2 - D."""
    x = jnp.exp(-a * (r - r0))
    return D * (1.0 - x) ** 2 - D


def soft_sphere(r, sigma=1.0, epsilon=1.0, alpha=2.0):
    """Finite-range soft sphere: (eps/alpha) (1 - r/sigma)^alpha for r < sigma, else 0."""
    x = jnp.maximum(1.0 - r / sigma, 0.0)
    # x**alpha with x == 0 has zero value and zero first/second derivative for alpha >= 2;
    # the where keeps the power away from 0**(alpha-2) evaluations at non-integer alpha.
    safe_x = jnp.where(x > 0.0, x, 1.0)
    return jnp.where(x > 0.0, (epsilon / alpha) * safe_x**alpha, 0.0)


def coulomb(r, qq=1.0, k_e=1.0):
    """Bare Coulomb: k_e q_i q_j / r."""
    return k_e * qq / r


def coulomb_dsf(r, qq=1.0, k_e=1.0, alpha=0.2, r_c=10.0):
    """Damped shifted-force Coulomb (Fennell & Gezelter 2006).

    k_e q_i q_j [erfc(a r)/r - erfc(a rc)/rc + (erfc(a rc)/rc^2 + 2a/sqrt(pi) exp(-a^2 rc^2)/rc)(r - rc)]
    Energy and force vanish at rc by construction.
    """
    erfc_c = erfc(alpha * r_c)
    slope = erfc_c / r_c**2 + 2.0 * alpha / jnp.sqrt(jnp.pi) * jnp.exp(-((alpha * r_c) ** 2)) / r_c
    return k_e * qq * (erfc(alpha * r) / r - erfc_c / r_c + slope * (r - r_c))


def buckingham(r, A=1.0, rho=1.0, C=0.0):
    """Buckingham: A exp(-r/rho) - C / r^6."""
    return A * jnp.exp(-r / rho) - C / r**6


def yukawa(r, A=1.0, kappa=1.0):
    """Yukawa (screened Coulomb): A exp(-kappa r) / r."""
    return A * jnp.exp(-kappa * r) / r


def gaussian(r, sigma=1.0, epsilon=1.0):
    """Gaussian core: eps exp(-(r/sigma)^2)."""
    return epsilon * jnp.exp(-((r / sigma) ** 2))


def harmonic(r, k=1.0, r0=1.0):
    """Harmonic spring: k/2 (r - r0)^2."""
    return 0.5 * k * (r - r0) ** 2


@dataclass(frozen=True)
class KernelInfo:
    """Registry entry: the scalar function and what the docs and loaders need to know."""

    name: str
    fn: Callable
    formula: str
    reference: str
    defaults: dict = field(default_factory=dict)


KERNELS: dict[str, KernelInfo] = {
    k.name: k
    for k in [
        KernelInfo(
            "lennard_jones",
            lennard_jones,
            "4 epsilon [(sigma/r)^12 - (sigma/r)^6]",
            "J. E. Lennard-Jones, Proc. R. Soc. Lond. A 106, 463 (1924)",
            {"sigma": 1.0, "epsilon": 1.0},
        ),
        KernelInfo(
            "morse",
            morse,
            "D (1 - exp(-a (r - r0)))^2 - D",
            "P. M. Morse, Phys. Rev. 34, 57 (1929)",
            {"D": 1.0, "a": 1.0, "r0": 1.0},
        ),
        KernelInfo(
            "soft_sphere",
            soft_sphere,
            "(epsilon/alpha) (1 - r/sigma)^alpha for r < sigma, else 0",
            "D. J. Durian, Phys. Rev. Lett. 75, 4780 (1995); "
            "C. S. O'Hern et al., Phys. Rev. E 68, 011306 (2003)",
            {"sigma": 1.0, "epsilon": 1.0, "alpha": 2.0},
        ),
        KernelInfo(
            "coulomb",
            coulomb,
            "k_e q_i q_j / r",
            "C.-A. de Coulomb, Mem. Acad. R. Sci. (1785)",
            {"qq": 1.0, "k_e": 1.0},
        ),
        KernelInfo(
            "coulomb_dsf",
            coulomb_dsf,
            "k_e q_i q_j [erfc(a r)/r - erfc(a rc)/rc + (erfc(a rc)/rc^2 "
            "+ 2a/sqrt(pi) exp(-a^2 rc^2)/rc)(r - rc)]",
            "C. J. Fennell and J. D. Gezelter, J. Chem. Phys. 124, 234104 (2006)",
            {"qq": 1.0, "k_e": 1.0, "alpha": 0.2, "r_c": 10.0},
        ),
        KernelInfo(
            "buckingham",
            buckingham,
            "A exp(-r/rho) - C / r^6",
            "R. A. Buckingham, Proc. R. Soc. Lond. A 168, 264 (1938)",
            {"A": 1.0, "rho": 1.0, "C": 0.0},
        ),
        KernelInfo(
            "yukawa",
            yukawa,
            "A exp(-kappa r) / r",
            "H. Yukawa, Proc. Phys.-Math. Soc. Jpn. 17, 48 (1935)",
            {"A": 1.0, "kappa": 1.0},
        ),
        KernelInfo(
            "gaussian",
            gaussian,
            "epsilon exp(-(r/sigma)^2)",
            "F. H. Stillinger, J. Chem. Phys. 65, 3968 (1976)",
            {"sigma": 1.0, "epsilon": 1.0},
        ),
        KernelInfo(
            "harmonic",
            harmonic,
            "k/2 (r - r0)^2",
            "M. M. Tirion, Phys. Rev. Lett. 77, 1905 (1996); "
            "A. R. Atilgan et al., Biophys. J. 80, 505 (2001)",
            {"k": 1.0, "r0": 1.0},
        ),
    ]
}
