"""The Releases view's Health page: each customer's drift metrics over the last monitored days.

Rows are :class:`retrain.drift.health.CustomerHealth`, built once per set of days from the drift
history; they are filtered, sorted and paged on the server like the release tables
(:mod:`retrain_airflow.releases_pages`). Each metric is an inline SVG sparkline with its threshold
(dashed) and its days in drift (red), drawn from numbers computed here; every text read back from
MLflow (customer ids, release ids, versions) is escaped by the autoescaping templates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from markupsafe import Markup

from retrain.drift.health import PLOTTED, CustomerHealth
from retrain.drift.history import DriftRow
from retrain.drift.metrics import STATUSES, VOLUME
from retrain_airflow.releases_pages import QueryError, TablePage, TableQuery, filters, macros, paginate

DAYS = 14  # days shown unless the page asks for others
MAX_DAYS = 90
DAY_CHOICES = (7, 14, 30)
WIDTH, HEIGHT, PAD = 96.0, 24.0, 2.0
_RANK = {status: i for i, status in enumerate(("drift", "no_reference", "insufficient", "ok"))}


@dataclass(frozen=True)
class Sparkline:
    title: str  # the latest value and threshold, as the tooltip
    lines: list[str]  # SVG polyline points, one per run of consecutive days with a value
    dots: list[tuple[float, float, bool]]  # x, y, alarmed: each day in drift, and lone days
    levels: list[float]  # y of each threshold line


def health_sort_keys() -> dict[str, Callable[[CustomerHealth], Any]]:
    """Column -> sort key; ``None`` (nothing trusted that day) always sorts last."""
    return {
        "customer": lambda h: h.customer.casefold(),
        "status": lambda h: _RANK.get(h.status, len(_RANK)),
        "worst": lambda h: h.worst,
        "rows": lambda h: h.rows,
        "day": lambda h: h.ds,
    }


def health_page(rows: list[CustomerHealth], query: TableQuery) -> TablePage[CustomerHealth]:
    if query.status and query.status not in STATUSES:
        raise QueryError(f"status must be one of {', '.join(STATUSES)}, not {query.status!r}")
    needle = query.q.casefold()
    kept = [
        h for h in rows if needle in h.customer.casefold() and (not query.status or h.status == query.status)
    ]
    return paginate(kept, query, health_sort_keys())


def sparkline(metric: str, series: Sequence[DriftRow | None]) -> Sparkline:
    """``series`` (one row per day, ``None`` where not monitored) scaled to the sparkline's box."""
    values = [row.value if row is not None and row.value is not None else None for row in series]
    latest = next((row for row in reversed(series) if row is not None), None)
    threshold = latest.threshold if latest is not None else None
    levels = (
        [threshold, 1 / threshold] if threshold and metric == VOLUME else [threshold] if threshold else []
    )
    top = max([v for v in values if v is not None and math.isfinite(v)] + levels + [0.0]) * 1.1 or 1.0
    step = (WIDTH - 2 * PAD) / max(1, len(series) - 1)

    def point(i: int, value: float) -> tuple[float, float]:
        y = HEIGHT - PAD - min(value, top) / top * (HEIGHT - 2 * PAD)
        return round(PAD + i * step, 1), round(y, 1)

    runs: list[list[tuple[float, float]]] = [[]]
    dots = []
    for i, (row, value) in enumerate(zip(series, values, strict=True)):
        if value is None or row is None:
            runs.append([])
            continue
        runs[-1].append(point(i, value))
        if row.status == "drift":
            dots.append((*point(i, value), True))
    lines = [" ".join(f"{x},{y}" for x, y in run) for run in runs if len(run) > 1]
    dots += [(*run[0], False) for run in runs if len(run) == 1]
    if latest is None or latest.value is None:
        title = f"{metric}: not measured"
    else:
        title = f"{metric}: {latest.value:.3f} on {latest.ds} ({latest.status}; threshold {threshold:g})"
    return Sparkline(title, lines, dots, [point(0, level)[1] for level in levels])


