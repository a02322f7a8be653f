"""POST /train: fine-tune the default model on GeoTIFFs + labelled polygons as a background job, and
POST /model: load a model (a trained run, a model folder or name) and make it the default for NEW collections.

A training job uses the same job API as indexing (GET/DELETE /jobs/<id>: done/total steps, tiles_per_s as
training images per second, eta_s, cancel). Runs are written under STORE/runs/<run>; a run of the same name
resumes from its last finished epoch. A finished run is registered as an available model; no collection
changes model: each keeps searching with the one it was built with, and the result says how to re-index.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harma_core import HarmaError
from harma_core.serving import SHIPPED_DIR, torch_available
from harma_core.train_config import TrainConfig
from server.errors import Conflict, InvalidRequest
from server.indexing.pipeline import Progress
from server.jobs import Job
from server.models import RUN_NAME
from server.services import Services
from server.store.paths import check_raster_files, check_vector_file, resolve_allowed

# keys of a POST /train body: TrainConfig settings a client may choose (paths checked against allowed roots)
PATH_KEYS = ("raster", "labels", "data")
SETTING_KEYS = ("layer", "label_field", "caption_template", "tile_size", "tile_size_m", "split_field",
                "min_cover", "epochs", "batch_size", "lr", "mode", "views", "seed", "init", "steps_per_epoch")


def runs_root(services: Services) -> Path:
    """Where training runs of this store live."""
    return Path(services.store.root) / "runs"


def training_config(services: Services, body: Any) -> TrainConfig:
    """Validate a POST /train body into a TrainConfig (paths under the allowed roots, known keys only)."""
    if not isinstance(body, dict):
        raise InvalidRequest('give a JSON object such as {"raster": ["/data/a.tif"], "labels": "/data/l.gpkg", '
                             '"label_field": "class", "epochs": 3}')
    unknown = sorted(set(body) - set(PATH_KEYS) - set(SETTING_KEYS) - {"run"})
    if unknown:
        raise InvalidRequest(f"unknown training key(s) {unknown}; known: "
                             f"{sorted({*PATH_KEYS, *SETTING_KEYS, 'run'})}")
    run = body.get("run") or time.strftime("run-%Y%m%d-%H%M%S")
    if not isinstance(run, str) or not RUN_NAME.match(run):
        raise InvalidRequest(f"run name {run!r} must be 1-64 letters, digits, '_', '.' or '-'")
    settings: dict[str, Any] = {k: body[k] for k in SETTING_KEYS if k in body}
    for key in PATH_KEYS:
        if key not in body:
            continue
        value = body[key]
        many = key != "labels"
        if many and isinstance(value, str):
            value = [value]
        if (many and not (isinstance(value, list) and value)) or (not many and not isinstance(value, str)):
            raise InvalidRequest(f"{key} must be {'a list of absolute paths' if many else 'an absolute path'}")
        paths = [resolve_allowed(v, services.allowed_roots, what=key) for v in (value if many else [value])]
        for path in paths:
            if key == "raster":
                check_raster_files(path, services.allowed_roots)
            elif key == "labels":
                check_labels(path, body.get("layer"))
        settings[key] = [str(p) for p in paths] if many else str(paths[0])
    if "init" in settings:
        settings["init"] = _init_adapter(services, settings["init"])
    try:
        return TrainConfig.from_dict({**settings, "model": services.model.name, "out": str(runs_root(services) / run),
                                      "device": str(services.model.device), "num_workers": 0})
    except HarmaError as e:  # ConfigError: a bad setting, named
        raise InvalidRequest(str(e)) from e


def _init_adapter(services: Services, value: Any) -> str:
    """`init` of POST /train: a model name with a shipped adapter, a run of this store by name, or a folder under
    the allowed roots (or the store's runs); never a folder elsewhere on the server."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"init {value!r} must be a model name (harma-lite), a run name or a run folder")
    if "/" not in value and "\\" not in value and not value.startswith((".", "~")):
        if (runs_root(services) / value).is_dir() and RUN_NAME.match(value):
            return str(runs_root(services) / value)
        if (SHIPPED_DIR / value / "adapter.safetensors").is_file():
            return value
        raise InvalidRequest(f"init {value!r} is neither a model with a shipped adapter (e.g. harma-lite) nor a "
                             f"run of this server ({runs_root(services)}); give one of those or a run folder "
                             "under an allowed root")
    return str(resolve_allowed(value, [runs_root(services), *services.allowed_roots], what="init"))


def check_labels(path: Path, layer: Any) -> None:
    """Refuse a labels file whose layer holds no polygons (points, lines), naming what it holds, before a job."""
    import pyogrio

    check_vector_file(path)
    try:
        info = pyogrio.read_info(path, layer=layer if isinstance(layer, (str, int)) else None)
    except Exception:  # unreadable: training reports it with its own message
        return
    kind = str(info.get("geometry_type") or "")
    if kind and "polygon" not in kind.lower() and kind.lower() not in ("unknown", "geometry", "geometrycollection"):
        raise InvalidRequest(f"labels {path} hold {kind} geometries; training needs polygons (areas) with a label "
                             "field; buffer points or lines into polygons first (e.g. QGIS: Vector > Geoprocessing "
                             "> Buffer)")


def start_training(services: Services, body: Any) -> Job:
    """Check the request now, train in a background job; the served model stays as it is."""
    if not torch_available():
        raise Conflict("training needs torch, which this server's install leaves out: pip install "
                       "'harma-search[train]' into its environment (or train on a workstation with tools/train.py, "
                       "export with tools/export_model.py and serve the folder with --model)")
    cfg = training_config(services, body)
    if any(j.kind == "train" and j.collection == cfg.out and j.state in ("queued", "running")
           for j in services.jobs.list()):
        raise Conflict(f"run {Path(cfg.out).name!r} is already training; wait for it or cancel its job")

    def run(progress: Callable[[Progress], None], cancel: threading.Event) -> dict[str, Any]:
        started: list[float] = []

        def on_event(event: dict) -> None:
            done, total = int(event["done"]), int(event["total"])
            if event["phase"] != "training":
                progress(Progress(done=0, total=total))
                return
            if not started:
                started.append(time.monotonic())
            elapsed = max(time.monotonic() - started[0], 1e-6)
            rate = done / elapsed  # steps per second
            progress(Progress(done=done, total=total, tiles_per_s=rate * cfg.batch_size,
                              eta_s=(total - done) / rate if rate > 0 else None))

        from harma_core.train import TrainingCancelled, train  # torch: the [train] extra

        try:
            metrics = train(cfg, progress=on_event, should_stop=cancel.is_set)
        except TrainingCancelled as e:
            return {"cancelled": True, "run": cfg.out, "detail": str(e)}
        except HarmaError as e:  # bad labels, rasters or settings found while reading: the job fails, named
            raise InvalidRequest(str(e)) from e
        return {"run": cfg.out, "model": cfg.out, "best_epoch": metrics["best_epoch"],
                "best_val": metrics["best_val"], "init_val": metrics["init_val"],
                "served_model": services.model.identity, **_register(services, cfg.out)}

    return services.jobs.submit("train", cfg.out, run)  # the job's "collection" is the run folder


def _register(services: Services, run: str) -> dict[str, Any]:
    """Load a finished run as an available model; what the job result says about it and how to re-index."""
    try:
        identity = services.models.load(run).identity
    except Exception as e:  # noqa: BLE001 - the run is trained; only serving it failed, and the result says why
        return {"model_identity": None, "registered": False,
                "next": f"the run is trained but could not be loaded here ({e}); export it with "
                        "tools/export_model.py and serve the folder"}
    return {"model_identity": identity, "registered": True,
            "next": f"collections keep their own models; to re-index one with the tuned model, POST "
                    f"/api/v1/collections/NAME/reindex {{\"model\": \"{run}\", \"into\": \"NEW_NAME\"}} "
                    f"(a job), or POST /api/v1/collections {{\"name\": \"NEW_NAME\", \"model\": \"{run}\"}} "
                    "and add rasters; POST /api/v1/model makes it the default for new collections"}


def switch_model(services: Services, body: Any) -> dict[str, Any]:
    """Load a model (a trained run folder, a model folder or name) and make it the default for new collections;
    existing collections keep searching and indexing with the model each was built with."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"].strip():
        raise InvalidRequest('give {"model": "/path/to/run"} (a training run folder) or a model name')
    served = services.models.load(body["model"].strip())
    previous = services.models.set_default(served)
    return {"model": served.identity, "name": served.model.name, "source": served.source,
            "previous": previous.identity, "default": True,
            "note": "new collections use this model unless they name another; existing collections keep the "
                    "model each was built with"}
