"""Detector metrics on hand-checked arrays (DEEPFAKE = 1 is the positive class)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from search.train.metrics import (
    best_f1_threshold,
    confusion,
    detector_metrics,
    eer,
    expected_calibration_error,
    fit_temperature,
    fpr_at_tpr,
    logit,
    majority_baseline,
    threshold_at_fpr,
    threshold_metrics,
    tpr_at_fpr,
)

# 8 samples, 4 REAL then 4 FAKE. At 0.5 the predictions are 0 1 0 0 | 1 1 1 0:
#   REAL: 0.1 -> TN, 0.6 -> FP, 0.2 -> TN, 0.4 -> TN        => tn=3, fp=1
#   FAKE: 0.9 -> TP, 0.7 -> TP, 0.5 -> TP (>=), 0.3 -> FN   => tp=3, fn=1
Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
P = np.array([0.1, 0.6, 0.2, 0.4, 0.9, 0.7, 0.5, 0.3])


def test_confusion_counts_by_hand() -> None:
    pred = (P >= 0.5).astype(int)
    assert confusion(Y, pred) == {"tp": 3, "tn": 3, "fp": 1, "fn": 1}
    assert all(type(v) is int for v in confusion(Y, pred).values())


def test_threshold_metrics_by_hand() -> None:
    m = threshold_metrics(Y, P)
    # precision = 3/(3+1) = 0.75, recall = 3/(3+1) = 0.75, F1 = 0.75,
    # specificity = 3/(3+1) = 0.75, accuracy = 6/8, balanced = (0.75+0.75)/2
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(0.75)
    assert m["specificity"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    assert (m["tp"], m["tn"], m["fp"], m["fn"]) == (3, 3, 1, 1)
    # At 0.65: FAKE 0.9, 0.7 -> TP; 0.5, 0.3 -> FN; every REAL -> TN.
    # precision 2/2 = 1, recall 2/4 = 0.5, F1 = 2*1*0.5/1.5 = 2/3, specificity 1, acc 6/8.
    m = threshold_metrics(Y, P, threshold=0.65)
    assert (m["tp"], m["tn"], m["fp"], m["fn"]) == (2, 4, 0, 2)
    assert m["precision"] == 1.0 and m["recall"] == 0.5
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["specificity"] == 1.0
    assert m["balanced_accuracy"] == pytest.approx(0.75)


def test_zero_division_gives_zero() -> None:
    # Threshold above every score: nothing predicted FAKE -> tp = fp = 0, precision 0/0.
    m = threshold_metrics(Y, P, threshold=0.95)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    assert m["accuracy"] == 0.5 and m["specificity"] == 1.0


def test_auc_perfect_and_reversed() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.8, 0.9])
    assert detector_metrics(y, p)["auc"] == 1.0
    assert detector_metrics(y, 1.0 - p)["auc"] == 0.0
    assert detector_metrics(y, p)["ap"] == 1.0


def test_eer_perfect_separator_is_zero() -> None:
    assert eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0


def test_eer_by_hand() -> None:
    # Sorted scores 0.9(F) 0.6(R) 0.4(F) 0.1(R); at threshold 0.6 one FAKE is caught and one
    # REAL is flagged: FPR = 1/2, FNR = 1/2 -> EER = 0.5 on a ROC point.
    assert eer([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9]) == pytest.approx(0.5)
    # Sorted 0.7(R) 0.6(F) 0.2(R) 0.1(R). ROC (fpr, fnr): (0, 1) (1/3, 1) (1/3, 0) ...
    # FNR drops from 1 to 0 while FPR stays 1/3, so the lines cross at FPR = FNR = 1/3.
    assert eer([0, 1, 0, 0], [0.1, 0.6, 0.2, 0.7]) == pytest.approx(1 / 3)


def test_eer_interpolates_between_roc_points() -> None:
    # Sorted 0.8(F) 0.7(R) 0.6(R) 0.3(F). ROC (fpr, fnr): (0,1) (0,1/2) (1/2,1/2) (1,1/2)
    # (1,0). At (1/2, 1/2) the rates already meet: EER = 0.5.
    assert eer([1, 0, 0, 1], [0.8, 0.7, 0.6, 0.3]) == pytest.approx(0.5)
    # 2 REAL, 1 FAKE, scores 0.9(R) 0.5(F) 0.1(R). ROC (fpr, fnr): (0,1) (1/2,1) (1/2,0)
    # (1,0). FNR - FPR goes 1/2 -> -1/2 on the vertical segment at FPR = 1/2: EER = 1/2.
    assert eer([0, 1, 0], [0.9, 0.5, 0.1]) == pytest.approx(0.5)
    # A diagonal segment (tied scores): 0.5 shared by 1 REAL and 1 FAKE, then 0.9(F) 0.1(R).
    # ROC: (0,1) (0,1/2) (1/2,0) (1,0). Between (0,1/2) and (1/2,0): FNR = 1/2 - FPR, so
    # FPR = FNR at 1/4.
    assert eer([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]) == pytest.approx(0.25)


def test_best_f1_threshold_by_hand() -> None:
    # Candidate thresholds (predict FAKE if p >= t) on Y, P:
    #   t=0.5: tp 3 fp 1 fn 1 -> F1 6/8 = 0.75
    #   t=0.3: tp 4 fp 2 fn 0 -> F1 8/10 = 0.8   <- best
    #   t=0.1: tp 4 fp 4 fn 0 -> F1 8/12 = 0.667
    #   t=0.7: tp 2 fp 0 fn 2 -> F1 4/6 = 0.667
    assert best_f1_threshold(Y, P) == pytest.approx(0.3)


def test_majority_baseline_one_to_two() -> None:
    # 1 REAL : 2 FAKE -> always FAKE: tp 2, fp 1, fn 0.
    b = majority_baseline([0, 1, 1])
    assert b["accuracy"] == pytest.approx(2 / 3)
    assert b["precision"] == pytest.approx(2 / 3)
    assert b["recall"] == 1.0
    assert b["f1"] == pytest.approx(0.8)
    # 2 REAL : 1 FAKE -> always REAL: nothing flagged, precision/recall/F1 = 0.
    b = majority_baseline([0, 0, 1])
    assert b == {"accuracy": pytest.approx(2 / 3), "precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_detector_metrics_flat_dict() -> None:
    m = detector_metrics(Y, P)
    expected = set(
        "n positive_rate accuracy precision recall f1 specificity balanced_accuracy tp tn fp fn"
        " auc ap eer log_loss threshold baseline_accuracy baseline_precision baseline_recall"
        " baseline_f1 ece tpr_at_fpr_1pct tpr_at_fpr_5pct fpr_at_tpr_95pct".split()
    )
    assert expected <= set(m)
    at = {k for k in m if k.endswith("_at_threshold")}
    assert {"accuracy_at_threshold", "f1_at_threshold", "tp_at_threshold"} <= at
    assert m["n"] == 8 and m["positive_rate"] == 0.5
    assert m["threshold"] == pytest.approx(0.3)
    assert m["f1_at_threshold"] == pytest.approx(0.8)
    assert m["f1"] == pytest.approx(0.75)
    # 16 (REAL, FAKE) pairs; FAKE scored higher in 13: AUC = 13/16.
    assert m["auc"] == pytest.approx(13 / 16)
    assert m["baseline_accuracy"] == 0.5
    # Ranked 0.9F 0.7F 0.6R 0.5F 0.4R 0.3F 0.2R 0.1R, 4 REAL: at FPR <= 1% or 5% (no false
    # positive allowed) 0.9 and 0.7 are caught, TPR 2/4; TPR >= 95% needs all four FAKEs, down
    # to 0.3, which flags 0.6 and 0.4 too: FPR 2/4. ECE: every score alone in its 1/15 bin,
    # so the mean |label - p| = (.1 + .4 + .2 + .6 + .3 + .5 + .7 + .1) / 8 (REALs, FAKEs).
    assert (m["tpr_at_fpr_1pct"], m["tpr_at_fpr_5pct"], m["fpr_at_tpr_95pct"]) == (0.5, 0.5, 0.5)
    assert m["ece"] == pytest.approx(2.9 / 8)
    for k, v in m.items():
        assert type(v) in (int, float), k
    for k in ("tp", "tn", "fp", "fn", "n", "tp_at_threshold"):
        assert type(m[k]) is int
    json.dumps(m)  # Tune/JSON friendly


def test_detector_metrics_given_threshold() -> None:
    m = detector_metrics(Y, P, threshold=0.65)
    assert m["threshold"] == 0.65
    assert (m["tp_at_threshold"], m["fp_at_threshold"]) == (2, 0)
    assert m["precision_at_threshold"] == 1.0


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_is_nan_not_an_error(label: int) -> None:
    y = np.full(4, label)
    p = np.array([0.2, 0.4, 0.6, 0.8])
    m = detector_metrics(y, p)
    assert math.isnan(m["auc"]) and math.isnan(m["ap"]) and math.isnan(m["eer"])
    for k in ("tpr_at_fpr_1pct", "tpr_at_fpr_5pct", "fpr_at_tpr_95pct"):
        assert math.isnan(m[k]), k
    # Calibration needs no second class: |mean label - p| per bin, (0.2+0.4+0.6+0.8)/4 apart.
    assert m["ece"] == pytest.approx(abs(label - 0.5))
    assert math.isfinite(m["log_loss"])
    assert math.isfinite(m["threshold"])
    assert m["accuracy"] == 0.5
    assert m["baseline_accuracy"] == 1.0
    assert m["positive_rate"] == float(label)


def test_log_loss_clips_hard_probabilities() -> None:
    # Confidently wrong 0/1 probabilities would be infinite without clipping.
    m = detector_metrics([0, 1, 0, 1], [1.0, 0.0, 0.0, 1.0])
    assert math.isfinite(m["log_loss"]) and m["log_loss"] > 1.0
    m = detector_metrics([0, 1], [0.0, 1.0])
    assert 0.0 <= m["log_loss"] < 1e-5


def test_bad_inputs_raise_clearly() -> None:
    with pytest.raises(ValueError, match="empty"):
        detector_metrics([], [])
    with pytest.raises(ValueError, match="sigmoid"):
        detector_metrics([0, 1], [-2.0, 3.0])  # logits, not probabilities
    with pytest.raises(ValueError, match="0 \\(REAL\\) and 1"):
        threshold_metrics([0, 2], [0.1, 0.9])
    with pytest.raises(ValueError, match="2 values"):
        detector_metrics([0, 1, 1], [0.1, 0.9])


def test_ap_and_log_loss_by_hand() -> None:
    """Scores ranked 0.8 (REAL), 0.4 (FAKE), 0.35 (FAKE), 0.1 (REAL): the FAKEs are found at
    precision 1/2 and 2/3, so AP = (1/2 + 2/3) / 2; log loss = -mean(log p of the truth)."""
    y = [0, 1, 1, 0]
    p = [0.1, 0.4, 0.35, 0.8]
    m = detector_metrics(y, p)
    assert m["ap"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    expected = -(math.log(0.9) + math.log(0.4) + math.log(0.35) + math.log(0.2)) / 4
    assert m["log_loss"] == pytest.approx(expected)
    assert m["auc"] == pytest.approx(0.5)  # 2 of the 4 (FAKE, REAL) pairs ranked right


# ------------------------------------------------------------------ operating points
def test_operating_points_by_hand() -> None:
    """Y, P ranked 0.9F 0.7F 0.6R 0.5F 0.4R 0.3F 0.2R 0.1R (4 REAL, 4 FAKE). Rules
    ``p >= t``, (FP, TP): inf (0,0), 0.9 (0,1), 0.7 (0,2), 0.6 (1,2), 0.5 (1,3), 0.4 (2,3),
    0.3 (2,4), 0.2 (3,4), 0.1 (4,4)."""
    assert tpr_at_fpr(Y, P, 0.0) == 0.5 and threshold_at_fpr(Y, P, 0.0) == 0.7
    assert tpr_at_fpr(Y, P, 0.25) == 0.75 and threshold_at_fpr(Y, P, 0.25) == 0.5  # 1 FP of 4
    assert tpr_at_fpr(Y, P, 0.49) == 0.75  # 2 FPs would be 0.5 > 0.49: no interpolation
    assert tpr_at_fpr(Y, P, 0.5) == 1.0 and threshold_at_fpr(Y, P, 0.5) == 0.3
    assert tpr_at_fpr(Y, P, 1.0) == 1.0
    assert fpr_at_tpr(Y, P, 0.95) == 0.5 and fpr_at_tpr(Y, P, 0.75) == 0.25
    assert fpr_at_tpr(Y, P, 0.5) == 0.0 and fpr_at_tpr(Y, P, 0.0) == 0.0
    # The threshold found on these labels gives back the FPR and TPR it promised.
    m = threshold_metrics(Y, P, threshold_at_fpr(Y, P, 0.25))
    assert (m["fp"] / 4, m["recall"]) == (0.25, 0.75)


def test_operating_points_with_ties() -> None:
    """A REAL and a FAKE tied at the top score: one threshold flags both or neither.
    Rules (FP, TP) of 2 REAL / 3 FAKE: inf (0,0), 0.8 (1,1), 0.6 (1,2), 0.3 (2,2), 0.2 (2,3)."""
    y, p = [0, 1, 1, 0, 1], [0.8, 0.8, 0.6, 0.3, 0.2]
    assert tpr_at_fpr(y, p, 0.0) == 0.0
    assert threshold_at_fpr(y, p, 0.0) == math.inf  # only flagging nothing has no FP
    assert tpr_at_fpr(y, p, 0.5) == pytest.approx(2 / 3) and threshold_at_fpr(y, p, 0.5) == 0.6
    assert fpr_at_tpr(y, p, 1 / 3) == 0.5  # the tie forces the false positive
    assert fpr_at_tpr(y, p, 0.95) == 1.0 and fpr_at_tpr(y, p, 0.5) == 0.5
    # Exact rates on the boundary count as met: 1 of 20 REALs is FPR 0.05.
    y20 = [0] * 20 + [1] * 2
    p20 = [0.9] + [0.1] * 19 + [0.5, 0.8]
    assert tpr_at_fpr(y20, p20, 0.05) == 1.0 and tpr_at_fpr(y20, p20, 0.0499) == 0.0


@pytest.mark.parametrize("label", [0, 1])
def test_operating_points_need_both_classes(label: int) -> None:
    y, p = [label] * 3, [0.2, 0.5, 0.9]
    for value in (tpr_at_fpr(y, p, 0.05), fpr_at_tpr(y, p, 0.95), threshold_at_fpr(y, p, 0.01),
                  fit_temperature(y, [-1.0, 0.0, 2.0])):
        assert math.isnan(value)


def test_operating_point_targets_are_rates() -> None:
    for bad in (-0.1, 1.5, math.nan, "0.05", None):
        with pytest.raises(ValueError, match="rate between 0 and 1"):
            tpr_at_fpr(Y, P, bad)
    with pytest.raises(ValueError, match="tpr must be"):
        fpr_at_tpr(Y, P, 95)
    with pytest.raises(ValueError, match="sigmoid"):
        threshold_at_fpr(Y, P * 10, 0.01)


# ------------------------------------------------------------------ calibration
def test_ece_by_hand() -> None:
    # Two bins, [0, .5) and [.5, 1]: {0.1 R, 0.2 F} has FAKE share 0.5 and mean p 0.15, and
    # {0.8 F, 0.9 R} 0.5 and 0.85; each holds half the samples: ECE = (0.35 + 0.35) / 2.
    assert expected_calibration_error([0, 1, 1, 0], [0.1, 0.2, 0.8, 0.9], bins=2) == pytest.approx(0.35)
    # Calibrated by construction: in each bin the FAKE share equals the mean p_fake.
    y = [0, 0, 0, 1, 1, 1, 1, 0]
    p = [0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75]
    assert expected_calibration_error(y, p, bins=2) == pytest.approx(0.0)
    # p = 1.0 falls in the last bin (not an extra one); with one bin ECE is the gap of the
    # means: |2/4 - (0 + .5 + 1 + 1)/4| = 1/8.
    assert expected_calibration_error([0, 1, 1], [0.0, 1.0, 1.0], bins=2) == 0.0
    assert expected_calibration_error([0, 1, 1, 0], [0.0, 0.5, 1.0, 1.0], bins=1) == pytest.approx(0.125)
    with pytest.raises(ValueError, match="bins"):
        expected_calibration_error(Y, P, bins=0)


def test_fit_temperature_by_hand() -> None:
    """Logit +2 is FAKE 3 times in 4 and logit -2 REAL 3 times in 4: the NLL is least where
    sigmoid(2 / T) = 3/4, i.e. T = 2 / ln 3."""
    z = np.array([2.0, 2, 2, 2, -2, -2, -2, -2])
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    t = fit_temperature(y, z)
    assert t == pytest.approx(2 / math.log(3), rel=1e-6)
    assert 1 / (1 + math.exp(-2 / t)) == pytest.approx(0.75, rel=1e-6)
    # Over-confident logits (x10) are cooled by 10; a separable split goes to the lower bound.
    assert fit_temperature(y, 10 * z) == pytest.approx(10 * t, rel=1e-6)
    assert fit_temperature([0, 1], [-1.0, 1.0]) == pytest.approx(0.01, rel=1e-6)
    with pytest.raises(ValueError, match="NaN or inf"):
        fit_temperature([0, 1], [0.0, math.inf])


def test_logit_inverts_sigmoid_and_clips() -> None:
    z = np.array([-5.0, 0.0, 3.0])
    np.testing.assert_allclose(logit(1 / (1 + np.exp(-z))), z, atol=1e-12)
    assert logit([1.0])[0] == pytest.approx(math.log((1 - 1e-7) / 1e-7))
