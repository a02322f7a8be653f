"""A one-minute CPU smoke run of the real training loop on real images, plus run-folder loading."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from harma_core import create_model
from harma_core.errors import AdapterError
from harma_core.train import TrainConfig, train


def _table(tmp_path, shared_data, n_train=24, n_val=8):
    """A captions table over real UCM images (both splits), written in the documented CSV format."""
    ucm = shared_data / "captions" / "ucm_captions"
    items = json.loads((ucm / "ucm_train.json").read_text())
    # spread over classes so captions differ: every 70th image of the class-ordered list
    picked = items[:: max(1, len(items) // (n_train + n_val))][: n_train + n_val]
    path = tmp_path / "tiles.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption", "split"])
        for i, it in enumerate(picked):
            for cap in it["caption"][:2]:
                w.writerow([str(ucm / "images" / it["image"]), cap, "train" if i < n_train else "val"])
    return path


def test_smoke_training_loss_falls_and_metrics_in_range(tmp_path, shared_data):
    data = _table(tmp_path, shared_data)
    out = tmp_path / "run"
    cfg = TrainConfig(data=[str(data)], out=str(out), model="harma-tiny", mode="harma", epochs=4,
                      batch_size=8, lr=2e-3, warmup=0.0, num_workers=0)
    metrics = train(cfg)
    losses = [h["loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0], losses
    assert 0 < metrics["trainable"] < metrics["total"]
    val = metrics["best_val"]["tiles"]
    for key in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mR"):
        assert 0.0 <= val[key] <= 100.0
    assert val["n_images"] == 8 and val["n_captions"] == 16
    assert (out / "best" / "adapter.safetensors").is_file() and (out / "metrics.json").is_file()

    # the run folder loads as a model whose embeddings differ from the bare base
    tuned, base = create_model(str(out)), create_model("harma-tiny", adapter=None)
    assert tuned.adapter_hash != "none" and tuned.identity != base.identity
    from harma_core import embed_texts

    assert not np.allclose(embed_texts(tuned, ["a river"]), embed_texts(base, ["a river"]))


def test_training_resumes_from_last_checkpoint(tmp_path, shared_data):
    data = _table(tmp_path, shared_data, n_train=8, n_val=4)
    out = tmp_path / "run"
    common = dict(data=[str(data)], out=str(out), model="harma-tiny", batch_size=8, num_workers=0)
    train(TrainConfig(epochs=1, **common))
    resumed = train(TrainConfig(epochs=2, **common))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]


def test_positive_groups_join_rows_of_one_image_and_identical_texts() -> None:
    from harma_core.train import _positive_groups

    assert _positive_groups(["a", "b", "a", "c"]).tolist() == [0, 1, 0, 2]
    # rows 0-1 are image 0, rows 2-3 image 1, rows 4-5 image 2; "b" links images 0 and 2
    owner = np.array([0, 0, 1, 1, 2, 2])
    assert _positive_groups(["a", "b", "c", "d", "b", "e"], owner).tolist() == [0, 0, 1, 1, 0, 0]


def test_sample_captions_draws_distinct_captions_per_image() -> None:
    from harma_core.data import Item
    from harma_core.train import _sample_captions

    items = [Item(f"{i}.png", tuple(f"image {i} caption {j}" for j in range(5)), "train", "t") for i in range(3)]
    items.append(Item("3.png", ("the only caption",), "train", "t"))
    owner, caps = _sample_captions(items, np.array([2, 3, 0]), 2, np.random.default_rng(0))
    assert owner.tolist() == [0, 0, 1, 2, 2]  # the image with one caption gets one row
    assert caps[0] != caps[1] and all(c.startswith("image 2") for c in caps[:2])
    assert caps[2] == "the only caption" and all(c.startswith("image 0") for c in caps[3:])


def test_feature_crop_resamples_maps_in_training_only() -> None:
    import torch

    from harma_core.prefix_cache import random_resized_crop, sample_prefix_batch

    rng = np.random.default_rng(0)
    feats = torch.randn(4, 3, 14, 14)
    assert torch.allclose(random_resized_crop(torch.full((2, 3, 14, 14), 2.5), rng, 0.5),
                          torch.full((2, 3, 14, 14), 2.5))  # resampling keeps a constant map constant
    cropped = random_resized_crop(feats, rng, 0.3)
    assert cropped.shape == feats.shape and not torch.allclose(cropped, feats)
    cache = np.random.default_rng(1).standard_normal((2, 5, 3, 14, 14)).astype(np.float16)
    plain = sample_prefix_batch(cache, np.arange(5), None, False, torch.device("cpu"), crop_scale=0.3)
    assert torch.equal(plain, torch.from_numpy(cache[0].astype(np.float32)))  # evaluation never crops


def test_init_starts_from_a_trained_adapter(tmp_path, shared_data):
    data = _table(tmp_path, shared_data, n_train=8, n_val=4)
    common = dict(data=[str(data)], model="harma-tiny", batch_size=8, epochs=1, num_workers=0)
    first = train(TrainConfig(out=str(tmp_path / "a"), lr=2e-3, **common))
    second = train(TrainConfig(out=str(tmp_path / "b"), init=str(tmp_path / "a"), **common))
    # before its first step, the second run scores exactly what the first run saved as best
    assert second["init_val"]["tiles"] == first["best_val"]["tiles"]

    with pytest.raises(AdapterError, match="neither an adapter folder"):
        train(TrainConfig(out=str(tmp_path / "c"), init=str(tmp_path / "missing"), **common))
    with pytest.raises(ValueError, match="--mode harma"):  # a ConfigError, which is a ValueError
        train(TrainConfig(out=str(tmp_path / "d"), init=str(tmp_path / "a"), mode="heads", **common))


def test_training_from_labelled_polygons_on_a_mosaic(tmp_path, shared_data):
    from tools.mosaic import build_mosaic

    m = build_mosaic(shared_data / "captions" / "ucm_captions", "train", tmp_path / "m", per_class=2,
                     classes=["beach", "forest", "freeway", "harbor", "parkinglot", "river"])
    out = tmp_path / "run"
    metrics = train(TrainConfig(raster=[str(m.tif)], labels=str(m.gpkg), label_field="label", out=str(out),
                                model="harma-tiny", epochs=2, batch_size=4, lr=2e-3, num_workers=0))
    init, best = metrics["init_val"]["polygons"], metrics["best_val"]["polygons"]
    assert set(init) == {"p10", "acc1", "score", "n_images", "n_classes"} and init["n_images"] >= 1
    assert 0 <= best["p10"] <= 100 and best["score"] >= max(h["val"]["polygons"]["score"]
                                                              for h in metrics["history"]) - 1e-9
    cfg = json.loads((out / "run_config.json").read_text())
    assert cfg["raster"] == [str(m.tif)] and cfg["label_field"] == "label"
    assert (out / "best" / "adapter.safetensors").is_file()
    assert create_model(str(out)).adapter_hash != "none"


def test_bad_polygon_input_writes_nothing(tmp_path, shared_data):
    from harma_core.errors import ConfigError, DataError
    from tools.mosaic import build_mosaic

    m = build_mosaic(shared_data / "captions" / "ucm_captions", "val", tmp_path / "m", per_class=1,
                     classes=["beach", "forest"])
    out = tmp_path / "run"
    with pytest.raises(DataError, match="no label field 'landuse'"):
        train(TrainConfig(raster=[str(m.tif)], labels=str(m.gpkg), label_field="landuse", out=str(out),
                          model="harma-tiny"))
    with pytest.raises(ConfigError, match="--raster needs --labels"):
        TrainConfig(raster=[str(m.tif)], out=str(out))
    with pytest.raises(ConfigError, match="not both"):
        TrainConfig(raster=[str(m.tif)], labels=str(m.gpkg), label_field="label", tile_size=256, tile_size_m=70.0)
    assert not out.exists()
