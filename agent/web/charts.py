"""The console's charts, drawn on the server as SVG: nothing to load, nothing to run in the browser.

Each function takes plain figures and returns markup; every label is escaped here (labels are URLs and layer
names that came from people and configs).
"""

from __future__ import annotations

from markupsafe import Markup, escape

WIDTH = 720
BAR_HEIGHT = 22
COLOURS = {"verified": "#2e7d32", "not_verified": "#c62828", "other": "#90a4ae", "value": "#1565c0",
           "stale": "#ef6c00", "failed": "#c62828", "unverified": "#8e24aa"}


def _svg(height: int, body: list[str], title: str) -> Markup:
    return Markup(
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        + "".join(body) + "</svg>")


def empty(title: str) -> Markup:
    return _svg(40, [f'<text x="8" y="24" class="muted">{escape("Nothing recorded in this period.")}</text>'], title)


def stacked_columns(days: list[dict], parts: tuple[str, ...], title: str, *, height: int = 200) -> Markup:
    """One column per day, its parts stacked (verified, not verified, the rest); the day under every few."""
    if not any(sum(d[p] for p in parts) for d in days):
        return empty(title)
    top = max(sum(d[p] for p in parts) for d in days) or 1
    plot, left, bottom = height - 40, 40, height - 24
    step = (WIDTH - left - 8) / len(days)
    body = [f'<text x="4" y="14" class="axis">{top}</text>',
            f'<line x1="{left}" y1="{bottom}" x2="{WIDTH - 4}" y2="{bottom}" class="axis-line"/>']
    label_every = max(1, len(days) // 10)
    for index, day in enumerate(days):
        x, y = left + index * step, bottom
        for part in parts:
            h = day[part] / top * plot
            if h:
                y -= h
                body.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" height="{h:.1f}" '
                            f'fill="{COLOURS.get(part, COLOURS["other"])}"><title>{escape(day["day"])}: '
                            f'{day[part]} {escape(part.replace("_", " "))}</title></rect>')
        if index % label_every == 0:
            body.append(f'<text x="{x:.1f}" y="{height - 6}" class="axis">{escape(day["day"][5:])}</text>')
    legend_x = WIDTH - 8 - 120 * len(parts)
    for index, part in enumerate(parts):
        x = legend_x + index * 120
        body.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{COLOURS.get(part, COLOURS["other"])}"/>'
                    f'<text x="{x + 14}" y="13" class="axis">{escape(part.replace("_", " "))}</text>')
    return _svg(height, body, title)


def horizontal_bars(rows: list[tuple[str, dict[str, int]]], parts: tuple[str, ...], title: str) -> Markup:
    """One bar per label (a page, a layer), its parts side by side in one bar; the count at its end."""
    if not rows:
        return empty(title)
    label_width, right = 330, 60
    top = max(sum(values[p] for p in parts) for _, values in rows) or 1
    room = WIDTH - label_width - right
    body = []
    for index, (label, values) in enumerate(rows):
        y = 6 + index * (BAR_HEIGHT + 6)
        shown = label if len(label) <= 52 else label[:24] + "…" + label[-27:]
        body.append(f'<text x="4" y="{y + 15}" class="label"><title>{escape(label)}</title>{escape(shown)}</text>')
        x = label_width
        for part in parts:
            w = values[part] / top * room
            if w:
                body.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR_HEIGHT}" '
                            f'fill="{COLOURS.get(part, COLOURS["value"])}"><title>{values[part]} '
                            f'{escape(part.replace("_", " "))}</title></rect>')
                x += w
        total = sum(values[p] for p in parts)
        body.append(f'<text x="{x + 6:.1f}" y="{y + 15}" class="label">{total}</text>')
    return _svg(12 + len(rows) * (BAR_HEIGHT + 6), body, title)
