"""The Releases view's two big tables, a release's adapters and the diff of two releases.

Rows are built once from the (cached) manifests, then filtered, sorted and paged on the server,
so a page of 50 out of 1,000 adapters costs the same as one of a release of ten. Nothing here
talks to MLflow or Airflow: the app passes manifests in and gets HTML (or JSON-ready rows) back.
Every value that reaches the page is escaped: customer ids and failure reasons come from people.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import urlencode

from retrain.release.manifest import AdapterEntry, Manifest, ManifestDiff
from retrain.release.promotion import NO_PRODUCTION_ADAPTER

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
    keep: tuple[tuple[str, str], ...] = ()  # the page's own parameters (the diff's base and head)

    def href(self, **changes: Any) -> str:
        """A relative link to this page with ``changes`` applied (only non-default values spelled out)."""
        target, default = replace(self, **changes), TableQuery()
        params = [*self.keep]
        for name in (f.name for f in fields(self) if f.name != "keep"):
            value = getattr(target, name)
            if value != getattr(default, name):
                params.append((name, "true" if value is True else str(value)))
        return html.escape(f"?{urlencode(params)}")


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
    return _page(kept, query, release_sort_keys(metrics))


def diff_page(rows: list[DiffRow], query: TableQuery, metrics: Sequence[str]) -> TablePage[DiffRow]:
    if query.kind and query.kind not in DIFF_KINDS:
        raise QueryError(f"kind must be one of {', '.join(DIFF_KINDS)}, not {query.kind!r}")
    needle = query.q.casefold()
    kept = [r for r in rows if needle in r.customer.casefold() and (not query.kind or r.kind == query.kind)]
    return _page(kept, query, diff_sort_keys(metrics))


def _page(rows: list[T], query: TableQuery, keys: dict[str, Callable[[T], Any]]) -> TablePage[T]:
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


# -- HTML -----------------------------------------------------------------------------------------

STYLE = """.better{color:#137333} .worse{color:#b3261e} .failed{color:#b3261e} .muted{color:#666}
th a{color:inherit} nav.pager a,nav.pager b{margin-right:.4em} form.filters{margin:1em 0}"""


def release_table(
    page: TablePage[ReleaseRow],
    query: TableQuery,
    metrics: Sequence[str],
    model_url: ModelUrl,
    commit_url: CommitUrl,
) -> str:
    headers = _headers(
        query,
        [
            ("customer", "customer"),
            ("", "model"),
            ("version", "version"),
            ("commit", "Dolt commit"),
            *((m, m) for m in metrics),
            ("", "MLflow run"),
            ("", "status"),
        ],
    )
    body = "".join(_release_row(r, metrics, model_url, commit_url) for r in page.rows)
    return _table(headers, body, page, query)


def _release_row(row: ReleaseRow, metrics: Sequence[str], model_url: ModelUrl, commit_url: CommitUrl) -> str:
    entry = row.entry
    status = []
    if row.change == "added":
        status.append("added")
    elif row.change == "changed":
        status.append(f"changed from v{html.escape(row.previous_version)}")
    if row.failure.startswith(NO_PRODUCTION_ADAPTER):  # trained, but its first version is below the floor
        status.append(f'<span class="failed">{html.escape(row.failure)}</span>')
    elif row.failure:
        kept = f", serving v{html.escape(entry.version)} from before" if entry else ", no adapter"
        status.append(f'<span class="failed">training failed: {html.escape(row.failure)}{kept}</span>')
    cells = [html.escape(row.customer)]
    if entry is None:
        cells += [""] * (4 + len(metrics))
    else:
        cells += [
            _a(model_url(entry), html.escape(entry.model_name)),
            f"v{html.escape(entry.version)}",
            _commit(entry.commit, commit_url),
            *(_number(entry.metrics.get(m)) for m in metrics),
            f"<code>{html.escape(entry.run_id[:12])}</code>",
        ]
    return _tr([*cells, "; ".join(status)])


def diff_table(
    page: TablePage[DiffRow],
    query: TableQuery,
    metrics: Sequence[str],
    model_url: ModelUrl,
    commit_url: CommitUrl,
) -> str:
    columns = [
        ("customer", "customer"),
        ("kind", "change"),
        ("", "version"),
        ("", "old Dolt commit"),
        ("", "new Dolt commit"),
        ("", "old MLflow version"),
        ("", "new MLflow version"),
    ]
    headers = _headers(query, [*columns, *((m, f"&Delta; {m}") for m in metrics)])
    body = "".join(_diff_row(r, metrics, model_url, commit_url) for r in page.rows)
    return _table(headers, body, page, query)


def _diff_row(row: DiffRow, metrics: Sequence[str], model_url: ModelUrl, commit_url: CommitUrl) -> str:
    def sides(render: Callable[[AdapterEntry], str]) -> list[str]:
        return [
            render(e) if e is not None else '<span class="muted">&mdash;</span>' for e in (row.old, row.new)
        ]

    def model_version(entry: AdapterEntry) -> str:
        return _a(model_url(entry), f"{html.escape(entry.model_name)} v{html.escape(entry.version)}")

    versions = " &rarr; ".join(sides(lambda e: f"v{html.escape(e.version)}"))
    commits = sides(lambda e: _commit(e.commit, commit_url))
    deltas = [_delta(row.deltas.get(m)) for m in metrics]
    return _tr([html.escape(row.customer), row.kind, versions, *commits, *sides(model_version), *deltas])


def filters(query: TableQuery, checkboxes: Sequence[tuple[str, str]], kinds: Sequence[str] = ()) -> str:
    """The GET form of a table: customer search, checkboxes, the diff's kind; keeps sort and page size."""
    boxes = "".join(
        f'<label><input type="checkbox" name="{name}" value="true"{_flag(getattr(query, name), "checked")}>'
        f" {label}</label> "
        for name, label in checkboxes
    )
    hidden = [*query.keep, ("sort", query.sort), ("order", query.order), ("per_page", str(query.per_page))]
    kept = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in hidden
    )
    select = ""
    if kinds:
        options = "".join(
            f'<option value="{k}"{_flag(query.kind == k, "selected")}>{k or "every change"}</option>'
            for k in ("", *kinds)
        )
        select = f'<select name="kind">{options}</select> '
    search = f'<input type="search" name="q" placeholder="customer" value="{html.escape(query.q)}">'
    button = '<button type="submit">Filter</button>'
    return f'<form class="filters" method="get">{search} {boxes}{select}{kept}{button}</form>'


