"""What a search shows on the console: one line per trial event (:class:`ProgressPrinter`)
instead of Tune's status tables, and the filters that keep two of Tune's log lines out of
it (its "resume with Tuner.restore" notice: the CLI prints this project's resume command;
its "Failed to fetch metrics" warnings: the tables name any missing epoch themselves).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ray.tune import Callback

from search import catalog
from search.catalog import LATENCY_MS


class ProgressPrinter:
    """One concise line per trial event, instead of Tune's full status tables.

    Every line starts with where the search stands: time since this driver started, trials
    ended out of the total, and the best value of the metric so far, so that a long search
    can be read from any line of its log. Both are kept up to date per event (read from
    every trial once per driver, then O(1) a line: issue 29's flat start rate).
    """
    ENDED = ("TERMINATED", "ERROR")

    def __init__(self, metric: str, mode: str, max_epochs: int, total: int):
        # No stream or class object kept: the Tuner pickles its callbacks with the experiment.
        self.metric, self.mode = metric, mode
        self.max_epochs, self.total = max_epochs, total
        self.t0 = time.monotonic()
        self.resumed = False
        self._forget()

    def _forget(self) -> None:
        self.synced, self.done, self.best_value = False, set(), None

    def __getstate__(self) -> dict[str, Any]:
        # A monotonic clock means nothing in another process: a resumed driver restarts it.
        return {k: v for k, v in self.__dict__.items() if k != "t0"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.t0, self.resumed = time.monotonic(), True
        self._forget()  # read again from the restored trials

    def _sync(self, trials: Sequence[Any]) -> None:
        """Trials ended and the best value so far, from every trial: once per driver."""
        if self.synced:
            return
        self.synced = True
        self.done = {t.trial_id for t in trials if t.status in self.ENDED}
        self.best_value = self.best(trials)

    def _offer(self, value: Any) -> None:
        """Take a newly reported value of the metric into the best so far."""
        if not isinstance(value, int | float) or value != value:
            return
        old = self.best_value
        if old is None or (value > old if self.mode == "max" else value < old):
            self.best_value = float(value)

    def callback(self) -> Any:
        """A real ``ray.tune.Callback`` bound to this printer."""
        printer = self

        class _Callback(Callback):
            def setup(self, **info):
                if printer.resumed:
                    print("resumed: the clock restarts at 0; trials ended before the "
                          "interruption count in 'done'", flush=True)

            def on_trial_start(self, iteration, trials, trial, **info):
                printer.line(trials, trial, "started " + printer.params(trial.config))

            def on_trial_result(self, iteration, trials, trial, result, **info):
                printer.line(trials, trial,
                             f"epoch {result.get('epoch', '?')}/{printer.budget(trial)}  "
                             f"{printer.metric} {printer.num(result.get(printer.metric))}  "
                             f"f1 {printer.num(result.get(catalog.val(catalog.F1)))}  "
                             f"loss {printer.num(result.get(catalog.TRAIN_LOSS))}"
                             + printer.cost(result), latest=result.get(printer.metric))

            def on_trial_complete(self, iteration, trials, trial, **info):
                last = trial.last_result or {}
                epochs = last.get("epoch", 0)
                how = "finished" if epochs >= printer.budget(trial) else "stopped early (ASHA)"
                printer.line(trials, trial, f"{how} after {epochs} epoch(s), "
                             f"{printer.metric} {printer.num(last.get(printer.metric))}",
                             ended=trial)

            def on_trial_error(self, iteration, trials, trial, **info):
                printer.line(trials, trial, f"FAILED: see {trial.local_path}/error.txt",
                             ended=trial)

        return _Callback()

    def budget(self, trial: Any) -> int:
        """The trial's own epoch budget when the space searches ``epochs``, else the search's."""
        return trial.config.get("epochs", self.max_epochs)

    def best(self, trials: Sequence[Any], latest: Any = None) -> float | None:
        """The best value of the metric any trial has reported (Tune keeps each one's)."""
        values = [t.metric_analysis.get(self.metric, {}).get(self.mode) for t in trials]
        values = [float(v) for v in [*values, latest] if isinstance(v, int | float) and v == v]
        if not values:
            return None
        return max(values) if self.mode == "max" else min(values)

    def status(self, trials: Sequence[Any], ended: Any = None, latest: Any = None) -> str:
        """``h:mm:ss  done/total  best value``: where the whole search stands."""
        self._sync(trials)
        if ended is not None:
            self.done.add(ended.trial_id)
        self._offer(latest)
        elapsed = int(time.monotonic() - self.t0)
        clock = f"{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}"
        best = self.best_value
        return (f"{clock}  {len(self.done)}/{self.total} done  "
                f"best {'-' if best is None else f'{best:.4f}'}")

    def line(self, trials: Sequence[Any], trial: Any, text: str, *, ended: Any = None,
             latest: Any = None) -> None:
        print(f"[{self.status(trials, ended, latest)}] {trial.trial_id}  {text}",
              file=sys.stdout, flush=True)

    @staticmethod
    def cost(result: dict[str, Any]) -> str:
        """``  latency 0.12 ms`` when the trial measured it (an objective), else ``""``."""
        value = result.get(LATENCY_MS)
        return f"  latency {value:.3g} ms" if isinstance(value, int | float) else ""

    @staticmethod
    def num(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    @staticmethod
    def params(config: dict[str, Any]) -> str:
        keys = ("arch", "ratio", "lr", "batch_size")
        return ", ".join(f"{k}={ProgressPrinter.num(config[k]) if k != 'lr' else f'{config[k]:.2e}'}"
                         for k in keys if k in config)


class TuneInterruptFilter(logging.Filter):
    """Swallows Tune's "Resume experiment with: Tuner.restore(...)" (this project resumes
    with ``deepfake-search run ... --resume``, which the CLI prints) and remembers it."""
    PREFIX = "Experiment has been interrupted"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bool] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(self.PREFIX):
            self.seen.append(True)
            return False
        return True


class _TuneLogFilter(logging.Filter):
    """Drops Tune's "Failed to fetch metrics for N trial(s)" (no result.json/progress.csv):
    the tables read each trial's own history files, and name any epoch missing there."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to fetch metrics")


@contextlib.contextmanager
def without_tune_log_warning() -> Iterator[None]:
    """Within: Tune's "Failed to fetch metrics" warnings are dropped (:class:`_TuneLogFilter`)."""
    log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    quiet = _TuneLogFilter()
    log.addFilter(quiet)
    try:
        yield
    finally:
        log.removeFilter(quiet)


__all__ = ["ProgressPrinter", "TuneInterruptFilter", "without_tune_log_warning"]
