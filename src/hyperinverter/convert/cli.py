"""Command-line entry: ``hyperinverter download NAME...`` and ``hyperinverter download --list``."""

from __future__ import annotations

import argparse


def cmd_download(args: argparse.Namespace) -> int:
    """List the downloadable files, or fetch, check and convert the named ones."""
    from .. import home
    from .catalog import default_catalog
    from .fetch import FetchOptions
    from .install import download, list_rows

    options = FetchOptions(base=args.base, drive_url=args.drive_url, use_gdown=False if args.no_gdown else None,
                           retries=args.retries, progress=not args.quiet)
    catalog = default_catalog()
    if args.list:
        _print_list(list_rows(catalog, options))
        print(f"\ncache: {home.home_dir()} (set $HYPERINVERTER_HOME to move it)")
        return 0
    if not args.names:
        raise ValueError("download: name what to fetch (e.g. hyperinverter download faces-hd128), or --list "
                         "to see every name")
    try:
        report = download(args.names, catalog, options, force=args.force, fp16=args.fp16)
    except KeyError as e:
        raise ValueError(e.args[0]) from None
    for name, path in report.models.items():
        print(f"{name}: ready in {path} (--model {name}, HyperInverter.from_pretrained({name!r}))")
    wanted = set(args.names)
    for name, path in report.files.items():
        if name in wanted or any(name in catalog.groups.get(g, ()) for g in wanted):
            print(f"{name}: {path}")
    if report.cached:
        print(f"already in the cache: {', '.join(report.cached)} (--force fetches again)")
    return 0


_HOW = {"models": "needs", "groups": "=", "files": "from"}


def _print_list(rows: list[dict]) -> None:
    width = max(len(r["name"]) for r in rows)
    section = None
    for row in rows:
        if row["section"] != section:
            section = row["section"]
            print(f"\n{section}:" if section != "models" else f"{section}:")
        status = f" [{row['status']}]" if row["status"] else ""
        print(f"  {row['name']:<{width}}  {row['what']}{status}")
        print(f"  {'':<{width}}    {_HOW[section]} {row['source']}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``download`` on the top-level sub-parsers."""
    p = sub.add_parser("download", help="fetch the official models (faces-hd128, churches-hd256, ...), their "
                                        "generators, directions and auxiliary weights into the cache, checked "
                                        "and converted",
                       description="Fetch published files into $HYPERINVERTER_HOME (default ~/.cache/hyperinverter): "
                                   "resumable, each file checked against the official keys and shapes before use; "
                                   "zoo models are converted once, and --model NAME / "
                                   "HyperInverter.from_pretrained(NAME) find them by name afterwards.")
    p.add_argument("names", nargs="*", metavar="NAME", help="models, files or groups (see --list)")
    p.add_argument("--list", action="store_true", help="list every downloadable name with its source and status")
    p.add_argument("--force", "--overwrite", dest="force", action="store_true",
                   help="fetch and convert again what is already in the cache, replacing it once the new copy is "
                        "complete and checked (default: keep what is in the cache; a converted model folder is "
                        "replaced whole, files you added to it included)")
    p.add_argument("--fp16", action="store_true", help="store converted models in float16 (half the size)")
    p.add_argument("--base", default=None, metavar="URL",
                   help="a mirror holding every file under its published name: fetch <URL>/<file name> instead "
                        "(default $HYPERINVERTER_DOWNLOAD_BASE, else each file's own location)")
    p.add_argument("--drive-url", default=None, metavar="URL",
                   help="Google Drive download endpoint (default $HYPERINVERTER_DRIVE_URL, else "
                        "https://drive.google.com/uc)")
    p.add_argument("--no-gdown", action="store_true", help="do not use gdown for Drive files even when installed")
    p.add_argument("--retries", type=int, default=4, help="attempts (each resuming) after a broken connection")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_download)


__all__ = ["add_commands"]
