"""Small SVG charts drawn on the server (no JavaScript, no library).

Every label is escaped here; templates insert the result unescaped.
"""
from __future__ import annotations

from html import escape

WIDTH, HEIGHT = 640, 200
PAD_LEFT, PAD_RIGHT, PAD_BOTTOM, PAD_TOP = 60, 20, 28, 12


def _frame(title: str, body: list[str], peak: float, unit: str) -> str:
    top = "%g%s" % (round(peak, 1), unit)
    return (
        '<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">'
        '<title>%s</title>'
        '<line x1="%d" y1="%d" x2="%d" y2="%d" class="axis"/>'
        '<text x="%d" y="%d" class="tick" text-anchor="end">%s</text>'
        '<text x="%d" y="%d" class="tick" text-anchor="end">0</text>%s</svg>' % (
            WIDTH, HEIGHT, escape(title), escape(title),
            PAD_LEFT, HEIGHT - PAD_BOTTOM, WIDTH, HEIGHT - PAD_BOTTOM,
            PAD_LEFT - 4, PAD_TOP + 10, escape(top),
            PAD_LEFT - 4, HEIGHT - PAD_BOTTOM, "".join(body)))


def bar_chart(title: str, points: list[tuple[str, float]], *, unit: str = "",
              series: list[tuple[str, list[float]]] | None = None) -> str:
    """Bars per label; ``series`` stacks several named value lists instead of
    ``points``' single value (each series gets the CSS class ``s0``, ``s1``…)."""
    labels = [label for label, _ in points]
    stacks = series or [("value", [value for _, value in points])]
    totals = [sum(values[i] for _, values in stacks) for i in range(len(labels))]
    peak = max(totals, default=0) or 1
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    step = plot_w / max(len(labels), 1)
    bar_w = min(max(step * 0.7, 1), 60)
    body, every = [], max(1, len(labels) // 8)
    for i, label in enumerate(labels):
        x = PAD_LEFT + 2 + i * step
        base = HEIGHT - PAD_BOTTOM
        for n, (name, values) in enumerate(stacks):
            h = values[i] / peak * plot_h
            if h <= 0:
                continue
            base -= h
            body.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" class="s%d">'
                        '<title>%s %s: %g%s</title></rect>' % (
                            x, base, bar_w, h, n, escape(label), escape(name),
                            round(values[i], 2), escape(unit)))
        if i % every == 0:
            body.append('<text x="%.1f" y="%d" class="tick" text-anchor="middle">%s</text>'
                        % (x + bar_w / 2, HEIGHT - 10, escape(label)))
    return _frame(title, body, peak, unit)


def line_chart(title: str, points: list[tuple[str, float | None]], *, unit: str = "",
               peak: float | None = None) -> str:
    """A line through the points that have a value (gaps for None); the y axis
    goes up to ``peak`` (default: the largest value)."""
    values = [v for _, v in points if v is not None]
    peak = peak or max(values, default=0) or 1
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT - 4, HEIGHT - PAD_TOP - PAD_BOTTOM
    step = plot_w / max(len(points) - 1, 1)
    body, path, every = [], [], max(1, len(points) // 8)
    for i, (label, value) in enumerate(points):
        x = PAD_LEFT + 4 + i * step
        if value is not None:
            y = HEIGHT - PAD_BOTTOM - value / peak * plot_h
            path.append("%s%.1f,%.1f" % ("L" if path else "M", x, y))
            body.append('<circle cx="%.1f" cy="%.1f" r="3" class="s0"><title>%s: %g%s'
                        '</title></circle>' % (x, y, escape(label), round(value, 2),
                                               escape(unit)))
        if i % every == 0:
            body.append('<text x="%.1f" y="%d" class="tick" text-anchor="middle">%s</text>'
                        % (x, HEIGHT - 10, escape(label)))
    if path:
        body.insert(0, '<path d="%s" class="line"/>' % " ".join(path))
    return _frame(title, body, peak, unit)
