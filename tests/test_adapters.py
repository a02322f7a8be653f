"""HarMA adapters: identity at step 0, exact counts, shared M gradients, padding, save -> load round trip."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from open_clip.transformer import Transformer
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from torchvision.transforms.functional import pil_to_tensor

from harma_core.adapter_io import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    adapter_hash,
    load_adapter,
    save_adapter,
    write_adapter,
)
from harma_core.adapters import (
    HarmaAdapter,
    HarmaConfig,
    adapter_state_dict,
    freeze_norm_stats,
    inject_harma,
    mark_trainable,
    trainable_parameters,
)
from harma_core.errors import AdapterError

UCM_IMAGES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "captions" / "ucm_captions" / "images"
LITE_HEADS = ("visual.head", "text.proj")


def tiny_clip(layers: int = 2) -> CLIP:
    """A random-weight open_clip CLIP, width 64 in both towers (adapter math needs no pretrained weights)."""
    torch.manual_seed(0)
    return CLIP(embed_dim=64,
                vision_cfg=CLIPVisionCfg(layers=layers, width=64, head_width=32, patch_size=16, image_size=64),
                text_cfg=CLIPTextCfg(context_length=16, vocab_size=100, width=64, heads=4, layers=2))


def tiny_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 64, 64, generator=gen)
    text = torch.randint(1, 98, (2, 16), generator=gen)
    text[0, 9], text[0, 10:] = 99, 0  # EOT then padding
    text[1, 5], text[1, 6:] = 99, 0
    return images, text


def frozen(model: nn.Module) -> nn.Module:
    """Frozen copy in eval mode: MultiheadAttention takes the same (fast) path as in a frozen injected model."""
    model = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def perturb(model: nn.Module, seed: int = 0) -> None:
    """Random values in every trained weight, so that adapters really change the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in adapter_state_dict(model).values():
            t.add_(torch.randn(t.shape, generator=gen).to(t.dtype) * 0.2)


def encode(model: nn.Module, images: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(text)


# Hand count of one adapter A at width d (bottleneck r = 128) and of one mini-adapter M (64):
# W_down d*r + r, MHA_r 4r^2 + 4r (in_proj 3r*r + 3r, out_proj r*r + r), W_up r*d + d, gates s and s2.
A64 = 64 * 128 + 128 + 4 * 128 * 128 + 4 * 128 + 128 * 64 + 64 + 2  # 82626
# W1 128*64 + 64, MHA_64 4*64^2 + 4*64, W2 64*128 + 128, gate s3.
M = 128 * 64 + 64 + 4 * 64 * 64 + 4 * 64 + 64 * 128 + 128 + 1  # 33217


def test_identity_at_initialisation_tiny_clip() -> None:
    model = tiny_clip()
    base = frozen(model)
    inject_harma(model).eval()
    images, text = tiny_inputs()
    (bi, bt), (ai, at) = encode(base, images, text), encode(model, images, text)
    torch.testing.assert_close(ai, bi, rtol=0, atol=1e-6)
    torch.testing.assert_close(at, bt, rtol=0, atol=1e-6)
    perturb(model)
    assert not torch.allclose(encode(model, images, text)[1], bt, atol=1e-3)  # the hooks are really live


@pytest.mark.parametrize(("share", "minis"), [("both", 2), ("text_only", 2), ("none", 4)])
def test_trainable_and_total_counts_are_exact(share: str, minis: int) -> None:
    model = tiny_clip()
    base_total = trainable_parameters(model)[1]
    inject_harma(model, HarmaConfig(share=share))
    expected = 4 * A64 + minis * M + 1  # 4 adapted blocks, M modules, logit_scale
    assert trainable_parameters(model) == (expected, base_total + expected - 1)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "logit_scale" in trained and "visual.transformer.resblocks.0.ln_2.weight" not in trained
    assert all(n == "logit_scale" or n.startswith("harma.mini.") or ".harma_adapter." in n for n in trained)


def test_share_both_pairs_every_mini_with_both_towers() -> None:
    model = inject_harma(tiny_clip())
    adapters = [m for m in model.modules() if isinstance(m, HarmaAdapter)]
    assert [a.mini_name for a in adapters] == ["shared_0", "shared_1", "shared_0", "shared_1"]
    assert adapters[0].mini is adapters[2].mini is model.harma.mini["shared_0"]


@pytest.mark.parametrize("share", ["both", "text_only"])
def test_shared_mini_receives_gradients_from_each_tower(share: str) -> None:
    model = inject_harma(tiny_clip(), HarmaConfig(share=share))
    perturb(model)  # zero-initialised up-projections would block every gradient upstream of them
    images, text = tiny_inputs()
    for tower, run in (("image", lambda: model.encode_image(images)), ("text", lambda: model.encode_text(text))):
        model.zero_grad(set_to_none=True)
        run().square().sum().backward()
        for key, mini in model.harma.mini.items():
            grad = mini.down.weight.grad
            reached = grad is not None and bool(grad.abs().sum() > 0)
            assert reached == (tower == "text" or share == "both"), (tower, key)


def test_extra_trainable_heads_and_modes() -> None:
    model = inject_harma(tiny_clip(), HarmaConfig(extra_trainable=("text_projection", "visual.proj")))
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"text_projection", "visual.proj"} <= trained
    assert mark_trainable(model, "heads") == (64 * 64 * 2 + 1, trainable_parameters(model)[1])
    assert mark_trainable(model, "full")[0] == trainable_parameters(model)[1]
    with pytest.raises(AdapterError, match="bogus"):
        mark_trainable(model, "bogus")
    with pytest.raises(AdapterError, match="visual.nothing"):
        inject_harma(tiny_clip(), HarmaConfig(extra_trainable=("visual.nothing",)))


