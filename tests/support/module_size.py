"""The house rule on module size: no hand-written module over 450 lines.

Run by ``make lint``. Generated code (proto/) and Alembic revisions are
exempt; a module that grows past the limit is split by concept, not by count.
"""

from __future__ import annotations

import sys
from pathlib import Path

LIMIT = 450
PACKAGES = ("gateway", "adapters", "policy", "certs")
ROOT = Path(__file__).resolve().parents[2]


def oversized(root: Path = ROOT) -> list[tuple[Path, int]]:
    """Every hand-written module of the packages with more than :data:`LIMIT` lines."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > LIMIT:
                found.append((path.relative_to(root), lines))
    return found


def main() -> int:
    """Print the modules over the limit; exit 1 when there is one."""
    found = oversized()
    for path, lines in found:
        print(f"{path}: {lines} lines, more than {LIMIT}: split it by concept")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
