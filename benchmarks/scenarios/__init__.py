"""One module per scenario; each exposes ``NAME``, ``TITLE`` and ``run(ctx)``."""

from benchmarks.scenarios import (
    append,
    codecs,
    insert,
    intersections,
    live_append,
    metadata,
    read,
    streaming,
)

SCENARIOS = (append, live_append, insert, read, intersections, metadata, streaming, codecs)
