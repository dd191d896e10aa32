#!/usr/bin/env python3
"""The docs describe the tool and its measurements, not how it was made: no line of README.md,
docs/ or experiments/ speaks of a session ("this session", "next session"), an issue number or
the kinds of machine the development environment lends.
Usage: docs_wording.py REPO"""
import os
import re
import sys

REPO = os.path.abspath(sys.argv[1])
WORDS = re.compile(r"\bsessions?\b|issue [0-9]+|kind `?nvidia-", re.I)


def main():
    paths = [os.path.join(REPO, "README.md")]
    for top in ("docs", "experiments"):
        for root, _, files in os.walk(os.path.join(REPO, top)):
            paths += [os.path.join(root, f) for f in files]
    bad = []
    for path in sorted(paths):
        try:
            text = open(path, encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue  # figures
        for i, line in enumerate(text.splitlines(), 1):
            if WORDS.search(line):
                bad.append(f"{os.path.relpath(path, REPO)}:{i}: {line.strip()[:100]}")
    for b in bad:
        print("FAIL", b)
    print(f"docs_wording: {len(paths)} files, {len(bad)} lines about how the tool was made")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
