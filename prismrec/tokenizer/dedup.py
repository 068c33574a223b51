"""Global collision deduplication by optimal transport (paper 3.3, SPEC section 4).

Items that share a SID keep it only for the one whose latent z is closest to the SID's
summed codewords; every other colliding item ("mover") goes to a *free* SID (one no
kept item holds). The cost of putting item i on SID s is semantic:
||z_i - sum_l C_l[s_l]||^2. Each mover's neighbourhood is its nearest free SIDs among
those sharing its first L-2 codes: its own layer-(L-1) code and the ``beam`` nearest
other layer-(L-1) codes, with every last code. Entropic OT (Sinkhorn-Knopp with unit
item masses and unit SID capacities) spreads contested SIDs over the movers; the plan
is rounded to exactly one item per SID by a minimum-weight full bipartite matching on
the sparse candidate graph with weights -log(plan). If the neighbourhoods cannot hold
every mover, they are widened, and finally every free SID is a candidate.

``greedy_next_free`` is the usual baseline (next free last code in the same prefix),
reported for comparison.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from prismrec.errors import PrismrecError

log = logging.getLogger("prismrec")


@dataclass
class DedupResult:
    codes: np.ndarray                  # (N, L) collision-free codes
    moved: np.ndarray                  # indices of the items that got a new SID
    mean_extra_distance: float         # mean over moved items of ||z - z^_new|| - ||z - z^_old||
    greedy_mean_extra_distance: float  # the same for the greedy "next free last code" baseline


# ----------------------------------------------------------------------------- SID helpers
def sid_keys(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """One int64 per SID (row of codes), mixed-radix in base K."""
    keys = np.zeros(len(codes), dtype=np.int64)
    for layer in range(codes.shape[1]):
        keys = keys * codebook_size + codes[:, layer].astype(np.int64)
    return keys


def keys_to_codes(keys: np.ndarray, codebook_size: int, num_layers: int) -> np.ndarray:
    codes = np.empty((len(keys), num_layers), dtype=np.int64)
    rest = keys.copy()
    for layer in reversed(range(num_layers)):
        codes[:, layer] = rest % codebook_size
        rest //= codebook_size
    return codes


def reconstruction(codes: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """(N, d) summed codewords of each SID."""
    return sum(codebooks[layer][codes[:, layer]] for layer in range(codes.shape[1]))


def split_collisions(codes: np.ndarray, z: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """Indices of the movers: in every group of items sharing a SID, all but the item closest
    to the SID's summed codewords."""
    keys = sid_keys(codes, codebooks.shape[1])
    dist = np.linalg.norm(z - reconstruction(codes, codebooks), axis=1)
    order = np.lexsort((np.arange(len(keys)), dist, keys))  # by SID, then distance (ties: index)
    sorted_keys = keys[order]
    first_of_group = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    return np.sort(order[~first_of_group])


class FreeSet:
    """Membership of SID keys in the set of taken SIDs (bitmap when K^L is small)."""

    def __init__(self, taken_keys: np.ndarray, total: int):
        self.bitmap = None
        if total <= 1 << 27:
            self.bitmap = np.zeros(total, dtype=bool)
            self.bitmap[taken_keys] = True
        else:
            self.sorted = np.unique(taken_keys)

    def is_taken(self, keys: np.ndarray) -> np.ndarray:
        if self.bitmap is not None:
            return self.bitmap[keys]
        pos = np.searchsorted(self.sorted, keys).clip(max=len(self.sorted) - 1)
        return self.sorted[pos] == keys


