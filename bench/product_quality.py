#!/usr/bin/env python3
"""Search quality through the real product path: caption-set scenes stitched into a georeferenced GeoTIFF
mosaic (tools/mosaic.py, one scene per cell), indexed with tools/index.py (tile size = cell size, so tiles map
1:1 to cells), searched through a live `python -m server`, hits mapped back to cells by their window.

Reports, per ranking configuration (plain cosine; + near-duplicate folding; + querybank re-ranking when the
model ships a query bank):
- caption text->image R@1/5/10 over every val caption (k=10 per query), next to tools/evaluate.py on the
  same images (equal within noise for plain cosine: the same pixels, model and captions);
- class P@10 with each land-use class name as the query (UCM), and after one and two rounds of relevance
  feedback (3 positives and 3 negatives marked from the current top 10, cumulative);
- nonsense separation: the best hit's relevance (and, for comparison, its cosine) for real queries (class
  names, a sample of captions) vs gibberish; AUC = share of (real, gibberish) pairs ranked the right way.
Run `python bench/product_quality.py [--sets ucm rsicd] [--captions N] [--querybank PATH]`; the last stdout
line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import REPO, RSICD_DIR, UCM_DIR, emit, machine, quiet_logs, run_json, table
from search import Server

from harma_core.views import DEFAULT_VIEWS, VIEWS
from server.search.hubness import ENV

K = 10
CONFIGS = {"cosine": {"ranking": "cosine", "dedupe": False}, "cosine+dedupe": {"ranking": "cosine", "dedupe": True},
           "querybank+dedupe": {"ranking": "auto", "dedupe": True}}
GIBBERISH = ["qwxz zzkq 12345", "xkcd blorp vrrm", "asdf jkl", "!!!???", "lorem ipsum dolor", "zzzz",
             "12345 67890", "vbnm qpqp", "grlk fnord zib", "ooo ooo ooo", "hjkl; ';.,", "xyzzy plugh"]


def words_of(name: str, vocab: set[str]) -> str:
    """A class name such as 'baseballdiamond' split into caption words ('baseball diamond'), else as is."""
    best: list[list[str] | None] = [[]] + [None] * len(name)
    for end in range(1, len(name) + 1):
        for start in range(end):
            word = name[start:end]
            if best[start] is not None and word in vocab:
                cand = best[start] + [word]  # type: ignore[operator]
                if best[end] is None or len(cand) < len(best[end]):  # type: ignore[arg-type]
                    best[end] = cand
    return " ".join(best[-1]) if best[-1] else name


def build_mosaic(dataset: Path, split: str, out: Path, cell: int) -> tuple[Any, list[dict[str, Any]]]:
    """Write the mosaic with tools/mosaic.py; returns it and its scenes in cell order."""
    sys.path.insert(0, str(REPO / "tools"))
    import mosaic

    try:
        scenes = mosaic.select_scenes(mosaic.read_scenes(dataset, split))
    except mosaic.MosaicError:  # no classes (RSICD val names files by number): scenes in file order
        entries = json.loads(next(Path(dataset).glob(f"*_{split}.json")).read_text(encoding="utf-8"))
        scenes = [{"image": str(Path(dataset) / "images" / e["image"]), "name": e["image"], "label": "",
                   "captions": [c.strip() for c in e.get("caption", []) if c.strip()]} for e in entries]
    return mosaic.write_mosaic(scenes, out, split=split, cell=cell), scenes


def index_mosaic(store: Path, name: str, tif: Path, cell: int, views: int) -> float:
    """Index the mosaic through the CLI (each tile as `views` views); returns the wall seconds."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "tools" / "index.py"), "--store", str(store), name, str(tif),
                    "--tile-size", str(cell), "--overlap", "0", "--views", str(views), "--quiet"], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


