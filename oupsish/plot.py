"""A picture of a dataset's row groups along the ordered axis (needs matplotlib)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from oupsish.dataset import OrderedParquetDataset

__all__ = ["plot_row_groups"]


def plot_row_groups(ds: OrderedParquetDataset, path: Path) -> None:
    """Draw each row group as a bar spanning its ``ordered_on`` range, as tall as its rows.

    Small row groups (fragmentation) show as low bars; gaps and overlaps are visible at a
    glance. Needs ``pip install oupsish[plot]``.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'oupsish[plot]'") from error
    stats = ds.row_group_stats
    if stats.empty:
        raise ValueError(f"dataset '{ds.dirpath}' has no row groups to plot.")
    starts, ends = stats.ordered_on_mins, stats.ordered_on_maxs
    numeric = not pd.api.types.is_datetime64_any_dtype(starts)
    widths = (ends - starts) if numeric else (ends - starts) / pd.Timedelta(days=1)
    figure, axis = plt.subplots(figsize=(10, 4))
    if numeric:
        left = starts
    else:
        import matplotlib.dates as mdates

        naive = starts.dt.tz_localize(None) if starts.dt.tz else starts
        left = mdates.date2num(naive)  # type: ignore[no-untyped-call]
        axis.xaxis_date()
    largest = stats.n_rows.max()
    colors = ["tab:orange" if n < 0.8 * largest else "tab:blue" for n in stats.n_rows]
    axis.bar(
        left,
        stats.n_rows,
        width=widths.clip(lower=1e-9),
        align="edge",
        color=colors,
        edgecolor="black",
        linewidth=0.3,
    )
    axis.set_xlabel(str(ds.ordered_on))
    axis.set_ylabel("rows per row group")
    axis.set_title(
        f"{ds.dirpath.name}: {len(stats)} row groups "
        f"({int((stats.n_rows < 0.8 * largest).sum())} small, in orange)"
    )
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
