"""The Hessian sharded across JAX devices: atoms in a space-filling-curve order, split into
contiguous row blocks, one per device; each device computes and keeps only the 3x3 blocks of its
own rows, and a product ``op @ v`` is one ``shard_map`` program over a 1-D mesh.

Layout (what "a sharded BSR" is here). Atoms are ordered along a Morton (Z-order) curve of their
fractional coordinates, so atoms close in space are close in the order and each device's rows
touch few other devices' columns. Device d owns atoms ``perm[d*n_loc : (d+1)*n_loc]`` (the last
devices may own padding rows). For every pair (i, j) the owner of row i keeps the block entry
(i, j) and the owner of row j keeps (j, i), the off-diagonal blocks of those block rows of a BSR
matrix, except that a pair whose two atoms share an owner is kept once by it and applied to both
rows (as the single-device operator keeps each pair once); diagonal blocks are their row sums,
formed on the fly. Per device: (cap, 3, 3) blocks K_e, its local row (and the other local row of
a pair kept once), its global column, the pair's image shift and list position (cap: the
largest device's entry count, bucketed, padding masked).

A product ``op @ v`` needs, on each device, v at its own rows and at the columns its entries
touch. The vectors live in the operator's own layout: 3 N_pad rows in the spatial order (padding
rows last), split over the devices like the block rows. Each device receives from the others
only the rows of v its entries touch (a halo exchange: one ``ppermute`` per device distance
s = 1 .. D-1 that has any such row, each device sending to device d - s the rows of its block
that device needs, padded to the longest such list of that distance), forms (H v)_row = sum_e
K_e (v_row - v_col) over its entries, and keeps its rows of the result: nothing is gathered.
``mv_split`` is that product (used by the JAX LOBPCG, whose vectors are split the same way);
``op @ v`` puts v's rows on their owners (from the host: each device receives its rows only),
runs it, and gathers the result to every device in the ORIGINAL atom order. A v already
replicated on every device needs no exchange: its product is formed in place. Across processes
(``mdhess.distributed``) the same programs run on every process, each holding the blocks of its
own devices only; the halo is exchanged by the same collectives.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._device import jit
from .._errors import InputError, MemoryPlanError, NonFiniteError
from ._blocks import pair_block_apply, pair_blocks
from ._operators import HessianOperator
from ._pairs import bucket
from ._prepare import cast_potential, raise_nonfinite

MESH_AXIS = "atoms"
"""Name of the mesh axis when ``devices`` is a list (a given Mesh keeps its own axis name)."""

MORTON_BITS = 10
"""Bits per fractional coordinate in the Morton key (2^30 cells: ample for ordering)."""


# -- arguments ----------------------------------------------------------------------------------
def resolve_mesh(devices, *, call: str) -> tuple[Mesh, str]:
    """(mesh, axis name) for ``devices``: a list/tuple of distinct JAX devices, or a 1-D
    ``jax.sharding.Mesh``. InputError naming ``call(devices=...)`` otherwise."""
    if isinstance(devices, Mesh):
        if devices.devices.ndim != 1:
            raise InputError(
                f"{call}(devices=...) must be a 1-D jax.sharding.Mesh (one axis over which the atoms are "
                f"split); got a mesh of rank {devices.devices.ndim} with axes {dict(devices.shape)}"
            )
        return devices, devices.axis_names[0]
    if isinstance(devices, jax.Device):
        devices = [devices]
    if not isinstance(devices, (list, tuple)) or not devices:
        raise InputError(
            f"{call}(devices=...) must be a non-empty list of JAX devices (e.g. jax.devices()) or a 1-D "
            f"jax.sharding.Mesh; got {type(devices).__name__} {_show(devices)}"
        )
    bad = [d for d in devices if not isinstance(d, jax.Device)]
    if bad:
        raise InputError(
            f"{call}(devices=...) must hold JAX devices (from jax.devices()); got {type(bad[0]).__name__} "
            f"{_show(bad[0])}"
        )
    if len({(d.process_index, d.platform, d.id) for d in devices}) != len(devices):
        raise InputError(f"{call}(devices=...) lists a device more than once: {_show(devices)}")
    return Mesh(np.array(devices, dtype=object), (MESH_AXIS,)), MESH_AXIS


def _show(x, limit: int = 80) -> str:
    s = " ".join(repr(x).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


# -- the spatial order ----------------------------------------------------------------------------
def _spread_bits(x: np.ndarray) -> np.ndarray:
    """Insert two zero bits between the low MORTON_BITS bits of each x (uint64)."""
    x = x.astype(np.uint64) & np.uint64(0x3FF)
    x = (x | (x << np.uint64(16))) & np.uint64(0x030000FF)
    x = (x | (x << np.uint64(8))) & np.uint64(0x0300F00F)
    x = (x | (x << np.uint64(4))) & np.uint64(0x030C30C3)
    x = (x | (x << np.uint64(2))) & np.uint64(0x09249249)
    return x


def spatial_order(positions: np.ndarray, cell) -> np.ndarray:
    """(N,) permutation ``perm`` (new index -> atom) listing the atoms along a Morton curve.

    Periodic cells (orthorhombic or triclinic): the fractional coordinates wrapped into [0, 1);
    free space: the positions scaled to their bounding box. Ties keep the input order.
    """
    R = np.asarray(positions, dtype=np.float64)
    if cell is not None:
        s = R @ np.linalg.inv(np.asarray(cell, dtype=np.float64))
        s = s - np.floor(s)
    else:
        lo, hi = R.min(axis=0), R.max(axis=0)
        s = (R - lo) / np.where(hi > lo, hi - lo, 1.0)
    q = np.clip((s * (1 << MORTON_BITS)).astype(np.int64), 0, (1 << MORTON_BITS) - 1)
    key = _spread_bits(q[:, 0]) | (_spread_bits(q[:, 1]) << np.uint64(1)) | (_spread_bits(q[:, 2]) << np.uint64(2))
    return np.argsort(key, kind="stable")


# -- global arrays ------------------------------------------------------------------------------
def _fully_addressable(mesh: Mesh) -> bool:
    return all(d.process_index == jax.process_index() for d in mesh.devices.flat)


def put_global(x, sharding):
    """``x`` (host or device array) placed with ``sharding``: by ``jax.device_put`` where the
    sharding's devices are all this process's, or where ``x`` is a global array on the same
    devices (XLA reshards it, across processes too, without the host); else built from this
    process's slices of the host value (every process passes the same value)."""
    if sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
    if isinstance(x, jax.Array):
        if x.sharding.device_set == sharding.device_set:
            return jax.device_put(x, sharding)
        x = to_host(x)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def replicate(x, mesh: Mesh):
    """``x`` (host or device array) as a global array replicated on every device of ``mesh``
    (across processes too: every process passes the same value)."""
    sharding = NamedSharding(mesh, PartitionSpec())
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    return put_global(x, sharding)


