"""A one-page HTML report of a finished search, to look at rather than read.

``write_report(results_dir)`` writes ``<results>/report/report.html`` and the PNG figures it
shows beside it: the leaderboard, the finalists' confusion matrices, ROC and
precision-recall curves (validation and test), learning curves of the top trials, Optuna's
parameter importances, a slice plot of the search and, when ``deepfake-search evaluate
--cross`` wrote one, the cross-dataset matrix. It loads neither torch nor Ray.

- :mod:`~search.report.results`: reads the results folder once;
- :mod:`~search.report.sections`: one builder per section;
- :mod:`~search.report.figures`: the matplotlib figures;
- :mod:`~search.report.markup`: HTML pieces and tables rendered from DataFrames;
- :mod:`~search.report.cross`: the cross-dataset matrix as tables;
- :mod:`~search.report.page`: the page (``report.css`` is package data) and ``write_report``.
"""

from search.formats import REPORT_DIR, REPORT_FILE
from search.report.page import write_report

__all__ = ["REPORT_DIR", "REPORT_FILE", "write_report"]
