"""The simulator drives the real Controller as the experiment loop does, on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from dasktune.schedulers import FIFOScheduler, TrialDecision, TrialScheduler, TrialUpdate
from dasktune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher
from dasktune.search.sample import grid_search
from dasktune.stopper import MaximumIterationStopper
from dasktune.testing import ConfigList, Simulator, Stalled, curve_step
from dasktune.trial import Trial, TrialStatus

STOP, PAUSE, CONTINUE = TrialDecision.STOP, TrialDecision.PAUSE, TrialDecision.CONTINUE


def score_x(config: dict[str, Any], state: Any, iteration: int) -> tuple[Any, float]:
    """Report the config's ``x``; the state counts the iterations trained in its lineage."""
    return (state or 0) + 1, float(config["x"])


def length_of(config: dict[str, Any]) -> int:
    return int(config.get("length", 4))


class Scripted(TrialScheduler):
    """FIFO, but for updates queued and PAUSEs returned at given (trial index, iteration)."""

    def __init__(
        self,
        script: dict[tuple[int, int], list[TrialUpdate]],
        pauses: frozenset[tuple[int, int]] = frozenset(),
    ) -> None:
        self.script, self.pauses = script, pauses
        self.order: list[str] = []
        self.updates: list[TrialUpdate] = []

    def on_trial_add(self, trial: Trial) -> None:
        self.order.append(trial.trial_id)

    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> TrialDecision:
        key = (self.order.index(trial.trial_id), result["training_iteration"])
        self.updates.extend(self.script.pop(key, []))
        return PAUSE if key in self.pauses else CONTINUE

    def pop_trial_updates(self) -> list[TrialUpdate]:
        updates, self.updates = self.updates, []
        return updates


# The Controller's protocol ---------------------------------------------------------


def test_continue_for_a_running_trial_is_held_until_it_paused() -> None:
    """PAUSE then CONTINUE(new_config) for a running trial: the Controller holds the
    CONTINUE until the trial's run ended at its next report, and only then is the new
    config installed; the trial resumes from its checkpoint with it."""
    update_pause = TrialUpdate("t_00000", PAUSE)
    update_continue = TrialUpdate("t_00000", CONTINUE, new_config={"x": 99, "length": 4})
    scheduler = Scripted({(1, 1): [update_pause, update_continue]})
    outcome = Simulator(scheduler, [{"x": 1}, {"x": 2}], score_x, length_of, concurrency=2).run()
    # t_00001's first report (time 1) queues both; t_00000 is running then, so the PAUSE
    # reaches it at its next report (2); the CONTINUE waits for it to be PAUSED.
    assert outcome.decisions("t_00000") == [(1, CONTINUE), (2, PAUSE), (3, CONTINUE), (4, CONTINUE)]
    assert [r.score for r in outcome.reports if r.trial_id == "t_00000"] == [1, 1, 99, 99]
    assert outcome.updates == [update_pause, update_continue]
    trial = outcome.trials["t_00000"]
    assert trial.status is TrialStatus.TERMINATED and trial.config["x"] == 99
    assert outcome.iterations == 8  # resumed from its checkpoint at 2: nothing trained twice


def test_updates_for_finished_or_unknown_trials_are_ignored() -> None:
    """t_00000 ended at 2; a STOP and a CONTINUE(new_config) for it afterwards, and an
    update for a trial that does not exist, never reach the loop."""
    late = [
        TrialUpdate("t_00000", STOP),
        TrialUpdate("t_00000", CONTINUE, new_config={"x": 5}),
        TrialUpdate("nobody", STOP),
    ]
    scheduler = Scripted({(1, 1): late})
    outcome = Simulator(scheduler, [{"x": 1, "length": 2}, {"x": 2}], score_x, length_of).run()
    assert outcome.updates == []
    assert outcome.trials["t_00000"].config == {"x": 1, "length": 2}
    assert all(t.status is TrialStatus.TERMINATED for t in outcome.trials.values())
    assert outcome.iterations_of("t_00001") == 4  # not stopped by the STOP meant for t_00000


class PauseUntilNoMore(TrialScheduler):
    """Pauses every trial at its first report; resumes them only after on_no_more_trials."""

    def __init__(self) -> None:
        self.released = False
        self.calls: list[int] = []  # trials known at each on_no_more_trials
        self.known = 0

    def on_trial_add(self, trial: Trial) -> None:
        self.known += 1
        self.released = False

    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> TrialDecision:
        return PAUSE if result["training_iteration"] == 1 else CONTINUE

    def on_no_more_trials(self) -> None:
        self.calls.append(self.known)
        self.released = True

    def choose_trial_to_run(self, trials: list[Trial]) -> Trial | None:
        return trials[0] if self.released and trials else None


