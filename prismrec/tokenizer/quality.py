"""SID quality report (SPEC section 4): ``quality.json`` and its Markdown table.

collision_rate[l] = 1 - unique length-(l+1) prefixes / items
perplexity[l]     = exp(entropy of position l's code distribution over all items)
code_usage[l]     = fraction of position l's possible codes used by some item
"""

from __future__ import annotations

import numpy as np

# paper Table 3 (Beauty, before deduplication): final collision, layer-2 prefix collision, perplexity
PAPER_TABLE3 = {
    "PRISM (paper)": {"final_collision": 0.0179, "layer2_collision": 0.1757, "perplexity": 248.5},
    "TIGER (paper)": {"final_collision": 0.3157, "layer2_collision": 0.9573, "perplexity": 84.2},
}


def code_stats(codes: np.ndarray, vocab_sizes: list[int]) -> dict[str, list[float]]:
    codes = np.asarray(codes, dtype=np.int64)
    n, length = codes.shape
    collision, perplexity, usage = [], [], []
    for pos in range(length):
        prefixes = np.unique(codes[:, : pos + 1], axis=0)
        collision.append(1.0 - len(prefixes) / n)
        counts = np.bincount(codes[:, pos], minlength=vocab_sizes[pos])
        p = counts[counts > 0] / n
        perplexity.append(float(np.exp(-(p * np.log(p)).sum())))
        usage.append(float((counts > 0).sum() / vocab_sizes[pos]))
    return {"collision_rate": collision, "perplexity": perplexity, "code_usage": usage}


def quality_report(before: np.ndarray, after: np.ndarray, codebook_size: int, moved_items: int,
                   mean_extra_distance: float) -> dict:
    """The fixed-key report. ``after`` may be one token longer (TIGER's suffix)."""
    vocab_after = [codebook_size] * before.shape[1] + [int(after[:, -1].max()) + 1] * (after.shape[1] - before.shape[1])
    return {
        "items": int(len(before)),
        "before_dedup": code_stats(before, [codebook_size] * before.shape[1]),
        "after_dedup": code_stats(after, vocab_after),
        "moved_items": int(moved_items),
        "mean_extra_distance": float(mean_extra_distance),
    }


def table_rows(name: str, report: dict) -> list[str]:
    b, a = report["before_dedup"], report["after_dedup"]
    layers = len(b["collision_rate"])
    pct = lambda v: f"{100 * v:.2f}%"
    return [f"| {name} | {report['items']} | {pct(b['collision_rate'][-1])} | "
            f"{pct(b['collision_rate'][1] if layers > 1 else b['collision_rate'][0])} | "
            f"{float(np.mean(b['perplexity'])):.1f} | {' / '.join(f'{p:.1f}' for p in b['perplexity'])} | "
            f"{' / '.join(f'{100 * u:.0f}%' for u in b['code_usage'])} | {pct(a['collision_rate'][-1])} | "
            f"{len(a['collision_rate'])} | {report['moved_items']} | {report['mean_extra_distance']:.4f} |"]


HEADER = ("| variant | items | final collision (before) | layer-2 prefix collision (before) | mean perplexity | "
          "perplexity per layer | code usage | final collision (after) | SID length | moved | mean extra distance |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")


def markdown_table(reports: dict[str, dict], with_paper: bool = True) -> str:
    lines = [HEADER]
    for name, report in reports.items():
        lines += table_rows(name, report)
    if with_paper:
        for name, row in PAPER_TABLE3.items():
            lines.append(f"| {name} | 12101 | {100 * row['final_collision']:.2f}% | {100 * row['layer2_collision']:.2f}% | "
                         f"{row['perplexity']:.1f} | - | - | - | - | - | - |")
    return "\n".join(lines) + "\n"
