"""The Releases view's two big tables, a release's adapters and the diff of two releases.

Rows are built once from the (cached) manifests, then filtered, sorted and paged on the server,
so a page of 50 out of 1,000 adapters costs the same as one of a release of ten. Nothing here
talks to MLflow or Airflow: the app passes manifests and release events in and gets HTML (or
JSON-ready rows) back.

Every page is rendered by Jinja2 with autoescape on, as Airflow's own plugins are: every value
read back from MLflow (ids, model names, commits, metric names, failure reasons, notes) is
anyone's with MLflow access and stays text. The only markup not written in the templates is
:class:`markupsafe.Markup` built here from constants (the rollback script, the diff legend).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup

from retrain.identifiers import is_release_id
from retrain.release.manifest import AdapterEntry, Manifest, ManifestDiff
from retrain.release.promotion import NO_PRODUCTION_ADAPTER
from retrain.release.store import ReleaseEvent

Order = Literal["asc", "desc"]
ModelUrl = Callable[[AdapterEntry], str | None]  # an adapter's model version in the MLflow UI, if any
CommitUrl = Callable[[str], str | None]  # a Dolt commit in the repository's web UI, if any
T = TypeVar("T")

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# Every holdout metric the trainer records (accuracy, f1, roc_auc) is better when higher.
BETTER = "higher is better for every metric (accuracy, f1, roc_auc)"
DIFF_KINDS = ("added", "changed", "removed")


class QueryError(ValueError):
    """A query parameter names no column or no page; the message says which values exist."""


@dataclass(frozen=True)
class TableQuery:
    """What one page of a table shows: the query string of the page, validated by the app."""

    page: int = 1
    per_page: int = PAGE_SIZE
    sort: str = "customer"
    order: Order = "asc"
    q: str = ""
    changed: bool = False  # release page: only customers added or changed since the previous release
    failed: bool = False  # release page: only customers whose training failed for this release
    kind: str = ""  # diff page: only added, changed or removed customers
    status: str = ""  # health page: only customers of this drift status
    keep: tuple[tuple[str, str], ...] = ()  # the page's own parameters (the diff's base and head)

    def href(self, **changes: Any) -> str:
        """A relative link to this page with ``changes`` applied (only non-default values spelled out);
        raw: the templates escape it."""
        target, default = replace(self, **changes), TableQuery()
        params = [*self.keep]
        for name in (f.name for f in fields(self) if f.name != "keep"):
            value = getattr(target, name)
            if value != getattr(default, name):
                params.append((name, "true" if value is True else str(value)))
        return f"?{urlencode(params)}"


@dataclass(frozen=True)
class TablePage(Generic[T]):
    rows: list[T]
    number: int
    pages: int
    total: int  # rows matching the filters, over every page


@dataclass(frozen=True)
class ReleaseRow:
    """A customer of a release: its adapter, and what changed or failed when the release was cut."""

    customer: str
    entry: AdapterEntry | None  # None: training failed and the customer has no adapter at all
    change: str = ""  # "added" or "changed" against the previous release, else ""
    previous_version: str = ""
    failure: str = ""  # why it has no new adapter in this release (training failed, below the floor), else ""


@dataclass(frozen=True)
class DiffRow:
    """A customer added, changed or removed between two releases."""

    customer: str
    kind: str
    old: AdapterEntry | None
    new: AdapterEntry | None
    deltas: dict[str, float] = field(default_factory=dict)  # new - old, for metrics both sides hold


# -- rows ---------------------------------------------------------------------------------------


def release_rows(manifest: Manifest, previous: Manifest | None, failures: dict[str, str]) -> list[ReleaseRow]:
    """Every adapter of ``manifest`` plus the failed customers it has none for, by customer."""
    before = previous.by_customer() if previous is not None else {}
    rows = []
    for entry in manifest.adapters:
        old = before.get(entry.customer)
        change = "added" if old is None else "changed" if _identity(old) != _identity(entry) else ""
        rows.append(
            ReleaseRow(
                entry.customer, entry, change, old.version if old else "", failures.get(entry.customer, "")
            )
        )
    present = {entry.customer for entry in manifest.adapters}
    rows += [ReleaseRow(c, None, failure=reason) for c, reason in failures.items() if c not in present]
    return sorted(rows, key=lambda row: row.customer)


def diff_rows(changes: ManifestDiff) -> list[DiffRow]:
    rows = [DiffRow(a.customer, "added", None, a) for a in changes.added]
    rows += [DiffRow(r.customer, "removed", r, None) for r in changes.removed]
    rows += [
        DiffRow(
            new.customer,
            "changed",
            old,
            new,
            {k: new.metrics[k] - old.metrics[k] for k in sorted(set(old.metrics) & set(new.metrics))},
        )
        for old, new in changes.changed
    ]
    return sorted(rows, key=lambda row: row.customer)


def metric_names(entries: Iterable[AdapterEntry | None]) -> list[str]:
    return sorted({name for entry in entries if entry is not None for name in entry.metrics})


def _identity(entry: AdapterEntry) -> tuple[str, str]:
    return entry.model_name, entry.version


# -- filtering, sorting, paging ---------------------------------------------------------------------


def release_sort_keys(metrics: Sequence[str]) -> dict[str, Callable[[ReleaseRow], Any]]:
    """Column -> sort key of a row; ``None`` (no adapter, no such metric) always sorts last."""
    keys: dict[str, Callable[[ReleaseRow], Any]] = {
        "customer": lambda r: r.customer.casefold(),
        "version": lambda r: int(r.entry.version) if r.entry and r.entry.version.isdigit() else None,
        "commit": lambda r: r.entry.commit if r.entry else None,
    }
    return keys | {name: _metric(name) for name in metrics}


def _metric(name: str) -> Callable[[ReleaseRow], float | None]:
    return lambda row: row.entry.metrics.get(name) if row.entry else None


def diff_sort_keys(metrics: Sequence[str]) -> dict[str, Callable[[DiffRow], Any]]:
    keys: dict[str, Callable[[DiffRow], Any]] = {
        "customer": lambda r: r.customer.casefold(),
        "kind": lambda r: r.kind,
    }
    return keys | {name: _delta_of(name) for name in metrics}


def _delta_of(name: str) -> Callable[[DiffRow], float | None]:
    return lambda row: row.deltas.get(name)


def release_page(rows: list[ReleaseRow], query: TableQuery, metrics: Sequence[str]) -> TablePage[ReleaseRow]:
    needle = query.q.casefold()
    kept = [
        r
        for r in rows
        if needle in r.customer.casefold()
        and (not query.changed or r.change)
        and (not query.failed or r.failure)
    ]
    return paginate(kept, query, release_sort_keys(metrics))


def diff_page(rows: list[DiffRow], query: TableQuery, metrics: Sequence[str]) -> TablePage[DiffRow]:
    if query.kind and query.kind not in DIFF_KINDS:
        raise QueryError(f"kind must be one of {', '.join(DIFF_KINDS)}, not {query.kind!r}")
    needle = query.q.casefold()
    kept = [r for r in rows if needle in r.customer.casefold() and (not query.kind or r.kind == query.kind)]
    return paginate(kept, query, diff_sort_keys(metrics))


def paginate(rows: list[T], query: TableQuery, keys: dict[str, Callable[[T], Any]]) -> TablePage[T]:
    """The page of ``rows`` that ``query`` asks for, sorted by ``keys[query.sort]`` (``None`` last)."""
    if query.sort not in keys:
        raise QueryError(f"sort must be one of {', '.join(keys)}, not {query.sort!r}")
    key = keys[query.sort]
    present = [r for r in rows if key(r) is not None]
    ordered = sorted(present, key=key, reverse=query.order == "desc") + [r for r in rows if key(r) is None]
    pages = max(1, math.ceil(len(ordered) / query.per_page))
    if query.page > pages:
        raise QueryError(f"page {query.page} is past the last page ({pages})")
    start = (query.page - 1) * query.per_page
    return TablePage(ordered[start : start + query.per_page], query.page, pages, len(ordered))


# -- HTML ---------------------------------------------------------------------------------------

DIFF_LEGEND = Markup(
    '&Delta; is new &minus; old: <span class="better">green</span> when better, '
    f'<span class="worse">red</span> when worse ({BETTER}).'
)

# Macros, one per piece of a page; every ``{{ value }}`` is escaped unless it is Markup (another
# macro's output, or the constants above and below).
_TEMPLATES = r"""
{%- macro link(url, text) %}{% if url %}<a href="{{ url }}" target="_blank">{{ text }}</a>
{%- else %}{{ text }}{% endif %}{% endmacro %}

