"""`python -m shared.asyncapi`: print the document, or with --markdown docs/asyncapi.md."""

import argparse
import json
import sys

from shared.asyncapi.document import default_document
from shared.asyncapi.markdown import render_markdown


def main(argv: list[str] | None = None) -> None:
    """Print the document (JSON) or its rendered reference (Markdown)."""
    parser = argparse.ArgumentParser(prog="python -m shared.asyncapi", description=main.__doc__)
    parser.add_argument("--markdown", action="store_true", help="print docs/asyncapi.md")
    args = parser.parse_args(argv)
    document = default_document()
    if args.markdown:
        sys.stdout.write(render_markdown(document))
    else:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