def to_host(x) -> np.ndarray:
    """A global JAX array as one numpy array on this host (gathered across processes if needed)."""
    if x.is_fully_addressable or x.is_fully_replicated:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


# -- one call, every process: the same input, the same outcome --------------------------------------
AGREE_MESSAGE_BYTES = 2048
"""Bytes of a failing process's error message passed to the others (longer ones are cut)."""

_AGREED_ERRORS = (InputError, MemoryPlanError, NonFiniteError)


def input_fingerprint(prepared, *extra) -> bytes:
    """SHA-256 of what a sharded call's result depends on: the validated positions, cell and
    species, the potential's parameters (its array leaves) and ``extra`` (dtype, options)."""
    import hashlib

    h = hashlib.sha256()
    for a in (prepared.R, prepared.cell, prepared.species, *jax.tree.leaves(prepared.potential)):
        a = np.asarray(a) if a is not None else np.zeros(0)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(repr(extra).encode())
    return h.digest()


def exchange_outcome(call: str, fn, tag) -> tuple[object, np.ndarray]:
    """(fn(), the (P, 32) tags of every process): ``fn()`` run in every process, then one
    ``process_allgather`` of each process's outcome: whether it failed, with its error's type and
    message, else ``tag(result)`` (32 bytes). A process that failed raises its own error; the
    others raise the same type naming it, instead of going on into a collective that would wait
    for a process that has left. Call it in every process of a multi-process run."""
    from jax.experimental import multihost_utils

    try:
        out, exc = fn(), None
    except _AGREED_ERRORS + (RuntimeError, ValueError, TypeError, MemoryError) as e:
        out, exc = None, e
    buf = np.zeros(1 + 32 + AGREE_MESSAGE_BYTES, np.uint8)
    if exc is None:
        buf[1:33] = np.frombuffer(bytes(tag(out)).ljust(32, b"\0")[:32], np.uint8)
    else:
        kind = next((i for i, c in enumerate(_AGREED_ERRORS) if isinstance(exc, c)), len(_AGREED_ERRORS))
        msg = str(exc).encode()[:AGREE_MESSAGE_BYTES]
        buf[0] = 1 + kind
        buf[33 : 33 + len(msg)] = np.frombuffer(msg, np.uint8)
    every = np.asarray(multihost_utils.process_allgather(buf)).reshape(-1, buf.size)
    if exc is not None:
        raise exc
    for k, row in enumerate(every):
        if row[0]:
            cls = (*_AGREED_ERRORS, RuntimeError)[row[0] - 1]
            msg = bytes(row[33:]).rstrip(b"\0").decode(errors="replace")
            raise cls(f"{call}: process {k} of {len(every)} failed, so this one stops too: {msg}")
    return out, every[:, 1:33]


