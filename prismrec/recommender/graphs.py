"""Ranking replayed from CUDA graphs: low-latency serving of one history at a time.

A batch-1 beam search on a GPU is bound by kernel launches, not arithmetic: the encoder,
one decoder pass per SID depth and the trie lookups are several hundred small kernels, each
launched from Python (15.6 ms on an H100, ``benchmarks/results/isr_latency-2026-11-26-cuda-h100.json``).
``model.rank`` has no host synchronisation on a GPU (dense experts, trie gathers, ``topk``),
so one call can be captured as a CUDA graph and replayed with a single launch.

A graph is tied to its input shapes: ``GraphedRanker`` captures one per (users, history
width, k) when that shape comes a second time (a one-off request, such as the CLI's, ranks
eagerly: capturing costs a few eager passes) and copies each request into that graph's input
tensors. On a CPU (or with ``capture=False``) the same code path runs the model eagerly on
those tensors.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import fields

import torch

from prismrec.recommender.base import Batch, SequentialRecommender


class _Captured:
    """One shape's input tensors, and either its CUDA graph + output tensors or nothing (eager)."""

    def __init__(self, batch: Batch):
        self.inputs = Batch(**{f.name: getattr(batch, f.name).clone() for f in fields(Batch)})
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self.calls = 0

    def load(self, batch: Batch) -> None:
        for f in fields(Batch):
            getattr(self.inputs, f.name).copy_(getattr(batch, f.name), non_blocking=True)


class GraphedRanker:
    """``ranker(batch, k)`` == ``model.rank(batch, k)``, replayed from a CUDA graph per input shape.

    ``bf16``: rank under bfloat16 autocast (what the trainer's ``amp`` does on a GPU). Captured
    graphs read the model's weights in place, so later weight updates are seen; the model must
    stay in eval mode. Thread-safe: one request at a time uses a graph's input tensors.
    """

    def __init__(self, model: SequentialRecommender, bf16: bool = False, capture: bool | None = None,
                 warmup: int = 2):
        self.model = model.eval()
        tensors = [*model.parameters(), *model.buffers()]
        self.device = tensors[0].device if tensors else torch.device("cpu")
        self.capture = self.device.type == "cuda" if capture is None else capture
        if self.capture and self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need the model on a CUDA device, not {self.device}")
        self.bf16, self.warmup = bf16, warmup
        self._graphs: dict[tuple, _Captured] = {}
        self._lock = threading.Lock()

    @property
    def num_graphs(self) -> int:
        """Request shapes seen (each with its input tensors)."""
        return len(self._graphs)

    @property
    def num_captured(self) -> int:
        """Request shapes replayed from a CUDA graph."""
        return sum(entry.graph is not None for entry in self._graphs.values())

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        # weight-cast caching must be off while capturing: cached casts would be allocated
        # outside the graph's memory pool
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)

    def _rank(self, batch: Batch, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad(), self._autocast():
            return self.model.rank(batch, k)

    def _capture(self, entry: _Captured, k: int) -> None:
        # kernels are chosen and workspaces allocated on a side stream before capture
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self._rank(entry.inputs, k)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            entry.outputs = self._rank(entry.inputs, k)
        entry.graph = graph

    def __call__(self, batch: Batch, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (k, *(tuple(getattr(batch, f.name).shape) for f in fields(Batch)))
        with self._lock:
            entry = self._graphs.get(key)
            if entry is None:
                entry = self._graphs[key] = _Captured(batch)
            entry.load(batch)
            entry.calls += 1
            if entry.graph is None and self.capture and entry.calls > 1:
                self._capture(entry, k)
            if entry.graph is None:
                return self._rank(entry.inputs, k)
            entry.graph.replay()
            items, scores = entry.outputs
            return items.clone(), scores.clone()  # the next replay overwrites the graph's outputs