class Bench:
    """Queries one collection of a live server and maps hits to mosaic cells."""

    def __init__(self, server: Server, collection: str, cols: int, cell: int, labels: list[str]) -> None:
        self.server, self.collection, self.cols, self.cell, self.labels = server, collection, cols, cell, labels

    def search(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.server.request("POST", "/search", {"collections": [self.collection], "k": K, **body})[1]

    def cells(self, fc: dict[str, Any]) -> list[int]:
        out = []
        for f in fc["features"]:
            col_off, row_off = f["properties"]["window"][:2]
            out.append((row_off // self.cell) * self.cols + col_off // self.cell)
        return out

    def recall(self, captions: list[str], owners: list[int], extra: dict[str, Any]) -> dict[str, Any]:
        """t2i R@1/5/10 (percent) of the captions' own cells among the top 10."""
        ranks, ranked_by = [], set()
        for text, cell in zip(captions, owners):
            fc = self.search({"text": text, **extra})
            ranked_by.add(fc["scoring"]["ranked_by"])
            hits = self.cells(fc)
            ranks.append(hits.index(cell) if cell in hits else K)
        r = np.asarray(ranks)
        return {**{f"t2i_r{k}": float(100 * (r < k).mean()) for k in (1, 5, 10)}, "ranked_by": sorted(ranked_by)}

    def precision(self, cells: list[int], label: str) -> float:
        return float(np.mean([self.labels[c] == label for c in cells])) if cells else 0.0

    def classes(self, queries: dict[str, str], extra: dict[str, Any], rounds: int) -> dict[str, Any]:
        """Class P@10 of the class-name queries, then after each round of feedback marking 3+3 tiles."""
        per_round: list[list[float]] = [[] for _ in range(rounds + 1)]
        for label, text in queries.items():
            fc = self.search({"text": text, **extra})
            pos: list[int] = []
            neg: list[int] = []
            for r in range(rounds + 1):
                cells = self.cells(fc)
                per_round[r].append(self.precision(cells, label))
                if r == rounds:
                    break
                good = [f["properties"]["tile_id"] for f, c in zip(fc["features"], cells) if self.labels[c] == label]
                bad = [f["properties"]["tile_id"] for f, c in zip(fc["features"], cells) if self.labels[c] != label]
                pos += [t for t in good if t not in pos][:3]
                neg += [t for t in bad if t not in neg][:3]
                fc = self.search({"text": text, "positive": pos, "negative": neg, "collection": self.collection,
                                  **{k: v for k, v in extra.items() if k != "ranking"}})
        out = {"p_at_10": float(100 * np.mean(per_round[0])),
               "per_class": {lab: round(100 * p, 1) for lab, p in zip(queries, per_round[0])}}
        for r in range(1, rounds + 1):
            out[f"p_at_10_feedback_{r}"] = float(100 * np.mean(per_round[r]))
        return out

    def separation(self, real: list[str], junk: list[str]) -> dict[str, Any]:
        """Best-hit relevance and cosine of real vs gibberish queries, and the AUC of each."""
        def best(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
            props = [self.search({"text": t, "k": 1})["features"][0]["properties"] for t in texts]
            rel = [p["relevance"] for p in props]
            return (np.asarray([np.nan if v is None else v for v in rel], dtype=np.float64),
                    np.asarray([p["cosine"] for p in props]))

        (r_rel, r_cos), (j_rel, j_cos) = best(real), best(junk)

        def auc(a: np.ndarray, b: np.ndarray) -> float | None:
            if np.isnan(a).any() or np.isnan(b).any():
                return None
            return float(((a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])).mean())

        def summary(x: np.ndarray) -> dict[str, float | None]:
            if np.isnan(x).any():
                return {"mean": None, "min": None, "max": None}
            return {"mean": round(float(x.mean()), 4), "min": round(float(x.min()), 4), "max": round(float(x.max()), 4)}

        return {"n_real": len(real), "n_gibberish": len(junk), "auc_relevance": auc(r_rel, j_rel),
                "auc_cosine": auc(r_cos, j_cos), "relevance_real": summary(r_rel),
                "relevance_gibberish": summary(j_rel), "cosine_real": summary(r_cos),
                "cosine_gibberish": summary(j_cos)}


def evaluate_reference(dataset: Path, split: str, querybank: str, views: int) -> dict[str, Any]:
    """tools/evaluate.py --json on the same images (the in-memory reference)."""
    return run_json([sys.executable, str(REPO / "tools" / "evaluate.py"), "--model", "harma-lite", "--data",
                     str(dataset), "--split", split, "--json", "--querybank", querybank, "--views", str(views)], timeout=3600)


def run_dataset(dataset: Path, split: str, cell: int, tmp: Path, args: argparse.Namespace,
                with_classes: bool, n_captions: int | None) -> dict[str, Any]:
    """Mosaic, index, serve and measure one dataset split."""
    from harma_core.data import normalize_caption

    name = dataset.name.split("_")[0]
    mosaic, scenes = build_mosaic(dataset, split, tmp / f"{name}_{split}", cell)
    store = tmp / f"store_{name}"
    index_s = index_mosaic(store, name, mosaic.tif, cell, args.views)
    captions, owners = [], []
    for i, s in enumerate(scenes):
        for c in s["captions"]:
            if normalize_caption(c).strip():  # as evaluate.py, which drops captions empty once normalised
                captions.append(normalize_caption(c))
                owners.append(i)
    if n_captions and n_captions < len(captions):
        keep = sorted(random.Random(0).sample(range(len(captions)), n_captions))
        captions, owners = [captions[i] for i in keep], [owners[i] for i in keep]
    labels = [s["label"] for s in scenes]
    server = Server(store, "harma-lite", tmp / f"server_{name}.log")
    out: dict[str, Any] = {"dataset": name, "split": split, "n_cells": len(scenes), "n_captions": len(captions),
                           "index_s": round(index_s, 1), "views": args.views, "configs": {}}
    try:
        server.wait()
        bench = Bench(server, name, mosaic.cols, cell, labels)
        vocab = {w for s in scenes for c in s["captions"] for w in normalize_caption(c).split()}
        queries = {lab: words_of(lab, vocab) for lab in sorted(set(labels)) if lab}
        for cname in args.configs:
            extra = CONFIGS[cname]
            t0 = time.perf_counter()
            res = {"recall": bench.recall(captions, owners, extra)}
            if cname == "querybank+dedupe" and res["recall"]["ranked_by"] != ["querybank"]:
                out["configs"][cname] = {"skipped": "the model ships no query bank"}
                continue
            if with_classes:
                res["classes"] = bench.classes(queries, extra, rounds=2)
            res["seconds"] = round(time.perf_counter() - t0, 1)
            out["configs"][cname] = res
            print(f"{name} {cname}: {res['recall']}", file=sys.stderr, flush=True)
        real = list(queries.values()) + random.Random(1).sample(captions, min(50, len(captions)))
        out["separation"] = bench.separation(real, GIBBERISH)
        out["class_queries"] = queries
    finally:
        server.stop()
    if not args.no_evaluate:
        ref = evaluate_reference(dataset, split, args.querybank, args.views)
        out["evaluate"] = {k: v for k, v in ref.items() if k.startswith("t2i") or k.startswith("mR")
                           or k in ("n_images", "n_captions")}
    return out


def report(runs: list[dict[str, Any]]) -> str:
    """Human tables of the runs."""
    rows = []
    for run in runs:
        for cname, res in run["configs"].items():
            if "skipped" in res:
                rows.append({"set": run["dataset"], "ranking": cname, "note": res["skipped"]})
                continue
            cls = res.get("classes", {})
            rows.append({"set": run["dataset"], "ranking": cname, **{k: res["recall"][k] for k in
                                                                      ("t2i_r1", "t2i_r5", "t2i_r10")},
                         "P@10": cls.get("p_at_10"), "P@10 fb1": cls.get("p_at_10_feedback_1"),
                         "P@10 fb2": cls.get("p_at_10_feedback_2")})
        if "evaluate" in run:
            ev = run["evaluate"]
            rows.append({"set": run["dataset"], "ranking": "tools/evaluate.py", "t2i_r1": ev["t2i_r1"],
                         "t2i_r5": ev["t2i_r5"], "t2i_r10": ev["t2i_r10"]})
            if "t2i_r1_qb" in ev:
                rows.append({"set": run["dataset"], "ranking": "tools/evaluate.py (qb)", "t2i_r1": ev["t2i_r1_qb"],
                             "t2i_r5": ev["t2i_r5_qb"], "t2i_r10": ev["t2i_r10_qb"]})
    sep = [{"set": r["dataset"], **{k: r["separation"][k] for k in ("auc_relevance", "auc_cosine")},
            "rel real mean": r["separation"]["relevance_real"]["mean"],
            "rel real min": r["separation"]["relevance_real"]["min"],
            "rel gibberish max": r["separation"]["relevance_gibberish"]["max"]} for r in runs]
    return table(rows, title="product quality (mosaic -> tools/index.py -> python -m server)") + "\n\n" + \
        table(sep, title="nonsense separation (best hit)")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables, then the JSON line."""
    quiet_logs()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", choices=["ucm", "rsicd"], default=["ucm"],
                    help="val sets: ucm (256 px scenes, with class P@10), rsicd (224 px scenes)")
    ap.add_argument("--captions", type=int, help="query a fixed random sample of N captions (default: all)")
    ap.add_argument("--rsicd-captions", type=int, default=1000,
                    help="captions sampled for RSICD (default 1000 of ~5,500; evaluate.py uses all)")
    ap.add_argument("--no-evaluate", action="store_true", help="skip the tools/evaluate.py reference")
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    ap.add_argument("--querybank", default="auto",
                    help="bank for the server and evaluate.py: auto (shipped), none, or a querybank.safetensors")
    ap.add_argument("--views", type=int, default=DEFAULT_VIEWS, choices=VIEWS,
                    help="index (and evaluate) each tile as the mean of this many rotations/mirrorings")
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS), help="rankings to run")
    args = ap.parse_args(argv)
    if args.querybank != "auto":
        os.environ[ENV] = args.querybank  # read by the server child (server.search.hubness.bank_for)
    info = machine()
    t0 = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory(prefix="harma-bench-quality-") as tmpdir:
        tmp = Path(args.keep) if args.keep else Path(tmpdir)
        tmp.mkdir(parents=True, exist_ok=True)
        if "ucm" in args.sets:
            runs.append(run_dataset(UCM_DIR, "val", 256, tmp, args, with_classes=True, n_captions=args.captions))
        if "rsicd" in args.sets:
            runs.append(run_dataset(RSICD_DIR, "val", 224, tmp, args, with_classes=False,
                                    n_captions=args.captions or args.rsicd_captions))
    print(report(runs))
    emit({"bench": "product_quality", "machine": {**info, "loadavg_end": list(os.getloadavg())},
          "seconds": round(time.perf_counter() - t0, 1), "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
