"""Makes `python tools/X.py` work from a source checkout without installing the package, and gives every tool
the same error handling (`tool`)."""

import functools
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

Main = Callable[[list[str] | None], int]


def run_tool(main: Main, argv: list[str] | None = None, *, errors: tuple[type[BaseException], ...] = (),
             interrupted: str = "interrupted") -> int:
    """Run a tool's main: a HarmaError (bad input, named with its fix) or one of `errors` is one line on stderr
    and exit code 2; Ctrl-C prints `interrupted` (what to do next) and exits 130. No traceback for either."""
    from harma_core.errors import HarmaError

    try:
        return main(argv)
    except (HarmaError, *errors) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130


def tool(*, errors: tuple[type[BaseException], ...] = (), interrupted: str = "interrupted") -> Callable[[Main], Main]:
    """Decorate a tool's `main(argv) -> int` with run_tool's handling."""
    def wrap(main: Main) -> Main:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            return run_tool(main, argv, errors=errors, interrupted=interrupted)
        return run
    return wrap
