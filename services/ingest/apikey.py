"""Make an API key for the native API: `python -m services.ingest.apikey SOURCE`.

Prints a new random key once (give it to the sender) and the `source:sha256hex` line for
LEADROUTER_API_KEYS_FILE; with `--stdin` it hashes a key read from standard input instead,
so a chosen key never appears in the process list or shell history.
"""

import argparse
import re
import secrets
import sys

from services.ingest.auth import hash_api_key

SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,49}$")


def key_file_line(source: str, key: str) -> str:
    """The line of LEADROUTER_API_KEYS_FILE that binds `key` to `source`."""
    if not SOURCE_NAME.match(source):
        raise ValueError(f"source {source!r}: use lower-case letters, digits, - and _")
    return f"{source}:{hash_api_key(key)}"


def main(argv: list[str] | None = None) -> int:
    """Print a key-file line (and the new key, unless it came from stdin)."""
    parser = argparse.ArgumentParser(prog="python -m services.ingest.apikey", description=__doc__)
    parser.add_argument("source", help="the source name the key's events are published under")
    parser.add_argument("--stdin", action="store_true", help="hash a key read from stdin")
    args = parser.parse_args(argv)
    key = sys.stdin.readline().strip() if args.stdin else secrets.token_urlsafe(32)
    if not key:
        print("no key on stdin", file=sys.stderr)
        return 1
    try:
        line = key_file_line(args.source, key)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    if not args.stdin:
        print(f"key (shown once, give it to the sender): {key}", file=sys.stderr)
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
