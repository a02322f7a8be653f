"""ONNX Runtime CPU session settings shared by every ONNX model (serving folders and torch exports alike)."""

from __future__ import annotations

from typing import Any

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
