"""The "Container hosts" page: served by the api-server under ``/airdock`` (airdock's plugin).

One row per worker host from the records its tasks publish (``airdock.airflow.host_status``, the
Variables ``airdock.host.<hostname>``): last report, Docker engine version, image store against
its budget, the last GC, airdock's running containers and the registry tokens the host holds
(registry, identity and expiry — a record never holds a token); then, per ECS cluster, the newest
snapshot any host took (airdock's running tasks, its task-definition families and revisions).
``/airdock/hosts/<host>`` has the host's recent pulls, GC decisions and swept orphans. A host not
heard from for 10 minutes is marked stale.

Server-rendered HTML, no JavaScript. Access follows Airflow's auth manager: a user who may view
the DAGs' task instances (the UI's JWT cookie, or a bearer token); anyone else gets 401/403.
"""

from __future__ import annotations

import json
import time
from html import escape
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse

from airdock.airflow.host_status import VARIABLE_PREFIX
from airdock.hygiene.units import format_age
from airdock.targets.ecs import inventory

__all__ = ["STALE_AFTER_S", "app", "render_detail", "render_hosts"]

STALE_AFTER_S = 600

app = FastAPI(title="airdock: container hosts", docs_url=None, redoc_url=None, openapi_url=None)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1a202c; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #e2e8f0; vertical-align: top; }
th { background: #f7fafc; }
.stale { color: #a0aec0; }
.bar { width: 10rem; height: .8rem; background: #edf2f7; display: inline-block; vertical-align: middle; }
.bar span { display: block; height: 100%; background: #3182ce; }
.bar span.over { background: #e53e3e; }
"""


async def _authorize(request: Request) -> None:
    """Only a user the auth manager lets view the DAGs' task instances."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    user = await resolve_user_from_token(token)  # 401 without a token, 401/403 for a bad one
    allowed = get_auth_manager().is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.TASK_INSTANCE, details=DagDetails(id=None), user=user
    )
    if not allowed:
        raise HTTPException(status_code=403, detail="viewing task instances is not allowed for this user")


def _records() -> list[dict[str, Any]]:
    """The hosts' published records (the api-server reads the metadata DB)."""
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    found = []
    with create_session() as session:
        for variable in session.scalars(select(Variable).where(Variable.key.startswith(VARIABLE_PREFIX))):
            try:
                record = json.loads(variable.val or "")
            except ValueError:
                continue
            if isinstance(record, dict) and "host" in record:
                found.append(record)
    return sorted(found, key=lambda record: str(record["host"]))


def _or_dash(value: Any) -> str:
    return "—" if value is None else escape(str(value))


def _mb(value: Any) -> str:
    return "—" if value is None else f"{int(value) / 1e6:.1f} MB"


def _ago(seconds: float) -> str:
    return f"{format_age(seconds)} ago"  # as airdock's GC reasons say ages: 45s, 4m, 3h, 7d


def _expires(seconds: Any) -> str:
    left = int(seconds)
    if left <= 0:
        return f"expired {_ago(-left)}"
    if left >= 3600:
        return f"expires in {left // 3600} h {left % 3600 // 60} min"
    return f"expires in {left // 60} min {left % 60} s"


def _bar(used: Any, budget: Any) -> str:
    if used is None:
        return "no engine reached"
    if not budget:
        return f"{_mb(used)} (no budget)"
    share = min(1.0, int(used) / int(budget))
    over = "over" if int(used) > int(budget) else ""
    inner = f'<span class="{over}" style="width:{share:.0%}"></span>'
    return f'<span class="bar" title="{share:.0%}">{inner}</span> {_mb(used)} of {_mb(budget)}'


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def render_hosts(records: list[dict[str, Any]], now: float) -> str:
    """The hosts table (one row per host)."""
    if not records:
        return _page(
            "Container hosts",
            "<p>No worker host has reported yet: a host reports after its first airdock task.</p>",
        )
    rows = []
    for record in records:
        host = str(record["host"])
        age = now - float(record.get("reported_at") or 0)
        stale = age > STALE_AFTER_S
        gc = (record.get("gc") or [{}])[-1]
        last_gc = (
            f"{_ago(now - float(gc['at']))}: {int(gc.get('images_removed', 0))} images, "
            f"{_mb(gc.get('bytes_reclaimed', 0))} "
            f'(<a href="hosts/{escape(host)}#gc">reasons</a>)'
            if gc.get("at")
            else "none yet"
        )
        tokens = "<br>".join(
            f"{escape(str(token['registry']))}: {_expires(token['expires_in_s'] - age)}"
            f' <span class="identity">({escape(str(token.get("identity") or "?"))})</span>'
            for token in record.get("tokens") or []
        )
        rows.append(
            f'<tr data-host="{escape(host)}" class="{"stale" if stale else "live"}">'
            f'<td><a href="hosts/{escape(host)}">{escape(host)}</a></td>'
            f"<td>{_ago(age)}{' (stale)' if stale else ''}</td>"
            f"<td>{_or_dash(record.get('engine_version'))}</td>"
            f"<td>{_bar(record.get('image_store_bytes', 0), record.get('budget_bytes'))}</td>"
            f"<td>{last_gc}</td>"
            f"<td>{_or_dash(record.get('containers_running'))}</td>"
            f"<td>{tokens or 'none'}</td></tr>"
        )
    head = (
        "<tr><th>host</th><th>last report</th><th>Docker engine</th><th>image store</th><th>last GC</th>"
        "<th>containers running</th><th>registry tokens</th></tr>"
    )
    note = f"<p>A host not heard from for {STALE_AFTER_S // 60} minutes is marked stale.</p>"
    body = f'<table id="hosts">{head}{"".join(rows)}</table>{note}{_ecs_section(records, now)}'
    return _page("Container hosts", body)


def _ecs_task_row(task: dict[str, Any], now: float) -> str:
    started = task.get("started_at")
    return (
        f'<tr data-ecs-task="{_or_dash(task.get("task"))}"><td><code>{_or_dash(task.get("task"))}</code></td>'
        f"<td>{_or_dash(task.get('dag_id'))} / {_or_dash(task.get('task_id'))}</td>"
        f"<td>{_or_dash(task.get('definition'))}</td><td>{_or_dash(task.get('status'))}</td>"
        f"<td>{_ago(now - float(started)) if started else '—'}</td></tr>"
    )


def _ecs_section(records: list[dict[str, Any]], now: float) -> str:
    """Per ECS cluster, the newest snapshot any host took: airdock's running tasks and its
    task-definition families with their ACTIVE revisions."""
    newest: dict[str, tuple[dict[str, Any], str]] = {}
    for record in records:
        for snap in record.get("ecs") or []:
            key = str(snap.get("key"))
            if key not in newest or inventory.as_of(snap) > inventory.as_of(newest[key][0]):
                newest[key] = (snap, str(record["host"]))
    if not newest:
        return '<h2 id="ecs">ECS</h2><p>No airdock task has run on ECS yet.</p>'
    parts = ['<h2 id="ecs">ECS</h2>']
    for key in sorted(newest):
        snap, host = newest[key]
        running = snap.get("running") or []
        more = int(snap.get("running_count") or len(running)) - len(running)
        tasks = "".join(_ecs_task_row(task, now) for task in running)
        if more > 0:
            tasks += f"<tr><td colspan=5>and {more} more</td></tr>"
        families = "".join(
            f'<tr data-family="{_or_dash(family.get("family"))}"><td>{_or_dash(family.get("family"))}</td>'
            f"<td>{', '.join(str(int(r)) for r in family.get('revisions') or [])}</td></tr>"
            for family in snap.get("task_definitions") or []
        )
        hidden = int(snap.get("family_count") or 0) - len(snap.get("task_definitions") or [])
        if hidden > 0:
            families += f"<tr><td colspan=2>and {hidden} more families</td></tr>"
        parts.append(
            f'<section class="ecs-cluster" data-cluster="{escape(key)}">'
            f"<h3>cluster {escape(str(snap.get('cluster')))} ({escape(str(snap.get('region')))})</h3>"
            f"<p>as of {_ago(now - inventory.as_of(snap))}, from {escape(host)}: "
            f"{len(running) + max(more, 0)} task(s) running</p>"
            "<table><tr><th>ECS task</th><th>Airflow task</th><th>task definition</th><th>status</th>"
            f"<th>started</th></tr>{tasks or '<tr><td colspan=5>none running</td></tr>'}</table>"
            "<table><tr><th>task-definition family</th><th>ACTIVE revisions, newest first</th></tr>"
            f"{families or '<tr><td colspan=2>none</td></tr>'}</table></section>"
        )
    return "".join(parts)


def _pull_row(pull: dict[str, Any], now: float) -> str:
    seconds = float(pull.get("seconds", 0))
    rate = float(pull.get("bytes", 0)) / 1e6 / max(seconds, 0.001)
    return (
        f"<tr><td>{_ago(now - float(pull.get('at', now)))}</td><td>{escape(str(pull.get('image', '')))}</td>"
        f"<td><code>{escape(str(pull.get('digest', ''))[:19])}</code></td><td>{seconds:.1f} s</td>"
        f"<td>{rate:.1f} MB/s</td></tr>"
    )


def render_detail(record: dict[str, Any], now: float) -> str:
    """One host: its recent pulls, GC runs with their reasons, and swept orphans."""
    host = str(record["host"])
    pulls = "".join(_pull_row(pull, now) for pull in reversed(record.get("pulls") or []))
    gcs = "".join(
        f"<tr><td>{_ago(now - float(g.get('at', now)))}</td><td>{int(g.get('images_removed', 0))}</td>"
        f"<td>{_mb(g.get('bytes_reclaimed', 0))}</td>"
        f"<td>{'<br>'.join(escape(str(reason)) for reason in g.get('reasons') or []) or '—'}</td></tr>"
        for g in reversed(record.get("gc") or [])
    )
    sweeps = "".join(
        f"<tr><td>{_ago(now - float(sweep.get('at', now)))}</td>"
        f"<td>{'<br>'.join(escape(str(c)) for c in sweep.get('containers') or []) or 'none'}</td></tr>"
        for sweep in reversed(record.get("sweeps") or [])
    )
    body = (
        '<p><a href="../hosts">all hosts</a></p>'
        f'<h2 id="pulls">Recent pulls</h2><table><tr><th>when</th><th>image</th><th>digest</th><th>took</th>'
        f"<th>rate</th></tr>{pulls or '<tr><td colspan=5>none yet</td></tr>'}</table>"
        f'<h2 id="gc">GC runs</h2><table><tr><th>when</th><th>images removed</th><th>reclaimed</th>'
        f"<th>what went, and why</th></tr>{gcs or '<tr><td colspan=4>none yet</td></tr>'}</table>"
        f'<h2 id="sweeps">Orphans swept</h2><table><tr><th>when</th><th>containers</th></tr>'
        f"{sweeps or '<tr><td colspan=2>none yet</td></tr>'}</table>"
    )
    return _page(f"Container host {host}", body)


@app.get("/hosts", response_class=HTMLResponse)
async def hosts_page(request: Request) -> HTMLResponse:
    await _authorize(request)
    return HTMLResponse(render_hosts(await anyio.to_thread.run_sync(_records), time.time()))


@app.get("/hosts/{host}", response_class=HTMLResponse)
async def host_page(host: str, request: Request) -> HTMLResponse:
    await _authorize(request)
    for record in await anyio.to_thread.run_sync(_records):
        if record["host"] == host:
            return HTMLResponse(render_detail(record, time.time()))
    raise HTTPException(status_code=404, detail=f"no host {host!r} has reported")
