"""`accuracy_curves.png`: how each neural model's validation MRR@20 rose with training
time, per data set (the fits on fold 0, the tuned configurations), with the epoch early
stopping kept marked. Written next to accuracy.json by the runner."""

from __future__ import annotations

from pathlib import Path

COLOURS = {"hiertcn": "tab:red", "hiertcn_low": "tab:orange", "gru4rec": "tab:blue",
           "hrnn": "tab:green", "tcn": "tab:purple", "sasrec": "tab:brown"}


def write_curves(results: dict[str, dict], path: Path) -> Path | None:
    """The figure, or None when no neural fit recorded a curve."""
    fits = [r for r in results.values()
            if r["kind"] == "fit" and r["fold"] == 0 and r.get("curve")]
    if not fits:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in fits})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.2),
                             squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for r in sorted((r for r in fits if r["dataset"] == dataset), key=lambda r: r["model"]):
            seconds = [c["train_s"] / 60 for c in r["curve"]]
            mrr = [c["mrr@20"] for c in r["curve"]]
            colour = COLOURS.get(r["model"])
            ax.plot(seconds, mrr, marker=".", color=colour,
                    label=f"{r['model']} ({r['epochs']} epochs, {r['stopped']} stop)")
            kept = [i for i, c in enumerate(r["curve"]) if c["epoch"] == r.get("best_epoch")]
            for i in kept:  # the epoch whose weights were kept
                ax.plot([seconds[i]], [mrr[i]], marker="o", markersize=8,
                        markerfacecolor="none", color=colour)
        ax.set_title(f"{dataset}: fold 0, tuned configurations")
        ax.set_xlabel("training minutes (one thread)")
        ax.set_ylabel("validation MRR@20")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Validation MRR@20 after each epoch (circle: the epoch kept)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