def agree_across_processes(mesh: Mesh, call: str, prepare, fingerprint) -> object:
    """``prepare()`` (the checks, the pair list and the memory plan of a sharded call) in every
    process of a mesh spanning several, with the outcome agreed before any collective
    (``exchange_outcome``, tagged with ``fingerprint(result)`` of the process's input): a
    failure in one process is an error of the same type in every process, and a process whose
    input differs from process 0's makes every process raise InputError (each process would
    otherwise compute its devices' blocks from its own input: a silently mixed Hessian). One
    process: ``prepare()`` alone."""
    if not mesh.is_multi_process:
        return prepare()
    out, tags = exchange_outcome(f"{call}(devices=...)", prepare, fingerprint)
    differ = [k for k, t in enumerate(tags) if not np.array_equal(t, tags[0])]
    if differ:
        raise InputError(
            f"{call}(positions=..., box=..., species=..., potential=...) differ between processes: process(es) "
            f"{differ} got another input than process 0 (compared by SHA-256). Every process must make the "
            "same call on the same input; each computes only its own devices' blocks from it."
        )
    return out


def _same(*values):
    return values


def process_zero_decides(mesh):
    """``decide(*values) -> values``: for an iterative solve whose products span several
    processes (``mesh``), the host values its control flow turns on (convergence flags,
    residual norms, ranks, scales) replaced by process 0's in every process, so that all take
    the same branch and call the same collectives. Each process iterates on its own copy of the
    vectors; rounding that differs between processes (other CPU types or BLAS kernels, GPU
    reductions) would otherwise let one process stop, or drop a column, where another goes on,
    and the next product would wait for it or fail ("collective mismatch"). One small broadcast
    a call (``multihost_utils.broadcast_one_to_all``: every process takes part). Within one
    process (or ``mesh`` None): the values unchanged.

    Values are numbers or numpy arrays of bool, integer or float type; they travel as float64
    (exact for integers below 2^53) and come back in their own types and shapes."""
    if mesh is None or not mesh.is_multi_process:
        return _same
    from jax.experimental import multihost_utils

    def decide(*values):
        arrays = [np.asarray(v) for v in values]
        flat = np.concatenate([a.astype(np.float64).ravel() for a in arrays]) if arrays else np.zeros(0)
        got = np.asarray(multihost_utils.broadcast_one_to_all(flat))
        out, at = [], 0
        for a in arrays:
            part = got[at : at + a.size].reshape(a.shape)
            at += a.size
            part = part.astype(a.dtype) if a.dtype != np.bool_ else part != 0
            out.append(part if a.ndim else part[()])
        return tuple(out)

    return decide


# -- the per-device entry lists -----------------------------------------------------------------
ENTRY_FIELDS = {
    "row": ((2,), np.int32), "col": ((), np.int32), "shift": ((3,), np.float64),
    "pidx": ((), np.int32), "fwd": ((), np.bool_), "mask": ((), np.bool_), "lcol": ((), np.int32),
}  # fmt: skip
"""Per-entry fields: trailing shape and host dtype."""