def test_no_more_trials_when_the_searcher_is_idle_and_trials_wait_paused() -> None:
    """A ConcurrencyLimiter counts paused trials as live, so it offers nothing while two
    trials wait paused and nothing runs: the Controller tells the scheduler that no more
    trials come (for now), and the experiment goes on instead of hanging."""
    configs = [{"x": i, "length": 2} for i in range(4)]
    scheduler = PauseUntilNoMore()
    searcher = ConcurrencyLimiter(ConfigList(configs), max_concurrent=2)
    outcome = Simulator(scheduler, searcher, score_x, length_of, concurrency=4).run()
    assert scheduler.calls[:2] == [2, 4]  # while the search was not over, twice
    assert len(outcome.trials) == 4
    assert all(t.status is TrialStatus.TERMINATED for t in outcome.trials.values())


def test_no_more_trials_comes_the_turn_after_the_search_ended() -> None:
    """As in the loop: new_trials finds the searcher FINISHED while launching, and the
    next turn's take_updates calls on_no_more_trials, after one drain."""
    scheduler = PauseUntilNoMore()
    outcome = Simulator(scheduler, [{"x": 1, "length": 2}], score_x, length_of).run()
    assert scheduler.calls == [1]
    # The trial pauses at 1 (time 1.0); the slot is free, so the loop asks the searcher,
    # which is FINISHED. The next turn (after 0.5 s of waiting) calls on_no_more_trials
    # and resumes the trial: its iteration 2 comes at 1.5 + 1.
    assert [(r.iteration, r.time) for r in outcome.reports] == [(1, 1.0), (2, 2.5)]


# The fake clock ----------------------------------------------------------------------


def test_fake_clock_runs_each_config_at_its_speed() -> None:
    """Reports come out of step at each config's seconds per iteration; the clock
    stops at the last event, and time_total_s is simulated time."""
    configs = [{"x": 1, "length": 3, "s": 1.0}, {"x": 2, "length": 2, "s": 2.5}]
    outcome = Simulator(
        FIFOScheduler(), configs, score_x, length_of, concurrency=2, speed=lambda c: c["s"]
    ).run()
    order = [(r.trial_id, r.iteration, r.time) for r in outcome.reports]
    assert order == [
        ("t_00000", 1, 1.0),
        ("t_00000", 2, 2.0),
        ("t_00001", 1, 2.5),
        ("t_00000", 3, 3.0),
        ("t_00001", 2, 5.0),
    ]
    assert outcome.time == 5.0
    assert outcome.trials["t_00001"].last_result["time_total_s"] == 5.0


def test_time_budget_s_stops_the_experiment_on_the_fake_clock() -> None:
    """The loop checks the budget each turn (every 0.5 s of waiting): at 5.5 >= 5.2 it
    winds down, and the running trial stops at its next report, 6."""
    outcome = Simulator(
        FIFOScheduler(), [{"x": 1, "length": 100}, {"x": 2}], score_x, length_of, time_budget_s=5.2
    ).run()
    assert outcome.stop_reason == "time_budget_s=5.2 was reached"
    assert outcome.decisions("t_00000")[-1] == (6, STOP)
    assert outcome.iterations == 6 and outcome.time == 6.0
    assert list(outcome.trials) == ["t_00000"]  # no trial starts after the budget
    assert outcome.trials["t_00000"].status is TrialStatus.TERMINATED


def test_stalled_after_the_idle_timeout_of_fake_time() -> None:
    """Trials paused for ever while nothing runs: the Controller's check_stuck raises
    after idle_timeout_s, which the fake clock reaches at once."""

    class NeverResume(TrialScheduler):
        def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> TrialDecision:
            return PAUSE

        def choose_trial_to_run(self, trials: list[Trial]) -> Trial | None:
            return None

    simulator = Simulator(
        NeverResume(), [{"x": 1}, {"x": 2}], score_x, length_of, concurrency=2, idle_timeout_s=12.0
    )
    with pytest.raises(Stalled, match="keeps 2 trials PAUSED"):
        simulator.run()
    assert simulator.clock.now >= 1.0 + 12.0


def test_stalled_when_the_searcher_never_offers_a_trial() -> None:
    class Silent(Searcher):
        ends_search_itself = True

        def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
            return None

    with pytest.raises(Stalled, match=r"Silent.suggest\(\) returned None"):
        Simulator(FIFOScheduler(), Silent(), score_x, length_of, idle_timeout_s=3.0).run()


# Budgets, stoppers, failures ----------------------------------------------------------


