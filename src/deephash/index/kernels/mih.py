"""Multi-index hashing kernels: substring keys, counting sort of the tables, and the k-NN and radius probes
that verify a query's bucket candidates with the scan's tile distances (``flat``)."""

from __future__ import annotations

import numpy as np
from numba import njit

from .cache import CACHE
from .flat import (
    EMPTY_KEY,
    POS_BITS,
    POS_MASK,
    TILE,
    compact,
    group_by_query,
    grow_array,
    popcount,
    tile_distances,
)


@njit(nogil=True, cache=CACHE)
def substring_keys(codes, start, width):
    """Integer value of bits [start, start+width) of each packed row (width <= 32, MSB first)."""
    n = codes.shape[0]
    out = np.empty(n, np.int64)
    b0 = start >> 3
    b1 = (start + width - 1) >> 3
    nb = b1 - b0 + 1
    shift = (b1 + 1) * 8 - (start + width)
    mask = (np.int64(1) << width) - 1
    for i in range(n):
        v = np.int64(0)
        for b in range(nb):
            v = (v << 8) | np.int64(codes[i, b0 + b])
        out[i] = (v >> shift) & mask
    return out


# Cost units of one bucket probe against one verified candidate: a probe is two dependent DRAM misses
# (the bucket's offsets, then its first codes, in tables of hundreds of MB), a candidate in a bucket is a
# sequential 8-byte read (measurements in MIHEngine.budget).
PROBE_COST = 64


