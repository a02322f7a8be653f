"""Class-level scores of labelled tiles: what a searcher of class names sees.

Caption retrieval (harma_core.evaluate) counts only a caption's own image as right, which is meaningless
when hundreds of tiles share the caption "an aerial image of forest". Here every tile of the class is right:
- `p10`: for each class caption, the share of the 10 best-scoring tiles that carry the class (mean over
  classes, in percent): class P@10, the number the UCM-mosaic test reports;
- `acc1`: the share of tiles whose best-scoring class caption is one of their labels (zero-shot accuracy);
- `score`: their mean, the checkpoint-selection score of labelled validation sets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def class_metrics(image_emb: np.ndarray, labels: Sequence[Sequence[str]], class_emb: np.ndarray,
                  classes: Sequence[str], k: int = 10) -> dict:
    """Scores of unit tile embeddings against unit class-caption embeddings (row i of class_emb = classes[i])."""
    sims = image_emb.astype(np.float32) @ class_emb.astype(np.float32).T  # (tiles, classes)
    has = np.array([[c in set(labs) for c in classes] for labs in labels], dtype=bool)
    top = np.argsort(-sims, axis=0, kind="stable")[:k]  # (k, classes): best tiles per class
    p_at_k = has[top, np.arange(len(classes))].mean(axis=0)
    present = has.any(axis=0)  # classes without a val tile cannot be scored
    acc1 = has[np.arange(len(sims)), sims.argmax(axis=1)].mean() if len(sims) else 0.0
    p10 = float(100.0 * p_at_k[present].mean()) if present.any() else 0.0
    return {"p10": p10, "acc1": float(100.0 * acc1), "score": (p10 + float(100.0 * acc1)) / 2,
            "n_images": int(len(sims)), "n_classes": int(present.sum())}
