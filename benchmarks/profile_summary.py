"""Where a profiled server spent its time: a summary of py-spy's collapsed stacks.

    python -m benchmarks.profile_summary PROFILE.txt [--top 25] [--match homeserver/]

PROFILE.txt is what `python -m benchmarks.rooms --profile DIR` writes (py-spy
`--format raw`: one line per distinct stack, frames separated by `;`, then
the sample count). Prints the functions with the most samples on top of the
stack (self) and anywhere in it (inclusive), as shares of all samples; with
`--match`, the inclusive list keeps only frames whose text contains it (for
instance the server's own package), which shows which of our calls the time
sits under.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# py-spy frames read "function (path/to/file.py:123)"; the line number is
# dropped so that all samples of a function count together.
_LINE = re.compile(r":\d+\)$")


def _function(frame: str) -> str:
    return _LINE.sub(")", frame.strip())


def summarize(text: str) -> tuple[int, Counter[str], Counter[str]]:
    """(total samples, samples per function on top of the stack, samples per function anywhere)."""
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [_function(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += samples
        own[frames[-1]] += samples
        for function in set(frames):
            inclusive[function] += samples
    return total, own, inclusive


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_summary", description=__doc__.split("\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="only list inclusive frames containing this text")
    args = parser.parse_args(argv)
    total, own, inclusive = summarize(args.profile.read_text(errors="replace"))
    if not total:
        raise SystemExit(f"{args.profile}: no samples")
    print(f"{total} samples\n\nself (top of stack):")
    for function, samples in own.most_common(args.top):
        print(f"  {100 * samples / total:5.1f}%  {function}")
    print(f"\ninclusive{f' (frames containing {args.match!r})' if args.match else ''}:")
    matching = [(f, n) for f, n in inclusive.most_common() if args.match in f]
    for function, samples in matching[: args.top]:
        print(f"  {100 * samples / total:5.1f}%  {function}")


if __name__ == "__main__":
    main()
