"""Real data, product path: fine-tuning on a labelled UCM train mosaic makes class-name search on the UCM val
mosaic better than the shipped harma-lite (indexed and searched through the server's own CLI functions)."""

from __future__ import annotations

import pytest

from bench.adapt import run


@pytest.mark.slow
def test_polygon_training_beats_harma_lite_on_the_val_mosaic(tmp_path, shared_data) -> None:
    # 8 train scenes per class (168), 1 epoch: a CI-sized run; the val mosaic is all 210 val scenes
    r = run(train_per_class=8, val_per_class=None, epochs=1, batch_size=32, model_name="harma-lite",
            template="an aerial image of {label}", work=tmp_path, device="cpu")
    print(f"class P@10 on the UCM val mosaic: harma-lite {r['p10_before']:.1f}, tuned {r['p10_after']:.1f}")
    assert r["val_scenes"] == 210 and r["train_scenes"] == 168
    assert r["model_after"] != r["model_before"]  # its own identity
    assert set(r["per_class_before"]) == set(r["per_class_after"]) and len(r["per_class_after"]) == 21
    assert r["p10_after"] >= r["p10_before"] + 5.0, (r["p10_before"], r["p10_after"])
    assert r["init_val"]["polygons"]["n_images"] > 0  # the base score was logged first
