"""LightGCN collaborative item embeddings (He et al., 2020), trained on the training part only.

Graph: the user-item pairs of the training split (each user's items except the
last two, which are the validation and test targets), as the symmetric normalised
bipartite adjacency D^-1/2 A D^-1/2 (torch.sparse). Each node's representation is
the mean of its embedding after 0..K propagation layers. Training: BPR with one
uniformly sampled negative per training pair (never one of the user's training
items), Adam, L2 on the batch's layer-0 (ego) embeddings.

Model selection: every ``eval_every`` epochs, validation Recall@K by full ranking
over all items (the user's training items masked, the validation item as target);
the best evaluation's embeddings are kept and exported, and training stops after
``patience`` evaluations without improvement.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from prismrec.data.dataset import PreparedData
from prismrec.errors import PrismrecError

log = logging.getLogger("prismrec")


# ----------------------------------------------------------------------------- data
@dataclass
class Interactions:
    """Training graph and validation targets, as index arrays."""

    num_users: int
    num_items: int
    train_users: np.ndarray  # (P,) distinct training (user, item) pairs
    train_items: np.ndarray  # (P,)
    valid_items: np.ndarray  # (U,) validation target of each user

    def train_matrix(self) -> sp.csr_matrix:
        ones = np.ones(len(self.train_users), dtype=np.float32)
        return sp.csr_matrix((ones, (self.train_users, self.train_items)), shape=(self.num_users, self.num_items))


def training_interactions(data: PreparedData) -> Interactions:
    """Distinct (user, item) pairs of the training part: every item but each user's last two."""
    seqs = data.sequences["items"].to_numpy()
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    if len(seqs) and lengths.min() < 3:
        short = int((lengths < 3).sum())
        raise PrismrecError(f"sequences.parquet: {short} users have fewer than 3 items; "
                            "leave-one-out needs a training item, a validation item and a test item")
    flat = np.concatenate(seqs).astype(np.int64)
    users = np.repeat(np.arange(len(seqs)), lengths)
    ends = np.cumsum(lengths)
    position_from_end = np.repeat(ends, lengths) - np.arange(len(flat))  # 1 = last item
    train = position_from_end > 2
    keys = np.unique(users[train] * data.num_items + flat[train])  # repeats of a pair count once
    return Interactions(num_users=len(seqs), num_items=data.num_items,
                        train_users=keys // data.num_items, train_items=keys % data.num_items,
                        valid_items=flat[ends - 2])


def normalized_adjacency(inter: Interactions) -> sp.csr_matrix:
    """D^-1/2 A D^-1/2 of the user-item bipartite graph (CSR, float32); nodes = users then items."""
    U, N = inter.num_users, inter.num_items
    rows = np.concatenate([inter.train_users, U + inter.train_items])
    cols = np.concatenate([U + inter.train_items, inter.train_users])
    degree = np.bincount(rows, minlength=U + N).astype(np.float64)
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1.0)), 0.0)
    values = (inv_sqrt[rows] * inv_sqrt[cols]).astype(np.float32)
    csr = sp.csr_matrix((values, (rows, cols)), shape=(U + N, U + N))
    csr.sort_indices()
    return csr


class Propagation:
    """Y = A_hat X for the fixed symmetric adjacency: scipy's CSR product on CPU (single-threaded,
    about twice torch's sparse CSR kernel here and immune to OpenMP oversubscription), torch.sparse
    on a GPU."""

    def __init__(self, adjacency: sp.csr_matrix, device: str):
        self.device = torch.device(device)
        self.scipy = adjacency if self.device.type == "cpu" else None
        self.torch = None
        if self.scipy is None:
            with warnings.catch_warnings():  # "sparse CSR support is in beta": CSR @ dense is all we use
                warnings.simplefilter("ignore", UserWarning)
                self.torch = torch.sparse_csr_tensor(
                    torch.from_numpy(adjacency.indptr.astype(np.int64)),
                    torch.from_numpy(adjacency.indices.astype(np.int64)),
                    torch.from_numpy(adjacency.data), adjacency.shape).to(self.device)

    def __call__(self, dense: torch.Tensor) -> torch.Tensor:
        if self.scipy is not None:
            return torch.from_numpy(self.scipy @ dense.detach().numpy())
        return self.torch @ dense.detach()


