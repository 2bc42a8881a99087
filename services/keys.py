"""`leadrouter keys new NAME --scope SCOPE ...`: mint an API key and its key-file line.

Prints the new key once on standard error (give it to the caller) and the line for
LEADROUTER_API_KEYS_FILE on standard output; with `--stdin` it hashes a key read from
standard input instead, so a chosen key never appears in the process list or shell history.
"""

import argparse
import sys

from shared.scopes import SCOPES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `leadrouter keys new`."""
    parser.add_argument("name", help="who uses the key (audit trail; ingest's event source)")
    parser.add_argument(
        "--scope",
        action="append",
        choices=sorted(SCOPES),
        default=None,
        help="a scope the key carries; repeat for several ("
        + "; ".join(f"{name}: {text}" for name, text in SCOPES.items())
        + ")",
    )
    parser.add_argument("--stdin", action="store_true", help="hash a key read from stdin")


def run(args: argparse.Namespace) -> int:
    """Print the key-file line (and the new key, unless it came from stdin)."""
    # Here, not above: every command builds the parser, and shared.auth brings FastAPI.
    from shared.auth import key_file_line, new_key

    scopes = args.scope
    if not scopes:
        print("give at least one --scope", file=sys.stderr)
        return 1
    key = sys.stdin.readline().strip() if args.stdin else new_key()
    if not key:
        print("no key on stdin", file=sys.stderr)
        return 1
    try:
        line = key_file_line(args.name, key, scopes)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    if not args.stdin:
        print(f"key (shown once, give it to {args.name}): {key}", file=sys.stderr)
    print(line)
    return 0
