"""Retrieval metrics against ranks worked out by hand."""

import numpy as np
import pytest

from harma_core.evaluate import retrieval_metrics


def _unit(rows):
    a = np.asarray(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_perfect_retrieval_scores_100():
    img = _unit(np.eye(3))
    txt = _unit(np.repeat(np.eye(3), 2, axis=0))  # two captions per image
    m = retrieval_metrics(img, txt, [0, 0, 1, 1, 2, 2])
    assert m["mR"] == 100.0 and m["n_images"] == 3 and m["n_captions"] == 6


def test_hand_worked_ranks():
    # similarities image x caption, designed so that:
    # image 0: best GT caption (c1) is rank 1 (0-based 1) -> misses R@1, hits R@5
    # image 1: its caption c2 is rank 0 -> R@1
    img = _unit([[1, 0], [0, 1]])
    txt = _unit([[0.2, 1], [0.9, 0.1], [0, 1]])  # c0, c1 belong to image 0; c2 to image 1
    m = retrieval_metrics(img, txt, [0, 0, 1])
    # i2t: image0 scores c1=.99,c0=.196,c2=0 -> GT c1 at rank 0 -> hit; image1: c2=1, c0=.98 -> hit
    assert m["i2t_r1"] == 100.0
    # t2i: c0 prefers image1 (0.98 > 0.196) -> miss at R@1, hit at R@5; c1 -> image0 hit; c2 -> image1 hit
    assert m["t2i_r1"] == pytest.approx(200 / 3)
    assert m["t2i_r5"] == 100.0
    assert m["mR"] == pytest.approx((100 + 100 + 100 + 200 / 3 + 100 + 100) / 6)


def test_bad_mapping_is_refused():
    with pytest.raises(ValueError, match="text_to_image"):
        retrieval_metrics(_unit(np.eye(2)), _unit(np.eye(2)), [0, 5])


def test_offsets_correct_text_to_image_only():
    # image 1 is a hub: caption c0 (of image 0) prefers it by cosine; its offset puts image 0 first.
    img = _unit([[1, 0], [0.8, 0.6]])
    txt = _unit([[0.6, 0.8], [1, 0], [0, 1]])  # c0 -> image 0, c1 -> image 0, c2 -> image 1
    plain = retrieval_metrics(img, txt, [0, 0, 1])
    assert plain["t2i_r1"] == pytest.approx(200 / 3) and "mR_qb" not in plain
    m = retrieval_metrics(img, txt, [0, 0, 1], image_offsets=np.array([0.0, 0.5]))
    # corrected: c0 0.6 vs 0.96 - 0.5 = 0.46 -> image 0; c1 1 vs 0.3 -> image 0; c2 0 vs 0.1 -> image 1
    assert m["t2i_r1_qb"] == 100.0
    assert {k: m[k] for k in plain} == plain  # the plain keys are unchanged
    assert all(m[f"i2t_r{k}_qb"] == m[f"i2t_r{k}"] for k in (1, 5, 10))
    assert m["mR_qb"] == pytest.approx(np.mean([m[f"{d}_r{k}_qb"] for d in ("i2t", "t2i") for k in (1, 5, 10)]))
    with pytest.raises(ValueError, match="one value per image"):
        retrieval_metrics(img, txt, [0, 0, 1], image_offsets=np.zeros(3))
