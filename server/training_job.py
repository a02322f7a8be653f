"""POST /train: fine-tune the served model on GeoTIFFs + labelled polygons as a background job, and
POST /model: switch the served model to a trained run, only when asked (never behind live collections' back).

A training job uses the same job API as indexing (GET/DELETE /jobs/<id>: done/total steps, tiles_per_s as
training images per second, eta_s, cancel). Runs are written under STORE/runs/<run>; a run of the same name
resumes from its last finished epoch. The served model is not touched: the result says how to switch.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harma_core import HarmaError
from harma_core.serving import SHIPPED_DIR, load_model, torch_available
from harma_core.train_config import TrainConfig
from server.errors import Conflict, InvalidRequest, PathNotAllowed
from server.indexing.pipeline import Progress
from server.jobs import Job
from server.search.search import TextEmbedder
from server.services import Services
from server.store.paths import check_raster_files, check_vector_file, resolve_allowed, resolve_allowed_or

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
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
                "served_model": services.model.identity,
                "next": f"the server still runs {services.model.name}; to index with the tuned model, POST "
                        f"/api/v1/model {{\"model\": \"{cfg.out}\"}} (collections of other models are then "
                        "refused until re-indexed) or restart the server with --model " + cfg.out}

    return services.jobs.submit("train", cfg.out, run)  # the job's "collection" is the run folder


def _path_like(s: str) -> bool:
    return "/" in s or "\\" in s or s.startswith((".", "~"))


def model_ref(services: Services, name: str) -> str:
    """What POST /model may load: a model name, a run of this store by name, a run folder or checkpoint file under
    the allowed roots (also as ARCH:/path). Outside the roots and missing read the same (no existence oracle)."""
    roots = [runs_root(services), *services.allowed_roots]
    refusal = (f"model {name!r} is not a model name, nor a run or checkpoint under the allowed roots or "
               f"{runs_root(services)}; give a model name (harma-lite) or a training run folder there")
    arch, sep, tag = name.partition(":")
    if sep and (_path_like(tag) or Path(tag).exists()) and not _path_like(arch):  # ARCH:/path/to/checkpoint.pt
        return f"{arch}:{resolve_allowed_or(tag, roots, refusal)}"
    if _path_like(name):
        return str(resolve_allowed_or(name, roots, refusal))
    if RUN_NAME.match(name) and (runs_root(services) / name).is_dir():
        return str(runs_root(services) / name)
    if Path(name).exists():  # a bare name the model loader would open relative to the server's folder
        raise PathNotAllowed(refusal)
    return name


def switch_model(services: Services, body: Any) -> dict[str, Any]:
    """Serve another model (a trained run folder or a model name), on request only and with no job active."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"].strip():
        raise InvalidRequest('give {"model": "/path/to/run"} (a training run folder) or a model name')
    name = model_ref(services, body["model"].strip())
    if any(j.state in ("queued", "running") for j in services.jobs.list()):
        raise Conflict("jobs are queued or running; switch the model when they are done (GET /api/v1/jobs)")
    try:
        model = load_model(name, device=services.model.device, runtime=getattr(services.model, "runtime", "torch"))
    except Exception as e:  # noqa: BLE001 - a damaged run folder fails in json, safetensors, torch...: all a 400
        raise InvalidRequest(f"cannot load model {body['model'].strip()!r} ({type(e).__name__}: {e}); give a "
                             "training run folder (tools/train.py --out) or a model name") from e
    previous = services.model.identity
    services.model, services.embed_text = model, TextEmbedder(model)
    return {"model": model.identity, "previous": previous,
            "note": "collections built with the previous model are refused until re-indexed with this one"}
