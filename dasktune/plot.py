"""Learning-curve plots of an experiment, saved as PNG next to its results."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dasktune.result import ResultGrid


def plot_learning_curves(results: ResultGrid, metric: str, path: str | None = None,
                         title: str | None = None, x: str = "training_iteration") -> str:
    """Draw ``metric`` against ``x`` for every trial; return the PNG's path.

    The default path is ``<experiment_path>/<metric>.png``.  The best trial
    (by the experiment's mode, or the largest final value) is drawn bold.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("Plotting needs matplotlib: pip install 'dasktune[plot]'") from exc
    frames = [(r, r.metrics_dataframe) for r in results]
    frames = [(r, df) for r, df in frames if metric in df.columns and x in df.columns]
    if not frames:
        raise ValueError(
            f"plot(metric={metric!r}): no trial reported {metric!r} (with {x!r}); "
            "pass a metric that the trainable reports."
        )
    mode = results._mode if isinstance(results._mode, str) else "max"
    last = [float(df[metric].dropna().iloc[-1]) if df[metric].notna().any() else float("nan")
            for _, df in frames]
    finite = [v for v in last if v == v]
    best = (last.index(max(finite) if mode == "max" else min(finite))) if finite else -1
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (result, df) in enumerate(frames):
        ax.plot(df[x], df[metric], marker="o" if len(df) < 15 else None, markersize=3,
                linewidth=2.5 if i == best else 1.0, alpha=1.0 if i == best else 0.6,
                label=os.path.basename(result.path) if i == best else None)
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} of {len(frames)} trials")
    ax.grid(alpha=0.3)
    if best >= 0:
        ax.legend(title="best trial", loc="best")
    target = path or os.path.join(results.experiment_path, f"{metric.replace('/', '_')}.png")
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target
