"""Command-line entry: ``hyperinverter serve`` (a local Gradio page; no public share links)."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the model once, print startup notes, and serve the page until Ctrl+C or SIGTERM (both remove the
    temporary files)."""
    import torch

    from ..devices import choose_device
    from .app import import_gradio, serve_forever, stop_on_terminate
    from .images import ImageLimits
    from .session import ServeSession, use_one_allocator_arena

    import_gradio()  # fail early, with the extra to install, before loading the model
    if not 1 <= args.queue_size <= 1000:
        raise ValueError(f"--queue-size must be between 1 and 1000, got {args.queue_size}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535, got {args.port}")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if not 1 <= args.max_sessions <= 100_000:
        raise ValueError(f"--max-sessions must be between 1 and 100000, got {args.max_sessions}")
    if not 0 < args.session_idle_minutes <= 10_000_000:
        raise ValueError("--session-idle-minutes must be a positive number of minutes, "
                         f"got {args.session_idle_minutes}")
    if not 0.01 <= args.keep_photo_megapixels <= 1000:
        raise ValueError(f"--keep-photo-megapixels must be between 0.01 and 1000, got {args.keep_photo_megapixels}")
    with stop_on_terminate() as stopped:  # SIGTERM and SIGHUP clean up as Ctrl+C does
        session = ServeSession.from_folder(args.model, directions=args.directions, device=choose_device(args.device),
                                           align=not args.no_align, landmarks=args.landmarks,
                                           limits=ImageLimits(min_size=args.min_size),
                                           max_sessions=args.max_sessions, idle_s=args.session_idle_minutes * 60.0,
                                           keep_photo_pixels=round(args.keep_photo_megapixels * 1e6))
        try:
            print(f"model {session.name}: {session.resolution}px on {session.device}; "
                  f"{len(session.directions)} directions: {', '.join(session.direction_names) or 'none'}")
            for note in session.notes:
                print(f"note: {note}")
            if args.host not in ("127.0.0.1", "localhost", "::1"):
                print(f"warning: serving on {args.host}: other machines on the network can use this page")
            print(f"serving on http://{args.host}:{args.port} (queue of {args.queue_size}; images of up to "
                  f"{args.max_sessions} pages kept, each for {args.session_idle_minutes:g} minutes unused); "
                  "Ctrl+C stops")
            use_one_allocator_arena()  # before the server's threads start: what an upload freed can go back
            serve_forever(session, host=args.host, port=args.port, queue_size=args.queue_size)
        finally:
            session.close()
    if stopped:
        print(f"stopped by {stopped[0]}; removed {session.outputs.root}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``serve`` on the top-level sub-parsers."""
    from ..pretrained import DEFAULT_MODEL
    from .defaults import DEFAULT_IDLE_S, DEFAULT_KEEP_PHOTO_PIXELS, DEFAULT_MAX_SESSIONS

    p = sub.add_parser("serve", help="a local web page (Gradio): upload, invert, edit with sliders, interpolate")
    p.add_argument("--model", "-m", default=DEFAULT_MODEL,
                   help=f"folder written by save_pretrained/convert, or a shipped model name (default {DEFAULT_MODEL})")
    p.add_argument("--directions", type=Path, action="append", default=[], metavar="DIR",
                   help="folder (or file) of edit directions, in addition to <model>/directions; repeatable")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="TCP port of the page")
    p.add_argument("--queue-size", type=int, default=8,
                   help="requests that may wait; more get a 'busy, try again' message (default 8)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--no-align", action="store_true", help="never align faces: always centre-crop uploads")
    p.add_argument("--landmarks", type=Path, default=None, help="dlib 68-landmark model file for face alignment")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the model (default: PyTorch's); 1 keeps edits fast on a busy machine")
    p.add_argument("--min-size", type=int, default=16, help="smallest accepted image side in pixels (default 16)")
    p.add_argument("--max-sessions", type=int, default=DEFAULT_MAX_SESSIONS, metavar="N",
                   help="keep the codes of at most N pages at once; the least recently used page's image is "
                        f"released (it is asked to upload again) (default {DEFAULT_MAX_SESSIONS})")
    p.add_argument("--session-idle-minutes", type=float, default=DEFAULT_IDLE_S / 60, metavar="MIN",
                   help="release a page's image after MIN minutes without a request "
                        f"(default {DEFAULT_IDLE_S / 60:g})")
    p.add_argument("--keep-photo-megapixels", type=float, default=DEFAULT_KEEP_PHOTO_PIXELS / 1e6, metavar="MP",
                   help="an aligned face's photo is kept for paste-back downscaled to at most MP megapixels "
                        f"(default {DEFAULT_KEEP_PHOTO_PIXELS / 1e6:g})")
    p.set_defaults(func=cmd_serve)
