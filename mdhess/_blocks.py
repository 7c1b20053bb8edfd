"""Per-pair derivatives and 3x3 Hessian blocks: the ONLY place the second-derivative formula lives.

For a pair with displacement d = r_j - r_i, r = |d|, u = d / r and radial derivatives
phi'(r), phi''(r) (autodiff of the scalar only):

    K = phi''(r) u u^T + (phi'(r) / r) (I - u u^T)
    H_ij = H_ji = -K,   H_ii += K,   H_jj += K

Everything else (dense, BSR, H.v, forces, energy) calls the functions here.
"""

import jax
import jax.numpy as jnp


def radial_derivatives(phi_eff, r, pp):
    """(phi, phi', phi'') of ``phi_eff(r, pp)`` for a batch of distances, by scalar autodiff.

    Args:
        phi_eff: scalar function (r, pp) -> energy.
        r: (p,) distances.
        pp: dict of (p,) per-pair parameters.
    """

    def one(r1, pp1):
        f = lambda x: phi_eff(x, pp1)  # noqa: E731
        d1, d2 = jax.jvp(jax.grad(f), (r1,), (jnp.ones_like(r1),))
        return f(r1), d1, d2

    return jax.vmap(one)(r, pp)


def _geometry(d, mask):
    """Safe r and unit vector; masked (padding) pairs get r = 1 so nothing divides by zero."""
    r2 = jnp.sum(d * d, axis=-1)
    if mask is not None:
        r2 = jnp.where(mask, r2, 1.0)
    r = jnp.sqrt(r2)
    return r, d / r[..., None]


def _masked(x, mask):
    if mask is None:
        return x
    return jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim)), x, 0.0)


def pair_energies(phi_eff, d, pp, mask=None):
    """(p,) pair energies."""
    r, _ = _geometry(d, mask)
    e = jax.vmap(phi_eff)(r, pp)
    return _masked(e, mask)


def pair_gradients(phi_eff, d, pp, mask=None):
    """(p,) energies and (p, 3) g = dE_pair/dr_j = phi'(r) u (and dE_pair/dr_i = -g)."""
    r, u = _geometry(d, mask)
    e, d1 = jax.vmap(jax.value_and_grad(phi_eff))(r, pp)
    return _masked(e, mask), _masked(d1[:, None] * u, mask)


def pair_blocks(phi_eff, d, pp, mask=None):
    """(p, 3, 3) blocks K = phi'' u u^T + (phi'/r)(I - u u^T) for displacements d (p, 3)."""
    r, u = _geometry(d, mask)
    _, d1, d2 = radial_derivatives(phi_eff, r, pp)
    uu = u[:, :, None] * u[:, None, :]
    eye = jnp.eye(3, dtype=d.dtype)
    K = d2[:, None, None] * uu + (d1 / r)[:, None, None] * (eye - uu)
    return _masked(K, mask)


def pair_block_apply(phi_eff, d, pp, w, mask=None):
    """K_p w_p without forming K: phi'' (u.w) u + (phi'/r)(w - (u.w) u).

    Args:
        w: (p, 3) or (p, 3, k) vectors, one (or k) per pair.
    """
    r, u = _geometry(d, mask)
    _, d1, d2 = radial_derivatives(phi_eff, r, pp)
    if w.ndim == 2:
        uw = jnp.sum(u * w, axis=-1)[:, None]
        out = (d2 - d1 / r)[:, None] * uw * u + (d1 / r)[:, None] * w
    else:
        uw = jnp.einsum("pa,pak->pk", u, w)[:, None, :]
        out = (d2 - d1 / r)[:, None, None] * uw * u[:, :, None] + (d1 / r)[:, None, None] * w
    return _masked(out, mask)
