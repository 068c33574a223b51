"""Side-by-side report of every evaluated model in a run: ``prismrec report RUN_DIR``.

Seeds of one configuration (``prism``, ``prism-seed1``, ...) are grouped and shown
as mean ± standard deviation; each ablation (``prism-no-dsi``, ...) or variant
(``prism-tied``, ``prism-item-ids``, ``prism-sids-<stage>``) is set against the full model (the paper's Table 4); test metrics are also split
by the popularity of the target; the training curves
(validation NDCG@10 per epoch) are drawn into ``RUN_DIR/eval/training_curves.png``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from prismrec.artifacts import atomic_write, read_json, write_text
from prismrec.errors import PrismrecError
from prismrec.recommender.registry import FLAG_SUFFIXES

COLUMNS = ["recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20"]
SEED_SUFFIX = re.compile(r"-seed\d+$")
# ablations and variants of a model, set against it: prism-no-dsi, prism-no-dsi-no-ssa,
# prism-tied, prism-sids-prism-no-acd-dir -> prism
ABLATION = re.compile(r"^(?P<full>[^-]+)-(?:" + "|".join(re.escape(p) for p in
                      ("no-", *(suffix for suffix, _ in FLAG_SUFFIXES), "sids-")) + ")")


def collect(run_dir: Path) -> dict[str, list[dict]]:
    """metrics.json of every evaluated model, grouped by configuration (seed suffix removed)."""
    groups: dict[str, list[dict]] = {}
    for path in sorted(Path(run_dir, "eval").glob("*/metrics.json")):
        groups.setdefault(SEED_SUFFIX.sub("", path.parent.name), []).append(read_json(path))
    if not groups:
        raise PrismrecError(f"{Path(run_dir) / 'eval'}: no evaluated model; run `prismrec evaluate RUN_DIR` first")
    return groups


def markdown_report(groups: dict[str, list[dict]], split: str = "test") -> str:
    head = "| model | seeds | " + " | ".join(c.replace("recall", "R").replace("ndcg", "N") for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, runs in groups.items():
        cells = []
        for col in COLUMNS:
            values = np.array([r[split][col] for r in runs])
            cells.append(f"{values.mean():.4f}" + (f" ± {values.std(ddof=1):.4f}" if len(values) > 1 else ""))
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ablation_report(groups: dict[str, list[dict]], split: str = "test") -> str:
    """Each ablation's mean beside its change from the full model's mean; "" when there is none."""
    lines = []
    for name, runs in groups.items():
        match = ABLATION.match(name)
        if not match or match["full"] not in groups:
            continue
        cells = []
        for col in COLUMNS:
            full = np.mean([r[split][col] for r in groups[match["full"]]])
            value = np.mean([r[split][col] for r in runs])
            cells.append(f"{value:.4f} ({100 * (value / full - 1):+.1f}%)" if full > 0 else f"{value:.4f}")
        lines.append(f"| {name} vs {match['full']} | {len(runs)} | " + " | ".join(cells) + " |")
    if not lines:
        return ""
    head = "| ablation | seeds | " + " | ".join(c.replace("recall", "R").replace("ndcg", "N") for c in COLUMNS) + " |"
    return "\n".join([head, "|" + "---|" * (len(COLUMNS) + 2), *lines]) + "\n"


def popularity_report(groups: dict[str, list[dict]], metrics: tuple[str, ...] = ("recall@10", "ndcg@10")) -> str:
    """Test metrics over the users whose target is popular / medium / long-tail (mean over
    seeds): where models differ most (a full-softmax ID model against SIDs, say); "" when no
    metrics.json holds groups."""
    names = [n for n, runs in groups.items() if all("groups" in r for r in runs)]
    if not names:
        return ""
    parts = list(groups[names[0]][0]["groups"])
    head = "| model | seeds | " + " | ".join(f"{part} {m.replace('recall', 'R').replace('ndcg', 'N')}"
                                              for part in parts for m in metrics) + " |"
    lines = [head, "|" + "---|" * (len(parts) * len(metrics) + 2)]
    for name in names:
        runs = groups[name]
        cells = [f"{np.mean([r['groups'][part][m] for r in runs]):.4f}" for part in parts for m in metrics]
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def epoch_position(entry: dict, batches_per_epoch: int | None) -> float:
    """Where a log entry sits on the epoch axis: a validation made before a budget stop
    mid-epoch (``partial``) sits at the fraction of the epoch it had trained."""
    if entry.get("partial") and batches_per_epoch:
        return entry["epoch"] - 1 + entry.get("batches", 0) / batches_per_epoch
    return entry["epoch"]


def plot_training_curves(run_dir: Path) -> Path | None:
    """Validation NDCG@10 per epoch of every trained model (PNG); None when no model has a curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = sorted(Path(run_dir, "models").glob("*/train_log.json"))
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = 0
    for path in logs:
        log = read_json(path)
        epochs = [e for e in log.get("epochs", []) if e.get("valid")]
        if epochs:
            ax.plot([epoch_position(e, log.get("batches_per_epoch")) for e in epochs],
                    [e["valid"]["ndcg@10"] for e in epochs], marker=".", label=path.parent.name)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NDCG@10")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(run_dir) / "eval" / "training_curves.png"
    atomic_write(out, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
    return out


def write_report(run_dir: Path) -> tuple[str, Path | None]:
    groups = collect(run_dir)
    text = "## Test\n\n" + markdown_report(groups, "test")
    ablations = ablation_report(groups, "test")
    if ablations:
        text += "\n## Ablations (test, change of the mean from the full model)\n\n" + ablations
    popularity = popularity_report(groups)
    if popularity:
        text += "\n## Test by popularity of the target (thirds of the catalog by training interactions)\n\n" + popularity
    text += "\n## Validation\n\n" + markdown_report(groups, "valid")
    write_text(Path(run_dir) / "eval" / "report.md", text)
    return text, plot_training_curves(run_dir)