# ----------------------------------------------------------------------------- neighbourhoods
def candidate_sids(z: np.ndarray, codes: np.ndarray, codebooks: np.ndarray, taken: FreeSet,
                   size: int, beam: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """The ``size`` nearest free SIDs of each item among those sharing its first L-2 codes,
    whose layer-(L-1) code is its own or one of the ``beam`` nearest others.
    Returns keys (M, size) int64 (-1 = none) and costs (M, size) ||z - z^_s||^2 (inf = none)."""
    L, K, _ = codebooks.shape
    out_keys = np.full((len(z), size), -1, dtype=np.int64)
    out_cost = np.full((len(z), size), np.inf)
    for start in range(0, len(z), chunk):
        zc, cc = z[start:start + chunk].astype(np.float64), codes[start:start + chunk]
        prefix = reconstruction(cc[:, : L - 2], codebooks).astype(np.float64) if L > 2 else 0.0
        residual = zc - prefix                                                # (m, d)
        book_a, book_b = codebooks[L - 2].astype(np.float64), codebooks[L - 1].astype(np.float64)
        dist_a = (residual ** 2).sum(1)[:, None] - 2 * residual @ book_a.T + (book_a ** 2).sum(1)[None]
        dist_a[np.arange(len(zc)), cc[:, L - 2]] = -np.inf                    # own code always first
        width = min(beam + 1, K)
        options = np.argpartition(dist_a, width - 1, axis=1)[:, :width]       # (m, B)
        after_a = residual[:, None, :] - book_a[options]                      # (m, B, d)
        cost = ((after_a ** 2).sum(-1)[:, :, None] - 2 * after_a @ book_b.T
                + (book_b ** 2).sum(1)[None, None, :]).clip(min=0)           # (m, B, K)
        prefix_key = sid_keys(cc[:, : L - 2], K) if L > 2 else np.zeros(len(zc), np.int64)
        keys = (prefix_key[:, None, None] * K + options[:, :, None]) * K + np.arange(K)[None, None, :]
        keys, cost = keys.reshape(len(zc), -1), cost.reshape(len(zc), -1)
        cost[taken.is_taken(keys)] = np.inf
        take = min(size, cost.shape[1])
        best = np.argpartition(cost, take - 1, axis=1)[:, :take]
        rows = np.arange(len(zc))[:, None]
        best = best[rows, np.argsort(cost[rows, best], axis=1)]
        chosen_cost = cost[rows, best]
        out_cost[start:start + len(zc), :take] = chosen_cost
        out_keys[start:start + len(zc), :take] = np.where(np.isfinite(chosen_cost), keys[rows, best], -1)
    return out_keys, out_cost


def all_free_candidates(z: np.ndarray, codebooks: np.ndarray, taken: FreeSet, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Last resort: the ``size`` nearest free SIDs among *all* SIDs (small K^L only)."""
    L, K, _ = codebooks.shape
    if K ** L > 1 << 24:
        raise PrismrecError(f"deduplication: {len(z)} items found no free SID in their neighbourhood and "
                            f"K^L = {K ** L} is too large to search exhaustively; raise tokenizer.dedup_neighbourhood")
    free = np.flatnonzero(~taken.is_taken(np.arange(K ** L)))
    recon = reconstruction(keys_to_codes(free, K, L), codebooks).astype(np.float64)
    cost = ((z.astype(np.float64)[:, None, :] - recon[None]) ** 2).sum(-1)
    take = min(size, len(free))
    best = np.argsort(cost, axis=1)[:, :take]
    return free[best], np.take_along_axis(cost, best, axis=1)


# ----------------------------------------------------------------------------- transport
def sinkhorn_log_plan(cost: np.ndarray, cols: np.ndarray, num_cols: int, epsilon: float, iters: int) -> np.ndarray:
    """Entropic OT on a sparse (M, n) candidate matrix: every row ships mass 1, every column
    (SID) takes at most 1. ``cols`` maps entries to column ids; inf cost = no edge.
    Returns log of the transport plan (-inf where there is no edge).

    Costs are shifted per row (a constant per row does not change the plan when row sums are
    fixed) and scaled by their median, so ``epsilon`` is unit-free. Column scalings are
    capped at 1, the exact dual update for the capacity constraint (sum_i P_ij <= 1)."""
    valid = np.isfinite(cost)
    with np.errstate(invalid="ignore"):  # a row without edges gives inf - inf; masked by `valid` below
        shifted = cost - np.where(valid, cost, np.inf).min(1, keepdims=True)
    scale = np.median(shifted[valid]) if valid.any() else 1.0
    scale = scale if scale > 0 else 1.0
    log_kernel = np.where(valid, -shifted / (epsilon * scale), -np.inf).clip(min=-600)
    kernel = np.where(valid, np.exp(log_kernel), 0.0)
    flat_cols = cols.ravel()
    v = np.ones(num_cols)
    for _ in range(iters):
        u = 1.0 / np.maximum((kernel * v[cols]).sum(1), 1e-300)
        load = np.bincount(flat_cols, weights=(kernel * u[:, None]).ravel(), minlength=num_cols)
        new_v = np.minimum(1.0, 1.0 / np.maximum(load, 1e-300))  # column sum = v_j * load_j <= 1
        if np.abs(new_v - v).max() < 1e-6:
            v = new_v
            break
        v = new_v
    u = 1.0 / np.maximum((kernel * v[cols]).sum(1), 1e-300)
    return np.where(valid, np.log(u)[:, None] + log_kernel + np.log(np.maximum(v[cols], 1e-300)), -np.inf)


def round_plan(log_plan: np.ndarray, keys: np.ndarray) -> np.ndarray | None:
    """Exactly one SID per row: minimum-weight full matching with weights -log(plan) over the
    sparse candidate graph. The plan's support (entries with >= 0.1% of their row's mass) is
    tried first, as it is tiny and nearly a matching already; the whole candidate graph only
    if the support has no complete matching. None when even that cannot hold every row."""
    valid = np.isfinite(log_plan) & (keys >= 0)
    row_max = np.where(valid, log_plan, -np.inf).max(1, keepdims=True)
    for usable in (valid & (log_plan >= row_max + np.log(1e-3)), valid):
        uniq, cols = np.unique(keys[usable], return_inverse=True)
        rows = np.nonzero(usable)[0]
        weights = -log_plan[usable]
        weights = weights - weights.min() + 1.0  # strictly positive; a constant does not change the matching
        graph = csr_matrix((weights, (rows, cols)), shape=(len(keys), len(uniq)))
        try:  # (scipy matches the smaller side fully: fewer SIDs than rows also means "no")
            row_ind, col_ind = min_weight_full_bipartite_matching(graph)
        except ValueError:
            continue
        if len(row_ind) < len(keys):
            continue
        chosen = np.empty(len(keys), dtype=np.int64)
        chosen[row_ind] = uniq[col_ind]
        return chosen
    return None


def transport(keys: np.ndarray, cost: np.ndarray, epsilon: float, iters: int) -> np.ndarray | None:
    valid = np.isfinite(cost) & (keys >= 0)
    uniq, inverse = np.unique(np.where(valid, keys, -1), return_inverse=True)
    cols = inverse.reshape(keys.shape)
    log_plan = sinkhorn_log_plan(np.where(valid, cost, np.inf), cols, len(uniq), epsilon, iters)
    return round_plan(log_plan, np.where(valid, keys, -1))


# ----------------------------------------------------------------------------- entry points
def deduplicate(codes: np.ndarray, z: np.ndarray, codebooks: np.ndarray, neighbourhood: int = 64,
                beam: int = 4, epsilon: float = 0.05, iters: int = 200) -> DedupResult:
    codes = np.asarray(codes, dtype=np.int64)
    L, K, _ = codebooks.shape
    if L < 2:
        raise PrismrecError("deduplication needs at least 2 quantizer layers (tokenizer.num_layers)")
    if len(codes) > K ** L:
        raise PrismrecError(f"deduplication: {len(codes)} items cannot have unique SIDs with only "
                            f"K^L = {K}^{L} = {K ** L} codes; raise tokenizer.codebook_size")
    movers = split_collisions(codes, z, codebooks)
    keys = sid_keys(codes, K)
    stay = np.ones(len(codes), dtype=bool)
    stay[movers] = False
    new_codes = codes.copy()
    if len(movers):
        taken = FreeSet(keys[stay], K ** L)
        chosen = None
        size, width = neighbourhood, beam
        for _ in range(3):  # widen the neighbourhoods until they can hold every mover
            cand_keys, cand_cost = candidate_sids(z[movers], codes[movers], codebooks, taken, size, width)
            chosen = transport(cand_keys, cand_cost, epsilon, iters)
            if chosen is not None:
                break
            size, width = size * 4, width * 4
            log.warning("deduplication: neighbourhoods too small for %d movers; widening to %d", len(movers), size)
        if chosen is None:
            cand_keys, cand_cost = all_free_candidates(z[movers], codebooks, taken, max(size, len(movers)))
            chosen = transport(cand_keys, cand_cost, epsilon, iters)
        new_codes[movers] = keys_to_codes(chosen, K, L)
    return DedupResult(codes=new_codes, moved=movers,
                       mean_extra_distance=extra_distance(z, codes, new_codes, codebooks, movers),
                       greedy_mean_extra_distance=extra_distance(
                           z, codes, greedy_next_free(codes, movers, K), codebooks, movers))


def extra_distance(z: np.ndarray, old: np.ndarray, new: np.ndarray, codebooks: np.ndarray, moved: np.ndarray) -> float:
    if len(moved) == 0:
        return 0.0
    before = np.linalg.norm(z[moved] - reconstruction(old[moved], codebooks), axis=1)
    after = np.linalg.norm(z[moved] - reconstruction(new[moved], codebooks), axis=1)
    return float((after - before).mean())


def greedy_next_free(codes: np.ndarray, movers: np.ndarray, codebook_size: int) -> np.ndarray:
    """Baseline: each mover (in index order) takes the next free last code of its own prefix
    (wrapping around); if the prefix is full it keeps its SID (not collision-free then)."""
    K = codebook_size
    keys = sid_keys(codes, K)
    stay = np.ones(len(codes), dtype=bool)
    stay[movers] = False
    taken = set(keys[stay].tolist())
    out = codes.copy()
    for i in movers:
        base = int(keys[i]) - int(codes[i, -1])
        for step in range(1, K + 1):
            last = (int(codes[i, -1]) + step) % K
            if base + last not in taken:
                taken.add(base + last)
                out[i, -1] = last
                break
    return out


def tiger_suffix(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """TIGER's collision handling: append a token = index of the item within its SID's
    collision group (0 for the first item, in item order)."""
    keys = sid_keys(codes, codebook_size)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    group_start = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    starts = np.maximum.accumulate(np.where(group_start, np.arange(len(keys)), 0))
    suffix = np.empty(len(keys), dtype=np.int64)
    suffix[order] = np.arange(len(keys)) - starts
    return np.concatenate([codes, suffix[:, None]], axis=1)
