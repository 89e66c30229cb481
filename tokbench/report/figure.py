"""One figure of a report: a matplotlib (Agg) canvas, and the :class:`Plot` it becomes (PNG and
SVG bytes, reproducible: no dates or software names in the files). matplotlib is imported only
when a figure is drawn."""

from __future__ import annotations

import io
from dataclasses import dataclass


@dataclass
class Plot:
    name: str
    title: str
    png: bytes
    svg: bytes
    caption: str = ""


def new_figure(width: float = 6.0, height: float = 4.0):
    """``(figure, axes)`` of the house style."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "tokbench", "font.size": 10})
    return plt.subplots(figsize=(width, height), dpi=110)


def to_plot(fig, name: str, title: str, caption: str = "") -> Plot:
    """The figure as PNG and SVG; the figure is closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffers = {}
    for fmt in ("png", "svg"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, metadata={"Date": None} if fmt == "svg" else {"Software": None})
        buffers[fmt] = buffer.getvalue()
    plt.close(fig)
    return Plot(name, title, buffers["png"], buffers["svg"], caption)
