"""What the XGBoost and LightGBM callbacks share: their arguments, the metrics they pick from
what the library logged, and how a round is reported, with or without a checkpoint.

A library's callback turns its own record of a round into a flat dict of logged values
named ``"<data>-<metric>"`` (``"eval-logloss"``), hands it to :meth:`Reporter.round`, and
hands :meth:`Reporter.end` the end of training.  A checkpoint is the model saved by the
library (``save(path)``) as ``filename`` in a new temporary directory, which
``tune.report`` moves into the trial.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from dasktune._validation import invalid_argument, is_integer, is_number
from dasktune.trainable import session as _session
from dasktune.trainable.checkpoint import Checkpoint

#: Writes the model to the file it is given.
Save = Callable[[str], object]
#: Ray's type of ``metrics``: a name, names, or {reported name: logged name}.
Metrics = str | list[str] | tuple[str, ...] | Mapping[str, str] | None


def _type_error(argument: str, value: Any, rule: str, fix: str) -> TypeError:
    return TypeError(*invalid_argument(argument, value, rule, fix).args)


def _metric_sources(owner: str, metrics: Metrics) -> dict[str, str] | None:
    """``metrics`` as {reported name: logged name}; None for every logged metric.

    Example:
        >>> _metric_sources("C", ["eval-logloss"]), _metric_sources("C", {"loss": "eval-rmse"})
        ({'eval-logloss': 'eval-logloss'}, {'loss': 'eval-rmse'})
    """
    if metrics is None:
        return None
    if isinstance(metrics, str):
        return {metrics: metrics}
    if isinstance(metrics, Mapping):
        pairs = list(metrics.items())
    elif isinstance(metrics, (list, tuple)):
        pairs = [(name, name) for name in metrics]
    else:
        pairs = [(metrics, metrics)]
    if not all(isinstance(name, str) and isinstance(source, str) for name, source in pairs):
        raise _type_error(
            f"{owner}(metrics=...)",
            metrics,
            "it must be a name, a list of names, or a dict {reported name: logged name}, "
            "of strings",
            f"Pass {owner}(metrics='eval-logloss'), metrics=['eval-logloss', 'eval-error'], "
            "or metrics={'loss': 'eval-logloss'}; or leave it out to report every metric.",
        )
    return dict(pairs) or None  # an empty list or dict reports everything, as in Ray


class Reporter:
    """Reports a library's rounds to the running trial, as Ray Tune's callbacks do.

    ``owner`` names the callback in errors; ``library`` the library, and ``names_hint``
    says where the logged names come from (``evals=`` for XGBoost).
    """

    def __init__(
        self,
        owner: str,
        library: str,
        names_hint: str,
        metrics: Metrics,
        filename: str,
        frequency: int,
        checkpoint_at_end: bool,
        results_postprocessing_fn: Callable[[dict[str, Any]], Mapping[str, Any]] | None,
    ) -> None:
        self.owner = owner
        self.library = library
        self.names_hint = names_hint
        self.metrics_given = metrics
        self.sources = _metric_sources(owner, metrics)
        if not isinstance(filename, str) or not filename:
            raise _type_error(
                f"{owner}(filename=...)",
                filename,
                "it must be a non-empty file name",
                f"Pass {owner}(filename='model.ubj'), the name of the model's file in each "
                "checkpoint.",
            )
        if not is_integer(frequency) or frequency < 0:
            raise invalid_argument(
                f"{owner}(frequency=...)",
                frequency,
                "it must be a whole number >= 0: the boosting rounds from one checkpoint to "
                "the next, or 0 for none but the one at the end",
                f"Pass {owner}(frequency=0) for no checkpoints during training, or "
                "frequency=5 for one every 5 rounds.",
            )
        if not isinstance(checkpoint_at_end, bool):
            raise _type_error(
                f"{owner}(checkpoint_at_end=...)",
                checkpoint_at_end,
                "it must be True or False",
                f"Pass {owner}(checkpoint_at_end=True) to save the model after the last round.",
            )
        if results_postprocessing_fn is not None and not callable(results_postprocessing_fn):
            raise _type_error(
                f"{owner}(results_postprocessing_fn=...)",
                results_postprocessing_fn,
                "it must be a function that takes the dict of metrics and returns a dict",
                f"Pass {owner}(results_postprocessing_fn=lambda metrics: {{**metrics, "
                "'loss': metrics['eval-logloss']}), or leave it out.",
            )
        self.filename = filename
        self.frequency = int(frequency)
        self.checkpoint_at_end = checkpoint_at_end
        self.postprocess = results_postprocessing_fn
        self.reset()

    def reset(self) -> None:
        """Forget the previous training (a callback may serve several)."""
        self.reported = False  # whether a round of this training was reported
        self.checkpointed = False  # whether the last round reported had a checkpoint

    @property
    def saves(self) -> bool:
        """Whether this callback ever saves the model."""
        return self.frequency > 0 or self.checkpoint_at_end

    def select(self, logged: Mapping[str, Any]) -> dict[str, Any]:
        """The metrics to report from the round's ``logged`` values, as plain floats.

        Raises:
            ValueError: A name in ``metrics`` that the library did not log.
        """
        logged = {name: float(v) if is_number(v) else v for name, v in logged.items()}
        if self.sources is None:
            chosen = logged
        else:
            missing = [source for source in self.sources.values() if source not in logged]
            if missing:
                raise self._unknown(missing, logged)
            chosen = {name: logged[source] for name, source in self.sources.items()}
        if self.postprocess is not None:
            processed = self.postprocess(chosen)
            if not isinstance(processed, Mapping):
                raise TypeError(
                    f"{self.owner}(results_postprocessing_fn={self.postprocess!r}) returned "
                    f"{processed!r}; it must return a dict of metrics, such as the dict it "
                    "was given with entries added or changed."
                )
            chosen = {str(name): v for name, v in processed.items()}
        return {name: float(v) if is_number(v) else v for name, v in chosen.items()}

    def _unknown(self, missing: list[str], logged: Mapping[str, Any]) -> ValueError:
        listed = ", ".join(repr(name) for name in logged)
        return invalid_argument(
            f"{self.owner}(metrics=...)",
            self.metrics_given,
            f"{self.library} logged no {', '.join(map(repr, missing))}: "
            + (f"the names it logged are {listed}" if logged else "it logged no metric at all"),
            f"Name the metrics as '<data>-<metric>', with {self.names_hint}.",
        )

    def round(self, logged: Mapping[str, Any], rounds: int, save: Save, last: bool = False) -> None:
        """Report one boosting round: ``rounds`` rounds done in this training, ``last``
        when the library says it is the last one.

        A checkpoint goes with it every ``frequency`` rounds, and on the last round when
        ``checkpoint_at_end``.  Should the trial be stopped or paused here, it still gets
        a checkpoint of this round when ``checkpoint_at_end``, as dasktune's class
        trainables do.
        """
        metrics = self.select(logged)
        due = (self.frequency > 0 and rounds % self.frequency == 0) or (
            last and self.checkpoint_at_end
        )
        try:
            if due:
                self._report_with_checkpoint(metrics, save)
            else:
                _session.report(metrics)
        except _session.StopTrial:
            if not due and self.checkpoint_at_end:
                self._attach(save)
            raise
        self.reported = True
        self.checkpointed = due

    def end(self, save: Save) -> None:
        """Training ended: a checkpoint for its last round, if ``checkpoint_at_end`` asks for
        one and that round had none.  It is stored with the round's result, not as a
        result of its own, so that ``training_iteration`` counts boosting rounds; a training
        of no round at all reports one result, with no metrics, to carry it."""
        if not self.checkpoint_at_end or self.checkpointed:
            return
        if self.reported:
            self._attach(save)
        else:
            self._report_with_checkpoint({}, save)
        self.checkpointed = True

    def _checkpoint(self, save: Save) -> Checkpoint:
        directory = tempfile.mkdtemp(prefix=f"dasktune-{self.library}-")
        try:
            save(os.path.join(directory, self.filename))
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        checkpoint = Checkpoint(directory)
        checkpoint._temporary = True  # moved into the trial when reported
        return checkpoint

    def _report_with_checkpoint(self, metrics: dict[str, Any], save: Save) -> None:
        checkpoint = self._checkpoint(save)
        try:
            _session.report(metrics, checkpoint=checkpoint)
        finally:  # gone once stored; left only where the report failed
            shutil.rmtree(checkpoint.path, ignore_errors=True)

    def _attach(self, save: Save) -> None:
        """Store a checkpoint with the trial's last result."""
        session = _session._require("report")
        checkpoint = self._checkpoint(save)
        try:
            session.attach_checkpoint(checkpoint)
        finally:
            shutil.rmtree(checkpoint.path, ignore_errors=True)


