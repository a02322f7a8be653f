"""Query expansion through the query bank's training images: the formula, the file, the real shipped bank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harma_core.querybank import EXPANSION, QueryBank, QueryBankError, bank_texts, caption_image_means


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def _bank(n: int = 40, dim: int = 8) -> QueryBank:
    rng = np.random.default_rng(0)
    caps, imgs = _unit(rng.normal(size=(n, dim))), _unit(rng.normal(size=(n, dim)))
    return QueryBank(caps.astype(np.float16), "test-model", 20.0).with_images(imgs)


def test_expand_follows_the_formula_and_leaves_a_bank_without_images_alone() -> None:
    bank = _bank()
    q = _unit(np.random.default_rng(1).normal(size=(5, 8)))
    k, temp, alpha = EXPANSION["k"], EXPANSION["temp"], EXPANSION["alpha"]
    sims = q @ bank.vectors.T
    want = np.empty_like(q)
    for i, s in enumerate(sims):
        top = np.argsort(-s)[:k]
        w = np.exp((s[top] - s[top].max()) / temp)
        e = _unit((w[:, None] / w.sum() * bank.images[top].astype(np.float32)).sum(0))
        want[i] = _unit(q[i] + alpha * e)
    got = bank.expand(q)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(bank.expand(q[0]), want[0], atol=1e-5)  # one vector in, one out
    # with one neighbour the query moves straight toward its nearest caption's images
    one = bank.with_images(bank.images, k=1, alpha=1.0).expand(q[:1])[0]
    nearest = bank.images[int(np.argmax(sims[0]))].astype(np.float32)
    assert one @ nearest > q[0] @ nearest + 0.1
    plain = QueryBank(bank.embeddings, "test-model", 20.0)
    assert not plain.expands
    np.testing.assert_array_equal(plain.expand(q), q)


def test_images_are_saved_and_never_change_the_offsets_digest(tmp_path: Path) -> None:
    bank = _bank()
    plain = QueryBank(bank.embeddings, "test-model", 20.0)
    assert bank.digest == plain.digest, "offsets do not depend on the images"
    tuned = bank.with_images(bank.images, k=3, alpha=0.5)
    tuned.save(tmp_path)
    again = QueryBank.read(tmp_path)
    np.testing.assert_array_equal(again.images, tuned.images)
    assert again.expansion == {**EXPANSION, "k": 3, "alpha": 0.5} and again.digest == bank.digest
    with pytest.raises(QueryBankError, match="pair one-to-one"):
        bank.with_images(bank.images[:5])
    with pytest.raises(QueryBankError, match="k >= 1"):
        bank.with_images(bank.images, k=0)


def test_caption_image_means_average_the_images_a_caption_describes(lite, shared_data: Path) -> None:
    from harma_core.data import decode_image, flatten_captions, load_dataset
    from harma_core.embed import embed_images

    items = load_dataset(shared_data / "captions" / "ucm_captions", "train").items[:12]
    captions, owners = flatten_captions(items)
    texts = bank_texts(captions)
    vecs = embed_images(lite, [decode_image(it.image) for it in items])
    means = caption_image_means(texts, captions, owners, vecs)
    assert means.shape == (len(texts), vecs.shape[1]) and means.dtype == np.float16
    from harma_core.data import normalize_caption
    norm = [normalize_caption(c) for c in captions]
    for t in (texts[0], max(texts, key=lambda t: len({o for c, o in zip(norm, owners) if c == t}))):
        imgs = sorted({o for c, o in zip(norm, owners) if c == t})
        np.testing.assert_allclose(means[texts.index(t)], _unit(vecs[imgs].mean(0)), atol=2e-3)
    with pytest.raises(QueryBankError, match="no image"):
        caption_image_means(texts + ["a caption of no image"], captions, owners, vecs)


def test_the_shipped_bank_expands_and_evaluate_reports_what_search_ranks_by(lite, shared_data: Path) -> None:
    from harma_core.data import load_dataset
    from harma_core.evaluate import evaluate_items
    from harma_core.querybank import load_querybank

    bank = load_querybank(lite)
    assert bank.expands and bank.expansion == EXPANSION
    items = load_dataset(shared_data / "captions" / "ucm_captions", "val").items
    m = evaluate_items(lite, items, bank=bank)
    assert {"t2i_r1_qbx", "t2i_r5_qbx", "t2i_r10_qbx", "mR_qbx"} <= set(m) and m["qb_expansion"] == EXPANSION
    i2t = [m[f"i2t_r{k}"] for k in (1, 5, 10)]
    assert m["mR_qbx"] == pytest.approx(np.mean(i2t + [m[f"t2i_r{k}_qbx"] for k in (1, 5, 10)]))
    assert m["mR_qbx"] > m["mR_qb"], "on UCM val expansion lifts the text->image recalls (MODEL_CARD.md)"
