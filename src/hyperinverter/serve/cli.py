"""Command-line entry: ``hyperinverter serve`` (a local Gradio page; no public share links)."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the model once, print startup notes, and serve the page until Ctrl+C."""
    import torch

    from ..cli import _device
    from .app import import_gradio, serve_forever
    from .images import ImageLimits
    from .session import ServeSession

    import_gradio()  # fail early, with the extra to install, before loading the model
    if not 1 <= args.queue_size <= 1000:
        raise ValueError(f"--queue-size must be between 1 and 1000, got {args.queue_size}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535, got {args.port}")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    session = ServeSession.from_folder(args.model, directions=args.directions, device=_device(args.device),
                                       align=not args.no_align, landmarks=args.landmarks,
                                       limits=ImageLimits(min_size=args.min_size))
    print(f"model {session.name}: {session.resolution}px on {session.device}; "
          f"{len(session.directions)} directions: {', '.join(session.direction_names) or 'none'}")
    for note in session.notes:
        print(f"note: {note}")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}: other machines on the network can use this page")
    print(f"serving on http://{args.host}:{args.port} (queue of {args.queue_size}); Ctrl+C stops")
    serve_forever(session, host=args.host, port=args.port, queue_size=args.queue_size)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``serve`` on the top-level sub-parsers."""
    from ..pretrained import DEFAULT_MODEL

    p = sub.add_parser("serve", help="a local web page (Gradio): upload, invert, edit with sliders, interpolate")
    p.add_argument("--model", "-m", default=DEFAULT_MODEL,
                   help=f"folder written by save_pretrained/convert, or a shipped model name (default {DEFAULT_MODEL})")
    p.add_argument("--directions", type=Path, action="append", default=[], metavar="DIR",
                   help="folder (or file) of edit directions, in addition to <model>/directions; repeatable")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--queue-size", type=int, default=8,
                   help="requests that may wait; more get a 'busy, try again' message (default 8)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--no-align", action="store_true", help="never align faces: always centre-crop uploads")
    p.add_argument("--landmarks", type=Path, default=None, help="dlib 68-landmark model file for face alignment")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the model (default: PyTorch's); 1 keeps edits fast on a busy machine")
    p.add_argument("--min-size", type=int, default=16, help="smallest accepted image side in pixels (default 16)")
    p.set_defaults(func=cmd_serve)
