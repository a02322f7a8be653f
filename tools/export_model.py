#!/usr/bin/env python3
"""Export a model (name, checkpoint 'ARCH:/path.pt' or training run folder) into a serving folder that indexes
and searches without torch: `python -m server --model OUT` / `tools/index.py --model OUT`. Needs the [train] extra.

Example: python tools/export_model.py --model runs/my-run --out models/my-run
The shipped harma-lite graphs are made with: python tools/export_model.py --model harma-lite --out harma_core/weights/harma-lite
"""

from __future__ import annotations

import argparse
import json

import _bootstrap


@_bootstrap.tool()
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="harma-lite", help="model name, checkpoint or training run folder")
    ap.add_argument("--out", required=True, help="serving folder to write (model.json, image.onnx, text.onnx, ...)")
    ap.add_argument("--precision", default="fp16w", choices=("fp32", "fp16w", "int8"),
                    help="weights as float32, float16 cast back at load (default: half the size, same results "
                         "to 1e-3), or int8 MatMul weights")
    a = ap.parse_args(argv)
    from harma_core.export import export_model

    out = export_model(a.model, a.out, precision=a.precision)
    meta = json.loads((out / "model.json").read_text())
    print(f"exported {meta['identity']} ({a.precision}) to {out}: cosine with torch {meta['check']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
