"""Relevance feedback: a logistic regression over the embeddings of tiles marked good and bad (plus the text
query as one more good example), fitted in numpy by Newton's method.

The model is linear on unit vectors, p(x) = sigmoid(scale * cos(x, direction) + bias), so ranking the
collection by p is ranking it by cosine with `direction`: the same hnswlib index serves it, and a probability
threshold is a cosine threshold (`cosine_at`). Tiles nobody marked, sampled evenly from the collection, stand
in for "the rest" (weighted as one negative set), so a few positives alone already define a classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

L2 = 1e-3  # ridge penalty on the weights; unit-norm features need large weights to separate close tiles
NEWTON_STEPS = 25
BACKGROUND = 256  # unmarked tiles sampled as the "rest of the collection" negatives


@dataclass(frozen=True)
class Classifier:
    """p(x) = sigmoid(scale * cos(x, direction) + bias) for unit vectors x."""

    direction: np.ndarray
    scale: float
    bias: float

    def probability(self, cosines: np.ndarray) -> np.ndarray:
        """Probability of being a positive, from cosines with `direction`."""
        return 1.0 / (1.0 + np.exp(-(self.scale * np.asarray(cosines, dtype=np.float64) + self.bias)))

    def cosine_at(self, p: float) -> float:
        """The cosine with `direction` at which the probability is p."""
        p = min(max(p, 1e-9), 1 - 1e-9)
        return float((np.log(p / (1 - p)) - self.bias) / self.scale)


def _weights(n: int, total: float) -> np.ndarray:
    return np.full(n, total / n) if n else np.zeros(0)


def fit(positives: np.ndarray, negatives: np.ndarray, background: np.ndarray, l2: float = L2) -> Classifier:
    """Fit on positive and negative examples (rows of unit vectors); positives and negatives weigh the same
    in total, background tiles count as half of the negative side when explicit negatives exist."""
    if not len(positives):
        raise ValueError("feedback needs at least one positive example")
    neg_total = 0.5 if len(negatives) and len(background) else 1.0
    x = np.concatenate([positives, negatives, background]).astype(np.float64)
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives) + len(background))])
    w8 = np.concatenate([_weights(len(positives), 1.0), _weights(len(negatives), neg_total),
                         _weights(len(background), 1.0 - neg_total if len(negatives) else 1.0)])
    xb = np.hstack([x, np.ones((len(x), 1))])
    theta = np.zeros(xb.shape[1])
    reg = np.full(xb.shape[1], l2)
    reg[-1] = 0.0  # the bias is not penalised
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ theta, -50, 50)))
        grad = xb.T @ (w8 * (p - y)) + reg * theta
        hess = (xb * (w8 * p * (1 - p))[:, None]).T @ xb + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-6:
            break
    w, b = theta[:-1], float(theta[-1])
    scale = float(np.linalg.norm(w))
    if scale < 1e-9:  # nothing separates the examples: fall back to the mean of the positives
        w = positives.mean(axis=0).astype(np.float64)
        scale = float(np.linalg.norm(w)) or 1.0
    return Classifier((w / scale).astype(np.float32), scale, b)
