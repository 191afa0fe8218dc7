"""data.options.classes: a class subset relabelled 0..n-1 (disjoint tasks for ticket transfer)."""
from __future__ import annotations

import pytest
import torch

from sparsetime.data import build_datasets


def test_classes_keep_only_those_examples_relabelled_in_list_order():
    full = build_datasets("synthetic", num_classes=4, train_size=64, test_size=32)
    part = build_datasets("synthetic", num_classes=4, train_size=64, test_size=32, classes=[3, 1])
    assert part.num_classes == 2
    for whole, sub in ((full.train, part.train), (full.test, part.test)):
        chosen = (whole.labels == 3) | (whole.labels == 1)
        assert torch.equal(sub.images, whole.images[chosen])
        assert torch.equal(sub.labels, torch.where(whole.labels[chosen] == 3, 0, 1))


@pytest.mark.parametrize("classes", [[1], [1, 1], [0, 4], "01"])
def test_bad_classes_are_refused(classes):
    with pytest.raises(ValueError, match="data.options.classes .* is invalid; allowed: a list of at least two"):
        build_datasets("synthetic", num_classes=4, train_size=64, test_size=32, classes=classes)
