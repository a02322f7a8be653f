"""HarMA losses against values worked out by hand on 2-3 rows."""

from __future__ import annotations

import math

import pytest
import torch

from harma_core.losses import (
    FocalTripletLoss,
    HarmaLoss,
    LossInputError,
    MultiPositiveInfoNCE,
    multi_positive_targets,
)


def scores_as_features(scores: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Image rows = identity, text rows = scores^T, so that I @ T^T is exactly `scores` (math check only)."""
    s = torch.tensor(scores, dtype=torch.float64)
    return torch.eye(len(scores), dtype=torch.float64), s.t().clone().requires_grad_(True)


def test_multi_positive_targets_spread_evenly() -> None:
    got = multi_positive_targets(torch.tensor([3, 3, 7, 3]))
    third = 1 / 3
    want = torch.tensor([[third, third, 0, third],
                         [third, third, 0, third],
                         [0, 0, 1, 0],
                         [third, third, 0, third]])
    torch.testing.assert_close(got, want)


def test_infonce_single_positive_by_hand() -> None:
    # S = [[0.8, 0.2], [0.1, 0.6]], tau = 0.5 -> logits [[1.6, 0.4], [0.2, 1.2]]
    image, text = scores_as_features([[0.8, 0.2], [0.1, 0.6]])
    loss = MultiPositiveInfoNCE(temperature=0.5).double()(image, text, torch.tensor([0, 1]))
    i2t = (-math.log(math.exp(1.6) / (math.exp(1.6) + math.exp(0.4)))
           - math.log(math.exp(1.2) / (math.exp(0.2) + math.exp(1.2)))) / 2
    t2i = (-math.log(math.exp(1.6) / (math.exp(1.6) + math.exp(0.2)))
           - math.log(math.exp(1.2) / (math.exp(0.4) + math.exp(1.2)))) / 2
    assert loss.item() == pytest.approx((i2t + t2i) / 2, rel=1e-12)
    # on paper: (ln(1+e^-1.2) + ln(1+e^-1.0)) / 2 = 0.28827, (ln(1+e^-1.4) + ln(1+e^-0.8)) / 2 = 0.29576
    assert loss.item() == pytest.approx((0.28827 + 0.29576) / 2, abs=1e-5)


def test_infonce_multi_positive_by_hand() -> None:
    # captions 0 and 1 describe the same image (rows repeated), caption 2 another; tau = 1
    s = [[0.9, 0.5, 0.1],
         [0.9, 0.5, 0.1],
         [0.2, 0.3, 0.8]]
    image, text = scores_as_features(s)
    loss = MultiPositiveInfoNCE(temperature=1.0).double()(image, text, torch.tensor([4, 4, 9]))

    def log_softmax(row: list[float], k: int) -> float:
        return row[k] - math.log(sum(math.exp(v) for v in row))

    cols = [[s[i][j] for i in range(3)] for j in range(3)]
    i2t = [-(0.5 * log_softmax(s[0], 0) + 0.5 * log_softmax(s[0], 1)),
           -(0.5 * log_softmax(s[1], 0) + 0.5 * log_softmax(s[1], 1)),
           -log_softmax(s[2], 2)]
    t2i = [-(0.5 * log_softmax(cols[0], 0) + 0.5 * log_softmax(cols[0], 1)),
           -(0.5 * log_softmax(cols[1], 0) + 0.5 * log_softmax(cols[1], 1)),
           -log_softmax(cols[2], 2)]
    assert loss.item() == pytest.approx((sum(i2t) / 3 + sum(t2i) / 3) / 2, rel=1e-12)


def test_temperature_is_learnable_and_clamped() -> None:
    loss_fn = MultiPositiveInfoNCE()
    assert loss_fn.temperature.item() == pytest.approx(0.07)
    feats = torch.nn.functional.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    ids = torch.tensor([0, 1, 2, 3])
    loss_fn(feats, feats.flip(0), ids).backward()
    assert loss_fn.temperature.grad is not None and loss_fn.temperature.grad.abs() > 0
    with torch.no_grad():
        loss_fn.temperature.fill_(5.0)
    loss_fn(feats, feats, ids)
    assert loss_fn.temperature.item() == 1.0
    with torch.no_grad():
        loss_fn.temperature.fill_(0.001)
    loss_fn(feats, feats, ids)
    assert loss_fn.temperature.item() == pytest.approx(0.01)
    with pytest.raises(LossInputError, match="temperature 2"):
        MultiPositiveInfoNCE(temperature=2.0)


def focal(c: float) -> float:
    return (1 - math.exp(-c)) ** 2 * c if c > 0 else 0.0


def test_focal_triplet_by_hand_and_its_gradient() -> None:
    # S = [[0.5, 0.6], [0.2, 0.3]], margin 0.2; positives on the diagonal.
    # image anchors: row 0 vs text 1: c = 0.2 + 0.6 - 0.5 = 0.3; row 1 vs text 0: c = 0.2 + 0.2 - 0.3 = 0.1
    # text anchors: column 0 vs image 1: 0.2 + 0.2 - 0.5 < 0 -> 0; column 1 vs image 0: 0.2 + 0.6 - 0.3 = 0.5
    image, text = scores_as_features([[0.5, 0.6], [0.2, 0.3]])
    loss = FocalTripletLoss()(image, text, torch.tensor([0, 1]))
    want = (focal(0.3) + focal(0.1)) / 2 + (0.0 + focal(0.5)) / 2
    assert loss.item() == pytest.approx(want, rel=1e-12)
    assert loss.item() == pytest.approx(0.04923, abs=1e-5)
    loss.backward()

    def dfocal(c: float) -> float:  # d/dc of (1 - e^-c)^2 c: the weight's own derivative is included
        return (1 - math.exp(-c)) ** 2 + 2 * c * (1 - math.exp(-c)) * math.exp(-c)

    # S[0][1] = text[1][0] enters image anchor 0 (c = 0.3) and text anchor 1 (c = 0.5), each averaged over 2
    assert text.grad[1, 0].item() == pytest.approx(dfocal(0.3) / 2 + dfocal(0.5) / 2, rel=1e-9)


def test_triplet_masks_captions_of_the_same_image() -> None:
    image, text = scores_as_features([[0.1, 0.9], [0.9, 0.1]])
    assert FocalTripletLoss()(image, text, torch.tensor([5, 5])).item() == 0.0  # would be large if unmasked
    assert FocalTripletLoss()(image, text, torch.tensor([5, 6])).item() > 0.5
    s = [[0.7, 0.65, 0.1], [0.6, 0.5, 0.55], [0.3, 0.6, 0.4]]
    ids = [0, 0, 1]
    image, text = scores_as_features(s)
    got = FocalTripletLoss()(image, text, torch.tensor(ids)).item()
    per_image = [sum(focal(0.2 + s[i][j] - s[i][i]) for j in range(3) if ids[j] != ids[i]) for i in range(3)]
    per_text = [sum(focal(0.2 + s[i][j] - s[j][j]) for i in range(3) if ids[i] != ids[j]) for j in range(3)]
    assert got == pytest.approx(sum(per_image) / 3 + sum(per_text) / 3, rel=1e-12)


def test_harma_loss_sums_one_to_one() -> None:
    gen = torch.Generator().manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(3, 8, generator=gen), dim=1)[[0, 0, 1]]
    text = torch.nn.functional.normalize(torch.randn(3, 8, generator=gen), dim=1).requires_grad_(True)
    ids = torch.tensor([0, 0, 1])
    out = HarmaLoss()(image, text, ids)
    assert set(out) == {"total", "contrastive", "triplet"}
    assert out["total"].item() == pytest.approx(out["contrastive"].item() + out["triplet"].item(), rel=1e-6)
    assert out["contrastive"].item() == pytest.approx(MultiPositiveInfoNCE()(image, text, ids).item(), rel=1e-6)
    out["total"].backward()
    assert text.grad is not None and text.grad.abs().sum() > 0


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(LossInputError, match="one row per caption"):
        HarmaLoss()(torch.zeros(2, 4), torch.zeros(3, 4), torch.tensor([0, 1]))
    with pytest.raises(LossInputError, match="image_ids"):
        HarmaLoss()(torch.zeros(2, 4), torch.zeros(2, 4), torch.tensor([0, 1, 2]))
