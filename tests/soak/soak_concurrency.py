"""Long concurrency run: 1 writer and N reader processes on one store, every read checked.

The writer commits appends and inserts into the past (with coalescing) for ``--duration``
seconds while each reader loops over ``to_pandas()``, ``read(start, end_excl, columns)`` and
``iter_intersections`` and checks every result against the exact committed states (see
:mod:`oupsish.testing.concurrency`). Prints the figures: writes committed, reads done, read
latencies next to write latencies, inconsistencies and errors by operation.

Usage::

    python tests/soak/soak_concurrency.py --duration 60 [--readers 4] [--operations to_pandas,read]

Exits with status 1 on any inconsistent or failed read.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from oupsish.testing.concurrency import OPERATIONS, run_stress, summarize


def main(argv: list[str] | None = None) -> int:
    """Run the stress test; return 0 if every read was consistent."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--operations", default=",".join(OPERATIONS))
    parser.add_argument("--json", help="also save the figures to this file")
    args = parser.parse_args(argv)
    operations = [name for name in args.operations.split(",") if name]
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="oupsish-concurrency-") as tmp:
        writer, readers = run_stress(Path(tmp), args.duration, args.readers, args.seed, operations)
    numbers = summarize(writer, readers)
    numbers["wall_time_s"] = round(time.monotonic() - began, 1)
    numbers["readers"] = args.readers
    numbers["operations"] = operations
    print(json.dumps(numbers, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": numbers, "readers": readers}, indent=2))
    ok = numbers["inconsistencies"] == 0 and numbers["errors"] == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
