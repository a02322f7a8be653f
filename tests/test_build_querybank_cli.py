"""tools/build_querybank.py end to end: a bank of real UCM train captions and images, loaded by the real model."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from harma_core import create_model
from harma_core.data import load_dataset, normalize_caption
from harma_core.embed import embed_items
from harma_core.querybank import QueryBank, bank_texts

ROOT = Path(__file__).resolve().parents[1]


def _table(path: Path, shared_data: Path, n: int) -> Path:
    """The first two captions of n real UCM train images of different classes, as a captions table."""
    ucm = shared_data / "captions" / "ucm_captions"
    items = json.loads((ucm / "ucm_train.json").read_text())[::80][:n]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption", "split"])
        for it in items:
            for cap in it["caption"][:2]:
                w.writerow([str(ucm / "images" / it["image"]), cap, "train"])
    return path


def _build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/build_querybank.py", "--model", "harma-lite", "--beta", "20",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_build_then_add_images_keeps_the_digest_and_a_mismatch_is_refused(tmp_path, shared_data):
    table, out = _table(tmp_path / "tiles.csv", shared_data, 6), tmp_path / "bank"
    done = _build("--data", str(table), "--out", str(out), "--views", "1")
    assert done.returncode == 0, done.stderr
    lite = create_model("harma-lite", device="cpu")
    bank = QueryBank.load(lite, out)
    items = load_dataset(str(table), "train").items
    captions = [c for it in items for c in it.captions]
    texts = bank_texts(captions)
    assert bank.identity == lite.identity and bank.beta == 20.0 and bank.size == len(texts)
    assert bank.sources["image_views"] == 1 and sum(v for k, v in bank.sources.items() if "/" in k) == 12
    # a caption's image vector is the unit mean of the embeddings of the images it describes
    vecs = embed_items(lite, items)
    want = np.stack([vecs[[i for i, it in enumerate(items) if t in map(normalize_caption, it.captions)]].sum(0)
                     for t in texts])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert np.abs(bank.images.astype(np.float32) - want).max() < 2e-2

    again = _build("--data", str(table), "--out", str(out), "--views", "4", "--keep-captions")
    assert again.returncode == 0, again.stderr
    four = QueryBank.load(lite, out)
    assert four.digest == bank.digest  # offsets stored by collections stay valid
    np.testing.assert_array_equal(four.embeddings, bank.embeddings)
    assert four.sources["image_views"] == 4 and not np.array_equal(four.images, bank.images)

    bigger = _build("--data", str(_table(tmp_path / "more.csv", shared_data, 7)), "--out", str(out),
                    "--keep-captions")
    assert bigger.returncode == 2 and "build it anew without --keep-captions" in bigger.stderr, bigger.stderr
    assert QueryBank.load(lite, out).digest == bank.digest  # the refused run wrote nothing
