"""search.model.inference: the one scoring step of validation, evaluation and the perturbed
scoring. No Ray: ``predict_split`` reads any object with Ray Data's ``iter_batches``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from search.data.stream import Normalize
from search.model.inference import gather, predict_split, score_batch
from search.model.registry import create_model

CPU = torch.device("cpu")
NORMALIZE = Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


class _Split:
    """A split as Ray Data hands it out: numpy batches of ``image``, ``label`` and ``id``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, ids: list[str]) -> None:
        self.images, self.labels, self.ids = images, labels, np.asarray(ids)

    def iter_batches(self, *, batch_size: int, **_: Any) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, len(self.ids), batch_size):
            yield {"image": self.images[i:i + batch_size], "label": self.labels[i:i + batch_size],
                   "id": self.ids[i:i + batch_size]}


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("custom_cnn", input_size=16, conv_blocks=1, base_width=4,
                        dense_units=0).eval()


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


def test_score_batch_is_the_sigmoid_of_the_models_logit() -> None:
    model, images = _model(), _images(3)
    p = score_batch(model, images, device=CPU, normalize=NORMALIZE)
    with torch.no_grad():
        expected = torch.sigmoid(model(NORMALIZE(images)).reshape(-1)).numpy()
    assert p.dtype == np.float64 and p.shape == (3,)
    np.testing.assert_allclose(p, expected, rtol=1e-6)


def test_predict_split_sorts_by_id_whatever_the_batches() -> None:
    """Rows come back in id order with their own label and score, batch size aside."""
    model, images = _model(), _images(5)
    ids = ["e", "a", "d", "b", "c"]
    labels = np.array([1, 0, 1, 0, 1])
    alone = score_batch(model, images, device=CPU, normalize=NORMALIZE)
    for batch_size in (2, 5):
        got_ids, got_labels, probs = predict_split(model, _Split(images, labels, ids),
                                                   batch_size=batch_size, device=CPU,
                                                   normalize=NORMALIZE)
        order = np.argsort(ids)
        assert got_ids == sorted(ids)
        assert got_labels.dtype == np.int64 and got_labels.tolist() == labels[order].tolist()
        np.testing.assert_allclose(probs, alone[order], rtol=1e-6)


def test_an_empty_split_gives_empty_arrays() -> None:
    empty = _Split(_images(0), np.zeros(0, np.int64), [])
    ids, labels, probs = predict_split(_model(), empty, batch_size=4, device=CPU,
                                       normalize=NORMALIZE)
    assert ids == [] and labels.size == 0 and probs.size == 0


def test_gather_is_the_identity_outside_distributed_training() -> None:
    assert gather([1, 2]) == [1, 2]