class RowPartition:
    """The spatial order, the row split and each device's block entries of one pair list.

    Attributes:
        perm: (N,) new index -> atom; inv: (N,) atom -> new index.
        n_atoms, n_dev, n_loc: N, devices, rows per device (n_dev * n_loc >= N).
        cap: entry slots per device. n_pairs: pairs of the list.
    """

    def __init__(self, positions, cell, pairs, n_dev: int):
        n = pairs.n_atoms
        self.n_atoms, self.n_dev, self.n_pairs = n, n_dev, pairs.n_pairs
        self.perm = spatial_order(positions, cell)
        self.inv = np.empty(n, np.int64)
        self.inv[self.perm] = np.arange(n)
        self.n_loc = -(-n // n_dev)
        self._a = self.inv[pairs.i]
        self._b = self.inv[pairs.j]
        self._shift = np.zeros((pairs.n_pairs, 3)) if pairs.shift is None else pairs.shift
        oa, ob = self._a // self.n_loc, self._b // self.n_loc
        # a pair is an entry of its first atom's owner, and of its second's where that differs
        self.counts = np.bincount(oa, minlength=n_dev) + np.bincount(ob[oa != ob], minlength=n_dev)
        del oa, ob
        self.cap = bucket(int(self.counts.max()) if self.counts.size else 0)
        self._cache = {}
        self._halo_plan()

    def _halo_plan(self):
        """The halo exchange: for each device d and distance s, the rows (new indices) of device
        (d + s) % D that d's entries touch, sorted; ``halo`` the (s, h_s) of every distance with
        any (h_s: the longest list of that distance); ``halo_rows`` the rows a device receives."""
        D, nl, n_pad = self.n_dev, self.n_loc, self.n_dev * self.n_loc
        oa, ob = self._a // nl, self._b // nl
        cross = np.flatnonzero(oa != ob)  # (transient: at most 64 bytes a pair, _planner)
        key = np.concatenate([oa[cross] * n_pad + self._b[cross], ob[cross] * n_pad + self._a[cross]])
        del oa, ob, cross
        key = np.unique(key)
        dev, col = key // n_pad, key % n_pad
        del key
        dist = (col // nl - dev) % D
        h = np.bincount(dev * D + dist, minlength=D * D).reshape(D, D)
        hs = h.max(axis=0) if D else np.zeros(0, np.int64)
        self.halo = tuple((int(d), int(hs[d])) for d in range(1, D) if hs[d] > 0)
        self.halo_rows = int(sum(m for _, m in self.halo))
        # per device: its halo's columns (sorted) and their places in its extended vector
        # [own rows (n_loc), rows from distance s1 (h_s1), from s2, ...]
        offset = {}
        at = nl
        for d, m in self.halo:
            offset[d] = at
            at += m
        start = np.searchsorted(dev, np.arange(D + 1))
        self._halo_cols, self._halo_pos, self._needs = [], [], {}
        for d in range(D):
            c, t = col[start[d] : start[d + 1]], dist[start[d] : start[d + 1]]
            pos = np.empty(c.size, np.int64)
            for s, _ in self.halo:
                f = np.flatnonzero(t == s)  # c is sorted: so is c[f]
                pos[f] = offset[s] + np.arange(f.size)
                self._needs[d, s] = c[f]
            self._halo_cols.append(c)
            self._halo_pos.append(pos)

    def send(self, e: int) -> np.ndarray:
        """(max(halo_rows, 1),) device e's rows (local indices) to send, distance after distance
        (to device e - s), each list padded with row 0 to h_s."""
        parts = [np.zeros(0, np.int64)]
        for s, m in self.halo:
            rows = self._needs[(e - s) % self.n_dev, s] - e * self.n_loc
            parts.append(np.concatenate([rows, np.zeros(m - rows.size, np.int64)]))
        out = np.concatenate(parts)
        return out if out.size else np.zeros(1, np.int64)

    def entries(self, d: int) -> dict:
        """Device d's entries, padded to ``cap``: row ((2,) local: the entry's row, and for a
        pair whose two atoms are both d's, kept once, its other row, else n_loc), col (new
        index), shift, pidx (the pair's list position), fwd (the entry is (i, j) of the pair,
        not (j, i)), mask, lcol (the column's place in the device's extended vector: its own
        rows, then the halo)."""
        if d in self._cache:
            return self._cache[d]
        lo, nl = d * self.n_loc, self.n_loc
        ia, ib = self._a // nl == d, self._b // nl == d
        fa = np.flatnonzero(ia)  # (with the pairs internal to d: kept once, as (i, j))
        fb = np.flatnonzero(ib & ~ia)
        both = ib[fa]
        del ia, ib
        row = np.concatenate([self._a[fa], self._b[fb]]) - lo
        col = np.concatenate([self._b[fa], self._a[fb]])
        other = np.concatenate([np.where(both, self._b[fa] - lo, nl), np.full(fb.size, nl)])
        pidx = np.concatenate([fa, fb])
        fwd = np.concatenate([np.ones(fa.size, bool), np.zeros(fb.size, bool)])
        order = np.lexsort((col, row))  # row-major, like a BSR's block rows
        m, pad = row.size, self.cap - row.size
        col = col[order]
        own = col // self.n_loc == d
        lcol = np.where(own, col - lo, 0)
        hc = self._halo_cols[d]
        if hc.size:
            lcol[~own] = self._halo_pos[d][np.searchsorted(hc, col[~own])]
        out = {
            "row": np.stack(
                [np.concatenate([row[order], np.zeros(pad, np.int64)]),
                 np.concatenate([other[order], np.full(pad, nl, np.int64)])], axis=1,
            ).astype(np.int32),  # fmt: skip
            "col": np.concatenate([col, np.full(pad, lo, np.int64)]).astype(np.int32),
            "lcol": np.concatenate([lcol, np.zeros(pad, np.int64)]).astype(np.int32),
            "shift": np.concatenate([self._shift[pidx[order]], np.zeros((pad, 3))]),
            "pidx": np.concatenate([pidx[order], np.zeros(pad, np.int64)]).astype(np.int32),
            "fwd": np.concatenate([fwd[order], np.ones(pad, bool)]),
            "mask": np.arange(self.cap) < m,
        }
        self._cache[d] = out  # each field of a device is asked for separately; see release()
        return out

    def release(self):
        """Drop the host copies of the entries (once they are on the devices)."""
        self._cache = {}

    def sharded(self, name: str, mesh: Mesh, axis: str, dtype=None):
        """The (n_dev * cap, ...) global array of entry field ``name``, sharded over ``axis``;
        each process builds the entries of its own devices only."""
        cap = self.cap
        tail, dt = ENTRY_FIELDS[name]
        shape = (self.n_dev * cap,) + tail
        dt = np.dtype(dt if dtype is None else dtype)
        spec = PartitionSpec(axis, *([None] * (len(shape) - 1)))

        def fill(idx):
            s = idx[0]
            start = 0 if s.start is None else s.start
            stop = shape[0] if s.stop is None else s.stop
            parts = [self.entries(d)[name] for d in range(start // cap, stop // cap)]
            return np.concatenate(parts).astype(dt)

        return jax.make_array_from_callback(shape, NamedSharding(mesh, spec), fill)

    def sharded_send(self, mesh: Mesh, axis: str):
        """The (n_dev * max(halo_rows, 1),) global array of the devices' ``send`` lists."""
        m = max(self.halo_rows, 1)

        def fill(idx):
            s = idx[0]
            start = 0 if s.start is None else s.start
            stop = self.n_dev * m if s.stop is None else s.stop
            return np.concatenate([self.send(e) for e in range(start // m, stop // m)]).astype(np.int32)

        return jax.make_array_from_callback((self.n_dev * m,), NamedSharding(mesh, PartitionSpec(axis)), fill)


# -- device programs ------------------------------------------------------------------------------
def _oriented(potential, R, species, row_g, col, shift, pidx, fwd):
    """Displacements and parameters of the entries' pairs in the pair's own orientation (i, j), so
    every block is bit for bit the single-device one."""
    a = jnp.where(fwd, row_g, col)
    b = jnp.where(fwd, col, row_g)
    return R[b] - R[a] + shift, potential.pair_params(species[a], species[b], pidx)


def _row_sums(Kw, row, n_loc):
    """Each entry's K w summed into its row and, for a pair kept once (both rows here: row[:, 1]
    < n_loc), -K w into the other row (its (j, i) entry: K (w_j - w_i) = -K w); row[:, 1] =
    n_loc elsewhere, outside the segments, so dropped."""
    own = jax.ops.segment_sum(Kw, row[:, 0], n_loc, indices_are_sorted=True)
    return own - jax.ops.segment_sum(Kw, row[:, 1], n_loc)


def _local_blocks(potential, R, species, row, col, shift, pidx, fwd, mask, *, axis, n_loc):
    row_g = row[:, 0] + jax.lax.axis_index(axis) * n_loc
    d, pp = _oriented(potential, R, species, row_g, col, shift, pidx, fwd)
    return pair_blocks(potential.phi_eff, d, pp, mask)


def _local_apply_stored(K, row, col, v, *, axis, n_loc):
    w = v[row[:, 0] + jax.lax.axis_index(axis) * n_loc] - v[col]
    return _row_sums(jnp.einsum("pab,pb...->pa...", K, w), row, n_loc)


def _local_apply_recompute(potential, R, species, row, col, shift, pidx, fwd, mask, v, *, axis, n_loc):
    row_g = row[:, 0] + jax.lax.axis_index(axis) * n_loc
    d, pp = _oriented(potential, R, species, row_g, col, shift, pidx, fwd)
    return _row_sums(pair_block_apply(potential.phi_eff, d, pp, v[row_g] - v[col], mask), row, n_loc)


def _with_halo(v, send, *, axis, halo, n_dev):
    """A device's rows of v (n_loc, 3, ...) extended by the rows other devices send it: for each
    distance (s, h_s) of ``halo``, the h_s rows ``send`` lists go from every device e to device
    e - s (one collective permute per distance)."""
    parts, at = [v], 0
    for s, m in halo:
        pairs = [(e, (e - s) % n_dev) for e in range(n_dev)]
        parts.append(jax.lax.ppermute(v[send[at : at + m]], axis, pairs))
        at += m
    return jnp.concatenate(parts) if len(parts) > 1 else v


def _local_apply_split_stored(K, row, lcol, send, x, *, axis, n_loc, halo, n_dev):
    v = x.reshape((n_loc, 3) + x.shape[1:])
    ve = _with_halo(v, send, axis=axis, halo=halo, n_dev=n_dev)
    Kw = jnp.einsum("pab,pb...->pa...", K, ve[row[:, 0]] - ve[lcol])
    return _row_sums(Kw, row, n_loc).reshape(x.shape)


def _local_apply_split_recompute(potential, R, species, row, col, shift, pidx, fwd, mask, lcol, send, x, *,
                                 axis, n_loc, halo, n_dev):  # fmt: skip
    v = x.reshape((n_loc, 3) + x.shape[1:])
    ve = _with_halo(v, send, axis=axis, halo=halo, n_dev=n_dev)
    row_g = row[:, 0] + jax.lax.axis_index(axis) * n_loc
    d, pp = _oriented(potential, R, species, row_g, col, shift, pidx, fwd)
    Kw = pair_block_apply(potential.phi_eff, d, pp, ve[row[:, 0]] - ve[lcol], mask)
    return _row_sums(Kw, row, n_loc).reshape(x.shape)


def _local_diagonal(K, row, *, axis, n_loc):
    # a block adds to the diagonal of each row it belongs to (both rows of a pair kept once)
    own = jax.ops.segment_sum(K, row[:, 0], n_loc, indices_are_sorted=True)
    return own + jax.ops.segment_sum(K, row[:, 1], n_loc)


def _specs(axis, kinds: str):
    """in_specs from a string: 's' sharded over the axis (leading dim), 'r' replicated."""
    return tuple(PartitionSpec(axis) if k == "s" else PartitionSpec() for k in kinds)


@partial(jit, static_argnames=("mesh", "axis", "n_loc"))
def _blocks_program(potential, R, species, row, col, shift, pidx, fwd, mask, *, mesh, axis, n_loc):
    f = jax.shard_map(
        partial(_local_blocks, axis=axis, n_loc=n_loc),
        mesh=mesh, in_specs=_specs(axis, "rrrssssss"), out_specs=PartitionSpec(axis),
    )  # fmt: skip
    K = f(potential, R, species, row, col, shift, pidx, fwd, mask)
    return K, jnp.all(jnp.isfinite(K))


def _gathered(x, mesh):
    """The row blocks of every device gathered onto every device (the all-gather XLA inserts)."""
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec()))


def _in_new_order(v, perm_pad):
    """(3N, ...) in atom order -> (N_pad, 3, ...) in the spatial order (padding rows zero)."""
    x = v.reshape((-1, 3) + v.shape[1:])
    x = jnp.concatenate([x, jnp.zeros((1,) + x.shape[1:], x.dtype)])
    return x[perm_pad]


@partial(jit, static_argnames=("mesh", "axis", "n_loc"))
def _apply_stored_program(K, row, col, perm_pad, inv, v, *, mesh, axis, n_loc):
    f = jax.shard_map(
        partial(_local_apply_stored, axis=axis, n_loc=n_loc),
        mesh=mesh, in_specs=_specs(axis, "sssr"), out_specs=PartitionSpec(axis),
    )  # fmt: skip
    return _gathered(f(K, row, col, _in_new_order(v, perm_pad)), mesh)[inv].reshape(v.shape)


@partial(jit, static_argnames=("mesh", "axis", "n_loc"))
def _apply_recompute_program(potential, R, species, row, col, shift, pidx, fwd, mask, perm_pad, inv, v, *,
                             mesh, axis, n_loc):  # fmt: skip
    f = jax.shard_map(
        partial(_local_apply_recompute, axis=axis, n_loc=n_loc),
        mesh=mesh, in_specs=_specs(axis, "rrrssssssr"), out_specs=PartitionSpec(axis),
    )  # fmt: skip
    out = f(potential, R, species, row, col, shift, pidx, fwd, mask, _in_new_order(v, perm_pad))
    return _gathered(out, mesh)[inv].reshape(v.shape)


@partial(jit, static_argnames=("mesh", "axis", "n_loc", "halo"))
def _split_stored_program(K, row, lcol, send, x, *, mesh, axis, n_loc, halo):
    f = jax.shard_map(
        partial(_local_apply_split_stored, axis=axis, n_loc=n_loc, halo=halo, n_dev=mesh.devices.size),
        mesh=mesh, in_specs=_specs(axis, "sssss"), out_specs=PartitionSpec(axis),
    )  # fmt: skip
    return f(K, row, lcol, send, x)


@partial(jit, static_argnames=("mesh", "axis", "n_loc", "halo"))
def _split_recompute_program(potential, R, species, row, col, shift, pidx, fwd, mask, lcol, send, x, *,
                             mesh, axis, n_loc, halo):  # fmt: skip
    f = jax.shard_map(
        partial(_local_apply_split_recompute, axis=axis, n_loc=n_loc, halo=halo, n_dev=mesh.devices.size),
        mesh=mesh, in_specs=_specs(axis, "rrrsssssssss"), out_specs=PartitionSpec(axis),
    )  # fmt: skip
    return f(potential, R, species, row, col, shift, pidx, fwd, mask, lcol, send, x)


@partial(jit, static_argnames=("sharding",))
def _to_split_program(v, perm_pad, *, sharding):
    """(3N, ...) in atom order -> (3 N_pad, ...) in the split layout (padding rows zero)."""
    x = _in_new_order(v, perm_pad)
    return jax.lax.with_sharding_constraint(x.reshape((-1,) + v.shape[1:]), sharding)


@partial(jit, static_argnames=("mesh",))
def _from_split_program(y, inv, *, mesh):
    """(3 N_pad, ...) in the split layout -> (3N, ...) in atom order, on every device."""
    y = _gathered(y.reshape((-1, 3) + y.shape[1:]), mesh)[inv]
    return y.reshape((-1,) + y.shape[2:])


@partial(jit, static_argnames=("mesh", "axis", "n_loc"))
def _diagonal_program(K, row, inv, *, mesh, axis, n_loc):
    f = jax.shard_map(
        partial(_local_diagonal, axis=axis, n_loc=n_loc),
        mesh=mesh, in_specs=_specs(axis, "ss"), out_specs=PartitionSpec(axis),
    )  # fmt: skip
    return _gathered(f(K, row), mesh)[inv]


# -- the operator ---------------------------------------------------------------------------------
class ShardedHessianOperator(HessianOperator):
    """A (3N, 3N) Hessian whose block rows are split over the devices of a 1-D mesh.

    The interface of every ``HessianOperator``, in the ORIGINAL atom order: ``op @ v`` / ``mv``
    (a JAX array replicated on the mesh's devices), ``shape``, ``dtype``, ``blocks()`` (the pair
    blocks gathered to the host), ``diagonal_blocks()``, ``to_bsr()`` (the canonical scipy BSR,
    gathered to the host: equal to ``hessian(format="bsr")``), ``as_matrix()``, ``positions``,
    so ``normal_modes(op, ...)`` runs on it unchanged.

    Sharding: ``mesh``, ``perm`` (spatial order: new index -> atom), ``row_atoms`` (the atoms
    each device owns), ``stored`` (blocks kept on the devices, else recomputed per product).

    Built by ``mdhess.hvp(..., devices=...)`` and ``mdhess.hessian(..., format="bsr",
    devices=...)``; not meant to be constructed directly.
    """

    has_blocks = True

    def __init__(self, prepared, dtype, devices, *, store_blocks: bool, call: str):
        self.mesh, self.axis = resolve_mesh(devices, call=call)
        self.dtype = np.dtype(dtype)
        self.stored = bool(store_blocks)
        R, pairs = prepared.wrapped(dtype)
        n_dev = self.mesh.devices.size
        part = RowPartition(prepared.R, prepared.cell, pairs, n_dev)
        self.partition, self.n_atoms = part, part.n_atoms
        self._R_host = np.asarray(prepared.R, dtype=np.float64)
        n_pad = n_dev * part.n_loc
        perm_pad = np.concatenate([part.perm, np.full(n_pad - part.n_atoms, part.n_atoms)])
        rep = partial(replicate, mesh=self.mesh)
        self._perm_pad = rep(perm_pad.astype(np.int32))
        self._inv = rep(part.inv.astype(np.int32))
        R_new = np.zeros((n_pad, 3))
        R_new[: part.n_atoms] = R[part.perm]
        s_new = np.zeros(n_pad, np.int32)
        s_new[: part.n_atoms] = prepared.species[part.perm]
        pot = jax.tree.map(rep, cast_potential(prepared.potential, dtype))
        sh = partial(part.sharded, mesh=self.mesh, axis=self.axis)
        self._entries = (
            sh("row"), sh("col"), sh("shift", dtype=dtype), sh("pidx"), sh("fwd"), sh("mask"),
        )  # fmt: skip
        self._lcol, self._send = sh("lcol"), part.sharded_send(self.mesh, self.axis)
        part.release()
        self._geometry = (pot, rep(R_new.astype(dtype)), rep(s_new))
        self._static = {"mesh": self.mesh, "axis": self.axis, "n_loc": part.n_loc}
        self._halo = part.halo
        self.split_sharding = NamedSharding(self.mesh, PartitionSpec(self.axis))
        self.K = None
        if self.stored:
            K, ok = _blocks_program(*self._geometry, *self._entries, **self._static)
            if not bool(ok):
                raise_nonfinite(call, "pair blocks")
            self.K = K

    # -- the sharding, for users and tests
    @property
    def devices(self) -> list:
        return list(self.mesh.devices.flat)

    @property
    def perm(self) -> np.ndarray:
        """(N,) the spatial order: row block position -> atom index."""
        return self.partition.perm

    @property
    def row_atoms(self) -> list[np.ndarray]:
        """The atoms (original indices) whose block rows each device holds, in device order."""
        p, n = self.partition, self.partition.n_loc
        return [p.perm[d * n : (d + 1) * n] for d in range(p.n_dev)]

    @property
    def n_pad(self) -> int:
        """Atoms of the split layout: N rounded up to a multiple of the devices."""
        return self.partition.n_dev * self.partition.n_loc

    @property
    def halo_rows(self) -> int:
        """Rows of v each device receives from the others in a product (padded per distance)."""
        return self.partition.halo_rows

    @property
    def entries_per_device(self) -> np.ndarray:
        """(n_dev,) off-diagonal blocks each device holds (padding excluded)."""
        return self.partition.counts.copy()

    # -- HessianOperator
    @property
    def positions(self) -> np.ndarray | None:
        """The positions for a matrix-free operator (as ``MatrixFreeOperator``); None when the
        blocks are stored (as ``StoredBlockOperator``)."""
        return None if self.stored else self._R_host

    @property
    def n_pair_slots(self) -> int:
        return self.partition.n_pairs

    def mv(self, v):
        n3 = 3 * self.n_atoms
        if not isinstance(v, jax.Array):
            v = np.asarray(v, dtype=self.dtype)
        elif v.dtype != self.dtype:
            v = v.astype(self.dtype)
        if v.ndim not in (1, 2) or v.shape[0] != n3:
            raise InputError(f"HessianOperator @ v expects v of shape ({n3},) or ({n3}, k); got {v.shape}")
        on_mesh = isinstance(v, jax.Array) and v.sharding.device_set == set(self.mesh.devices.flat)
        if isinstance(v, jax.Array) and not on_mesh:
            v = replicate(v, self.mesh)
            on_mesh = True
        if on_mesh and v.sharding.is_fully_replicated:  # v is whole on every device: no exchange
            if self.stored:
                return _apply_stored_program(
                    self.K, self._entries[0], self._entries[1], self._perm_pad, self._inv, v, **self._static
                )
            return _apply_recompute_program(
                *self._geometry, *self._entries, self._perm_pad, self._inv, v, **self._static
            )  # fmt: skip
        return self.from_split(self.mv_split(self.to_split(v)))

    __matmul__ = mv

    # -- the split layout: vectors whose rows are split over the devices like the block rows
    def to_split(self, v):
        """(3N[, k]) v in atom order (host array or JAX array on the mesh's devices) -> the
        (3 N_pad[, k]) global array of the split layout: rows in the spatial order (``perm``),
        zero padding rows last, each device holding its own atoms' rows."""
        n3, shape = 3 * self.n_atoms, getattr(v, "shape", np.shape(v))
        if len(shape) not in (1, 2) or shape[0] != n3:
            raise InputError(f"to_split expects v of shape ({n3},) or ({n3}, k) (atom order); got {tuple(shape)}")
        if isinstance(v, jax.Array) and v.sharding.device_set == set(self.mesh.devices.flat):
            return _to_split_program(v.astype(self.dtype), self._perm_pad, sharding=self.split_sharding)
        v = np.asarray(to_host(v) if isinstance(v, jax.Array) else v, dtype=self.dtype)
        p = self.partition
        x = np.zeros((self.n_pad, 3) + v.shape[1:], self.dtype)
        x[: p.n_atoms] = v.reshape((p.n_atoms, 3) + v.shape[1:])[p.perm]
        return put_global(x.reshape((3 * self.n_pad,) + v.shape[1:]), self.split_sharding)

    def from_split(self, y):
        """The split layout's (3 N_pad[, k]) -> (3N[, k]) in atom order, replicated on the mesh."""
        n3 = 3 * self.n_pad
        if not isinstance(y, jax.Array) or y.ndim not in (1, 2) or y.shape[0] != n3:
            shape = getattr(y, "shape", None)
            raise InputError(f"from_split expects a JAX array of shape ({n3},) or ({n3}, k) (the split layout); got {shape}")
        return _from_split_program(y, self._inv, mesh=self.mesh)

    def mv_split(self, x):
        """H x in the split layout (``to_split``): x a (3 N_pad[, k]) global array split by rows
        over the mesh's devices (placed so if it is not). Each device receives only the rows of
        x its blocks touch (``halo_rows``: a halo exchange by collective permutes) and keeps its
        own rows of the result: nothing is gathered."""
        n3 = 3 * self.n_pad
        if not isinstance(x, jax.Array) or x.ndim not in (1, 2) or x.shape[0] != n3:
            shape = getattr(x, "shape", None)
            raise InputError(f"mv_split expects a JAX array of shape ({n3},) or ({n3}, k) (the split layout); got {shape}")
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        if not x.sharding.is_equivalent_to(self.split_sharding, x.ndim):
            x = put_global(x, self.split_sharding)
        st = {**self._static, "halo": self._halo}
        if self.stored:
            return _split_stored_program(self.K, self._entries[0], self._lcol, self._send, x, **st)
        return _split_recompute_program(*self._geometry, *self._entries, self._lcol, self._send, x, **st)

    def _device_blocks(self):
        if self.K is not None:
            return self.K
        return _blocks_program(*self._geometry, *self._entries, **self._static)[0]

    def diagonal_blocks(self):
        """(N, 3, 3) diagonal blocks, replicated on the mesh (original atom order)."""
        return _diagonal_program(self._device_blocks(), self._entries[0], self._inv, **self._static)

    def blocks(self):
        """(K, i, j): the pair blocks of the list, one per pair in the list's order, with their
        atom indices, gathered to the host (transient: every block crosses to one place)."""
        K = to_host(self._device_blocks())
        row, col, pidx, fwd, mask = (to_host(self._entries[k]) for k in (0, 1, 3, 4, 5))
        p = self.partition
        row_g = row[:, 0] + np.repeat(np.arange(p.n_dev), p.cap) * p.n_loc
        keep = fwd & mask
        order = np.argsort(pidx[keep], kind="stable")
        Kp = K[keep][order]
        i = p.perm[row_g[keep][order]].astype(np.int32)
        j = p.perm[col[keep][order]].astype(np.int32)
        return jnp.asarray(Kp), jnp.asarray(i), jnp.asarray(j)


SHARDED_SUGGESTION = "Use more devices, store_blocks=False (blocks recomputed per product), or float32."


def sharded_plan(mesh: Mesh, dtype, *, store_blocks: bool, call: str):
    """(n_atoms, n_pairs) -> this process's ``MemoryPlan`` of a sharded operator on ``mesh``
    (``_planner.estimate_sharded_memory``): checked from the pair count the density and cutoff
    predict before any list is built, and again with the list's exact count."""
    from . import _planner

    devices = list(mesh.devices.flat)
    local = sum(1 for d in devices if d.process_index == jax.process_index())
    host = all(d.platform == "cpu" for d in devices)

    def plan(n_atoms: int, n_pairs: int):
        return _planner.estimate_sharded_memory(
            n_atoms, n_pairs, n_devices=len(devices), local_devices=local, dtype=dtype, store_blocks=store_blocks,
            host_devices=host, call=call,
        )  # fmt: skip

    return plan


def sharded_operator(prepared, dtype, devices, *, store_blocks: bool, call: str) -> ShardedHessianOperator:
    """The ``ShardedHessianOperator`` of a prepared call (``_api.hvp`` / ``_api.hessian``)."""
    return ShardedHessianOperator(prepared, dtype, devices, store_blocks=store_blocks, call=call)
