"""The predecessor, ``oups``, on the same work: run by ``--oups-python`` (see README).

``oups`` 2025.12 needs Python 3.13 and fastparquet; this script runs in such an
interpreter, which has neither oupsish nor pyarrow, builds the benchmarks' frames
(:mod:`benchmarks.data`) and prints one JSON object::

    PYTHON313 -m benchmarks.predecessor live_append '{"path": ..., "target": ..., ...}'

Jobs: ``append`` (scenario 1) and ``live_append`` (scenario 2).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.data import ORDERED_ON, chunks


def _timed_writes(params: dict[str, Any], n_writes: int, **options: Any) -> tuple[Any, int]:
    """Write ``n_writes`` chunks, one ``write`` each; return their seconds and the row groups."""
    from oups.store import OrderedParquetDataset  # type: ignore[import-not-found]

    frames = chunks(n_writes, params["chunk_rows"])
    dataset = OrderedParquetDataset(params["path"], ordered_on=ORDERED_ON)
    seconds = []
    for frame in frames:
        start = time.perf_counter()
        dataset.write(df=frame, row_group_target_size=params["target"], **options)
        seconds.append(time.perf_counter() - start)
    n_row_groups = len(dataset)
    del dataset  # its lock is released now, not at interpreter exit (a noisy warning)
    return np.asarray(seconds), n_row_groups


def live_append(params: dict[str, Any]) -> dict[str, Any]:
    """Write ``n_writes`` chunks one by one, coalesced with ``max_n_off_target_rgs=2``."""
    latencies, n_row_groups = _timed_writes(params, params["n_writes"], max_n_off_target_rgs=2)
    return {
        "seconds": float(latencies.sum()),
        "p50": float(np.percentile(latencies, 50)),
        "p95": float(np.percentile(latencies, 95)),
        "row_groups": n_row_groups,
        "version": _version(),
    }


def append(params: dict[str, Any]) -> dict[str, Any]:
    """Append ``n_chunks`` chunks, one write each, into row groups of ``target`` rows."""
    latencies, n_row_groups = _timed_writes(params, params["n_chunks"])
    return {"seconds": float(latencies.sum()), "row_groups": n_row_groups, "version": _version()}


def _version() -> str:
    return str(sys.modules["oups"].__dict__.get("__version__", "?"))


JOBS = {"live_append": live_append, "append": append}


def main() -> None:
    name, params = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(JOBS[name](params)))


if __name__ == "__main__":
    main()
