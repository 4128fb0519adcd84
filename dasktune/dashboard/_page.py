"""The ``/dasktune`` page: one Bokeh document per browser tab, fed by an ExperimentModel.

Each document keeps the model version it has shown; once a second it asks the
model what changed since, then streams new trials and patches changed ones
(table rows, curves, parallel-coordinate lines), so that an experiment of a
thousand trials costs the browser only what moved.  Choosing another metric
or experiment rebuilds the sources once.  Nothing here writes to the model:
the page only reads.
"""

from __future__ import annotations

import html
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import (
    BooleanFilter,
    CDSView,
    ColumnDataSource,
    FactorRange,
    HoverTool,
    LinearColorMapper,
    Range1d,
)
from bokeh.models.annotations import ColorBar
from bokeh.models.widgets import (
    CheckboxButtonGroup,
    DataTable,
    Div,
    NumberFormatter,
    Select,
    TableColumn,
    TextInput,
    Toggle,
)
from bokeh.palettes import Viridis256
from bokeh.plotting import figure

from dasktune.dashboard._model import STATUSES, ExperimentModel, TrialView
from dasktune.dashboard._views import (
    Axis,
    config_keys,
    normalise,
    parallel_axes,
    parse_filter,
    table_row,
)

__all__ = ["ExperimentPage", "Catalog", "ClusterInfo"]

logger = logging.getLogger(__name__)

#: Experiments by key (the newest last), and the cluster's worker use, as the page asks.
Catalog = Callable[[], Mapping[str, ExperimentModel]]
ClusterInfo = Callable[[], "dict[str, int] | None"]

_COLORS = {
    "RUNNING": "#1f77b4",
    "PENDING": "#9e9e9e",
    "PAUSED": "#ff7f0e",
    "TERMINATED": "#8c8c8c",
    "ERROR": "#d62728",
}
_BEST = "#2ca02c"
_MARKERS = {"stopped": ("x", "#d62728"), "paused": ("square", "#ff7f0e")}
_PCP_INTERVAL_S = 2.0
_HEIGHT = 360
#: Column data of a ColumnDataSource: a column name and its values.
_Columns = dict[str, Any]


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}"


