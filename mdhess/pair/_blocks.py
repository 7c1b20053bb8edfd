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


# -- beyond the second derivative -----------------------------------------------------------------
# For a pair energy phi(|d|), with n = d / r and the radial derivatives phi^(k), the derivative
# tensors of phi(|d|) with respect to d are (delta the Kronecker delta; sums over the distinct
# index placements):
#   order 3: A3 n n n + B3 (n delta + delta n + ...)             3 placements
#     B3 = phi''/r - phi'/r^2,  A3 = phi''' - 3 phi''/r + 3 phi'/r^2
#   order 4: C4 n n n n + C3 (n n delta, 6 placements) + C2 (delta delta, 3 placements)
#     C2 = phi''/r^2 - phi'/r^3,  C3 = phi'''/r - 3 phi''/r^2 + 3 phi'/r^3,
#     C4 = phi'''' - 6 phi'''/r + 15 phi''/r^2 - 15 phi'/r^3
# (checked against nested autodiff of phi(|d|) in tests/test_taylor.py). A pair's contribution
# to the atoms: the contracted vector is added to atom j and subtracted from atom i, the vectors
# contracted being differences x = u_j - u_i.


def radial_derivatives_to(phi_eff, r, pp, order: int):
    """(order + 1, p) derivatives phi^(k)(r), k = 0..order, of ``phi_eff`` by Taylor-mode
    autodiff of the scalar (``jax.experimental.jet`` along r + t: cost linear in the order;
    nested grad compiles a program that grows exponentially with it)."""
    from jax.experimental.jet import jet

    def one(r1, pp1):
        series = (jnp.ones_like(r1),) + (jnp.zeros_like(r1),) * (order - 1)
        e0, terms = jet(lambda x: phi_eff(x, pp1), (r1,), (series,))
        return jnp.stack([e0, *terms])

    return jax.vmap(one, out_axes=1)(r, pp)


def third_order_coefficients(phi_eff, r, pp):
    """(A3, B3) per pair: the third-derivative tensor is A3 n n n + B3 (n delta + perms)."""
    _, d1, d2, d3 = radial_derivatives_to(phi_eff, r, pp, 3)
    B3 = d2 / r - d1 / r**2
    A3 = d3 - 3.0 * d2 / r + 3.0 * d1 / r**2
    return A3, B3


def fourth_order_coefficients(phi_eff, r, pp):
    """(C4, C3, C2) per pair: the fourth-derivative tensor is C4 nnnn + C3 (nn delta) + C2 (delta delta)."""
    _, d1, d2, d3, d4 = radial_derivatives_to(phi_eff, r, pp, 4)
    C2 = d2 / r**2 - d1 / r**3
    C3 = d3 / r - 3.0 * d2 / r**2 + 3.0 * d1 / r**3
    C4 = d4 - 6.0 * d3 / r + 15.0 * d2 / r**2 - 15.0 * d1 / r**3
    return C4, C3, C2


def _dot(a, b):
    return jnp.sum(a * b, axis=-1)


def pair_third_apply(phi_eff, d, pp, x, y, mask=None):
    """(p, 3) T[., x, y] per pair, T the third-derivative tensor of phi(|d|), x, y (p, 3)."""
    r, n = _geometry(d, mask)
    A3, B3 = third_order_coefficients(phi_eff, r, pp)
    nx, ny, xy = _dot(n, x), _dot(n, y), _dot(x, y)
    out = (A3 * nx * ny + B3 * xy)[:, None] * n + (B3 * ny)[:, None] * x + (B3 * nx)[:, None] * y
    return _masked(out, mask)


def pair_fourth_apply(phi_eff, d, pp, x, y, z, mask=None):
    """(p, 3) Q[., x, y, z] per pair, Q the fourth-derivative tensor of phi(|d|)."""
    r, n = _geometry(d, mask)
    C4, C3, C2 = fourth_order_coefficients(phi_eff, r, pp)
    nx, ny, nz = _dot(n, x), _dot(n, y), _dot(n, z)
    xy, xz, yz = _dot(x, y), _dot(x, z), _dot(y, z)
    cn = C4 * nx * ny * nz + C3 * (nx * yz + ny * xz + nz * xy)
    out = (
        cn[:, None] * n
        + (C3 * ny * nz + C2 * yz)[:, None] * x
        + (C3 * nx * nz + C2 * xz)[:, None] * y
        + (C3 * nx * ny + C2 * xy)[:, None] * z
    )
    return _masked(out, mask)


def pair_third_tensors(phi_eff, d, pp, mask=None):
    """(p, 3, 3, 3) third-derivative tensors T_abc of phi(|d|) per pair."""
    r, n = _geometry(d, mask)
    A3, B3 = third_order_coefficients(phi_eff, r, pp)
    eye = jnp.eye(3, dtype=d.dtype)
    nnn = n[:, :, None, None] * n[:, None, :, None] * n[:, None, None, :]
    sym = (
        n[:, :, None, None] * eye[None, None, :, :]
        + n[:, None, :, None] * eye[None, :, None, :]
        + n[:, None, None, :] * eye[None, :, :, None]
    )
    return _masked(A3[:, None, None, None] * nnn + B3[:, None, None, None] * sym, mask)
