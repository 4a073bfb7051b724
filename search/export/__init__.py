"""Export a finished search's best (or a chosen) trial as a self-contained model folder.

The folder is what leaves the project: ``model.safetensors`` (the trial's weights, copied
byte for byte), ``config.json`` (how to rebuild and feed the model, its threshold and the
exact training data by manifest hash), ``metrics.json``, ``model.onnx`` (checked against
PyTorch before it is kept) and a model card ``README.md`` saying what the numbers mean and
where they stop meaning it.

Two things are fitted on the checkpoint's saved validation predictions, never on test: a
temperature ``T`` (``p_calibrated = sigmoid(logit / T)``, applied by ``predict``) and, for
each ``target_fpr`` asked for, the threshold with the highest validation TPR at FPR <= the
target. The card states each threshold's validation and test figures; test predictions come
from the search's test evaluation, or are made once here (and kept in the checkpoint).

This package is the public face; each concern is one module behind it:

- :mod:`.choose`: which trial (best by a validation metric, or by id) and its checkpoint;
- :mod:`.calibration`: the temperature fitted on validation;
- :mod:`.operating`: the threshold for each target false-positive rate;
- :mod:`.predictions`: the validation and test predictions both are fitted and judged on;
- :mod:`.describe`: ``config.json``; :mod:`.card`: the model card ``README.md``;
- :mod:`.onnx`: the ONNX twin and the reload check; :mod:`.install`: ``--out``, checked
  and written; :mod:`.build`: :func:`export_model`, the steps in order.

Import from ``search.export``: the modules behind it may move.
"""

from search.export.build import EXPORT_DIR, export_model
from search.export.calibration import CALIBRATION_METHOD, calibrate
from search.export.card import model_card
from search.export.choose import TRIAL_COLUMNS, choose_trial, load_experiment, load_trials
from search.export.describe import THRESHOLD_RULE
from search.export.install import CARD, METRICS_FILE, OWNED
from search.export.operating import operating_point
from search.export.predictions import fetch_test_predictions

# The CLI prints this module's ExportError as a user error (search.cli.USER_ERRORS).
from search.model.onnx import ExportError

__all__ = ["CALIBRATION_METHOD", "CARD", "EXPORT_DIR", "METRICS_FILE", "OWNED",
           "THRESHOLD_RULE", "TRIAL_COLUMNS", "ExportError", "calibrate", "choose_trial",
           "export_model", "fetch_test_predictions", "load_experiment", "load_trials",
           "model_card", "operating_point"]
