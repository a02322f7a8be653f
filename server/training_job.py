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
from harma_core.onnx_runtime import load_model
from harma_core.train import TrainConfig, TrainingCancelled, train
from server.errors import Conflict, InvalidRequest
from server.jobs import Job
from server.paths import resolve_allowed
from server.pipeline import Progress
from server.search import TextEmbedder
from server.services import Services

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
        paths = [str(resolve_allowed(v, services.allowed_roots)) for v in (value if many else [value])]
        settings[key] = paths if many else paths[0]
    try:
        return TrainConfig.from_dict({**settings, "model": services.model.name, "out": str(runs_root(services) / run),
                                      "device": str(services.model.device), "num_workers": 0})
    except HarmaError as e:  # ConfigError: a bad setting, named
        raise InvalidRequest(str(e)) from e


def start_training(services: Services, body: Any) -> Job:
    """Check the request now, train in a background job; the served model stays as it is."""
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


def switch_model(services: Services, body: Any) -> dict[str, Any]:
    """Serve another model (a trained run folder or a model name), on request only and with no job active."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"].strip():
        raise InvalidRequest('give {"model": "/path/to/run"} (a training run folder) or a model name')
    name = body["model"].strip()
    if Path(name).is_absolute() or name.startswith("."):
        name = str(resolve_allowed(name, [runs_root(services), *services.allowed_roots]))
    if any(j.state in ("queued", "running") for j in services.jobs.list()):
        raise Conflict("jobs are queued or running; switch the model when they are done (GET /api/v1/jobs)")
    try:
        model = load_model(name, device=services.model.device, runtime=getattr(services.model, "runtime", "torch"))
    except HarmaError as e:
        raise InvalidRequest(f"cannot load model {name!r}: {e}") from e
    previous = services.model.identity
    services.model, services.embed_text = model, TextEmbedder(model)
    return {"model": model.identity, "previous": previous,
            "note": "collections built with the previous model are refused until re-indexed with this one"}