def _flag(on: bool, attribute: str) -> str:
    return f" {attribute}" if on else ""


def _headers(query: TableQuery, columns: Sequence[tuple[str, str]]) -> str:
    """Column headers; a sortable one links to its ascending order, or flips the order when it is current."""
    cells = []
    for key, label in columns:
        if not key:
            cells.append(f"<th>{label}</th>")
            continue
        current = query.sort == key
        order = "desc" if current and query.order == "asc" else "asc"
        arrow = (" &#9650;" if query.order == "asc" else " &#9660;") if current else ""
        cells.append(f'<th><a href="{query.href(sort=key, order=order, page=1)}">{label}</a>{arrow}</th>')
    return f"<tr>{''.join(cells)}</tr>"


def _table(headers: str, body: str, page: TablePage[Any], query: TableQuery) -> str:
    first = (page.number - 1) * query.per_page + 1
    shown = f"{first}&ndash;{first + len(page.rows) - 1}" if page.rows else "none"
    summary = f'<p class="count">{shown} of {page.total} matching rows.</p>'
    return f"{summary}<table>{headers}{body}</table>{pager(page, query)}"


def pager(page: TablePage[Any], query: TableQuery) -> str:
    """Previous, next, the first and last pages and the pages around the current one."""
    if page.pages == 1:
        return ""
    around = range(max(1, page.number - 3), min(page.pages, page.number + 3) + 1)
    links, last = [], 0
    for number in sorted({1, page.pages, *around}):
        if number > last + 1:
            links.append("&hellip;")
        link = f'<a href="{query.href(page=number)}">{number}</a>'
        links.append(f"<b>{number}</b>" if number == page.number else link)
        last = number
    if page.number > 1:
        links.insert(0, f'<a rel="prev" href="{query.href(page=page.number - 1)}">&larr; previous</a>')
    if page.number < page.pages:
        links.append(f'<a rel="next" href="{query.href(page=page.number + 1)}">next &rarr;</a>')
    return f'<nav class="pager">{" ".join(links)}</nav>'


def _tr(cells: Sequence[str]) -> str:
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _a(url: str | None, text: str) -> str:
    return f'<a href="{html.escape(url)}" target="_blank">{text}</a>' if url else text


def _commit(commit: str, commit_url: CommitUrl) -> str:
    return _a(commit_url(commit), f"<code>{html.escape(commit[:12])}</code>")


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _delta(value: float | None) -> str:
    if value is None:
        return ""
    shown = round(value, 3) + 0.0  # the colour follows the digits shown; + 0.0 turns -0.0 into 0.0
    tone = "better" if shown > 0 else "worse" if shown < 0 else "muted"
    return f'<span class="{tone}">{shown:+.3f}</span>'