_TEMPLATES = r"""
{%- from "releases" import table, release_link, number, code %}

{%- macro spark(s) -%}
<svg width="{{ width }}" height="{{ height }}" viewBox="0 0 {{ width }} {{ height }}" role="img">
{{- "" }}<title>{{ s.title }}</title>
{%- for y in s.levels %}<line x1="0" x2="{{ width }}" y1="{{ y }}" y2="{{ y }}" stroke="#b3261e"
{{- "" }} stroke-width="0.6" stroke-dasharray="2,2"/>{% endfor %}
{%- for points in s.lines %}<polyline points="{{ points }}" fill="none" stroke="#1a73e8" stroke-width="1"/>
{%- endfor %}
{%- for x, y, alarmed in s.dots %}<circle cx="{{ x }}" cy="{{ y }}" r="1.8"
{{- "" }} fill="{{ '#b3261e' if alarmed else '#1a73e8' }}"/>{% endfor -%}
</svg>{% endmacro %}

{%- macro health_table(page, query, columns) %}{% call table(page, query, columns) %}
{%- for h in page.rows %}<tr><td>{{ h.customer }}</td>
{{- "" }}<td class="{{ 'failed' if h.status == 'drift' else 'muted' if h.status != 'ok' else '' }}">
{{- h.status }}</td><td>{{ number(h.worst) }}</td><td>{{ h.rows if h.rows is not none else "" }}</td>
{{- "" }}<td>{{ h.ds }}</td><td><a href="release/{{ h.release|urlencode }}" title="{{ h.release }}">
{{- code(h.release[:12]) }}</a> v{{ h.adapter_version }}</td>
{%- for m in metrics %}<td>{{ spark(sparkline(m, h.series[m])) }}</td>{% endfor %}</tr>
{%- endfor %}{% endcall %}{% endmacro %}

{%- macro summary(days, release, total, choices) -%}
{%- if not days %}<p>No drift recorded yet: <code>monitor_daily</code> (or <code>retrain drift run</code>)
{{- " " }}records each scored day.</p>
{%- else %}<p><a href="./">&larr; all releases</a></p><p>{{ total }} customers
{%- if release %} of release {{ release_link(release) }}{% endif %}, over the last {{ days|length }}
{{- " " }}monitored day(s), {{ days[0] }} to {{ days[-1] }} (show {% for n, href in choices %}
{%- if not loop.first %}, {% endif %}<a href="{{ href }}">{{ n }}</a>{% endfor %} days).
{{- " " }}Status and worst are of each customer's latest day; worst is its largest value / threshold.
{{- " " }}Sparklines: one point per day, dashed the threshold, red the days in drift.</p>{% endif %}
{%- endmacro %}
"""

_MACROS: Any = macros(_TEMPLATES, sparkline=sparkline, metrics=PLOTTED, width=WIDTH, height=HEIGHT)


def health_table(page: TablePage[CustomerHealth], query: TableQuery) -> Markup:
    columns = [
        ("customer", "customer"),
        ("status", "status"),
        ("worst", "worst"),
        ("rows", "rows"),
        ("day", "latest day"),
        ("", "release, adapter"),
        *(("", metric) for metric in PLOTTED),
    ]
    return Markup(_MACROS.health_table(page, query, columns))


def health_body(
    days: Sequence[str], release: str | None, rows: Sequence[CustomerHealth], query: TableQuery, table: Markup
) -> Markup:
    """What the page shows: the window and its day choices, the filters and the table."""
    if not days:
        return Markup(_MACROS.summary(days, release, 0, []))
    kept = [(name, value) for name, value in query.keep if name != "days"]
    choices = [(n, replace(query, keep=(*kept, ("days", str(n)))).href(page=1)) for n in DAY_CHOICES]
    statuses = (("status", "every status", STATUSES),)
    return Markup(_MACROS.summary(days, release, len(rows), choices)) + filters(query, (), statuses) + table
