"""Plots of an experiment saved as PNG: learning curves, and parallel coordinates."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dasktune.result import ResultGrid


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("Plotting needs matplotlib: pip install 'dasktune[plot]'") from exc
    return plt


def _mode_of(results: ResultGrid, mode: str | None) -> str:
    if mode in ("min", "max"):
        return mode
    return results._mode if isinstance(results._mode, str) else "max"


def plot_learning_curves(
    results: ResultGrid,
    metric: str,
    path: str | None = None,
    title: str | None = None,
    x: str = "training_iteration",
    mode: str | None = None,
) -> str:
    """Draw ``metric`` against ``x`` for every trial; return the PNG's path.

    The default path is ``<experiment_path>/<metric>.png``.  The best trial
    (by ``mode``, else the experiment's mode, else the largest final value) is drawn bold.
    """
    plt = _pyplot()
    frames = [(r, r.metrics_dataframe) for r in results]
    frames = [(r, df) for r, df in frames if metric in df.columns and x in df.columns]
    if not frames:
        raise ValueError(
            f"plot(metric={metric!r}): no trial reported {metric!r} (with {x!r}); "
            "pass a metric that the trainable reports."
        )
    mode = _mode_of(results, mode)
    last = [
        float(df[metric].dropna().iloc[-1]) if df[metric].notna().any() else float("nan")
        for _, df in frames
    ]
    finite = [v for v in last if v == v]
    best = (last.index(max(finite) if mode == "max" else min(finite))) if finite else -1
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (result, df) in enumerate(frames):
        ax.plot(
            df[x],
            df[metric],
            marker="o" if len(df) < 15 else None,
            markersize=3,
            linewidth=2.5 if i == best else 1.0,
            alpha=1.0 if i == best else 0.6,
            label=os.path.basename(result.path) if i == best else None,
        )
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


def plot_parallel_coordinates(
    results: ResultGrid,
    metric: str,
    path: str | None = None,
    title: str | None = None,
    mode: str | None = None,
) -> str:
    """One line per trial across its config values and its last ``metric``; return the PNG.

    Axes are those of the dashboard page: config keys that vary first (numbers on
    a log axis where they span two decades or more, other values as categories),
    then the metric; lines are coloured by the metric, brightest for the best.
    The default path is ``<experiment_path>/<metric>_parallel.png``.
    """
    from dasktune.dashboard._follow import numeric_metrics, plain_config
    from dasktune.dashboard._model import TrialView
    from dasktune.dashboard._views import config_keys, normalise, parallel_axes

    plt = _pyplot()
    trials = [
        TrialView(
            str(i),
            os.path.basename(r.path),
            i,
            config=plain_config(r.config),
            last=numeric_metrics(r.metrics),
        )
        for i, r in enumerate(results)
    ]
    axes = parallel_axes(trials, config_keys(trials), metric)
    if not axes or axes[-1].name != metric or len(axes) < 2:
        raise ValueError(
            f"plot(metric={metric!r}, kind='parallel'): "
            + (
                "no trial reported it"
                if not axes or axes[-1].name != metric
                else "the trials have no config values to draw it against"
            )
            + "; pass a metric that the trainable reports."
        )
    metric_axis = axes[-1]
    mode = _mode_of(results, mode)
    import matplotlib

    cmap = matplotlib.colormaps["viridis" if mode == "max" else "viridis_r"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(axes)), 4.2))
    xs = list(range(len(axes)))
    for trial in trials:
        value = trial.last.get(metric)
        position = metric_axis.position(value) if value is not None else math.nan
        color = cmap(position) if position == position else "#cccccc"
        ax.plot(xs, normalise(trial, axes, metric), color=color, alpha=0.75, linewidth=1.2)
    for i, axis in enumerate(axes):
        ax.axvline(i, color="black", linewidth=0.8)
        ax.text(i, 1.04, axis.label(True), ha="center", va="bottom", fontsize=8)
        ax.text(i, -0.04, axis.label(False), ha="center", va="top", fontsize=8)
    ax.set_xticks(xs, [a.name + (" (log)" if a.kind == "log" else "") for a in axes])
    ax.xaxis.tick_top()
    ax.tick_params(axis="x", pad=14)
    ax.set_yticks([])
    ax.set_ylim(-0.1, 1.1)
    for side in ("left", "right", "bottom", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(title or f"{len(trials)} trials, coloured by {metric} ({mode})", pad=30)
    target = path or os.path.join(
        results.experiment_path, f"{metric.replace('/', '_')}_parallel.png"
    )
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target