{%- macro commit(sha, commit_url) %}{{ link(commit_url(sha), code(sha[:12])) }}{% endmacro %}

{%- macro code(text) %}<code>{{ text }}</code>{% endmacro %}

{%- macro number(value) %}{% if value is not none %}{{ "%.3f"|format(value) }}{% endif %}{% endmacro %}

{%- macro delta(value) %}{% if value is not none %}
{#- the colour follows the digits shown; + 0.0 turns -0.0 into 0.0 #}
{%- set shown = value|round(3) + 0.0 -%}
<span class="{{ 'better' if shown > 0 else 'worse' if shown < 0 else 'muted' }}">
{{- "%+.3f"|format(shown) }}</span>
{%- endif %}{% endmacro %}

{%- macro release_link(release_id, prefix="") -%}
<a href="{{ prefix }}release/{{ release_id|urlencode }}"><code>{{ release_id }}</code></a>
{%- endmacro %}

{#- Column headers; a sortable one links to its ascending order, or flips the order when current. #}
{%- macro headers(query, columns) %}<tr>{% for key, label in columns %}{% if key %}
{%- set current = query.sort == key -%}
<th><a href="{{ query.href(sort=key, order='desc' if current and query.order == 'asc' else 'asc', page=1) }}">
{{- label }}</a>{% if current %} {% if query.order == 'asc' %}&#9650;{% else %}&#9660;{% endif %}
{%- endif %}</th>
{%- else %}<th>{{ label }}</th>{% endif %}{% endfor %}</tr>{% endmacro %}

{%- macro table(page, query, columns) %}{% set first = (page.number - 1) * query.per_page + 1 -%}
<p class="count">{% if page.rows %}{{ first }}&ndash;{{ first + page.rows|length - 1 }}
{%- else %}none{% endif %}
{{- " " }}of {{ page.total }} matching rows.</p><table>{{ headers(query, columns) }}{{ caller() }}</table>
{{- pager(page, query) }}{% endmacro %}

{#- Previous, next, the first and last pages and the pages around the current one. #}
{%- macro pager(page, query) %}{% if page.pages > 1 %}<nav class="pager">
{%- if page.number > 1 %}<a rel="prev" href="{{ query.href(page=page.number - 1)
}}">&larr; previous</a> {% endif %}
{%- for n in pages_shown(page) %}{% if not loop.first %} {% endif %}{% if n is none %}&hellip;
{%- elif n == page.number %}<b>{{ n }}</b>{% else %}<a href="{{ query.href(page=n) }}">{{ n }}</a>{% endif %}
{%- endfor %}
{%- if page.number < page.pages %} <a rel="next" href="{{ query.href(page=page.number + 1) }}">next &rarr;</a>
{%- endif %}</nav>{% endif %}{% endmacro %}

{%- macro status(row) %}{% if row.change == "added" %}added{% elif row.change == "changed" %}changed from v
{{- row.previous_version }}{% endif %}
{%- if row.failure %}{% if row.change %}; {% endif %}<span class="failed">
{%- if row.failure.startswith(NO_PRODUCTION_ADAPTER) %}{{ row.failure }}
{#- trained, but its first version is below the floor #}
{%- else %}training failed: {{ row.failure }}
{%- if row.entry %}, serving v{{ row.entry.version }} from before{% else %}, no adapter{% endif %}{% endif -%}
</span>{% endif %}{% endmacro %}

{%- macro release_table(page, query, columns, metrics, model_url, commit_url) %}
{%- call table(page, query, columns) %}
{%- for row in page.rows %}{% set e = row.entry %}<tr><td>{{ row.customer }}</td>
{%- if e is none %}{% for _ in range(4 + metrics|length) %}<td></td>{% endfor %}
{%- else %}<td>{{ link(model_url(e), e.model_name) }}</td><td>v{{ e.version }}</td>
{{- "" }}<td>{{ commit(e.commit, commit_url) }}</td>
{%- for m in metrics %}<td>{{ number(e.metrics.get(m)) }}</td>{% endfor %}<td>{{ code(e.run_id[:12]) }}</td>
{%- endif %}<td>{{ status(row) }}</td></tr>{% endfor %}{% endcall %}{% endmacro %}

{%- macro side(entry, what, model_url, commit_url) %}{% if entry is none %}<span class="muted">&mdash;</span>
{%- elif what == "version" %}v{{ entry.version }}
{%- elif what == "commit" %}{{ commit(entry.commit, commit_url) }}
{%- else %}{{ link(model_url(entry), entry.model_name ~ " v" ~ entry.version) }}{% endif %}{% endmacro %}

{%- macro diff_table(page, query, columns, metrics, model_url, commit_url) %}
{%- call table(page, query, columns) %}
{%- for row in page.rows %}<tr><td>{{ row.customer }}</td><td>{{ row.kind }}</td>
{{- "" }}<td>{{ side(row.old, "version") }} &rarr; {{ side(row.new, "version") }}</td>
{%- for what in ("commit", "model") %}{% for entry in (row.old, row.new) %}
{{- "" }}<td>{{ side(entry, what, model_url, commit_url) }}</td>{% endfor %}{% endfor %}
{%- for m in metrics %}<td>{{ delta(row.deltas.get(m)) }}</td>{% endfor %}</tr>{% endfor %}
{%- endcall %}{% endmacro %}

{#- The GET form of a table: customer search, checkboxes, selects; keeps sort and page size. #}
{%- macro filters(query, checkboxes, selects, hidden) -%}
<form class="filters" method="get">
{{- "" }}<input type="search" name="q" placeholder="customer" value="{{ query.q }}">{{ " " }}
{%- for name, label in checkboxes %}<label><input type="checkbox" name="{{ name }}" value="true"
{%- if query[name] %} checked{% endif %}> {{ label }}</label> {% endfor %}
{%- for name, every, options in selects %}<select name="{{ name }}">
{%- for k in [""] + options|list %}<option value="{{ k }}"{% if query[name] == k %} selected{% endif %}>
{{- k or every }}</option>{% endfor %}</select> {% endfor %}
{%- for name, value in hidden %}<input type="hidden" name="{{ name }}" value="{{ value }}">{% endfor -%}
<button type="submit">Filter</button></form>{% endmacro %}

{%- macro select(name, ids, selected) %}<select name="{{ name }}">{% for id in ids -%}
<option value="{{ id }}"{% if loop.index0 == selected %} selected{% endif %}>{{ id[:12] }}</option>
{%- endfor %}</select>{% endmacro %}

{%- macro history(events, production, ids) -%}
<p>Every customer's drift over the last days: <a href="health?sort=worst&amp;order=desc">Health</a>.</p>
{%- if not events %}<p>No release registered yet.</p>{% else -%}
<table><tr><th>release</th><th>event</th><th>time</th><th>adapters</th><th>changes</th><th>pinned days</th>
{{- "" }}<th>training failed</th></tr>{% for e in events %}<tr><td>{{ release_link(e.release_id) }}
{%- if e.release_id == production and e.event != "pin" %} <b>(production)</b>{% endif %}</td>
{{- "" }}<td>{{ e.event }}</td>
{{- "" }}<td>{{ e.time.strftime("%Y-%m-%d %H:%M:%S") }} UTC</td><td>{{ e.adapter_count }}</td>
{{- "" }}<td>{{ e.changes or e.note }}</td>
{{- "" }}<td>{% if e.event == "pin" %}{{ e.pinned_from }}..{{ e.pinned_to }}{% endif %}</td>
{{- "" }}<td class="failed">{{ e.failed_count or "" }}</td></tr>{% endfor %}</table>
{{- "" }}<form action="diff" method="get"><h2>Compare</h2>
{{- select("base", ids, [1, ids|length - 1]|min) }} &rarr;
{{- " " }}{{ select("head", ids, 0) }} <button type="submit">Diff</button></form>{% endif %}{% endmacro %}

{%- macro detail(release_id, adapters, in_production, previous, filter_form, table, rollback) -%}
<p><a href="../">&larr; all releases</a></p>
{{- "" }}<p>{{ adapters }} adapters, {% if not in_production %}not {% endif -%}
in production. Serving image tag <code>{{ release_id }}</code>. {% if previous -%}
Changes against {{ release_link(previous, "../") }} (<a href="../diff?
{{- {"base": previous, "head": release_id}|urlencode }}">the diff</a>).
{%- else %}No earlier release to compare with.{% endif %} Its customers' drift:
{{- " " }}<a href="../health?{{ {"release": release_id, "sort": "worst", "order": "desc"}|urlencode
}}">Health</a>.
{{- "" }}</p>{{ filter_form }}{{ table }}{{ rollback }}
{%- endmacro %}

{%- macro diff_summary(base, head, changes) -%}
<p>{{ release_link(base) }} &rarr; {{ release_link(head) }}: {{ changes.added|length }} added,
{{- " " }}{{ changes.changed|length }} changed, {{ changes.removed|length }} removed. {{ legend }}</p>
{%- endmacro %}

{%- macro page(title, body) -%}
<!doctype html>
<html><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:sans-serif;margin:1.5em} table{border-collapse:collapse}
td,th{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left} button{margin-top:1em}
.better{color:#137333} .worse{color:#b3261e} .failed{color:#b3261e} .muted{color:#666}
th a{color:inherit} nav.pager a,nav.pager b{margin-right:.4em} form.filters{margin:1em 0}</style>
</head><body><h1>{{ title }}</h1>{{ body }}</body></html>
{%- endmacro %}
"""

# The release id is 32 hex characters (checked before it is put in), safe inside this script.
_ROLLBACK_BUTTON = """<button id="rollback" onclick="rollBack()">Roll production back to this release</button>
<script>
async function rollBack() {
  if (!confirm("Roll production back to release RELEASE_ID?")) return;
  const response = await fetch("../api/releases/RELEASE_ID/rollback", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({confirm: "RELEASE_ID"}),
  });
  document.getElementById("rollback").outerHTML =
    "<p>" + (response.ok ? "Rolled back." : "Refused: " + response.status) + "</p>";
}
</script>"""


def _pages_shown(page: TablePage[Any]) -> list[int | None]:
    """The page numbers the pager links, ``None`` where it skips some."""
    around = range(max(1, page.number - 3), min(page.pages, page.number + 3) + 1)
    shown: list[int | None] = []
    last = 0
    for number in sorted({1, page.pages, *around}):
        if number > last + 1:
            shown.append(None)
        shown.append(number)
        last = number
    return shown


# Other pages' templates import these macros by the name "releases" (:func:`macros`).
_ENV = jinja2.Environment(
    loader=jinja2.DictLoader({"releases": _TEMPLATES}), autoescape=True, undefined=jinja2.StrictUndefined
)
_ENV.globals.update(NO_PRODUCTION_ADAPTER=NO_PRODUCTION_ADAPTER, pages_shown=_pages_shown, legend=DIFF_LEGEND)
_MACROS: Any = _ENV.get_template("releases").module


def macros(source: str, **names: Any) -> Any:
    """The macros of another page's template ``source`` with the global ``names``, rendered like
    these (autoescaped, strict); it may ``{% from "releases" import ... %}``."""
    return _ENV.from_string(source, globals=names).module


def release_table(
    page: TablePage[ReleaseRow],
    query: TableQuery,
    metrics: Sequence[str],
    model_url: ModelUrl,
    commit_url: CommitUrl,
) -> Markup:
    columns = [
        ("customer", "customer"),
        ("", "model"),
        ("version", "version"),
        ("commit", "Dolt commit"),
        *((m, m) for m in metrics),
        ("", "MLflow run"),
        ("", "status"),
    ]
    return Markup(_MACROS.release_table(page, query, columns, metrics, model_url, commit_url))


def diff_table(
    page: TablePage[DiffRow],
    query: TableQuery,
    metrics: Sequence[str],
    model_url: ModelUrl,
    commit_url: CommitUrl,
) -> Markup:
    columns = [
        ("customer", "customer"),
        ("kind", "change"),
        ("", "version"),
        ("", "old Dolt commit"),
        ("", "new Dolt commit"),
        ("", "old MLflow version"),
        ("", "new MLflow version"),
        *((m, Markup("&Delta; {}").format(m)) for m in metrics),
    ]
    return Markup(_MACROS.diff_table(page, query, columns, metrics, model_url, commit_url))


def filters(
    query: TableQuery,
    checkboxes: Sequence[tuple[str, str]],
    selects: Sequence[tuple[str, str, Sequence[str]]] = (),
) -> Markup:
    """The GET form of a table: customer search, checkboxes (parameter, label), selects (parameter,
    label of "any", options); keeps sort and page size."""
    hidden = [*query.keep, ("sort", query.sort), ("order", query.order), ("per_page", str(query.per_page))]
    return Markup(_MACROS.filters(query, checkboxes, selects, hidden))


def pager(page: TablePage[Any], query: TableQuery) -> Markup:
    return Markup(_MACROS.pager(page, query))


def history(events: Sequence[ReleaseEvent]) -> Markup:
    """The release history, newest first, and the form comparing two of its releases."""
    production = next((e.release_id for e in events if e.event in ("register", "rollback")), None)
    ids = list(dict.fromkeys(e.release_id for e in events))  # newest first, each once
    return Markup(_MACROS.history(events, production, ids))


def detail(
    release_id: str,
    rows: Sequence[ReleaseRow],
    in_production: bool,
    previous: str | None,
    query: TableQuery,
    table: Markup,
    can_roll_back: bool,
) -> Markup:
    """One release's page: what it holds, what it replaced, its table and (for the Op role) rollback."""
    failed = sum(1 for row in rows if row.failure)
    form = filters(query, (("changed", "only changed"), ("failed", f"only failed ({failed})")))
    # The id lands in a script: only a checked id, whatever the route checked before.
    can_show = can_roll_back and not in_production and is_release_id(release_id)
    button = Markup(_ROLLBACK_BUTTON.replace("RELEASE_ID", release_id)) if can_show else ""
    adapters = sum(1 for row in rows if row.entry is not None)
    return Markup(_MACROS.detail(release_id, adapters, in_production, previous, form, table, button))


def diff_summary(base: str, head: str, changes: ManifestDiff) -> Markup:
    """What a diff page says above its table: the two releases and how many customers changed."""
    return Markup(_MACROS.diff_summary(base, head, changes))


def page(title: str, body: Markup | str) -> str:
    """A whole HTML document; ``body`` is escaped unless it is Markup."""
    return str(_MACROS.page(title, body))
