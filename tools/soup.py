"""Average adapters tensor by tensor into one (a "model soup"), e.g. a run and its continuation.

Example: python tools/soup.py runs/a/best runs/b/best --out runs/soup
Rebuild the query bank for the result (tools/build_querybank.py --model runs/soup ...): its identity is new.
"""

from __future__ import annotations

import argparse

import _bootstrap

from harma_core.soup import soup
from harma_core.zoo import resolve_adapter


@_bootstrap.tool()
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("adapters", nargs="+", help="adapter or run folders, or a model name with a shipped adapter")
    ap.add_argument("--out", required=True, help="folder to write the averaged adapter into")
    ap.add_argument("--weights", type=float, nargs="+", help="one weight per adapter, summing to 1 (default equal)")
    a = ap.parse_args(argv)
    out = soup([resolve_adapter(p) for p in a.adapters], a.out, a.weights)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
