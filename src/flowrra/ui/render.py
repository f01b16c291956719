"""Rendering the dashboard's pages with Jinja2 (autoescaped) and the values they show."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import jinja2

#: What a missing value shows.
NONE = "\u2013"

#: Characters of an argument list shown in a table cell; the full value is in a tooltip.
SHORT_VALUE = 80

CHART_WIDTH = 600
CHART_HEIGHT = 120


def as_json(value: Any, indent: int | None = None) -> str:
    """``value`` as JSON text (anything JSON cannot hold shown with ``str``)."""
    return json.dumps(value, default=str, ensure_ascii=False, indent=indent)


def short(value: Any, size: int = SHORT_VALUE) -> str:
    """``value`` as JSON, cut to ``size`` characters with an ellipsis when longer."""
    text = value if isinstance(value, str) else as_json(value)
    return text if len(text) <= size else text[: size - 1] + "…"


def arguments(record: dict[str, Any]) -> str:
    """A call's arguments as ``1, "x", key=value`` (each value as JSON)."""
    args = record.get("args")
    kwargs = record.get("kwargs")
    parts = [as_json(a) for a in args] if isinstance(args, list) else []
    if isinstance(kwargs, dict):
        parts += [f"{key}={as_json(value)}" for key, value in kwargs.items()]
    elif kwargs is not None:
        parts.append(as_json(kwargs))
    return ", ".join(parts)


def age(seconds: Any) -> str:
    """A duration in seconds as ``3.2 s``, ``4 min`` or ``2.5 h`` (a dash for none)."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return NONE
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def duration(record: dict[str, Any]) -> str:
    """How long a finished run took (``started_at`` to ``finished_at``), or a dash."""
    try:
        started = datetime.fromisoformat(str(record["started_at"]))
        finished = datetime.fromisoformat(str(record["finished_at"]))
    except (KeyError, TypeError, ValueError):
        return NONE
    seconds = (finished - started).total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else age(seconds)


@dataclass(frozen=True, slots=True)
class Bar:
    """One stacked segment of the throughput chart, in SVG user units."""

    x: float
    y: float
    width: float
    height: float
    kind: str
    label: str


def _count(minute: dict[str, Any], key: str) -> int:
    value = minute.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def throughput_bars(minutes: Any) -> list[Bar]:
    """The bars of the throughput chart: one column per minute, oldest left, with
    ``succeeded``, ``failed`` and ``retried`` stacked; ``[]`` when there is no data."""
    if not isinstance(minutes, list) or not minutes:
        return []
    rows = [m for m in minutes if isinstance(m, dict)]
    kinds = ("succeeded", "failed", "retried")
    peak = max((sum(_count(m, k) for k in kinds) for m in rows), default=0)
    if not rows or peak == 0:
        return []
    column = CHART_WIDTH / len(rows)
    bars: list[Bar] = []
    for index, minute in enumerate(rows):
        bottom = float(CHART_HEIGHT)
        for kind in kinds:
            count = _count(minute, kind)
            if count:
                height = count / peak * (CHART_HEIGHT - 4)
                bottom -= height
                label = f"{minute.get('minute', '')}: {count} {kind}"
                bars.append(Bar(index * column + 1, bottom, column - 2, height, kind, label))
    return bars


def path_segment(value: object) -> str:
    """``value`` quoted as one URL path segment: ``/`` too is escaped (``%2F``), so an id
    holding a slash still names one resource."""
    return quote(str(value), safe="")


def build_environment() -> jinja2.Environment:
    """The template environment: package templates, autoescape on, missing keys render empty."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("flowrra.ui", "templates"),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        short=short,
        as_json=as_json,
        age=age,
        duration=duration,
        arguments=arguments,
        path_segment=path_segment,
    )
    environment.globals.update(throughput_bars=throughput_bars)
    environment.globals.update(chart_width=CHART_WIDTH, chart_height=CHART_HEIGHT)
    return environment


class Renderer:
    """Renders one template with the values every page needs (``root``, ``title``)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.environment = build_environment()

    def render(self, template: str, root: str, **values: Any) -> str:
        """The HTML of ``template``; ``root`` is the mount prefix for links."""
        page = self.environment.get_template(template)
        return page.render(root=root, title=self.title, **values)