def test_iteration_budget_at_one_and_two_slots() -> None:
    configs, step, length = curve_step([[0.1 * t for t in range(1, 9)]] * 4)
    one = Simulator(FIFOScheduler(), configs, step, length, budget=10).run()
    assert one.iterations == 10 and one.stop_reason is not None
    assert one.decisions("t_00001")[-1] == (2, STOP)  # the report that spent the budget
    # Two slots: the other running trial stops at its next report, as in a wind-down.
    two = Simulator(FIFOScheduler(), configs, step, length, budget=10, concurrency=2).run()
    assert two.iterations == 11
    assert all(t.status is TrialStatus.TERMINATED for t in two.trials.values())


def test_stopper_is_the_controllers() -> None:
    """A stopper's STOP is not passed on to the scheduler (the Controller asks it first)."""
    seen: list[int] = []

    class Recording(FIFOScheduler):
        def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> TrialDecision:
            seen.append(result["training_iteration"])
            return CONTINUE

    outcome = Simulator(
        Recording(), [{"x": 1}], score_x, length_of, stopper=MaximumIterationStopper(2)
    ).run()
    assert outcome.decisions("t_00000") == [(1, CONTINUE), (2, STOP)]
    assert seen == [1]


def test_injected_error_is_retried_from_the_checkpoint_with_max_failures() -> None:
    outcome = Simulator(
        FIFOScheduler(), [{"x": 1}, {"x": 2}], score_x, length_of, errors={0: 3}, max_failures=1
    ).run()
    first = outcome.trials["t_00000"]
    assert first.status is TrialStatus.TERMINATED and first.num_failures == 1
    assert [r.iteration for r in outcome.reports if r.trial_id == "t_00000"] == [1, 2, 3, 4]
    assert outcome.iterations == 4 + 1 + 4  # the failed iteration counts


def test_injected_error_without_retries_errors_the_trial() -> None:
    outcome = Simulator(
        FIFOScheduler(), [{"x": 1}, {"x": 2}], score_x, length_of, errors={1: 2}
    ).run()
    assert outcome.trials["t_00001"].status is TrialStatus.ERROR
    assert "iteration 2" in outcome.trials["t_00001"].error_msg
    assert outcome.iterations_of("t_00001") == 1


def test_checkpoint_from_restores_another_trials_latest_checkpoint() -> None:
    """PBT's exploit: t_00001, paused at 2, continues from t_00000's latest checkpoint
    (at 6, where it ended: 6 iterations in its state) with a new config."""
    exploit = TrialUpdate(
        "t_00001", CONTINUE, new_config={"x": 7, "length": 8}, checkpoint_from="t_00000"
    )
    scheduler = Scripted({(1, 2): [exploit]}, pauses=frozenset({(1, 2)}))
    states: dict[tuple[float, int], Any] = {}

    def step(config: dict[str, Any], state: Any, iteration: int) -> tuple[Any, float]:
        states[(config["x"], iteration)] = state
        return (state or 0) + 1, float(config["x"])

    outcome = Simulator(
        scheduler, [{"x": 1, "length": 6}, {"x": 2, "length": 8}], step, length_of
    ).run()
    assert [r.iteration for r in outcome.reports if r.trial_id == "t_00001"] == [1, 2, 7, 8]
    assert states[(7, 7)] == 6
    assert outcome.trials["t_00001"].config == {"x": 7, "length": 8}


# Searchers -----------------------------------------------------------------------------


def test_configs_from_a_grid_search() -> None:
    searcher = BasicVariantGenerator(random_state=0)
    assert searcher.set_search_properties(None, None, {"x": grid_search([3, 1, 2])}, num_samples=1)
    outcome = Simulator(FIFOScheduler(), searcher, score_x, length_of).run()
    assert [t.config["x"] for t in outcome.trials.values()] == [3, 1, 2]
    assert outcome.best() == 3 and outcome.best("min") == 1


def test_a_searcher_that_never_ends_needs_num_samples() -> None:
    class Endless(Searcher):
        def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
            return {"x": 1, "length": 1}

    with pytest.raises(ValueError, match="Pass num_samples=N"):
        Simulator(FIFOScheduler(), Endless(), score_x, length_of)
    outcome = Simulator(FIFOScheduler(), Endless(), score_x, length_of, num_samples=3).run()
    assert len(outcome.trials) == 3


def test_a_simulator_runs_once() -> None:
    simulator = Simulator(FIFOScheduler(), [{"x": 1}], score_x, length_of)
    simulator.run()
    with pytest.raises(RuntimeError, match="runs one experiment"):
        simulator.run()
