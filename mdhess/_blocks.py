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


def grid_blocks_layout(phi_eff, d, pp, row_index, col_index, component_major: bool = False):
    """One row block of the dense Hessian written in the output's own (3i+a, 3j+b) index space.

    Args:
        d: (B, N, 3) displacements r_j - r_i for atoms i of the block and all atoms j.
        pp: per-pair parameters, each (B, N).
        row_index: (B,) atom indices i; col_index: (N,) atom indices j.

    Returns:
        (rows, diag): rows is (3B, 3N), the block's rows of H with -K_ij off the diagonal and
        zeros in the diagonal blocks; diag is (B, 3, 3), the diagonal blocks sum_j K_ij (a row
        reduction of the same blocks), for the caller to place. With ``component_major`` rows is
        (3, B, 3N), where [a, b, c*N + j] = H[3 i_b + a, 3 j + c]. No einsum and no scatter of
        the big block; measured variants are in docs/benchmarks.md.
    """
    eq = row_index[:, None] == col_index[None, :]
    r2 = jnp.where(eq, 1.0, jnp.sum(d * d, axis=-1))
    r = jnp.sqrt(r2)
    u = d / r[..., None]
    a, b = block_coefficients(phi_eff, r, pp)
    a = jnp.where(eq, 0.0, a)  # the i == j "pair" contributes nothing
    b = jnp.where(eq, 0.0, b)
    # u_a u_b first, then the coefficient: keeps every block exactly symmetric in floating point
    uu = u[:, :, :, None] * u[:, :, None, :]  # (B, N, 3, 3)
    K = a[..., None, None] * uu + b[..., None, None] * jnp.eye(3, dtype=d.dtype)
    diag = jnp.sum(K, axis=1)  # (B, 3, 3)
    B, N = eq.shape
    if component_major:  # (B, N, 3, 3) -> (3, B, 3, N): the innermost axis runs over atoms j
        return jnp.transpose(-K, (2, 0, 3, 1)).reshape(3, B, 3 * N), diag
    # (B, N, 3, 3) -> (B, 3, N, 3): XLA fuses this transpose into the write of the output rows
    return jnp.swapaxes(-K, 1, 2).reshape(3 * B, 3 * N), diag
