"""The models one server searches and indexes with: the default model, always loaded, and every other model a
collection was built with, loaded on first use from the source its manifest records (a shipped model name, a
training run folder or an exported model folder) and kept while recently used (at most MAX_LOADED).

Sources a client names (POST /model, POST /collections "model", a training run) must be model names or lie
under the allowed roots or the store's runs/ folder; the same holds for sources read back from manifests.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harma_core.ort_session import RUNTIMES
from harma_core.serving import load_model, model_folder, torch_available
from server.errors import InvalidRequest, ModelUnavailable, PathNotAllowed, ServerError
from server.search.text_embedder import TextEmbedder
from server.store.paths import is_under, resolve_allowed_or
from server.store.store import Collection

MAX_LOADED = 3  # models kept in memory, the default included
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ServedModel:
    """A loaded model, its text embedder (own cache) and the source it loads from (None: not known)."""

    model: Any
    embed_text: TextEmbedder
    source: str | None

    @property
    def identity(self) -> str:
        """The model's identity, as collections record it."""
        return str(self.model.identity)

    def describe(self) -> dict[str, Any]:
        """{identity, name, source, dim} as the API reports it."""
        return {"identity": self.identity, "name": self.model.name, "source": self.source, "dim": int(self.model.dim)}


def _path_like(s: str) -> bool:
    return "/" in s or "\\" in s or s.startswith((".", "~"))


def _source_path(source: str) -> Path | None:
    """The file or folder a source names (ARCH:/path included), None for a model name."""
    arch, sep, tag = source.partition(":")
    if sep and _path_like(tag) and not _path_like(arch):
        return Path(tag).expanduser()
    return Path(source).expanduser() if _path_like(source) else None


def default_source(spec: str | Path) -> str:
    """The source to record for the model a server was started with: a name as given, a path made absolute."""
    text = str(spec)
    path = _source_path(text)
    if path is None and Path(text).exists():
        path = Path(text)
    if path is None:
        return text
    arch, sep, tag = text.partition(":")
    resolved = str(path.resolve())
    return f"{arch}:{resolved}" if sep and _path_like(tag) and not _path_like(arch) else resolved


