"""Line charts as inline SVG, drawn here from numbers: no plotting library, no script, no network.

One chart is one metric against the epoch, with a line per series (train and val of one run, or one
run each on a comparison page), a legend, and a log axis for values spanning decades (the lr).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from deepscope.reports.html import esc

__all__ = ["PALETTE", "Series", "line_chart"]

# colour-blind-safe categorical colours (Okabe and Ito), darkest first
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#7f7f7f", "#000000")

_W, _H = 560, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 62, 16, 34, 42


@dataclass
class Series:
    """One line: its legend label and (x, y) points; non-finite y values break the line."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    dashed: bool = False
    colour: str | None = None  # None: the palette's colour of its place among the chart's series


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / max(ticks, 1)
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def _linear_ticks(lo: float, hi: float) -> tuple[float, float, list[float]]:
    if hi - lo <= 0:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = _nice_step(hi - lo)
    start, end = math.floor(lo / step) * step, math.ceil(hi / step) * step
    ticks = [start + i * step for i in range(int(round((end - start) / step)) + 1)]
    return start, end, ticks


def _tick_labels(ticks: Sequence[float], step: float) -> list[str]:
    """Labels with the decimals the step needs, so one axis never mixes notations."""
    top = max(abs(t) for t in ticks)
    if top >= 1e5:
        return [f"{t:.3g}" for t in ticks]
    decimals = max(0, math.ceil(-math.log10(step) - 1e-9))
    if round(step / 10 ** -decimals, 6) % 1:  # 2.5 × 10^k needs one more
        decimals += 1
    return [f"{t:.{decimals}f}" for t in ticks]


def line_chart(title: str, series: Sequence[Series], x_label: str = "epoch", log_y: bool | None = None) -> str:
    """An SVG chart of ``series``; ``log_y`` None picks a log axis when positive values span > 2 decades.

    Returns:
        The ``<svg>`` element (scales to its container's width), or a short note when no series has a
        finite point.
    """
    points = [(x, y) for s in series for x, y in zip(s.x, s.y) if y is not None and math.isfinite(y)]
    if not points:
        return f'<p class="note">{esc(title)}: no finite values</p>'
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if log_y is None:
        log_y = min(ys) > 0 and max(ys) / min(ys) > 100
    if log_y and min(ys) <= 0:
        log_y = False
    if log_y:
        lo_e, hi_e = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
        hi_e = max(hi_e, lo_e + 1)
        y_lo, y_hi = float(lo_e), float(hi_e)
        every = max(1, math.ceil((hi_e - lo_e) / 6))
        y_ticks = [float(e) for e in range(lo_e, hi_e + 1, every)]
        tick_text = [f"1e{int(t)}" for t in y_ticks]
    else:
        y_lo, y_hi, y_ticks = _linear_ticks(min(ys), max(ys))
        tick_text = _tick_labels(y_ticks, y_ticks[1] - y_ticks[0])
    x_lo, x_hi = min(xs), max(xs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    x_step = _nice_step(x_hi - x_lo, 6)
    if all(float(x).is_integer() for x in xs):  # epochs, steps, trials: whole ticks
        x_step = float(max(1, int(x_step)))
    x_ticks = [t for t in (math.ceil(x_lo / x_step) * x_step + i * x_step for i in range(20)) if t <= x_hi + 1e-9]
    x_text = _tick_labels(x_ticks, x_step) if x_ticks else []

    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(x: float) -> float:
        return _LEFT + (x - x_lo) / (x_hi - x_lo) * pw

    def py(y: float) -> float:
        v = math.log10(y) if log_y else y
        return _TOP + (1 - (v - y_lo) / (y_hi - y_lo)) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" role="img" '
           f'aria-label="{esc(title)}" class="curve">', f"<title>{esc(title)}</title>",
           f'<rect x="{_LEFT}" y="{_TOP}" width="{pw}" height="{ph}" fill="#fbfcfe" stroke="#d9e2ec"/>']
    for t, text in zip(y_ticks, tick_text):
        y = _TOP + (1 - (t - y_lo) / (y_hi - y_lo)) * ph
        out.append(f'<line x1="{_LEFT}" x2="{_LEFT + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e7eb"/>'
                   f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#616e7c">'
                   f"{esc(text)}</text>")
    for t, text in zip(x_ticks, x_text):
        x = px(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP + ph}" y2="{_TOP + ph + 4}" stroke="#9aa5b1"/>'
                   f'<text x="{x:.1f}" y="{_TOP + ph + 17}" text-anchor="middle" font-size="11" fill="#616e7c">'
                   f"{esc(text)}</text>")
    out.append(f'<text x="{_LEFT + pw / 2:.1f}" y="{_H - 6}" text-anchor="middle" font-size="12" fill="#3e4c59">'
               f"{esc(x_label)}</text>")
    if log_y:
        out.append(f'<text x="{_LEFT}" y="{_TOP - 8}" font-size="11" fill="#616e7c">log scale</text>')
    legend_x = _LEFT + pw
    for i, s in enumerate(reversed(series)):  # right-aligned legend above the plot
        colour = s.colour or PALETTE[(len(series) - 1 - i) % len(PALETTE)]
        label = s.label if len(s.label) <= 28 else s.label[:27] + "…"
        width = 26 + 6.6 * len(label)
        legend_x -= width
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        out.append(f'<line x1="{legend_x:.1f}" x2="{legend_x + 16:.1f}" y1="{_TOP - 12}" y2="{_TOP - 12}" '
                   f'stroke="{colour}" stroke-width="2.5"{dash}/><text x="{legend_x + 20:.1f}" y="{_TOP - 8}" '
                   f'font-size="11.5" fill="#323f4b">{esc(label)}</text>')
    for i, s in enumerate(series):
        colour = s.colour or PALETTE[i % len(PALETTE)]
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        segment: list[str] = []
        segments: list[list[str]] = []
        finite = []
        for x, y in zip(s.x, s.y):
            if y is None or not math.isfinite(y) or (log_y and y <= 0):
                if segment:
                    segments.append(segment)
                segment = []
                continue
            segment.append(f"{px(x):.1f},{py(y):.1f}")
            finite.append((px(x), py(y)))
        if segment:
            segments.append(segment)
        for seg in segments:
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round"{dash} '
                       f'points="{" ".join(seg)}"><title>{esc(s.label)}</title></polyline>')
        if len(finite) <= 40:  # markers while they stay apart; a single epoch is then a visible point
            out.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in finite)
    out.append("</svg>")
    return "".join(out)
