"""Server-side SVG charts for the console: no JavaScript, no chart library, accessible (``role="img"``, a title
and a text summary). Every label is escaped; values are plain numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from markupsafe import Markup

__all__ = ["PALETTE", "gauge", "line_chart"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def line_chart(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]], *, unit: str = "",
               width: int = 720, height: int = 260) -> Markup:
    """One line per series over ``labels`` (days), with y ticks, the first/last label and a legend."""
    left, right, top, bottom = 56, 16, 28, 48
    height += 14 * max(0, (len(series) - 1) // 4)  # room for more legend rows
    pw, ph = width - left - right, height - top - bottom - 14 * max(0, (len(series) - 1) // 4)
    peak = max([max(v, default=0.0) for v in series.values()] + [0.0])
    peak = peak if peak > 0 else 1.0
    n = max(len(labels), 2)

    def x(i: int) -> float:
        return left + pw * i / (n - 1)

    def y(v: float) -> float:
        return top + ph * (1 - v / peak)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(title)}" class="chart"><title>{escape(title)}</title>',
             f'<text x="{left}" y="18" class="chart-title">{escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for k in range(5):
        v = peak * k / 4
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" class="tick">{_fmt(v)}</text>')
    if labels:
        parts.append(f'<text x="{left}" y="{top + ph + 16}" class="tick">{escape(labels[0])}</text>'
                     f'<text x="{left + pw}" y="{top + ph + 16}" text-anchor="end" class="tick">'
                     f'{escape(labels[-1])}</text>')
    for idx, (name, values) in enumerate(series.items()):
        color = PALETTE[idx % len(PALETTE)]
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}">'
                     f'<title>{escape(name)}: {_fmt(sum(values))}{escape(unit)} in total</title></polyline>')
        lx, ly = left + (idx % 4) * (pw // 4), top + ph + 32 + (idx // 4) * 14
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{lx + 14}" y="{ly}" class="tick">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated label is escaped above


def gauge(spent: float, total: float, *, label: str, width: int = 320, height: int = 44) -> Markup:
    """A horizontal budget gauge: spent of total, in text as well as in the bar."""
    frac = 0.0 if total <= 0 else min(1.0, max(0.0, spent / total))
    color = "#2ca02c" if frac < 0.7 else ("#ff7f0e" if frac < 0.9 else "#d62728")
    text = f"{label}: {_fmt(spent)} of {_fmt(total)} spent ({frac:.0%})"
    return Markup(  # noqa: S704 - the label is escaped
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(text)}" class="gauge"><title>{escape(text)}</title>'
        f'<rect x="0" y="4" width="{width}" height="18" fill="#eee" stroke="#999"/>'
        f'<rect x="0" y="4" width="{width * frac:.1f}" height="18" fill="{color}"/>'
        f'<text x="0" y="38" class="tick">{escape(text)}</text></svg>')
