"""A one-page HTML report of a finished search, to look at rather than read.

``write_report(results_dir)`` writes ``<results>/report/report.html`` and the PNG figures it
shows beside it: the leaderboard, the finalists' confusion matrices, ROC and
precision-recall curves (validation and test), learning curves of the top trials, Optuna's
parameter importances, a slice plot of the search and, when ``deepfake-search evaluate
--cross`` wrote one, the cross-dataset matrix. It loads neither torch nor Ray; names are
imported on first use, so ``search.evaluate.matrix`` alone costs only pandas.

- :mod:`~search.report.results`: reads the results folder once;
- :mod:`~search.report.sections`: one builder per section;
- :mod:`~search.report.figures`: the matplotlib figures;
- :mod:`~search.report.markup`: HTML pieces and tables rendered from DataFrames;
- :mod:`~search.evaluate.matrix`: the cross-dataset matrix as tables;
- :mod:`~search.report.page`: the page (``report.css`` is package data) and ``write_report``.
"""

from search._lazy import lazy_exports

_EXPORTS = {
    "REPORT_DIR": "search.filenames",
    "REPORT_FILE": "search.filenames",
    "write_report": "search.report.page",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