def test_nothing_matched_and_bad_configs_fail_loudly() -> None:
    with pytest.raises(AdapterError, match="no HarMA injection point"):
        inject_harma(nn.Sequential(nn.Linear(4, 4), nn.GELU()))
    with pytest.raises(AdapterError, match="rank"):
        HarmaConfig.from_dict({"bottleneck": 128, "rank": 4})
    with pytest.raises(AdapterError, match="share"):
        HarmaConfig(share="image_only")
    with pytest.raises(AdapterError, match="divisible"):
        HarmaConfig(bottleneck=100)
    model = inject_harma(tiny_clip())
    with pytest.raises(AdapterError, match="already"):
        inject_harma(model)


def test_sequence_first_transformers_give_the_same_result() -> None:
    torch.manual_seed(0)
    first, second = Transformer(64, 2, 4, batch_first=True), Transformer(64, 2, 4, batch_first=False)
    second.load_state_dict(first.state_dict())
    for tower in (first, second):
        inject_harma(tower).eval()
    perturb(first)
    second.load_state_dict(first.state_dict())  # same base and adapter weights
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        # open_clip 3.x takes [B, L, D] in both cases; with batch_first=False its blocks see [L, B, D]
        torch.testing.assert_close(second(x), first(x), rtol=1e-4, atol=1e-4)  # a wrong layout is off by ~80
    assert [a.layout for a in first.modules() if isinstance(a, HarmaAdapter)] == ["bld", "bld"]
    assert [a.layout for a in second.modules() if isinstance(a, HarmaAdapter)] == ["lbd", "lbd"]


def test_deepcopy_keeps_hooks_with_their_copy() -> None:
    model = inject_harma(tiny_clip()).eval()
    images, text = tiny_inputs()
    before = encode(model, images, text)[0]
    clone = copy.deepcopy(model)
    perturb(clone)
    torch.testing.assert_close(encode(model, images, text)[0], before, rtol=0, atol=0)
    assert not torch.allclose(encode(clone, images, text)[0], before, atol=1e-3)


