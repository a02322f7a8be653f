"""Makes `python tools/X.py` work from a source checkout without installing the package."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def run_tool(main, argv: list[str] | None = None) -> int:  # noqa: ANN001 - any main(argv) -> int
    """Run a tool's main; a HarmaError (bad input, named with its fix) is one line on stderr and exit code 2."""
    from harma_core.errors import HarmaError

    try:
        return main(argv)
    except HarmaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
