"""Quarter-turn augmentation of cached training views (`--turns 4`), on real UCM images and the real lite tower."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harma_core import create_model
from harma_core import prefix_cache as pc
from harma_core.data import decode_image, load_dataset
from harma_core.errors import ConfigError
from harma_core.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lite():
    return create_model("harma-lite", device="cpu", adapter=None)


@pytest.fixture(scope="module")
def ucm_items(shared_data):
    return load_dataset(shared_data / "captions" / "ucm_captions", "train").items[::400][:4]


def test_quarter_turn_is_an_exact_rot90_and_takes_all_four():
    image = torch.arange(3 * 5 * 5, dtype=torch.float32).reshape(3, 5, 5)
    turn, seen = pc.RandomQuarterTurn(), set()
    torch.manual_seed(0)
    for _ in range(40):
        out = turn(image)
        k = next(k for k in range(4) if torch.equal(out, torch.rot90(image, k, dims=(1, 2))))
        seen.add(k)
    assert seen == {0, 1, 2, 3}


def test_turned_augmentation_is_the_upright_one_turned(lite, ucm_items):
    """Same seed: the turns=4 view of a real scene is the turns=1 view rotated by a multiple of 90 degrees."""
    image = decode_image(ucm_items[0].image)
    ks = []
    for seed in range(8):
        torch.manual_seed(seed)
        upright = pc.train_transform(lite, 1)(image)
        torch.manual_seed(seed)
        turned = pc.train_transform(lite, 4)(image)
        ks.append(next(k for k in range(4) if torch.allclose(turned, torch.rot90(upright, k, dims=(1, 2)))))
    assert len(set(ks)) > 1, ks  # it does turn, and by more than one angle
    with pytest.raises(ValueError, match="turns=2"):
        pc.train_transform(lite, 2)


def test_turned_cache_keeps_view_zero_upright_and_its_own_name(lite, ucm_items, tmp_path):
    upright = pc.build_prefix_cache(lite, ucm_items, 2, 5, tmp_path, seed=0, num_workers=0)
    turned = pc.build_prefix_cache(lite, ucm_items, 2, 5, tmp_path, seed=0, num_workers=0, turns=4)
    assert pc.cache_key(lite, ucm_items, 2, 5, 0) == pc.cache_key(lite, ucm_items, 2, 5, 0, turns=1)
    key = pc.cache_key(lite, ucm_items, 2, 5, 0, turns=4)
    assert key != pc.cache_key(lite, ucm_items, 2, 5, 0)
    assert json.loads((tmp_path / f"prefix-{key}.json").read_text())["turns"] == 4
    assert np.array_equal(upright[0], turned[0])  # view 0 (what validation uses) is the plain transform
    assert not np.array_equal(upright[1], turned[1])


def test_bad_turns_is_refused_by_config_and_cli():
    with pytest.raises(ConfigError, match="turns 3"):
        TrainConfig(turns=3)
    done = subprocess.run([sys.executable, "tools/train.py", "--turns", "2"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and "--turns: invalid choice: 2" in done.stderr, done.stderr
