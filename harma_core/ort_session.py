"""ONNX Runtime CPU session settings shared by every ONNX model (serving folders and torch exports alike)."""

from __future__ import annotations

from typing import Any

import numpy as np

RUNTIMES = ("auto", "torch", "onnx")


def session_options(threads: int | None = None, spin: bool = False, level: str = "all") -> Any:
    """ORT CPU session options: graph optimisation `level` (basic, extended, all), threads (default: the
    cores), no spin-waiting: spinning intra-op threads burn the cores tile readers need between batches."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                   "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                   "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    so.intra_op_num_threads = int(threads or 0)
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.log_severity_level = 3
    return so


def runtime_of(model: Any) -> str:
    """'onnx' or 'torch': what runs a model's towers."""
    return getattr(model, "runtime", "torch")


class OrtTowers:
    """The two towers' sessions (`image_session`, `text_session`, `pad_token_id` set by the subclass)."""

    image_session: Any
    text_session: Any
    pad_token_id: int | None

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        """Normalised float32 pixels [B, 3, S, S] -> unit embeddings [B, dim]."""
        return self.image_session.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})[0]

    def encode_tokens(self, ids: np.ndarray) -> np.ndarray:
        """Token ids [B, L] (padded with the tokenizer's pad id) -> unit embeddings [B, dim]."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        feed = {"input_ids": ids}
        if self.pad_token_id is not None:
            feed["attention_mask"] = (ids != self.pad_token_id).astype(np.int64)
        return self.text_session.run(None, feed)[0]