class ExperimentPage:
    """Builds the page into ``doc`` and keeps it up to date."""

    def __init__(
        self,
        doc: Document,
        catalog: Catalog,
        cluster: ClusterInfo | None = None,
        wanted: str | None = None,
        interval_ms: int = 1000,
    ) -> None:
        self.doc = doc
        self.catalog = catalog
        self.cluster = cluster
        self.wanted = wanted
        self.model: ExperimentModel | None = None
        self.key: str | None = None
        self.metric: str | None = None
        self.seen = -1
        self.meta_seen = -1
        self.rows: dict[str, int] = {}
        self.keys: list[str] = []
        self.axes: list[Axis] = []
        self.best_id: str | None = None
        self._pcp_at = 0.0
        self._pcp_dirty = False
        self._pcp_version = -1
        self._build()
        doc.title = "dasktune"
        doc.add_root(self.layout)
        self.update()
        doc.add_periodic_callback(self.update, interval_ms)

    # -- layout -----------------------------------------------------------------
    def _build(self) -> None:
        self.title = Div(text="<h2>dasktune</h2>", name="dasktune-title")
        self.summary = Div(text="", name="dasktune-summary", sizing_mode="stretch_width")
        self.experiment_select = Select(title="Experiment", options=[], width=260, visible=False)
        self.experiment_select.on_change("value", lambda attr, old, new: self._choose(new))
        self.metric_select = Select(title="Metric", options=[], width=200)
        self.metric_select.on_change("value", lambda attr, old, new: self._set_metric(new))
        self.log_toggle = Toggle(label="log scale", active=False, width=100, align="end")
        self.log_toggle.on_change("active", lambda attr, old, new: self._set_log(new))
        self.filter_input = TextInput(
            title="Filter trials", width=320, placeholder="text, or key<value: lr<0.01 RUNNING"
        )
        self.filter_input.on_change("value", lambda attr, old, new: self._refilter())
        self.status_buttons = CheckboxButtonGroup(
            labels=list(STATUSES), active=list(range(len(STATUSES))), align="end"
        )
        self.status_buttons.on_change("active", lambda attr, old, new: self._refilter())

        self.table_source = ColumnDataSource(self._empty_table())
        self.curve_source = ColumnDataSource(self._empty_curves())
        self.mark_source = ColumnDataSource(
            dict(x=[], y=[], trial=[], what=[], marker=[], color=[])
        )
        self.best_source = ColumnDataSource(dict(x=[], y=[]))  # drawn over the other curves
        self.pcp_source = ColumnDataSource(dict(xs=[], ys=[], trial=[], value=[], alpha=[]))
        #: Which rows the filter shows, in the table, the curves and the parallel coordinates.
        self.row_filters = [BooleanFilter(booleans=[]) for _ in range(3)]
        self.view, self.curve_view, self.pcp_view = (CDSView(filter=f) for f in self.row_filters)

        self.table = DataTable(
            source=self.table_source,
            view=self.view,
            columns=[],
            height=_HEIGHT,
            sizing_mode="stretch_width",
            index_position=None,
            name="dasktune-trials",
        )
        self.curves = self._curve_figure("linear")
        self.curves_log = self._curve_figure("log")
        self.curves_log.visible = False
        self.pcp = self._pcp_figure()
        self.rung_source = ColumnDataSource(dict(x=[], y=[], trial=[]))
        self.cutoff_source = ColumnDataSource(dict(x=[], y=[], label=[]))
        self.rung_range = FactorRange()
        self.rungs_plot = figure(
            height=_HEIGHT,
            sizing_mode="stretch_width",
            x_range=self.rung_range,
            title="Scheduler rungs: values recorded, and the cutoff",
            tools="hover,pan,wheel_zoom,reset",
            name="dasktune-rungs",
            tooltips=[("trial", "@trial"), ("value", "@y")],
        )
        self.rungs_plot.scatter("x", "y", source=self.rung_source, size=7, alpha=0.6)
        self.rungs_plot.scatter(
            "x",
            "y",
            source=self.cutoff_source,
            marker="dash",
            size=28,
            line_width=3,
            color="#d62728",
            legend_label="cutoff",
        )
        self.rungs_note = Div(text="", sizing_mode="stretch_width")

        controls = row(
            self.experiment_select,
            self.metric_select,
            self.log_toggle,
            self.filter_input,
            self.status_buttons,
            sizing_mode="stretch_width",
        )
        self.layout = column(
            self.title,
            self.summary,
            controls,
            row(
                column(self.curves, self.curves_log, sizing_mode="stretch_width"),
                self.pcp,
                sizing_mode="stretch_width",
            ),
            row(
                self.table,
                column(self.rungs_plot, self.rungs_note, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
            name="dasktune-page",
        )

    @staticmethod
    def _empty_table() -> _Columns:
        return {name: [] for name in ("id", "trial", "status", "iter", "last", "best")}

    @staticmethod
    def _empty_curves() -> _Columns:
        return dict(xs=[], ys=[], trial=[], status=[], color=[], width=[], alpha=[])

    def _curve_figure(self, scale: Literal["linear", "log"]) -> Any:
        fig = figure(
            height=_HEIGHT,
            sizing_mode="stretch_width",
            y_axis_type=scale,
            title="Learning curves",
            x_axis_label="training_iteration",
            tools="pan,wheel_zoom,box_zoom,reset,save",
            name=f"dasktune-curves-{scale}",
            output_backend="webgl",
        )
        lines = fig.multi_line(
            "xs",
            "ys",
            source=self.curve_source,
            view=self.curve_view,
            line_color="color",
            line_width="width",
            line_alpha="alpha",
        )
        fig.add_tools(
            HoverTool(renderers=[lines], tooltips=[("trial", "@trial"), ("status", "@status")])
        )
        fig.line("x", "y", source=self.best_source, color=_BEST, line_width=3)
        marks = fig.scatter(
            "x", "y", source=self.mark_source, marker="marker", color="color", size=11, line_width=2
        )
        fig.add_tools(
            HoverTool(
                renderers=[marks], tooltips=[("trial", "@trial"), ("scheduler", "@what here")]
            )
        )
        return fig

    def _pcp_figure(self) -> Any:
        fig = figure(
            height=_HEIGHT,
            sizing_mode="stretch_width",
            title="Parallel coordinates",
            tools="pan,wheel_zoom,reset,save",
            y_range=Range1d(start=-0.12, end=1.16),
            name="dasktune-parallel",
            output_backend="webgl",
        )
        self.pcp_mapper = LinearColorMapper(palette=Viridis256, low=0, high=1, nan_color="#cccccc")
        lines = fig.multi_line(
            "xs",
            "ys",
            source=self.pcp_source,
            view=self.pcp_view,
            line_color={"field": "value", "transform": self.pcp_mapper},
            line_alpha="alpha",
            line_width=1.5,
        )
        fig.add_tools(
            HoverTool(renderers=[lines], tooltips=[("trial", "@trial"), ("metric", "@value")])
        )
        self.pcp_axes = ColumnDataSource(dict(x0=[], y0=[], x1=[], y1=[]))
        fig.segment("x0", "y0", "x1", "y1", source=self.pcp_axes, color="black", line_width=1)
        self.pcp_labels = ColumnDataSource(dict(x=[], y=[], text=[]))
        fig.text(
            "x",
            "y",
            "text",
            source=self.pcp_labels,
            text_align="center",
            text_baseline="middle",
            text_font_size="11px",
        )
        fig.add_layout(ColorBar(color_mapper=self.pcp_mapper, width=8), "right")
        fig.xaxis.visible = fig.yaxis.visible = False
        fig.xgrid.visible = fig.ygrid.visible = False
        return fig

    # -- choosing ---------------------------------------------------------------
    def _pick(self, models: Mapping[str, ExperimentModel]) -> str | None:
        if not models:
            return None
        if self.wanted:  # the page's ?experiment=, once it has reported (it may start later)
            for key, model in models.items():
                if self.wanted in (key, model.name, model.path):
                    return key
        if self.key in models:
            return self.key
        return list(models)[-1]

    def _choose(self, key: str) -> None:
        if key and key != self.key:
            self.wanted = None  # the user's choice from now on
            self.key = key
            self.model = None
            self.update()

    def _set_metric(self, metric: str) -> None:
        if metric and metric != self.metric:
            self.metric = metric
            self._full()

    def _set_log(self, active: bool) -> None:
        self.curves.visible = not active
        self.curves_log.visible = active

    # -- updating ---------------------------------------------------------------
    def update(self) -> None:
        """Show what changed in the model since the last update (a periodic callback)."""
        try:
            self._update()
        except Exception:  # never let a drawing problem end the session's updates
            logger.exception("The dasktune page could not update")

    def _update(self) -> None:
        models = self.catalog()
        keys = list(models)
        if keys != self.experiment_select.options:
            # Bokeh's stubs want a list[str | tuple[Any, str]]: a list[str] is one at run time.
            self.experiment_select.options = keys  # type: ignore[assignment]
            self.experiment_select.visible = len(keys) > 1
        key = self._pick(models)
        if key is None:
            self.summary.text = (
                "<p>No dasktune experiment has reported here yet. The page "
                "fills in when <code>Tuner.fit()</code> starts.</p>"
            )
            return
        if self.model is not models[key]:
            self.key, self.model = key, models[key]
            self.experiment_select.value = key
            self.metric = None
            self.meta_seen = self.seen = -1
        model = self.model
        if model.meta_version > self.meta_seen or self.metric is None:
            self._update_meta(model)
        if self.seen < 0:
            self._full()
        else:
            self._apply_changes(model.changed_since(self.seen))
        self.seen = model.version
        if self._pcp_dirty and time.monotonic() - self._pcp_at >= _PCP_INTERVAL_S:
            self._update_pcp(full=False)
        self._update_summary(model)

    def _update_meta(self, model: ExperimentModel) -> None:
        self.meta_seen = model.meta_version
        options = list(model.metrics)
        if model.metric and model.metric not in options:
            options.insert(0, model.metric)
        if options != self.metric_select.options:
            self.metric_select.options = options  # type: ignore[assignment]  # see _update
        if self.metric is None and options:
            self.metric = model.metric if model.metric in options else options[0]
            self.metric_select.value = self.metric
            self.seen = -1
        self._update_rungs(model)

    def _full(self) -> None:
        """Rebuild every source from the model (first show, another metric or experiment)."""
        model = self.model
        if model is None:
            return
        trials = model.ordered()
        self.keys = config_keys(trials)
        self.table.columns = self._columns()
        self.rows = {t.trial_id: i for i, t in enumerate(trials)}
        best = model.best(self.metric)
        self.best_id = best[0].trial_id if best else None
        self.table_source.data = self._table_data(trials)
        self.curve_source.data = self._curve_data(trials)
        self._update_marks(trials)
        self._update_best_line()
        self._update_pcp(full=True)
        for fig in (self.curves, self.curves_log):
            fig.title.text = f"{self.metric or 'metric'} of {len(trials)} trials"
            fig.yaxis.axis_label = self.metric or ""
        self._refilter()
        self.seen = model.version

    def _apply_changes(self, changed: list[TrialView]) -> None:
        if not changed:
            return
        model = self.model
        assert model is not None
        trials = model.ordered()
        if config_keys(trials) != self.keys:
            self._full()
            return
        new = [t for t in changed if t.trial_id not in self.rows]
        old = [t for t in changed if t.trial_id in self.rows]
        best = model.best(self.metric)
        best_id = best[0].trial_id if best else None
        best_moved = best_id != self.best_id
        if best_moved:
            previous, self.best_id = self.best_id, best_id
            if previous in self.rows and all(t.trial_id != previous for t in old):
                old.append(model.trials[previous])
        if old:
            self.table_source.patch(self._patches(self._table_data(old), old))
            self.curve_source.patch(self._patches(self._curve_data(old), old))
        if new:
            for trial in new:
                self.rows[trial.trial_id] = len(self.rows)
            self.table_source.stream(self._table_data(new))
            self.curve_source.stream(self._curve_data(new))
        if any(t.marks for t in changed):
            self._update_marks(trials)
        if best_moved or any(t.trial_id == self.best_id for t in changed):
            self._update_best_line()
        for fig in (self.curves, self.curves_log):
            fig.title.text = f"{self.metric or 'metric'} of {len(trials)} trials"
        self._pcp_dirty = True
        self._refilter()

    def _patches(self, data: dict[str, list[Any]], trials: list[TrialView]) -> dict[str, Any]:
        rows = [self.rows[t.trial_id] for t in trials]
        return {name: list(zip(rows, values, strict=True)) for name, values in data.items()}

    # -- sources ------------------------------------------------------------------
    def _columns(self) -> list[TableColumn]:
        number = NumberFormatter(format="0.[0000]")
        metric = self.metric or "metric"
        columns = [
            TableColumn(field="trial", title="trial", width=170),
            TableColumn(field="status", title="status", width=110),
            TableColumn(
                field="iter", title="iter", width=50, formatter=NumberFormatter(format="0")
            ),
            TableColumn(field="last", title=f"last {metric}", formatter=number, width=120),
            TableColumn(field="best", title=f"best {metric}", formatter=number, width=120),
        ]
        for key in self.keys:
            columns.append(
                TableColumn(field=f"config/{key}", title=key, formatter=number, width=90)
            )
        return columns

    def _table_data(self, trials: list[TrialView]) -> _Columns:
        model = self.model
        assert model is not None
        rows = [table_row(t, self.metric, model.mode, self.keys) for t in trials]
        names = [
            "id",
            "trial",
            "status",
            "iter",
            "last",
            "best",
            *(f"config/{k}" for k in self.keys),
        ]
        return {name: [r[name] for r in rows] for name in names}

    def _curve_data(self, trials: list[TrialView]) -> _Columns:
        data = self._empty_curves()
        for trial in trials:
            xs, ys = trial.curve(self.metric) if self.metric else ((), ())
            best = trial.trial_id == self.best_id
            data["xs"].append(np.array(xs, dtype=float))
            data["ys"].append(np.array(ys, dtype=float))
            data["trial"].append(trial.name)
            data["status"].append(trial.status)
            data["color"].append(_BEST if best else _COLORS.get(trial.status, "#8c8c8c"))
            data["width"].append(3.0 if best else 1.2)
            data["alpha"].append(1.0 if best or trial.status == "RUNNING" else 0.55)
        return data

    def _update_best_line(self) -> None:
        best = self.model.trials.get(self.best_id or "") if self.model else None
        xs, ys = best.curve(self.metric) if best is not None and self.metric else ((), ())
        self.best_source.data = dict(x=np.array(xs, dtype=float), y=np.array(ys, dtype=float))

    def _update_marks(self, trials: list[TrialView]) -> None:
        data: dict[str, list[Any]] = dict(x=[], y=[], trial=[], what=[], marker=[], color=[])
        for trial in trials:
            xs, ys = trial.curve(self.metric) if self.metric else ((), ())
            for x, what in trial.marks:
                if not len(xs):
                    continue
                at = int(np.searchsorted(np.array(xs), x, side="right")) - 1
                marker, color = _MARKERS.get(what, ("circle", "black"))
                data["x"].append(x)
                data["y"].append(ys[max(at, 0)])
                data["trial"].append(trial.name)
                data["what"].append(what)
                data["marker"].append(marker)
                data["color"].append(color)
        self.mark_source.data = data

    def _refilter(self) -> None:
        data = self.table_source.data
        statuses = {STATUSES[i] for i in self.status_buttons.active}
        test = parse_filter(self.filter_input.value or "")
        names = list(data)
        keep = []
        for i in range(len(data["id"])):
            row_ = {name: data[name][i] for name in names}
            keep.append(row_["status"] in statuses and test(row_))
        for row_filter in self.row_filters:
            row_filter.booleans = keep

    def _update_pcp(self, full: bool) -> None:
        model = self.model
        assert model is not None
        self._pcp_at, self._pcp_dirty = time.monotonic(), False
        trials = model.ordered()
        axes = parallel_axes(trials, self.keys, self.metric)
        if axes != self.axes or full or len(trials) != len(self.pcp_source.data["xs"]):
            self.axes = axes
            self._draw_pcp_axes(axes)
            self.pcp_source.data = self._pcp_data(trials)
            return
        changed = [t for t in trials if t.version > self._pcp_version]
        if changed:
            self.pcp_source.patch(self._patches(self._pcp_data(changed), changed))
        self._pcp_version = model.version

    def _pcp_data(self, trials: list[TrialView]) -> dict[str, list[Any]]:
        model = self.model
        assert model is not None
        self._pcp_version = model.version
        xs = np.arange(len(self.axes), dtype=float)
        data: dict[str, list[Any]] = dict(xs=[], ys=[], trial=[], value=[], alpha=[])
        for trial in trials:
            value = trial.last.get(self.metric) if self.metric else None
            data["xs"].append(xs)
            data["ys"].append(np.asarray(normalise(trial, self.axes, self.metric), dtype=float))
            data["trial"].append(trial.name)
            data["value"].append(float("nan") if value is None else value)
            data["alpha"].append(0.8 if value is not None else 0.3)
        return data

    def _draw_pcp_axes(self, axes: list[Axis]) -> None:
        n = len(axes)
        self.pcp_axes.data = dict(x0=list(range(n)), y0=[0.0] * n, x1=list(range(n)), y1=[1.0] * n)
        labels: dict[str, list[Any]] = dict(x=[], y=[], text=[])
        for i, axis in enumerate(axes):
            for y, text in (
                (1.11, axis.name + (" (log)" if axis.kind == "log" else "")),
                (1.04, axis.label(True)),
                (-0.05, axis.label(False)),
            ):
                labels["x"].append(i)
                labels["y"].append(y)
                labels["text"].append(text)
        self.pcp_labels.data = labels
        metric_axis = axes[-1] if axes and axes[-1].name == self.metric else None
        if metric_axis is not None and metric_axis.kind != "category":
            low, high = metric_axis.low, metric_axis.high
            if metric_axis.kind == "log":
                low, high = 10**low, 10**high
            mode = self.model.mode if self.model else None
            palette = Viridis256 if mode != "min" else tuple(reversed(Viridis256))
            self.pcp_mapper.update(
                low=low, high=high if high > low else low + 1, palette=list(palette)
            )

    def _update_rungs(self, model: ExperimentModel) -> None:
        if not model.rungs:
            name = model.scheduler or "This scheduler"
            self.rungs_note.text = (
                f"<p>{html.escape(name)} keeps no rungs (ASHA and HyperBand do).</p>"
            )
            self.rungs_plot.visible = False
            return
        self.rungs_plot.visible = True
        labels: list[str] = []
        points: _Columns = dict(x=[], y=[], trial=[])
        cutoffs: _Columns = dict(x=[], y=[], label=[])
        names = {tid: t.name for tid, t in model.trials.items()}
        for rung in model.rungs:
            label = f"bracket {rung['bracket']} · {model.time_attr} {rung['milestone']:g}"
            labels.append(label)
            for tid, value in (rung.get("values") or {}).items():
                points["x"].append(label)
                points["y"].append(value)
                points["trial"].append(names.get(tid, tid))
            if rung.get("cutoff") is not None:
                cutoffs["x"].append(label)
                cutoffs["y"].append(rung["cutoff"])
                cutoffs["label"].append(_fmt(rung["cutoff"]))
        self.rung_range.factors = labels
        self.rung_source.data = points
        self.cutoff_source.data = cutoffs
        self.rungs_note.text = "".join(
            f"<div>{html.escape(label)}: {len(r.get('values') or {})} recorded, cutoff "
            f"{_fmt(r.get('cutoff'))}</div>"
            for label, r in zip(labels, model.rungs, strict=True)
        )

    def _update_summary(self, model: ExperimentModel) -> None:
        counts = model.counts()
        total = f" of {model.total}" if model.total else ""
        states = " ".join(
            f"<span style='color:{_COLORS[s]};font-weight:600'>{n} {s}</span>"
            for s, n in counts.items()
            if n
        )
        best = model.best(self.metric)
        best_text = "–"
        if best is not None:
            trial, value = best
            config = ", ".join(
                f"{k}={_fmt(v) if isinstance(v, float) else v}"
                for k, v in list(trial.config.items())[:6]
            )
            best_text = (
                f"{html.escape(self.metric or '')} = <b>{_fmt(value)}</b> "
                f"({html.escape(trial.name)}, iter {trial.iteration:g}; "
                f"{html.escape(config)})"
            )
        if model.ended is not None:
            state = f"ended: {html.escape(str(model.ended.get('status') or 'finished'))}"
        else:
            state = "running"
        info = self.cluster() if self.cluster is not None else None
        if info:
            busy, threads = info.get("busy", 0), max(info.get("threads", 0), 1)
            workers = (
                f"{busy} of {threads} worker threads run trials "
                f"({100 * busy / threads:.0f}%), {info.get('workers', 0)} workers"
            )
        else:
            workers = f"{model.running()} trials running (no cluster attached)"
        self.title.text = (
            f"<h2 style='margin:4px 0'>dasktune: {html.escape(model.name)} "
            f"<small style='color:#666'>({state})</small></h2>"
        )
        self.summary.text = (
            "<table style='font-size:14px'>"
            f"<tr><td><b>Trials</b></td><td>{len(model.trials)}{total}: {states}</td></tr>"
            f"<tr><td><b>Elapsed</b></td><td>{_duration(model.elapsed(time.time()))}</td></tr>"
            f"<tr><td><b>Best so far</b></td><td>{best_text}</td></tr>"
            f"<tr><td><b>Workers</b></td><td>{workers}</td></tr>"
            f"<tr><td><b>Directory</b></td><td><code>{html.escape(model.path)}</code></td></tr>"
            "</table>"
        )
