"""Exceptions raised at mdhess's public, non-jitted boundary."""


class InputError(ValueError):
    """Bad input to a public mdhess call. The message names the argument and the value found."""


class MemoryPlanError(MemoryError):
    """A request whose estimated memory exceeds the allowed limit, refused before allocating."""


class NonFiniteError(FloatingPointError):
    """A computed quantity (block, energy) came out NaN or infinite."""


class NotAtEquilibriumWarning(UserWarning):
    """A calculation that assumes a minimum of the energy (phonons, elastic constants) was given
    a structure whose forces do not vanish; the message names the largest force."""
