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


def block_coefficients(phi_eff, r, pp):
    """(a, b) with K = a u u^T + b I: a = phi'' - phi'/r, b = phi'/r. Any batch shape of r."""
    shape = jnp.shape(r)
    flat = {k: jnp.reshape(v, (-1,)) for k, v in pp.items()}
    _, d1, d2 = radial_derivatives(phi_eff, jnp.reshape(r, (-1,)), flat)
    rr = jnp.reshape(r, (-1,))
    return jnp.reshape(d2 - d1 / rr, shape), jnp.reshape(d1 / rr, shape)


def pair_blocks(phi_eff, d, pp, mask=None):
    """(p, 3, 3) blocks K = phi'' u u^T + (phi'/r)(I - u u^T) for displacements d (p, 3)."""
    r, u = _geometry(d, mask)
    a, b = block_coefficients(phi_eff, r, pp)
    uu = u[:, :, None] * u[:, None, :]
    K = a[:, None, None] * uu + b[:, None, None] * jnp.eye(3, dtype=d.dtype)
    return _masked(K, mask)


def pair_block_apply(phi_eff, d, pp, w, mask=None):
    """K_p w_p without forming K: a (u.w) u + b w.

    Args:
        w: (p, 3) or (p, 3, k) vectors, one (or k) per pair.
    """
    r, u = _geometry(d, mask)
    a, b = block_coefficients(phi_eff, r, pp)
    if w.ndim == 2:
        uw = jnp.sum(u * w, axis=-1)
        out = (a * uw)[:, None] * u + b[:, None] * w
    else:
        uw = jnp.einsum("pa,pak->pk", u, w)
        out = (a[:, None] * uw)[:, None, :] * u[:, :, None] + b[:, None, None] * w
    return _masked(out, mask)


def _self_masked_coefficients(phi_eff, d, pp, same):
    """r, a, b for displacement components d = (dx, dy, dz) of any (equal) shape; the i == j
    "pairs" (``same``) get r = 1 and a = b = 0 (they contribute nothing)."""
    r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    r = jnp.sqrt(jnp.where(same, 1.0, r2))
    a, b = block_coefficients(phi_eff, r, pp)
    return r, jnp.where(same, 0.0, a), jnp.where(same, 0.0, b)


def row_coefficient_tables(phi_eff, d, pp, same):
    """Per-pair tables for the dense writer and the diagonal blocks of a block of rows.

    Returns (c, b, diag): c = a / r^2 and b (each (B, N)), so that K_ab = c d_a d_b + b delta_ab,
    and the (B, 3, 3) diagonal blocks sum_j K_ij written with the same products.
    """
    r, a, b = _self_masked_coefficients(phi_eff, d, pp, same)
    c = a / (r * r)
    s = {(p, q): jnp.sum(c * (d[p] * d[q]), axis=1) for p in range(3) for q in range(p, 3)}
    bs = jnp.sum(b, axis=1)
    rows = [[s[min(p, q), max(p, q)] + (bs if p == q else 0.0) for q in range(3)] for p in range(3)]
    return c, b, jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=-2)


def grid_elements_from_tables(c, b, d, same, comp_row, comp_col):
    """Entries -K_ab(i, j) = -(c d_a d_b + b delta_ab) from per-pair tables c, b broadcast to the
    output's shape (0 where ``same``): the radial derivatives are evaluated once per pair, not
    once per entry (9x fewer; what matters for potentials dearer than phi = r)."""
    da = jnp.where(comp_row == 0, d[0], jnp.where(comp_row == 1, d[1], d[2]))
    db = jnp.where(comp_col == 0, d[0], jnp.where(comp_col == 1, d[1], d[2]))
    # d_a d_b first, then the coefficient: entries (i a, j b) and (j b, i a) are bitwise equal
    out = -(c * (da * db) + jnp.where(comp_row == comp_col, b, 0.0))
    return jnp.where(same, 0.0, out)