class SymmetricSpMM(torch.autograd.Function):
    """Y = A X for a symmetric sparse A: the gradient with respect to X is A G, another forward
    product (torch's generic sparse backward transposes A at every step)."""

    @staticmethod
    def forward(ctx, dense: torch.Tensor, propagation: Propagation) -> torch.Tensor:
        ctx.propagation = propagation
        return propagation(dense)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return ctx.propagation(grad.contiguous()), None


# ----------------------------------------------------------------------------- model
class LightGCN(nn.Module):
    def __init__(self, num_users: int, num_items: int, dim: int, num_layers: int, generator: torch.Generator):
        super().__init__()
        self.num_users, self.num_items, self.num_layers = num_users, num_items, num_layers
        self.embedding = nn.Parameter(0.1 * torch.randn(num_users + num_items, dim, generator=generator))

    def propagate(self, adjacency: Propagation, nodes: torch.Tensor | None = None) -> torch.Tensor:
        """Node representations, the mean of layers 0..K of E_{k+1} = A_hat E_k (rows ``nodes`` only,
        when given: the averaging then runs on the batch's rows, not the whole table)."""
        layer = self.embedding
        total = layer
        for _ in range(self.num_layers):
            layer = SymmetricSpMM.apply(layer, adjacency)
            total = total + layer
        if nodes is not None:
            total = total[nodes]
        return total / (self.num_layers + 1)

    def user_item(self, adjacency: Propagation) -> tuple[torch.Tensor, torch.Tensor]:
        final = self.propagate(adjacency)
        return final[: self.num_users], final[self.num_users:]

    def bpr_loss(self, adjacency, users, pos, neg, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(BPR + l2 * ego-embedding L2, BPR) of a batch of (user, positive, negative) triples."""
        # one gather of all the batch's nodes: a single scatter in the backward pass
        nodes = torch.cat([users, self.num_users + pos, self.num_users + neg])
        u, p, n = self.propagate(adjacency, nodes).chunk(3)
        bpr = -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
        reg = 0.5 * self.embedding[nodes].pow(2).sum() / len(users)
        return bpr + l2 * reg, bpr


# ----------------------------------------------------------------------------- sampling / evaluation
def sample_negatives(users: np.ndarray, positive_keys: np.ndarray, num_items: int,
                     rng: np.random.Generator) -> np.ndarray:
    """One uniform item per user that is not among the user's training items (bulk rejection)."""
    neg = rng.integers(num_items, size=len(users))
    todo = np.arange(len(users))
    while len(todo):
        keys = users[todo] * num_items + neg[todo]
        at = np.searchsorted(positive_keys, keys)
        clash = positive_keys[np.minimum(at, len(positive_keys) - 1)] == keys
        todo = todo[clash]
        neg[todo] = rng.integers(num_items, size=len(todo))
    return neg


@torch.no_grad()
def recall_at_k(user_emb: torch.Tensor, item_emb: torch.Tensor, train_matrix: sp.csr_matrix,
                targets: np.ndarray, k: int = 20, batch_size: int = 1024) -> float:
    """Full-ranking Recall@k over all users: the user's training items are masked, except the
    target itself (a repeat purchase stays rankable); rank = number of items scored above it."""
    hits = 0
    device = item_emb.device
    targets_t = torch.as_tensor(targets, device=device)
    for start in range(0, user_emb.shape[0], batch_size):
        stop = min(start + batch_size, user_emb.shape[0])
        scores = user_emb[start:stop] @ item_emb.T
        block = train_matrix[start:stop].tocoo()
        scores[torch.as_tensor(block.row, device=device), torch.as_tensor(block.col, device=device)] = -torch.inf
        rows = torch.arange(stop - start, device=device)
        target = targets_t[start:stop]
        target_score = (user_emb[start:stop] * item_emb[target]).sum(1)
        scores[rows, target] = -torch.inf  # counted separately: ties with itself must not count
        above = (scores > target_score[:, None]).sum(1)
        hits += int((above < k).sum())
    return hits / max(user_emb.shape[0], 1)


# ----------------------------------------------------------------------------- training
def make_adam(params, lr: float) -> torch.optim.Optimizer:
    """Adam; the fused kernel when this torch has one for the device (3x faster on CPU)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


@dataclass
class LightGCNResult:
    item_embeddings: np.ndarray  # (N, d) of the selected (best-validation) evaluation
    user_embeddings: np.ndarray  # (U, d) same checkpoint (kept for re-evaluation, not exported)
    selected_epoch: int
    best_recall: float
    curve: list[dict] = field(default_factory=list)  # one row per epoch: loss, and recall when evaluated
    seconds: float = 0.0

    def summary(self, k: int) -> dict:
        return {"selected_epoch": self.selected_epoch, f"valid_recall@{k}": self.best_recall,
                "epochs_run": len(self.curve), "seconds": round(self.seconds, 2), "curve": self.curve}


def train_lightgcn(inter: Interactions, *, dim: int = 64, num_layers: int = 3, lr: float = 1e-3,
                   l2: float = 1e-4, batch_size: int = 2048, epochs: int = 200, eval_every: int = 2,
                   patience: int = 10, k: int = 20, seed: int = 0, device: str = "cpu",
                   progress: bool | None = None) -> LightGCNResult:
    for name, value in (("gcn_epochs", epochs), ("gcn_eval_every", eval_every), ("gcn_patience", patience),
                        ("gcn_batch_size", batch_size), ("gcn_topk", k)):
        if value < 1:
            raise PrismrecError(f"features.{name}: expected a positive integer, got {value}")
    start_time = time.time()
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    model = LightGCN(inter.num_users, inter.num_items, dim, num_layers, generator).to(device)
    adjacency = Propagation(normalized_adjacency(inter), device)
    optimizer = make_adam(model.parameters(), lr)
    positive_keys = inter.train_users * inter.num_items + inter.train_items  # sorted (np.unique)
    train_matrix = inter.train_matrix()
    users_all = torch.as_tensor(inter.train_users, device=device)
    items_all = torch.as_tensor(inter.train_items, device=device)

    best = LightGCNResult(np.zeros((0, dim)), np.zeros((0, dim)), selected_epoch=0, best_recall=-1.0)
    curve: list[dict] = []
    evals_since_best = 0
    bar = tqdm(range(1, epochs + 1), desc="LightGCN", unit="epoch",
               disable=not (sys.stderr.isatty() if progress is None else progress))
    for epoch in bar:
        model.train()
        order = rng.permutation(len(positive_keys))
        negatives = torch.as_tensor(sample_negatives(inter.train_users[order], positive_keys,
                                                     inter.num_items, rng), device=device)
        order_t = torch.as_tensor(order, device=device)
        total, batches = 0.0, 0
        for b in range(0, len(order), batch_size):
            idx = order_t[b:b + batch_size]
            loss, bpr = model.bpr_loss(adjacency, users_all[idx], items_all[idx],
                                       negatives[b:b + batch_size], l2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(bpr.detach())
            batches += 1
        row = {"epoch": epoch, "bpr_loss": round(total / max(batches, 1), 6)}
        if epoch % eval_every == 0 or epoch == epochs:
            model.eval()
            with torch.no_grad():
                user_emb, item_emb = model.user_item(adjacency)
            recall = recall_at_k(user_emb, item_emb, train_matrix, inter.valid_items, k=k)
            row[f"valid_recall@{k}"] = round(recall, 6)
            if recall > best.best_recall:
                best = LightGCNResult(item_emb.cpu().numpy().copy(), user_emb.cpu().numpy().copy(),
                                      selected_epoch=epoch, best_recall=recall)
                evals_since_best = 0
            else:
                evals_since_best += 1
            bar.set_postfix(loss=row["bpr_loss"], recall=recall, best=best.best_recall)
            log.debug("LightGCN epoch %d: loss %.4f, valid Recall@%d %.4f", epoch, row["bpr_loss"], k, recall)
        curve.append(row)
        if evals_since_best >= patience:
            log.info("LightGCN: early stop at epoch %d (no improvement in %d evaluations)", epoch, patience)
            break
    bar.close()
    best.curve = curve
    best.seconds = time.time() - start_time
    log.info("LightGCN: selected epoch %d, valid Recall@%d %.4f (%d epochs, %.1fs)",
             best.selected_epoch, k, best.best_recall, len(curve), best.seconds)
    return best
