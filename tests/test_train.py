"""A one-minute CPU smoke run of the real training loop on real images, plus run-folder loading."""

from __future__ import annotations

import csv
import json

import numpy as np

from harma_core import create_model
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