class ModelRegistry:
    """Loaded models by identity: the default pinned, others least-recently-used first out."""

    def __init__(self, default: ServedModel, roots: list[Path], runs: Path, keep: int = MAX_LOADED,
                 text_cache: int = 512) -> None:
        self.roots, self.runs, self.keep, self.text_cache = roots, runs, max(1, keep), text_cache
        self._default = default
        self._loaded: OrderedDict[str, ServedModel] = OrderedDict({default.identity: default})
        self._known: dict[str, dict[str, Any]] = {default.identity: default.describe()}
        self._failed: dict[tuple[str, str], str] = {}  # (identity, source) -> why it last failed to load
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()  # one load at a time: two searches never load one model twice
        runtime = getattr(default.model, "runtime", "auto")
        self.runtime = runtime if runtime in RUNTIMES else "auto"
        self.device = str(getattr(default.model, "device", "auto"))

    @property
    def default(self) -> ServedModel:
        """The model new collections are built with, unless they name another."""
        return self._default

    def set_default(self, served: ServedModel) -> ServedModel:
        """Make a loaded model the default for new collections; returns the previous default."""
        with self._lock:
            previous, self._default = self._default, served
            self._loaded[served.identity] = served
            self._loaded.move_to_end(served.identity)
            self._evict()
        return previous

    def ref(self, spec: str) -> str:
        """What a client may name as a model: a model name, a run of this store by name, a run or model folder or
        checkpoint under the allowed roots or the runs folder (also ARCH:/path). Outside the roots and missing
        read the same (no existence oracle)."""
        roots = [self.runs, *self.roots]
        refusal = (f"model {spec!r} is not a model name, nor a run or checkpoint under the allowed roots or "
                   f"{self.runs}; give a model name (harma-lite) or a training run folder there")
        arch, sep, tag = spec.partition(":")
        if sep and (_path_like(tag) or Path(tag).exists()) and not _path_like(arch):  # ARCH:/path/to/checkpoint.pt
            return f"{arch}:{resolve_allowed_or(tag, roots, refusal)}"
        if _path_like(spec):
            return str(resolve_allowed_or(spec, roots, refusal))
        if RUN_NAME.match(spec) and (self.runs / spec).is_dir():
            return str(self.runs / spec)
        if Path(spec).exists():  # a bare name the model loader would open relative to the server's folder
            raise PathNotAllowed(refusal)
        return spec

    def load(self, spec: str) -> ServedModel:
        """The model a client names (POST /model, POST /collections "model", a finished training run), loaded
        and registered; 403 outside the roots, 400 when it does not load."""
        if not isinstance(spec, str) or not spec.strip():
            raise InvalidRequest(f"model {spec!r} must be a model name or a run or model folder")
        spec = spec.strip()
        with self._lock:  # an identity or a source already loaded (a name means its source: runs share names)
            for served in [self._default, *reversed(self._loaded.values())]:
                if spec in (served.identity, served.source):
                    self._loaded.move_to_end(served.identity)
                    return served
        source = self.ref(spec)
        try:
            return self._open(source)
        except ServerError:
            raise
        except Exception as e:  # noqa: BLE001 - a damaged folder fails in json, safetensors, torch...: all a 400
            raise InvalidRequest(f"cannot load model {spec!r} ({type(e).__name__}: {e}); give a training run "
                                 "folder (tools/train.py --out), an exported model folder or a model name") from e

    def source_of(self, col: Collection) -> str | None:
        """Where a collection's model loads from: its manifest's source, else that of the same model known here
        (old manifests record none: the default model's collections keep working)."""
        known = self._known.get(col.identity)
        return col.source or (known["source"] if known else None)

    def for_collection(self, col: Collection) -> ServedModel:
        """The model a collection was built with, loaded from its recorded source on first use; ModelUnavailable
        (409) naming the model, why and how to make it available when it cannot be loaded."""
        with self._lock:
            served = self._loaded.get(col.identity)
            if served is not None:
                self._loaded.move_to_end(col.identity)
                return served
        source = self.source_of(col)
        problem = self._problem(col, source)
        if problem is not None:
            raise self._unavailable(col, problem)
        assert source is not None
        try:
            return self._open(source, expect=col.identity)
        except Exception as e:  # noqa: BLE001 - whatever the loader raises becomes the reason, remembered
            reason = e.detail if isinstance(e, ServerError) else f"loading {source} failed ({type(e).__name__}: {e})"
            with self._lock:
                self._failed[(col.identity, source)] = reason
            raise self._unavailable(col, reason) from e

    def state_of(self, col: Collection) -> dict[str, Any]:
        """A collection's model as the API reports it: identity, name, source and state ('loaded', 'available':
        loads on first use, 'unavailable' with the reason), without loading anything."""
        source = self.source_of(col)
        out = {"identity": col.identity, "name": col.manifest["model"].get("name"), "source": source,
               "dim": col.manifest["model"].get("dim")}
        if col.identity in self._loaded:
            return {**out, "state": "loaded"}
        problem = self._problem(col, source) or self._failed.get((col.identity, source or ""))
        return {**out, "state": "available"} if problem is None else {**out, "state": "unavailable", "reason": problem}

    def available(self) -> list[dict[str, Any]]:
        """Every model this server has loaded or registered: {identity, name, source, dim, loaded, default}."""
        with self._lock:
            return [{**m, "loaded": i in self._loaded, "default": i == self._default.identity}
                    for i, m in self._known.items()]

    def _problem(self, col: Collection, source: str | None) -> str | None:
        """Why a collection's model cannot load, found without loading it; None when it may."""
        if source is None:
            return ("its manifest records no model source (made before sources were recorded) and this server's "
                    f"default model is {self._default.identity!r}")
        path = _source_path(source)
        if path is not None:
            if not path.exists():
                return f"its model source {source} is gone (moved or deleted)"
            if not is_under(path.resolve(), [self.runs, *self.roots]):
                return (f"its model source {source} lies outside the allowed roots and {self.runs}; start the "
                        "server with --allowed-root for its folder")
        if model_folder(path or source) is None and not torch_available():
            return (f"its model source {source} has no exported serving folder and this server has no torch; "
                    "export it with tools/export_model.py where torch is installed (or install "
                    "'harma-search[train]' here)")
        return None

    def _unavailable(self, col: Collection, reason: str) -> ModelUnavailable:
        default = self._default.source or self._default.identity
        return ModelUnavailable(
            f"collection {col.name!r} was built with model {col.identity!r}, which this server cannot load: "
            f"{reason}. Make that model available again, or re-index the collection's rasters with a loadable "
            f"model: POST /api/v1/collections/{col.name}/reindex {{\"model\": \"{default}\", \"into\": \"NEW_NAME\"}}")

    def _open(self, source: str, expect: str | None = None) -> ServedModel:
        """Load a model from a checked source and keep it; refuse one whose identity is not `expect`."""
        with self._load_lock:
            with self._lock:
                for served in self._loaded.values():
                    if served.identity == expect or (expect is None and served.source == source):
                        return served
            model = load_model(source, device=self.device, runtime=self.runtime)
            if expect is not None and str(model.identity) != expect:
                raise ModelUnavailable(f"its model source {source} now holds model {model.identity!r}, not "
                                       f"{expect!r} (trained or exported again since)")
            served = ServedModel(model, TextEmbedder(model, self.text_cache), source)
            with self._lock:
                known = self._loaded.get(served.identity)
                if known is not None:  # the same model from another source: keep the one loaded first
                    self._loaded.move_to_end(served.identity)
                    return known
                self._loaded[served.identity] = served
                self._known[served.identity] = served.describe()
                for key in [k for k in self._failed if k[0] == served.identity]:
                    del self._failed[key]
                self._evict()
            return served

    def _evict(self) -> None:
        """Drop the least recently used models beyond `keep`, never the default (hold the lock)."""
        while len(self._loaded) > self.keep:
            oldest = next(i for i in self._loaded if i != self._default.identity)
            del self._loaded[oldest]
