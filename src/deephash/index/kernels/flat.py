"""The exact scan: k-NN and radius search over every code, and the pieces the MIH kernels reuse (popcount, the
key layout, distances of a tile of rows, grouping range results by query).

Results are exchanged as int64 *keys* ``distance << 40 | position`` so that one integer comparison orders by
distance, then by insertion position: that is the documented deterministic tie rule, and it makes top-k merges a
plain sort.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from .cache import CACHE

POS_BITS = 40
POS_MASK = (1 << POS_BITS) - 1
EMPTY_KEY = np.iinfo(np.int64).max
TILE = 256  # database rows per tile: small, so a tile with a candidate costs little to rescan row by row
CHUNK = 32  # rows summarised by one min() before looking at rows one by one


@intrinsic
def popcount(typingctx, x):
    """Hardware popcount (LLVM ctpop); returns int64 so comparisons stay integral."""
    sig = types.int64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@njit(nogil=True, cache=CACHE, inline="always")
def tile_distances(db, t0, m, W, q, qoff, dt):
    """Distances of rows t0..t0+m to one query into dt; unrolled for short codes so LLVM vectorizes."""
    seg = db[t0 * W : (t0 + m) * W]
    if W == 1:
        a = q[qoff]
        for i in range(m):
            dt[i] = popcount(seg[i] ^ a)
    elif W == 2:
        a = q[qoff]
        b = q[qoff + 1]
        for i in range(m):
            dt[i] = popcount(seg[2 * i] ^ a) + popcount(seg[2 * i + 1] ^ b)
    elif W == 4:
        a = q[qoff]
        b = q[qoff + 1]
        c = q[qoff + 2]
        e = q[qoff + 3]
        for i in range(m):
            dt[i] = (
                popcount(seg[4 * i] ^ a)
                + popcount(seg[4 * i + 1] ^ b)
                + popcount(seg[4 * i + 2] ^ c)
                + popcount(seg[4 * i + 3] ^ e)
            )
    else:
        for i in range(m):
            s = 0
            for w in range(W):
                s += popcount(seg[i * W + w] ^ q[qoff + w])
            dt[i] = s


@njit(nogil=True, cache=CACHE)
def compact(buf, k):
    """Keep the k smallest keys of a full buffer; return the new acceptance threshold."""
    buf.sort()
    for i in range(k, buf.shape[0]):
        buf[i] = EMPTY_KEY
    return buf[k - 1]


@njit(nogil=True, cache=CACHE, inline="always")
def _hits4(db, t0, m, W, q, q0, T0, T1, T2, T3):
    """How many rows of a tile fall within each of 4 queries' thresholds, in one fused pass:
    the 4 queries share every loaded code and nothing is stored, so LLVM vectorizes it."""
    seg = db[t0 * W : (t0 + m) * W]
    h0 = h1 = h2 = h3 = 0
    if W == 1:
        a, b, c, e = q[q0], q[q0 + 1], q[q0 + 2], q[q0 + 3]
        for i in range(m):
            x = seg[i]
            h0 += popcount(x ^ a) <= T0
            h1 += popcount(x ^ b) <= T1
            h2 += popcount(x ^ c) <= T2
            h3 += popcount(x ^ e) <= T3
    else:  # W == 2
        a0, a1 = q[q0 * 2], q[q0 * 2 + 1]
        b0, b1 = q[q0 * 2 + 2], q[q0 * 2 + 3]
        c0, c1 = q[q0 * 2 + 4], q[q0 * 2 + 5]
        e0, e1 = q[q0 * 2 + 6], q[q0 * 2 + 7]
        for i in range(m):
            x, y = seg[2 * i], seg[2 * i + 1]
            h0 += popcount(x ^ a0) + popcount(y ^ a1) <= T0
            h1 += popcount(x ^ b0) + popcount(y ^ b1) <= T1
            h2 += popcount(x ^ c0) + popcount(y ^ c1) <= T2
            h3 += popcount(x ^ e0) + popcount(y ^ e1) <= T3
    return h0, h1, h2, h3


@njit(nogil=True, cache=CACHE)
def _scan_tile(db, t0, m, W, q, qi, k, dt, buf, size, thr, thr_d, cap):
    """Offer one tile's rows to one query's top-k buffer (the exact, per-row path)."""
    tile_distances(db, t0, m, W, q, qi * W, dt)
    T = thr_d[qi]
    for c in range(0, m, CHUNK):
        ce = min(c + CHUNK, m)
        mn = 1 << 20
        for j in range(c, ce):
            mn = min(mn, dt[j])
        if mn > T:
            continue
        for j in range(c, ce):
            d = np.int64(dt[j])
            if d <= T:
                key = (d << POS_BITS) | (t0 + j)
                if key < thr[qi]:
                    buf[qi, size[qi]] = key
                    size[qi] += 1
                    if size[qi] == cap:
                        thr[qi] = compact(buf[qi], k)
                        size[qi] = k
                        T = thr[qi] >> POS_BITS
                        thr_d[qi] = T


@njit(nogil=True, cache=CACHE)
def _flat_knn(db, W, lo, hi, q, k, out, dt):
    """Exact top-k keys of each query over database rows [lo, hi); dt is a (TILE,) scratch.

    db: flat uint64 (n*W,), q: flat uint64 (nq*W,), out: int64 (nq, k) filled with keys
    sorted ascending, EMPTY_KEY where fewer than k rows exist. Rows are visited in
    position order, so a row tying the current k-th distance can never displace it.
    For 64- and 128-bit codes, groups of 4 queries first count a tile's rows within their
    thresholds in one fused pass; only a query with a hit takes the per-row path.
    """
    nq = q.shape[0] // W
    cap = max(2 * k, k + 64)
    buf = np.full((nq, cap), EMPTY_KEY, np.int64)
    size = np.zeros(nq, np.int64)
    thr = np.full(nq, EMPTY_KEY, np.int64)  # accept key iff key < thr
    thr_d = np.full(nq, 1 << 20, np.int64)  # cheap prefilter: accept only d <= thr_d
    grouped = (nq // 4) * 4 if W <= 2 else 0
    for t0 in range(lo, hi, TILE):
        m = min(TILE, hi - t0)
        for g in range(0, grouped, 4):
            hits = _hits4(db, t0, m, W, q, g, thr_d[g], thr_d[g + 1], thr_d[g + 2], thr_d[g + 3])
            for r in range(4):
                if hits[r]:
                    _scan_tile(db, t0, m, W, q, g + r, k, dt, buf, size, thr, thr_d, cap)
        for qi in range(grouped, nq):
            _scan_tile(db, t0, m, W, q, qi, k, dt, buf, size, thr, thr_d, cap)
    for qi in range(nq):
        row = buf[qi, : size[qi]]
        row.sort()
        for i in range(k):
            out[qi, i] = row[i] if i < row.shape[0] else EMPTY_KEY


@njit(nogil=True, cache=CACHE)
def flat_knn(db, W, lo, hi, q, k, out):
    """_flat_knn with the narrowest distance buffer: uint8 (32 per AVX2 register) up to 192 bits."""
    if W <= 3:
        _flat_knn(db, W, lo, hi, q, k, out, np.empty(TILE, np.uint8))
    else:
        _flat_knn(db, W, lo, hi, q, k, out, np.empty(TILE, np.uint16))


@njit(nogil=True, cache=CACHE)
def grow_array(a, need):
    if need <= a.shape[0]:
        return a
    b = np.empty(max(need, 2 * a.shape[0]), a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(nogil=True, cache=CACHE)
def flat_range(db, W, n, q, r):
    """All (query, key) pairs with distance <= r (inclusive), grouped by query, keys ascending."""
    nq = q.shape[0] // W
    qs = np.empty(1024, np.int64)
    keys = np.empty(1024, np.int64)
    cnt = 0
    dt = np.empty(TILE, np.uint16)
    for t0 in range(0, n, TILE):
        m = min(TILE, n - t0)
        for qi in range(nq):
            tile_distances(db, t0, m, W, q, qi * W, dt)
            for c in range(0, m, CHUNK):
                ce = min(c + CHUNK, m)
                mn = 1 << 20
                for j in range(c, ce):
                    mn = min(mn, dt[j])
                if mn > r:
                    continue
                for j in range(c, ce):
                    d = np.int64(dt[j])
                    if d <= r:
                        if cnt == keys.shape[0]:
                            keys = grow_array(keys, cnt + 1)
                            qs = grow_array(qs, cnt + 1)
                        keys[cnt] = (d << POS_BITS) | (t0 + j)
                        qs[cnt] = qi
                        cnt += 1
    return group_by_query(qs[:cnt], keys[:cnt], nq, n, r)


RADIX_MAX_BITS = 13  # widest digit of the radix sort of a query's range results (a count array in L1/L2)
SMALL_SORT = 256  # fewer results: a comparison sort


@njit(nogil=True, cache=CACHE)
def order_range_keys(keys, n, r, tmp):
    """Sort one query's range keys (``distance << POS_BITS | position``, positions < n, distances <= r) in place.

    Results arrive as runs of ascending positions (one per bucket), often already in order (one bucket,
    one distance): checked first. Otherwise a least-significant-digit radix sort on ``distance * n +
    position`` (two passes up to (r+1)*n = 2^26): clustered learned codes match tens of thousands of
    codes within radius 2 per query, and a comparison sort of those cost more than finding them.
    ``tmp``: scratch of at least len(keys) keys."""
    c = keys.shape[0]
    ordered = True
    for i in range(1, c):
        if keys[i] < keys[i - 1]:
            ordered = False
            break
    if ordered:
        return
    if c < SMALL_SORT:
        keys.sort()
        return
    span = (np.int64(r) + 1) * n
    nbits = 1
    while (np.int64(1) << nbits) < span:
        nbits += 1
    passes = -(-nbits // RADIX_MAX_BITS)
    digit = -(-nbits // passes)
    digit_mask = (np.int64(1) << digit) - 1
    count = np.empty((1 << digit) + 1, np.int64)
    src, dst = keys, tmp[:c]
    for p in range(passes):
        shift = p * digit
        count[:] = 0
        for i in range(c):
            v = (src[i] >> POS_BITS) * n + (src[i] & POS_MASK)
            count[((v >> shift) & digit_mask) + 1] += 1
        for b in range(1 << digit):
            count[b + 1] += count[b]
        for i in range(c):
            v = (src[i] >> POS_BITS) * n + (src[i] & POS_MASK)
            b = (v >> shift) & digit_mask
            dst[count[b]] = src[i]
            count[b] += 1
        src, dst = dst, src
    if passes % 2:
        keys[:] = src


@njit(nogil=True, cache=CACHE)
def group_by_query(qs, keys, nq, n, r):
    """(lims, keys) with each query's keys contiguous and ascending (``order_range_keys``); n: the database
    size, r: the radius. Kernels that emit queries in order skip the scatter."""
    lims = np.zeros(nq + 1, np.int64)
    ordered = True
    for i in range(qs.shape[0]):
        lims[qs[i] + 1] += 1
        if i and qs[i] < qs[i - 1]:
            ordered = False
    big = 0
    for i in range(nq):
        big = max(big, lims[i + 1])
        lims[i + 1] += lims[i]
    if ordered:
        out = keys
    else:
        fill = lims[:-1].copy()
        out = np.empty(keys.shape[0], np.int64)
        for i in range(qs.shape[0]):
            out[fill[qs[i]]] = keys[i]
            fill[qs[i]] += 1
    tmp = np.empty(big if big >= SMALL_SORT else 0, np.int64)
    for i in range(nq):
        order_range_keys(out[lims[i] : lims[i + 1]], n, r, tmp)
    return lims, out
