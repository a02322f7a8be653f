"""HarMA's objective over features (never over the model): multi-positive InfoNCE + focal triplet, 1:1.

Batch convention: one row per caption. `image_feats[i]` is the (L2-normalised) feature of the image that
caption i describes, so an image with k captions in the batch appears in k rows; `image_ids[i]` names that
image. Rows with equal ids are positives of each other in the contrastive term and are never negatives of
each other in the triplet term. This is the reference code's `idx` convention.
"""

from __future__ import annotations

import torch
from torch import nn

from harma_core.errors import HarmaError

__all__ = ["FocalTripletLoss", "HarmaLoss", "LossInputError", "MultiPositiveInfoNCE", "multi_positive_targets"]


class LossInputError(HarmaError, ValueError):
    """Features or ids whose shapes do not fit together."""


def _check(image_feats: torch.Tensor, text_feats: torch.Tensor, image_ids: torch.Tensor) -> None:
    if image_feats.ndim != 2 or image_feats.shape != text_feats.shape:
        raise LossInputError(f"image_feats {tuple(image_feats.shape)} and text_feats {tuple(text_feats.shape)} "
                             "must both be [N, D], one row per caption (repeat image rows per caption)")
    if image_ids.shape != (image_feats.shape[0],):
        raise LossInputError(f"image_ids {tuple(image_ids.shape)} must be [N] = [{image_feats.shape[0]}], "
                             "one image id per caption row")


def multi_positive_targets(image_ids: torch.Tensor) -> torch.Tensor:
    """[N, N] targets: row i spreads 1 evenly over the rows whose image id equals image_ids[i]."""
    positives = (image_ids[:, None] == image_ids[None, :]).float()
    return positives / positives.sum(dim=1, keepdim=True)


class MultiPositiveInfoNCE(nn.Module):
    """Symmetric InfoNCE over logits I T^T / tau with multi-positive targets; tau learnable, clamped.

    `temperature` is tau itself (the reference's convention, not open_clip's log 1/tau). When an optimizer
    step leaves it outside [min_temperature, max_temperature] the next forward projects it back in place,
    so it keeps a gradient (a clamp inside the graph would freeze it at the bound).
    """

    def __init__(self, temperature: float = 0.07, min_temperature: float = 0.01, max_temperature: float = 1.0,
                 learnable: bool = True) -> None:
        super().__init__()
        if not 0 < min_temperature <= temperature <= max_temperature:
            raise LossInputError(f"temperature {temperature} must lie in [{min_temperature}, {max_temperature}] "
                                 "with a positive lower bound")
        self.min_temperature, self.max_temperature = min_temperature, max_temperature
        self.temperature = nn.Parameter(torch.tensor(float(temperature)), requires_grad=learnable)

    def forward(self, image_feats: torch.Tensor, text_feats: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
        """Mean of the image->text and text->image cross-entropies against the spread targets."""
        _check(image_feats, text_feats, image_ids)
        if not self.min_temperature <= float(self.temperature.detach()) <= self.max_temperature:
            with torch.no_grad():  # only when needed: an in-place edit would break a graph still awaiting backward
                self.temperature.clamp_(self.min_temperature, self.max_temperature)
        logits = image_feats @ text_feats.t() / self.temperature
        targets = multi_positive_targets(image_ids).to(logits.dtype)  # symmetric, so it serves both directions
        i2t = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
        t2i = -(targets * logits.t().log_softmax(dim=1)).sum(dim=1).mean()
        return (i2t + t2i) / 2


class FocalTripletLoss(nn.Module):
    """HarMA's adaptive triplet: hinge costs c weighted by (1 - exp(-c))^gamma, for image and text anchors.

    Per anchor the weighted costs are summed over its negatives (rows of other images only), then averaged
    over anchors; the image-anchor and text-anchor terms are added, as in the reference (which instead sums
    over all N^2 pairs, so its scale grows with the batch).
    """

    def __init__(self, margin: float = 0.2, gamma: float = 2.0) -> None:
        super().__init__()
        self.margin, self.gamma = margin, gamma

    def _focal(self, cost: torch.Tensor) -> torch.Tensor:
        return (1 - torch.exp(-cost)).pow(self.gamma) * cost  # weight not detached: it shapes the gradient

    def forward(self, image_feats: torch.Tensor, text_feats: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
        """Scalar loss; cosine scores s = I T^T, the diagonal holds the positives."""
        _check(image_feats, text_feats, image_ids)
        scores = image_feats @ text_feats.t()
        positive = scores.diagonal()
        other_image = image_ids[:, None] != image_ids[None, :]
        cost_image = (self.margin + scores - positive[:, None]).clamp(min=0)  # anchor image i, negative text j
        cost_text = (self.margin + scores - positive[None, :]).clamp(min=0)  # anchor text j, negative image i
        per_image = self._focal(cost_image).masked_fill(~other_image, 0).sum(dim=1)
        per_text = self._focal(cost_text).masked_fill(~other_image, 0).sum(dim=0)
        return per_image.mean() + per_text.mean()


class HarmaLoss(nn.Module):
    """L = contrastive_weight * InfoNCE + triplet_weight * focal triplet (1 : 1 by default)."""

    def __init__(self, temperature: float = 0.07, margin: float = 0.2, gamma: float = 2.0,
                 contrastive_weight: float = 1.0, triplet_weight: float = 1.0) -> None:
        super().__init__()
        self.contrastive = MultiPositiveInfoNCE(temperature)
        self.triplet = FocalTripletLoss(margin, gamma)
        self.contrastive_weight, self.triplet_weight = contrastive_weight, triplet_weight

    def forward(self, image_feats: torch.Tensor, text_feats: torch.Tensor,
                image_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """dict(total=..., contrastive=..., triplet=...) for one batch of caption rows."""
        contrastive = self.contrastive(image_feats, text_feats, image_ids)
        triplet = self.triplet(image_feats, text_feats, image_ids)
        total = self.contrastive_weight * contrastive + self.triplet_weight * triplet
        return {"total": total, "contrastive": contrastive, "triplet": triplet}
