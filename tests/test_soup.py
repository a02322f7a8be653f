"""Adapter soups (harma_core.soup, tools/soup.py) on the shipped harma-lite adapter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harma_core.adapter_io import read_adapter, write_adapter
from harma_core.errors import AdapterError
from harma_core.soup import soup
from harma_core.zoo import create_model, resolve_adapter

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shipped() -> tuple[Path, dict, dict]:
    path = resolve_adapter("harma-lite")
    config, state = read_adapter(path)
    return path, config, state


def _variant(tmp: Path, config: dict, state: dict, scale: float) -> Path:
    meta = {"base": config["base"], "harma": config["harma"], "extra": {"mode": "harma"}}
    return write_adapter(tmp, {k: v * scale for k, v in state.items()}, meta)


def test_soup_is_the_weighted_mean_and_records_its_ingredients(tmp_path: Path, shipped) -> None:
    path, config, state = shipped
    zero = _variant(tmp_path / "zero", config, state, 0.0)
    out = soup([path, zero], tmp_path / "soup", weights=[0.75, 0.25])
    got_config, got = read_adapter(out)
    assert got.keys() == state.keys()
    for k in state:
        torch.testing.assert_close(got[k], state[k] * 0.75)
    assert got_config["extra"]["soup"] == {"of": [config["adapter_hash"], read_adapter(zero)[0]["adapter_hash"]],
                                           "weights": [0.75, 0.25]}
    assert got_config["harma"] == config["harma"] and got_config["parameters"] == config["parameters"]


def test_soup_of_one_adapter_with_itself_is_that_adapter(tmp_path: Path, shipped) -> None:
    path, config, _ = shipped
    out = soup([path, path], tmp_path / "same")
    assert read_adapter(out)[0]["adapter_hash"] == config["adapter_hash"]


def test_soup_refuses_other_layouts_and_bad_weights(tmp_path: Path, shipped) -> None:
    path, config, state = shipped
    other = {**config, "harma": {**config["harma"], "image_stages": [6]}}
    moved = _variant(tmp_path / "other", other, state, 1.0)
    with pytest.raises(AdapterError, match="another 'harma'"):
        soup([path, moved], tmp_path / "x")
    fewer = write_adapter(tmp_path / "fewer", dict(list(state.items())[:-1]),
                          {"base": config["base"], "harma": config["harma"], "extra": {}})
    with pytest.raises(AdapterError, match="other tensors"):
        soup([path, fewer], tmp_path / "y")
    with pytest.raises(AdapterError, match="summing to 1"):
        soup([path, path], tmp_path / "z", weights=[0.5, 0.6])
    with pytest.raises(AdapterError, match="at least two"):
        soup([path], tmp_path / "w")
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()


def test_soup_cli_writes_an_adapter_the_model_loads(tmp_path: Path, shipped) -> None:
    path, config, state = shipped
    half = _variant(tmp_path / "half", config, state, 0.5)
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "soup.py"), "harma-lite", str(half),
                          "--out", str(tmp_path / "cli")], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    loaded = create_model(str(tmp_path / "cli"), device="cpu")
    assert loaded.adapter_hash == json.loads((tmp_path / "cli" / "adapter_config.json").read_text())["adapter_hash"]
    bad = subprocess.run([sys.executable, str(ROOT / "tools" / "soup.py"), "harma-lite", str(tmp_path / "nope"),
                          "--out", str(tmp_path / "bad")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "neither an adapter folder" in bad.stderr