def test_save_load_round_trip_tiny_clip(tmp_path: Path) -> None:
    model = inject_harma(tiny_clip()).eval()
    perturb(model)
    out = save_adapter(model, tmp_path / "adapter", "harma-tiny", extra={"epoch": 3})
    saved = load_file(str(out / WEIGHTS_FILE))
    assert set(saved) == {n for n, p in model.named_parameters() if p.requires_grad}  # trained weights only
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["base"] == "harma-tiny" and config["harma"]["share"] == "both" and config["extra"] == {"epoch": 3}
    fresh = load_adapter(tiny_clip(), out).eval()
    images, text = tiny_inputs()
    for got, want in zip(encode(fresh, images, text), encode(model, images, text)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert adapter_hash(out) == adapter_hash(model) == adapter_hash(fresh) == config["adapter_hash"]
    perturb(fresh, seed=1)
    assert adapter_hash(fresh) != adapter_hash(out)


def test_load_is_strict_about_keys(tmp_path: Path) -> None:
    out = save_adapter(inject_harma(tiny_clip()), tmp_path / "a", "harma-tiny")
    with pytest.raises(AdapterError, match=r"missing keys \['visual.transformer.resblocks.2.harma_adapter"):
        load_adapter(tiny_clip(layers=3), out)  # a deeper image tower needs more adapters
    config = json.loads((out / CONFIG_FILE).read_text())
    config["harma"]["share"] = "none"
    (out / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(AdapterError, match=r"unexpected keys \['harma.mini.shared_0"):
        load_adapter(tiny_clip(), out)
    with pytest.raises(AdapterError, match="adapter_config.json is missing"):
        load_adapter(tiny_clip(), tmp_path)


def test_plain_tensor_folders_of_heads_runs_load_by_name(tmp_path: Path) -> None:
    model = tiny_clip()
    mark_trainable(model, "heads")
    with torch.no_grad():
        model.text_projection.add_(1.0)
    state = {n: p for n, p in model.named_parameters() if p.requires_grad}
    out = write_adapter(tmp_path / "heads", state, {"base": "harma-tiny"})
    fresh = load_adapter(tiny_clip(), out)
    assert not hasattr(fresh, "harma")  # nothing injected
    torch.testing.assert_close(fresh.text_projection, model.text_projection, rtol=0, atol=0)
    write_adapter(tmp_path / "bad", {"visual.nope": torch.zeros(2)}, {"base": "harma-tiny"})
    with pytest.raises(AdapterError, match="visual.nope"):
        load_adapter(tiny_clip(), tmp_path / "bad")


# --- harma-lite: timm EfficientNet image tower + Hugging Face MiniLM text tower -------------------------

@pytest.fixture(scope="module")
def lite():
    from harma_core import create_model

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return create_model("harma-lite", device="cpu", adapter=None)


@pytest.fixture(scope="module")
def ucm_batch(lite) -> torch.Tensor:
    """Two real UCM tiles at 128 px (the CNN takes any size; smaller keeps the CPU tests quick)."""
    mean, std = torch.tensor(lite.mean).view(3, 1, 1), torch.tensor(lite.std).view(3, 1, 1)
    tiles = [Image.open(UCM_IMAGES / f"{i}.jpg").convert("RGB").resize((128, 128)) for i in (1, 100)]
    return torch.stack([(pil_to_tensor(t).float() / 255 - mean) / std for t in tiles])


def test_harma_lite_identity_and_placement(lite, ucm_batch: torch.Tensor) -> None:
    base = frozen(lite.model)
    model = inject_harma(copy.deepcopy(lite.model), HarmaConfig(extra_trainable=LITE_HEADS)).eval()
    text = lite.tokenizer(["many buildings and green trees", "a river"])
    for got, want in zip(encode(model, ucm_batch, text), encode(base, ucm_batch, text)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    sites = model.harma.sites
    assert sites["image"] == [f"visual.trunk.blocks.5.{i}" for i in range(4)] + ["visual.trunk.blocks.6.0"]
    assert sites["text"] == [f"text.transformer.encoder.layer.{i}.output.dense" for i in range(6)]
    widths = [a.width for a in model.modules() if isinstance(a, HarmaAdapter)]
    assert widths == [192] * 4 + [320] + [384] * 6
    # 5 image blocks and 6 text blocks: K = 5 shared M, text paired by relative depth
    minis = [a.mini_name for a in model.modules() if isinstance(a, HarmaAdapter)]
    assert minis == [f"shared_{i}" for i in (0, 1, 2, 3, 4, 0, 0, 1, 2, 3, 4)]
    outside = {n for n, p in model.named_parameters() if p.requires_grad and "harma" not in n}
    assert all(n == "logit_scale" or n.startswith(LITE_HEADS) for n in outside)
    assert {n.split(".")[0] for n in outside} == {"visual", "text", "logit_scale"}


def test_harma_lite_text_embedding_ignores_batch_padding(lite) -> None:
    # The tokenizer pads to the longest text of the batch: a query must embed the same alone or in a batch.
    alone, batch = lite.tokenizer(["houses"]), lite.tokenizer(["houses", "a long river crossing a dense green forest"])
    assert batch.shape[1] > alone.shape[1]
    results = {}
    for mask_padding in (True, False):
        model = inject_harma(copy.deepcopy(lite.model), HarmaConfig(mask_padding=mask_padding)).eval()
        perturb(model)
        with torch.no_grad():
            results[mask_padding] = (model.encode_text(alone)[0] - model.encode_text(batch)[0]).abs().max()
    assert results[True] < 1e-5 < results[False]


def test_harma_lite_round_trip_includes_heads(lite, ucm_batch: torch.Tensor, tmp_path: Path) -> None:
    model = inject_harma(copy.deepcopy(lite.model), HarmaConfig(extra_trainable=LITE_HEADS)).eval()
    perturb(model)
    out = save_adapter(model, tmp_path / "lite", "harma-lite")
    keys = set(load_file(str(out / WEIGHTS_FILE)))
    assert {"visual.head.proj.weight", "text.proj.weight"} <= keys
    assert not any(k.startswith(("visual.trunk.", "text.transformer.")) and "harma_adapter" not in k for k in keys)
    fresh = load_adapter(copy.deepcopy(lite.model), out).eval()
    text = lite.tokenizer(["many buildings and green trees"])
    for got, want in zip(encode(fresh, ucm_batch, text), encode(model, ucm_batch, text)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_freeze_norm_stats_keeps_frozen_batchnorm_statistics(lite, ucm_batch: torch.Tensor) -> None:
    model = inject_harma(copy.deepcopy(lite.model), HarmaConfig(extra_trainable=LITE_HEADS))
    bn = model.visual.trunk.bn2
    before = bn.running_mean.clone()
    model.train()
    assert freeze_norm_stats(model) > 40
    assert not bn.training and model.harma.mini["shared_0"].training
    with torch.no_grad():  # BatchNorm in training mode would update its statistics even so
        model.encode_image(ucm_batch)
    torch.testing.assert_close(bn.running_mean, before, rtol=0, atol=0)


def test_concurrent_text_embedding_matches_single_threaded() -> None:
    # Issue 17.2: the padding mask recorded at the text tower's entry must belong to the calling thread.
    from concurrent.futures import ThreadPoolExecutor

    from harma_core import create_model
    from harma_core.embed import embed_texts

    lite = create_model("harma-lite", device="cpu")  # the shipped adapter: its text layers read the mask
    assert lite.model.harma.sites["text"]

    words = "a dense residential area with many buildings and green trees beside a wide river crossing".split()
    batches = [[" ".join(words[:1 + i % 5]), " ".join(words[:6 + (7 * i) % 9])] for i in range(24)]
    want = [embed_texts(lite, b) for b in batches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda b: embed_texts(lite, b), batches * 4))
    for i, g in enumerate(got):
        np.testing.assert_allclose(g, want[i % len(batches)], rtol=0, atol=1e-5, err_msg=f"batch {i}")


def test_checkpoint_recomputation_keeps_its_own_mask_while_another_thread_encodes() -> None:
    # Activation checkpointing re-runs the blocks in backward; a text encoded meanwhile in another thread
    # (other batch size, other padding) must not change the mask that the recomputation reads.
    import threading

    model = inject_harma(tiny_clip())
    perturb(model)
    _, text = tiny_inputs()
    other = torch.randint(1, 98, (3, 16), generator=torch.Generator().manual_seed(2))
    other[:, 3], other[:, 4:] = 99, 0

    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        net = copy.deepcopy(model)
        net.transformer.grad_checkpointing = checkpointing
        loss = net.encode_text(text).square().sum()
        worker = threading.Thread(target=lambda: net.encode_text(other))
        worker.start()
        worker.join()
        loss.backward()
        return {n: p.grad for n, p in net.named_parameters() if p.grad is not None and "harma" in n}

    plain, recomputed = grads(False), grads(True)
    assert plain.keys() == recomputed.keys() and len(plain) > 10
    for name, g in plain.items():
        torch.testing.assert_close(recomputed[name], g, rtol=1e-5, atol=1e-6, msg=name)
