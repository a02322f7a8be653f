"""`python -m server --store DIR --allowed-root DIR [--host 127.0.0.1] [--port 8765] [--token T]`."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys

from werkzeug.serving import make_server


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the server."""
    ap = argparse.ArgumentParser(prog="python -m server", description="HarMA Search local server")
    ap.add_argument("--store", required=True, help="folder holding the collections")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    ap.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; the URL is printed)")
    ap.add_argument("--allowed-root", action="append", default=[], metavar="DIR",
                    help="folder whose rasters may be indexed; repeat for several")
    ap.add_argument("--token", default=os.environ.get("HARMA_TOKEN"),
                    help="token clients must send (Authorization: Bearer T); required off loopback")
    ap.add_argument("--model", default="harma-lite", help="model name, run folder or checkpoint")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnx"),
                    help="what runs the model: auto (ONNX Runtime on CPU, torch on CUDA), torch or onnx")
    ap.add_argument("--gdal-cache-mb", type=int, default=None,
                    help="GDAL block cache in MB (default 64, or GDAL_CACHEMAX from the environment)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start the server and serve until interrupted."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.token and args.token != args.token.strip():  # "   " included: a blank token guards nothing
        print("error: the token is blank or has spaces around it; give a token of visible characters, e.g. "
              "--token \"$(python -c 'import secrets; print(secrets.token_urlsafe())')\"", file=sys.stderr)
        return 2
    if not is_loopback(args.host) and not args.token:
        print(f"error: binding {args.host} exposes the server to the network; give --token T "
              "(or HARMA_TOKEN) so only clients with the token get in", file=sys.stderr)
        return 2
    from harma_core import HarmaError
    from harma_core.serving import load_model
    from server.app import create_app
    from server.store.storelock import StoreLock

    try:
        store_lock = StoreLock.take(args.store)  # before the model loads: a second server is refused at once
        model = load_model(args.model, device=args.device, runtime=args.runtime)
        app = create_app({"LOADED_MODEL": model, "STORE_LOCK": store_lock,
                          "STORE": args.store, "ALLOWED_ROOTS": args.allowed_root, "TOKEN": args.token,
                          "MODEL": args.model, "DEVICE": args.device, "BATCH_SIZE": args.batch_size,
                          "GDAL_CACHE_MB": args.gdal_cache_mb})
    except HarmaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    httpd = make_server(args.host, args.port, app, threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    services = app.extensions["harma"]
    print(f"HarMA Search serving on http://{args.host}:{httpd.server_port}/api/v1 "
          f"(model {services.model.identity} on {getattr(model, 'runtime', 'torch')}, "
          f"store {services.store.root})", flush=True)
    if not services.store.writable:
        print(f"note: store {services.store.root} is read-only: searching works, creating collections and "
              "indexing do not", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        services.close()  # cancelled jobs save their index before exit; the store lock is released
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
