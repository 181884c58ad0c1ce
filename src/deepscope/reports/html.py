"""The page shell shared by every report: one self-contained HTML file, inline CSS, escaped text.

Nothing here reaches the network: figures are embedded as ``data:`` URIs and curves are inline SVG
(:mod:`deepscope.reports.svg`), so a report opens offline, mailed or copied anywhere. Every piece of
user text (run names, config values, error messages) goes through :func:`esc`.
"""

from __future__ import annotations

import base64
import datetime
import html
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Raw", "Section", "data_uri", "esc", "fmt_number", "fmt_seconds", "figure_grid", "kv_table", "page",
           "pre", "table", "write_page"]

_CSS = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#d9e2ec; --bg:#f5f7fa; --card:#fff; --accent:#2f5d8a;
        --good:#1d7a46; --bad:#b42318; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--ink); background:var(--bg); }
header.top { background:#1f3a56; color:#fff; padding:18px 32px 14px; }
header.top .kind { text-transform:uppercase; letter-spacing:.08em; font-size:11px; opacity:.75; }
header.top h1 { margin:2px 0 4px; font-size:24px; font-weight:600; word-break:break-all; }
header.top .sub { font-size:12px; opacity:.8; word-break:break-all; }
nav { position:sticky; top:0; z-index:2; background:#fff; border-bottom:1px solid var(--line);
      padding:0 32px; display:flex; flex-wrap:wrap; gap:2px; }
nav a { color:var(--muted); text-decoration:none; padding:9px 10px; font-size:13px; border-bottom:2px solid transparent; }
nav a:hover { color:var(--accent); border-bottom-color:var(--accent); }
main { max-width:1240px; margin:0 auto; padding:20px 32px 48px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:16px 20px 18px;
          margin:0 0 18px; }
section > h2 { margin:0 0 12px; font-size:17px; font-weight:600; color:#102a43; }
h3 { font-size:14px; margin:16px 0 6px; color:#243b53; }
.note { color:var(--muted); font-size:12.5px; margin:4px 0 10px; }
.cards { display:grid; grid-template-columns:repeat(auto-fill, minmax(170px, 1fr)); gap:10px; }
.card { border:1px solid var(--line); border-radius:6px; padding:10px 12px; background:#fbfcfe; }
.card .label { font-size:11px; text-transform:uppercase; letter-spacing:.05em; color:var(--muted); }
.card .value { font-size:18px; font-weight:600; margin-top:2px; word-break:break-word; }
table { border-collapse:collapse; font-size:13px; margin:4px 0 8px; }
th, td { border-bottom:1px solid var(--line); padding:5px 12px 5px 0; text-align:left; vertical-align:top; }
th { color:var(--muted); font-weight:600; font-size:12px; white-space:nowrap; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; padding-left:12px; }
td code, li code { font-size:12px; }
tr.fail td { background:#fff4f2; }
td.best { color:var(--good); font-weight:600; }
.scroll { overflow-x:auto; }
pre { background:#f0f4f8; border:1px solid var(--line); border-radius:6px; padding:10px 12px; overflow:auto;
      max-height:460px; font:12px/1.45 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; margin:6px 0; }
code { font-family:ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
.charts { display:grid; grid-template-columns:repeat(auto-fill, minmax(380px, 1fr)); gap:14px; }
.chart { border:1px solid var(--line); border-radius:6px; padding:8px 8px 4px; background:#fff; }
.chart h3 { margin:2px 4px 4px; }
.chart svg { width:100%; height:auto; display:block; }
.figures { display:grid; grid-template-columns:repeat(auto-fill, minmax(300px, 1fr)); gap:14px; }
figure { margin:0; border:1px solid var(--line); border-radius:6px; padding:8px; background:#fff; }
figure img { width:100%; height:auto; max-height:460px; object-fit:contain; display:block; }
figcaption { font-size:12px; color:var(--muted); margin-top:6px; word-break:break-all; }
.pill { display:inline-block; padding:1px 8px; border-radius:10px; font-size:11.5px; font-weight:600;
        background:#e4e7eb; color:#323f4b; }
.pill.ok { background:#e3f4ea; color:var(--good); }
.pill.warn { background:#fff3c4; color:#8d6708; }
.pill.bad { background:#fde8e6; color:var(--bad); }
a { color:var(--accent); }
footer { color:var(--muted); font-size:12px; text-align:center; padding:8px 0 24px; }
"""


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML elements and quoted attributes."""
    return html.escape(str(value), quote=True)


def fmt_number(value: Any) -> str:
    """A metric value for a table: 4 significant digits, integers as integers, '' for none."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (math.isfinite(value) and float(value).is_integer() and abs(value) < 1e9):
        return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))
    return f"{value:.4g}"


def fmt_seconds(seconds: float | None) -> str:
    """``0.04`` -> ``40 ms``, ``93.2`` -> ``1 min 33 s``; ``None`` -> 'not recorded'."""
    if seconds is None or not math.isfinite(seconds):
        return "not recorded"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def data_uri(path: Path) -> str:
    """A PNG (or SVG/JPEG) file as a ``data:`` URI, so the page needs no file beside it."""
    kind = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
    mime = kind.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


class Section:
    """One titled block of a page, with an anchor the navigation bar links to."""

    def __init__(self, anchor: str, title: str, body: str) -> None:
        self.anchor, self.title, self.body = anchor, title, body

    def render(self) -> str:
        return f'<section id="{esc(self.anchor)}"><h2>{esc(self.title)}</h2>\n{self.body}\n</section>'


def table(header: Sequence[str] | None, rows: Iterable[Sequence[Any]], numeric: Sequence[int] = (),
          row_classes: Sequence[str] | None = None) -> str:
    """A table (without a header row when ``header`` is None); cells are escaped unless given as
    :class:`Raw`. ``numeric``: the columns aligned right; ``row_classes``: a CSS class per row."""
    num = set(numeric)

    def cell(tag: str, i: int, value: Any) -> str:
        text = value.html if isinstance(value, Raw) else esc(value)
        classes = [c for c in ("num" if i in num else "", value.cls if isinstance(value, Raw) else "") if c]
        cls = f' class="{" ".join(classes)}"' if classes else ""
        return f"<{tag}{cls}>{text}</{tag}>"

    head = "" if header is None else \
        "<thead><tr>" + "".join(cell("th", i, h) for i, h in enumerate(header)) + "</tr></thead>"
    body = []
    for j, row in enumerate(rows):
        cls = f' class="{esc(row_classes[j])}"' if row_classes and row_classes[j] else ""
        body.append(f"<tr{cls}>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>")
    return f'<div class="scroll"><table>{head}<tbody>{"".join(body)}</tbody></table></div>'


class Raw:
    """Table cell content that is already HTML (built from escaped parts), with an optional class."""

    def __init__(self, html_text: str, cls: str = "") -> None:
        self.html, self.cls = html_text, cls


def kv_table(items: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of names and values."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{v.html if isinstance(v, Raw) else esc(v)}</td></tr>"
                   for k, v in items)
    return f'<div class="scroll"><table class="kv"><tbody>{rows}</tbody></table></div>'


def pre(text: str) -> str:
    """Preformatted text (a config, a model summary), escaped, in a scrolling box."""
    return f"<pre>{esc(text)}</pre>"


def figure_grid(figures: Sequence[tuple[str, Path]]) -> str:
    """(caption, PNG path) pairs as a grid of embedded images."""
    items = [f'<figure><img alt="{esc(caption)}" src="{data_uri(path)}"><figcaption>{esc(caption)}</figcaption>'
             f"</figure>" for caption, path in figures]
    return f'<div class="figures">{"".join(items)}</div>'


def page(kind: str, title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole document: header, navigation to every section, the sections, a footer."""
    from deepscope import __version__

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections)
    body = "\n".join(s.render() for s in sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="deepscope {esc(__version__)}">
<title>{esc(title)} · deepscope {esc(kind.lower())}</title>
<style>{_CSS}</style>
</head>
<body>
<header class="top"><div class="kind">deepscope · {esc(kind)}</div><h1>{esc(title)}</h1>
<div class="sub">{esc(subtitle)}</div></header>
<nav>{nav}</nav>
<main>
{body}
</main>
<footer>written by deepscope {esc(__version__)} on {esc(now)} · self-contained: opens offline</footer>
</body>
</html>
"""


def write_page(path: Path, text: str) -> Path:
    """Write a page atomically (a temporary file renamed into place): a reader never sees half a page."""
    from deepscope.training.callbacks import atomic_write_text

    atomic_write_text(Path(path), text)
    return Path(path)