@njit(nogil=True, cache=CACHE, inline="always")
def _next_mask(x):
    """Gosper's hack: the next larger integer with the same number of set bits."""
    c = x & -x
    r = x + c
    return (((r ^ x) >> 2) // c) | r


@njit(nogil=True, cache=CACHE)
def _probe_step(
    j, rho, qi, W, m, q, qkeys, widths, offs, offs_base, perm, pcodes, reordered, db, masks, buf, state, hist, cost, budget,
    x, pos, grow, dt,
):
    """Probe every bucket of table j at substring distance exactly rho; push owned rows.

    A row is verified once overall: only in the table where it is first reached in the
    query's probe order (table i at radius rho is step m*rho + pos[i]), which replaces a
    'seen' array. state = [size, thr]; x is (W,) and dt (TILE,) scratch. A full ``buf`` keeps its k = len/2
    smallest keys (k-NN) or, with ``grow`` (radius search, which keeps every key), is replaced by
    one twice as long. Returns (the updated cost, or -1 when the budget is exhausted; buf).
    """
    width = widths[j]
    if rho > width:
        return cost, buf
    n = perm.shape[1]
    cap = buf.shape[0]
    k = cap // 2
    base = offs_base[j]
    key0 = qkeys[qi, j]
    qoff = qi * W
    mask = (np.int64(1) << rho) - 1
    limit = np.int64(1) << width
    while mask < limit:
        key = key0 ^ mask
        lo = offs[base + key]
        hi = offs[base + key + 1]
        cost += PROBE_COST + (hi - lo)
        thr_d = state[1] >> POS_BITS
        for t0 in range(lo, hi, TILE):
            mt = min(TILE, hi - t0)
            if reordered:  # contiguous codes: their distances in one vectorised pass, as in the scan
                tile_distances(pcodes, j * n + t0, mt, W, q, qoff, dt)
            for t in range(t0, t0 + mt):
                if reordered:
                    d = np.int64(dt[t - t0])
                    if d > thr_d:
                        continue
                    for w in range(W):
                        x[w] = pcodes[(j * n + t) * W + w] ^ q[qoff + w]
                else:
                    row = perm[j, t]
                    d = 0
                    for w in range(W):
                        x[w] = db[row * W + w] ^ q[qoff + w]
                        d += popcount(x[w])
                    if d > thr_d:
                        continue
                owner = True
                for i in range(m):
                    if i == j:
                        continue
                    di = 0
                    for w in range(W):
                        di += popcount(x[w] & masks[i, w])
                    if di < rho or (pos[i] < pos[j] and di == rho):
                        owner = False
                        break
                if not owner:
                    continue
                kk = (d << POS_BITS) | perm[j, t]
                if kk < state[1]:
                    buf[state[0]] = kk
                    state[0] += 1
                    hist[d] += 1
                    if state[0] == cap:
                        if grow:
                            buf = grow_array(buf, cap + 1)
                            cap = buf.shape[0]
                        else:
                            state[1] = compact(buf, k)
                            state[0] = k
                            thr_d = state[1] >> POS_BITS
        if cost > budget:
            return -1, buf
        if rho == 0:
            break
        mask = _next_mask(mask)
    return cost, buf


@njit(nogil=True, cache=CACHE, inline="always")
def _order_by_size(lo, hi, order):
    """order = table indices by bucket size hi - lo, smallest first; ties keep the table order (stable
    insertion sort: m is small)."""
    m = order.shape[0]
    for a in range(m):
        b = a - 1
        while b >= 0 and hi[order[b]] - lo[order[b]] > hi[a] - lo[a]:
            order[b + 1] = order[b]
            b -= 1
        order[b + 1] = a


@njit(nogil=True, cache=CACHE)
def _table_order(qi, qkeys, offs, offs_base, order, pos, lo, hi):
    """This query's probe order: tables by the size of its exact (radius-0) bucket, smallest first.

    Pigeonhole does not care which tables get the larger radius: with r = m*a + b, any b+1 tables
    at substring radius a and the rest at a-1 cover every code within r. On clustered codes a
    query's substring often matches its cluster centre's, whose bucket holds a large share of the
    cluster; probing the other tables first verifies far fewer codes (measured on 10M codes of
    10 centres: 2.8x fewer candidates for exact 10-NN). lo/hi are (m,) scratch.
    """
    m = order.shape[0]
    for j in range(m):
        key = offs_base[j] + qkeys[qi, j]
        lo[j] = offs[key]
        hi[j] = offs[key + 1]
    _order_by_size(lo, hi, order)
    for s in range(m):
        pos[order[s]] = s


@njit(nogil=True, cache=CACHE)
def mih_knn(q, W, bits, k, qkeys, widths, offs, offs_base, perm, pcodes, reordered, db, masks, budget, out, failed):
    """Exact k-NN by multi-index hashing, growing the radius one probe step at a time.

    After step r every row with distance <= r has been verified (pigeonhole over the m
    substrings), so the search stops once k verified rows lie within r. A query whose
    cost passes `budget` is flagged in `failed` for the caller to answer by linear scan.
    """
    nq = q.shape[0] // W
    m = widths.shape[0]
    cap = 2 * k
    buf = np.empty(cap, np.int64)
    hist = np.zeros(bits + 1, np.int64)
    state = np.zeros(2, np.int64)
    x = np.empty(W, np.uint64)
    dt = np.empty(TILE, np.uint16)
    order = np.empty(m, np.int64)
    pos = np.empty(m, np.int64)
    lo = np.empty(m, np.int64)
    hi = np.empty(m, np.int64)
    for qi in range(nq):
        buf[:] = EMPTY_KEY
        hist[:] = 0
        state[0] = 0
        state[1] = EMPTY_KEY
        cost = 0
        failed[qi] = False
        within = 0
        _table_order(qi, qkeys, offs, offs_base, order, pos, lo, hi)
        for r in range(bits + 1):
            cost, buf = _probe_step(
                order[r % m], r // m, qi, W, m, q, qkeys, widths, offs, offs_base, perm, pcodes, reordered, db, masks,
                buf, state, hist, cost, budget, x, pos, False, dt,
            )
            if cost < 0:
                failed[qi] = True
                break
            within += hist[r]
            if within >= k:
                break
        if failed[qi]:
            continue
        row = buf[: state[0]]
        row.sort()
        for i in range(k):
            out[qi, i] = row[i] if i < row.shape[0] else EMPTY_KEY


@njit(nogil=True, cache=CACHE)
def mih_range(q, W, bits, radius, qkeys, widths, offs, offs_base, perm, pcodes, reordered, db, masks, budget, failed):
    """Exact radius search (distance <= radius) by probing steps 0..radius; keys grouped by query.

    A step's buffer grows with its results, however many: only the budget hands a query to the scan."""
    nq = q.shape[0] // W
    m = widths.shape[0]
    qs = np.empty(1024, np.int64)
    keys = np.empty(1024, np.int64)
    cnt = 0
    buf = np.empty(1024, np.int64)
    hist = np.zeros(bits + 1, np.int64)
    state = np.zeros(2, np.int64)
    x = np.empty(W, np.uint64)
    dt = np.empty(TILE, np.uint16)
    limit = (np.int64(radius) << POS_BITS) | POS_MASK
    order = np.empty(m, np.int64)
    pos = np.empty(m, np.int64)
    lo = np.empty(m, np.int64)
    hi = np.empty(m, np.int64)
    for qi in range(nq):
        failed[qi] = False
        start = cnt
        cost = 0
        _table_order(qi, qkeys, offs, offs_base, order, pos, lo, hi)
        for r in range(radius + 1):
            state[0] = 0
            state[1] = limit + 1
            cost, buf = _probe_step(
                order[r % m], r // m, qi, W, m, q, qkeys, widths, offs, offs_base, perm, pcodes, reordered, db, masks,
                buf, state, hist, cost, budget, x, pos, True, dt,
            )
            if cost < 0:
                failed[qi] = True
                break
            s = state[0]
            keys = grow_array(keys, cnt + s)
            qs = grow_array(qs, cnt + s)
            keys[cnt : cnt + s] = buf[:s]
            qs[cnt : cnt + s] = qi
            cnt += s
        if failed[qi]:
            cnt = start
    return group_by_query(qs[:cnt], keys[:cnt], nq, perm.shape[1], radius)


PROBE_BLOCK = 64  # queries whose bucket look-ups are issued together


@njit(nogil=True, cache=CACHE)
def mih_range_exact_buckets(q, W, radius, qkeys, offs, offs_base, perm, pcodes, masks, budget, failed, sink):
    """mih_range for radius < m with reordered tables: every probe step is an exact bucket (substring
    radius 0), so the work per query is known before any code is read.

    A random-code query spends its time waiting on DRAM (a bucket offset, then the bucket's codes, in
    tables of hundreds of MB). Probing one query at a time makes those misses mostly serial; here the
    offsets of PROBE_BLOCK queries × m tables are loaded in one pass of independent reads, then the
    radius+1 smallest of each query's buckets are verified in a second pass, so the core keeps many
    misses in flight.
    A query whose buckets hold more than ``budget`` codes is marked failed without reading them.
    """
    nq = q.shape[0] // W
    n = perm.shape[1]
    m = masks.shape[0]
    steps = radius + 1
    lo = np.empty((PROBE_BLOCK, m), np.int64)
    hi = np.empty((PROBE_BLOCK, m), np.int64)
    order = np.empty(m, np.int64)
    qs = np.empty(1024, np.int64)
    keys = np.empty(1024, np.int64)
    dt = np.empty(TILE, np.uint16)
    cnt = 0
    for b0 in range(0, nq, PROBE_BLOCK):
        nb = min(PROBE_BLOCK, nq - b0)
        for t in range(nb):
            for j in range(m):
                key = offs_base[j] + qkeys[b0 + t, j]
                lo[t, j] = offs[key]
                hi[t, j] = offs[key + 1]
        # Touch every non-empty bucket's first code: independent loads the core overlaps, so the
        # verification pass below finds them in cache instead of waiting on each in turn.
        acc = np.uint64(0)
        for t in range(nb):
            for j in range(m):
                if hi[t, j] > lo[t, j]:
                    acc ^= pcodes[(j * n + lo[t, j]) * W]
        sink[0] ^= acc
        for t in range(nb):
            qi = b0 + t
            # Any `steps` of the m tables cover radius < m (pigeonhole); take the smallest buckets.
            _order_by_size(lo[t], hi[t], order)
            cost = 0
            for s in range(steps):
                cost += PROBE_COST + hi[t, order[s]] - lo[t, order[s]]
            failed[qi] = cost > budget
            if failed[qi]:
                continue
            qoff = qi * W
            for s in range(steps):
                j = order[s]
                for p0 in range(lo[t, j], hi[t, j], TILE):
                    # A bucket's codes are contiguous: their distances in one vectorised pass, as in the scan.
                    mt = min(TILE, hi[t, j] - p0)
                    tile_distances(pcodes, j * n + p0, mt, W, q, qoff, dt)
                    for p in range(p0, p0 + mt):
                        d = np.int64(dt[p - p0])
                        if d > radius:
                            continue
                        base = (j * n + p) * W
                        owner = True  # first reached in table j: its substrings in the tables probed before differ
                        for e in range(s):
                            i = order[e]
                            di = 0
                            for w in range(W):
                                di += popcount((pcodes[base + w] ^ q[qoff + w]) & masks[i, w])
                            if di == 0:
                                owner = False
                                break
                        if owner:
                            if cnt == keys.shape[0]:
                                keys = grow_array(keys, cnt + 1)
                                qs = grow_array(qs, cnt + 1)
                            keys[cnt] = (np.int64(d) << POS_BITS) | perm[j, p]
                            qs[cnt] = qi
                            cnt += 1
    return group_by_query(qs[:cnt], keys[:cnt], nq, n, radius)


@njit(nogil=True, cache=CACHE)
def counting_sort(keys, nbuckets):
    """Stable sort of small integer keys: CSR offsets (nbuckets+1,) and the row order."""
    offs = np.zeros(nbuckets + 1, np.int64)
    for i in range(keys.shape[0]):
        offs[keys[i] + 1] += 1
    for b in range(nbuckets):
        offs[b + 1] += offs[b]
    fill = offs[:-1].copy()
    perm = np.empty(keys.shape[0], np.int64)
    for i in range(keys.shape[0]):
        perm[fill[keys[i]]] = i
        fill[keys[i]] += 1
    return offs, perm