class CallbackBase:
    """Ray's constructor of both libraries' ``TuneReportCheckpointCallback``; a library's
    class names itself (``_LIBRARY``), says where the logged names come from (``_NAMES``)
    and gives its checkpoint's default file name (``CHECKPOINT_NAME``)."""

    CHECKPOINT_NAME = "model"
    _LIBRARY = ""
    _NAMES = ""

    def __init__(
        self,
        metrics: Metrics = None,
        filename: str | None = None,
        frequency: int = 0,
        checkpoint_at_end: bool = True,
        results_postprocessing_fn: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self._reporter = Reporter(
            type(self).__name__,
            self._LIBRARY,
            self._NAMES,
            metrics,
            self.CHECKPOINT_NAME if filename is None else filename,
            frequency,
            checkpoint_at_end,
            results_postprocessing_fn,
        )


class ReportOnly(CallbackBase):
    """Ray 1.x's ``TuneReportCallback``: reports, saves no checkpoint."""

    def __init__(
        self,
        metrics: Metrics = None,
        results_postprocessing_fn: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(
            metrics,
            frequency=0,
            checkpoint_at_end=False,
            results_postprocessing_fn=results_postprocessing_fn,
        )


def model_file(owner: str, checkpoint: Checkpoint | str | os.PathLike[str], filename: str) -> str:
    """The path of the model's file in a checkpoint written by a callback.

    Raises:
        FileNotFoundError: The checkpoint has no such file; the error lists those it has.
    """
    directory = os.fspath(checkpoint)
    path = os.path.join(directory, filename)
    if not os.path.isfile(path):
        files = sorted(os.listdir(directory)) if os.path.isdir(directory) else None
        raise FileNotFoundError(
            f"{owner}.get_model(checkpoint={checkpoint!r}, filename={filename!r}): the "
            f"checkpoint has no file {filename!r}"
            + (f" (it has {files})" if files is not None else " (no such directory)")
            + ". Pass the filename= the callback was made with, and a checkpoint it reported "
            "(result.checkpoint)."
        )
    return path
