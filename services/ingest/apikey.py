"""`python -m services.ingest.apikey NAME`: kept for existing scripts; `leadrouter keys new`.

Same as `leadrouter keys new NAME --scope events:write` unless other scopes are given.
"""

import argparse
import sys

from services import keys


def main(argv: list[str] | None = None) -> int:
    """Print a key-file line for a sender of events (and the new key, unless from stdin)."""
    parser = argparse.ArgumentParser(prog="python -m services.ingest.apikey", description=__doc__)
    keys.add_arguments(parser, default_scopes=["events:write"])
    return keys.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
