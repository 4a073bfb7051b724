"""TensorBoard gets every metric of every epoch, while Tune's driver keeps statistics of a few.

A search's trial reports most of its epoch packed into one string
(:mod:`search.train.record`); :class:`TensorBoardLogger`, Tune's own TensorBoard logger with
that string unpacked, writes the whole record, so TensorBoard shows EER, AP, precision,
recall, ... as before.
"""

from __future__ import annotations

from typing import Any

from ray.tune.logger import TBXLoggerCallback

from search.train.record import unpack

__all__ = ["TensorBoardLogger", "tensorboard_logger"]


class TensorBoardLogger(TBXLoggerCallback):
    """Tune's TensorBoard logger, with the packed record unpacked into scalars."""

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        super().log_trial_result(iteration, trial, unpack(result))


def tensorboard_logger() -> list[Any]:
    """The search's TensorBoard logger (it takes the place of Tune's default one); none where
    tensorboardX is missing, as with Tune's."""
    try:
        return [TensorBoardLogger()]
    except ImportError:
        return []
