"""Self-contained HTML reports: images are embedded as base64, so one file can be mailed or archived."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from dermsynth.io import write_text


class HTMLReport:
    """Build a report section by section, then :meth:`write` it."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> HTMLReport:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
        return self

    def paragraph(self, text: str) -> HTMLReport:
        self.parts.append(f"<p>{html.escape(text)}</p>")
        return self

    def note(self, text: str) -> HTMLReport:
        """A highlighted paragraph, e.g. why a section could not be computed."""
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')
        return self

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]], caption: str = "") -> HTMLReport:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.parts.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        return self

    def images(self, items: Sequence[tuple[str, str | Path]]) -> HTMLReport:
        """Figures side by side: (caption, PNG path) pairs, embedded."""
        figs = []
        for caption, path in items:
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            figs.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        self.parts.append(f'<div class="row">{"".join(figs)}</div>')
        return self

    def write(self, path: str | Path) -> Path:
        return write_text(
            path, "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>{''.join(self.parts)}</body></html>\n")


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}caption{text-align:left;font-style:italic;padding:4px 0}
.row{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}img{max-width:560px;image-rendering:pixelated}
figcaption{font-size:0.9em;color:#555}
.note{background:#fff6e0;border-left:4px solid #e0a000;padding:6px 10px}
"""
