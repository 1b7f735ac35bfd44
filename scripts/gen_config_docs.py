#!/usr/bin/env python3
"""Write the settings tables of docs/configuration.md from the settings schema.

The tables sit between the BEGIN/END GENERATED markers; the prose around them is edited by
hand. `proxy.config.reference` walks the schema, so a new setting (with its meaning) shows up
here by running this script.

    python scripts/gen_config_docs.py          # rewrite the generated part
    python scripts/gen_config_docs.py --check  # exit 1 if the page is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.config.reference import markdown  # noqa: E402

PAGE = ROOT / "docs" / "configuration.md"
_REGION = re.compile(r"(<!-- BEGIN GENERATED[^\n]*-->\n)(.*?)(<!-- END GENERATED -->)", re.DOTALL)


def rendered(page: str) -> str:
    """The page with its generated region replaced by the schema's tables."""
    if not _REGION.search(page):
        raise SystemExit(f"{PAGE}: no BEGIN/END GENERATED markers")
    return _REGION.sub(lambda m: m.group(1) + markdown() + m.group(3), page, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the page is out of date")
    args = parser.parse_args(argv)
    current = PAGE.read_text(encoding="utf-8")
    wanted = rendered(current)
    if args.check:
        if current != wanted:
            print(
                f"{PAGE.relative_to(ROOT)} is out of date: run python scripts/gen_config_docs.py",
                file=sys.stderr,
            )
            return 1
        return 0
    PAGE.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
