"""The page's Bokeh document without a browser: what an update sends for 1,000 trials."""

from __future__ import annotations

import time

from bokeh.document import Document
from bokeh.document.events import ColumnDataChangedEvent, ColumnsPatchedEvent, ColumnsStreamedEvent

from dasktune.dashboard._model import ExperimentModel
from dasktune.dashboard._page import ExperimentPage


def thousand_trials() -> ExperimentModel:
    model = ExperimentModel("big", "/exp/big")
    model.apply({"kind": "experiment", "metric": "acc", "mode": "max", "total": 1000})
    for i in range(1000):
        model.apply(
            {
                "kind": "trial",
                "id": f"t_{i:05d}",
                "name": f"train_{i:05d}",
                "index": i,
                "config": {"lr": 10 ** (-1 - 3 * i / 1000), "width": 2 ** (4 + i % 4)},
            }
        )
        for it in range(1, 21):
            model.apply(
                {
                    "kind": "result",
                    "id": f"t_{i:05d}",
                    "iteration": it,
                    "metrics": {"acc": (i % 97) / 100 * (1 - 1 / (it + 1))},
                }
            )
        model.apply({"kind": "status", "id": f"t_{i:05d}", "status": "TERMINATED"})
    return model


def data_events(doc: Document, update) -> list:
    events: list = []
    doc.on_change(events.append)
    update()
    doc.remove_on_change(events.append)
    return events


def test_an_update_sends_only_what_changed():
    model = thousand_trials()
    doc = Document()
    page = ExperimentPage(doc, lambda: {"big": model})
    assert len(page.table_source.data["trial"]) == 1000
    assert sum(len(xs) for xs in page.curve_source.data["xs"]) == 20_000
    # Two trials report, one new trial arrives.
    model.apply({"kind": "result", "id": "t_00003", "iteration": 21, "metrics": {"acc": 0.5}})
    model.apply({"kind": "status", "id": "t_00007", "status": "ERROR"})
    model.apply(
        {
            "kind": "trial",
            "id": "t_01000",
            "name": "train_01000",
            "index": 1000,
            "config": {"lr": 0.01, "width": 32},
        }
    )
    started = time.perf_counter()
    events = data_events(doc, page.update)
    took = time.perf_counter() - started
    replaced = [
        e
        for e in events
        if isinstance(e, ColumnDataChangedEvent)
        and e.model in (page.table_source, page.curve_source)
    ]
    assert not replaced  # no source of 1,000 rows sent again
    patched = {id(e.model): e for e in events if isinstance(e, ColumnsPatchedEvent)}
    table_patch = patched[id(page.table_source)].patches
    assert sorted({row for row, _ in table_patch["status"]}) == [3, 7]
    streamed = [
        e for e in events if isinstance(e, ColumnsStreamedEvent) and e.model is page.table_source
    ]
    assert [e.data["trial"] for e in streamed] == [["train_01000"]]
    assert took < 0.5, f"an update of 1,000 trials took {took:.3f} s"
    assert page.table_source.data["status"][7] == "ERROR"
    assert len(page.curve_source.data["xs"][3]) == 21


def test_the_filter_and_the_metric_choice():
    model = thousand_trials()
    page = ExperimentPage(Document(), lambda: {"big": model})
    page.filter_input.value = "width=16 lr<0.01"
    kept = page.view.filter.booleans
    rows = [i for i, keep in enumerate(kept) if keep]
    assert rows and all(i % 4 == 0 and 10 ** (-1 - 3 * i / 1000) < 0.01 for i in rows)
    assert page.curve_view.filter.booleans == kept  # the curves and lines follow the table
    page.status_buttons.active = []  # no status ticked: nothing shown
    assert not any(page.view.filter.booleans)
    assert page.metric == "acc" and page.best_id == "t_00096"  # the best: (96 % 97) / 100
