"""Test-time views (harma_core.views): the rotation/mirror mean of a real tile's embedding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harma_core.views import DEFAULT_VIEWS, VIEWS, check_views, view_turns


def _ucm_images(shared_data: Path, n: int) -> list[np.ndarray]:
    from harma_core.data import decode_image, load_dataset

    items = load_dataset(shared_data / "captions" / "ucm_captions", "val").items[:n]
    return [np.array(decode_image(it.image).convert("RGB")) for it in items]


def test_the_views_are_the_symmetries_of_the_square() -> None:
    import torch

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    for n in VIEWS:
        outs = [t(x) for t in view_turns(n)]
        assert len(outs) == n and torch.equal(outs[0], x)
        assert len({o.numpy().tobytes() for o in outs}) == n, "no view repeats another"
    eight = {o.numpy().tobytes() for o in (t(x) for t in view_turns(8))}
    turned = torch.rot90(torch.flip(x, dims=(2,)), 1, dims=(2, 3))  # any symmetry of the square is one of them
    assert turned.numpy().tobytes() in eight
    assert DEFAULT_VIEWS in VIEWS
    for bad in (0, 3, 16, True, 2.5):
        with pytest.raises(ValueError, match="one of 1, 2, 4, 8"):
            check_views(bad)


def test_eight_views_make_a_real_tile_embedding_rotation_invariant(lite, shared_data: Path) -> None:
    from harma_core.embed import embed_images

    images = _ucm_images(shared_data, 4)
    plain = embed_images(lite, images)
    np.testing.assert_array_equal(plain, embed_images(lite, images, views=1))
    mean8 = embed_images(lite, images, views=8)
    assert np.allclose(np.linalg.norm(mean8, axis=1), 1, atol=1e-5)
    for turn in (lambda a: np.rot90(a, 1), lambda a: np.rot90(a, 2)[:, ::-1], lambda a: a.transpose(1, 0, 2)):
        moved = [np.ascontiguousarray(turn(a)) for a in images]
        assert (embed_images(lite, moved, views=8) * mean8).sum(1).min() > 0.9999
        assert (embed_images(lite, moved) * plain).sum(1).min() < 0.9999, "without views a turn moves the vector"
    four = embed_images(lite, [np.ascontiguousarray(np.rot90(a, 3)) for a in images], views=4)
    assert (four * embed_images(lite, images, views=4)).sum(1).min() > 0.9999
    by_hand = np.stack([embed_images(lite, [np.ascontiguousarray(np.rot90(a, q)) for a in images]) for q in range(4)])
    by_hand = by_hand.sum(0) / np.linalg.norm(by_hand.sum(0), axis=1, keepdims=True)
    assert (by_hand * four).sum(1).min() > 0.999, "views=4 is the unit mean of the four quarter turns"
