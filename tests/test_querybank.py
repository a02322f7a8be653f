"""Query bank (QB-Norm): offsets by the formula, ranking as the inverted softmax, hubs pushed down, file checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from harma_core.querybank import BANK_FILE, QueryBank, QueryBankError

CAPTIONS = ["a river crossing a dense forest", "many buildings and green trees", "an airport with two runways",
            "a baseball field beside a road", "a beach with white waves", "a parking lot with many cars"]


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def _random_bank(n: int = 300, dim: int = 16, beta: float = 20.0) -> QueryBank:
    rng = np.random.default_rng(0)
    return QueryBank(_unit(rng.normal(size=(n, dim))).astype(np.float16), "test-model", beta)


def test_offsets_follow_the_formula_and_rank_as_the_inverted_softmax() -> None:
    bank = _random_bank()
    rng = np.random.default_rng(1)
    gallery, queries = _unit(rng.normal(size=(50, 16))), _unit(rng.normal(size=(7, 16)))
    s_bank = bank.vectors @ gallery.T  # [bank, gallery]
    want = np.log(np.exp(bank.beta * s_bank).mean(axis=0)) / bank.beta
    off = bank.offsets(gallery)
    assert off.dtype == np.float32 and off.shape == (50,)
    np.testing.assert_allclose(off, want, rtol=0, atol=1e-5)
    assert np.all(off <= s_bank.max(axis=0) + 1e-6) and np.all(off >= s_bank.mean(axis=0) - 1e-6)
    cos = queries @ gallery.T
    inverted_softmax = bank.beta * cos - np.log(np.exp(bank.beta * s_bank).sum(axis=0))  # Bogolin et al.
    np.testing.assert_array_equal(np.argsort(-QueryBank.corrected(cos, off), axis=1),
                                  np.argsort(-inverted_softmax, axis=1))


def test_a_hub_close_to_every_bank_query_drops_below_a_specific_match() -> None:
    # Bank queries all lie at cosine 0.8 from the hub (axis 0) and share nothing with axis 1.
    rng = np.random.default_rng(2)
    rest = np.zeros((200, 16))
    rest[:, 2:] = _unit(rng.normal(size=(200, 14)))
    eye = np.eye(16)
    bank = QueryBank((0.8 * eye[0] + 0.6 * rest).astype(np.float16), "test-model", 20.0)
    query = 0.8 * eye[0] + 0.6 * eye[1]
    hub, specific = eye[0], _unit(0.2 * eye[0] + 0.98 * eye[1])
    gallery = np.stack([hub, specific]).astype(np.float32)
    cos = gallery @ query
    assert cos[0] > cos[1]  # by cosine the hub wins
    off = bank.offsets(gallery)
    np.testing.assert_allclose(off, [0.8, 0.2 / np.hypot(0.2, 0.98) * 0.8], atol=2e-3)
    corrected = QueryBank.corrected(cos, off)
    assert corrected[1] > corrected[0] + 0.5


def test_bad_inputs_are_refused_with_the_fix() -> None:
    bank = _random_bank()
    with pytest.raises(QueryBankError, match="do not fit this 16-d bank"):
        bank.offsets(np.zeros((3, 8), dtype=np.float32))
    with pytest.raises(QueryBankError, match="beta"):
        bank.with_beta(0.0)
    with pytest.raises(QueryBankError, match="non-empty"):
        QueryBank(np.zeros((0, 16), dtype=np.float16), "m", 10.0)


def test_round_trip_with_the_real_model_and_another_models_bank_is_refused(tmp_path: Path) -> None:
    from harma_core import create_model

    lite = create_model("harma-lite", device="cpu")
    bank = QueryBank.build(lite, CAPTIONS + ["A river crossing a dense forest."], beta=25.0, sources={"test": 6})
    assert bank.size == len(CAPTIONS) and bank.embeddings.dtype == np.float16  # normalised duplicate dropped
    bank.save(tmp_path)
    again = QueryBank.load(lite, tmp_path)
    assert (again.identity, again.beta, again.sources, again.digest) == (lite.identity, 25.0, {"test": 6}, bank.digest)
    np.testing.assert_array_equal(again.embeddings, bank.embeddings)
    assert bank.with_beta(10.0).digest != bank.digest
    other = dataclasses.replace(lite, adapter_hash="0000beef")  # the same network with another adapter's name
    with pytest.raises(QueryBankError, match="built by harma-lite.*not by harma-lite.*0000beef.*rebuild"):
        QueryBank.load(other, tmp_path)
    with pytest.raises(QueryBankError, match="no query bank"):
        QueryBank.load(lite, tmp_path / "missing")
    (tmp_path / BANK_FILE).write_bytes(b"garbage")
    with pytest.raises(QueryBankError, match="not a readable query bank"):
        QueryBank.load(lite, tmp_path)


def test_the_shipped_bank_belongs_to_the_shipped_model() -> None:
    from harma_core import create_model
    from harma_core.querybank import load_querybank

    lite = create_model("harma-lite", device="cpu")
    assert (lite.adapter_dir / BANK_FILE).is_file(), "harma-lite ships its query bank"
    bank = load_querybank(lite)
    assert bank.identity == lite.identity and bank.dim == lite.dim and bank.size > 10_000
    norms = np.linalg.norm(bank.vectors, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)


def test_evaluate_items_scores_plain_and_corrected_with_a_real_bank(shared_data: Path) -> None:
    from harma_core import create_model
    from harma_core.data import flatten_captions, load_dataset
    from harma_core.evaluate import evaluate_items

    lite = create_model("harma-lite", device="cpu")
    train = load_dataset(shared_data / "captions" / "ucm_captions", "train").items[::8]
    bank = QueryBank.build(lite, flatten_captions(train)[0], beta=20.0)
    items = load_dataset(shared_data / "captions" / "ucm_captions", "val").items[::7]
    m = evaluate_items(lite, items, bank=bank, betas=(10.0, 40.0))
    plain = evaluate_items(lite, items)
    assert {k: m[k] for k in plain} == plain
    assert (m["qb_beta"], m["qb_bank_size"]) == (20.0, bank.size) and 0 <= m["mR_qb"] <= 100
    assert [r["beta"] for r in m["qb_sweep"]] == [10.0, 40.0] and all("t2i_r10_qb" in r for r in m["qb_sweep"])
