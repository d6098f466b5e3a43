#!/usr/bin/env python3
"""Writes every C program of README.md and docs/*.md (each ```c block) to a file of its own, for
tests/c/run.sh to compile and run: what a newcomer copies works as printed.

    tests/c/snippets.py OUT_DIR      prints the files written, one per line
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        blocks = re.findall(r"(?ms)^```c\n(.*?)^```$", doc.read_text())
        for i, code in enumerate(blocks, 1):
            if "int main(" not in code:
                print(f"{doc.relative_to(ROOT)}: C block {i} is not a whole program (no main)", file=sys.stderr)
                return 1
            path = out / f"{doc.stem}-{i}.c"
            path.write_text(f"/* {doc.relative_to(ROOT)}, C block {i} */\n{code}")
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
