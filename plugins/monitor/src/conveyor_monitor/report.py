"""The batch report: `report.json` for machines, `report.html` for people.

The HTML page is self-contained: plotly.js is inlined (no CDN), so it opens offline and can be
mailed or archived. It shows the verdict, each feature's reference vs current distribution over
the same bins with its drift score against the threshold, the prediction drift, and the
performance and drift share over the batches seen so far (from the store).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

TEMPLATE = "report.html.j2"


def write_reports(report: dict[str, Any], history: list[Any], folder: Path,
                  project_dir: Path) -> dict[str, str]:
    """Write report.json and report.html into `folder` (each temp file + rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "report.json", folder / "report.html"
    _write(json_path, json.dumps(report, indent=2, sort_keys=True, default=str))
    _write(html_path, render_html(report, history))
    return {"json": _shown(json_path, project_dir), "html": _shown(html_path, project_dir)}


def _shown(path: Path, project_dir: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(project_dir).resolve()))
    except ValueError:
        return str(path.resolve())


def _write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def distribution_figure(name: str, entry: dict[str, Any]) -> str:
    import plotly.graph_objects as go

    figure = go.Figure()
    figure.add_bar(x=entry["bins"], y=_shares(entry["reference"]), name="reference",
                   marker_color="#8da0cb")
    figure.add_bar(x=entry["bins"], y=_shares(entry["current"]), name="this batch",
                   marker_color="#fc8d62" if entry["drifted"] else "#66c2a5")
    figure.update_layout(barmode="group", height=260, margin={"l": 40, "r": 10, "t": 30, "b": 40},
                         title={"text": name, "font": {"size": 14}}, yaxis_tickformat=".0%",
                         legend={"orientation": "h", "y": -0.35})
    return figure.to_html(full_html=False, include_plotlyjs=False,
                          config={"displayModeBar": False})


def history_figure(history: list[dict[str, Any]]) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(specs=[[{"secondary_y": True}]])
    labels = [f"{h['id']} (v{h['model_version']})" for h in history]
    metrics = sorted({k for h in history for k in h["performance"]})
    for metric in metrics:
        figure.add_scatter(x=labels, y=[h["performance"].get(metric) for h in history],
                           name=metric, mode="lines+markers")
    figure.add_scatter(x=labels, y=[h["drift_share"] for h in history], name="drift share",
                       mode="lines+markers", line={"dash": "dot"}, secondary_y=True)
    figure.update_layout(height=320, margin={"l": 40, "r": 40, "t": 30, "b": 80},
                         title={"text": "batches so far", "font": {"size": 14}},
                         legend={"orientation": "h", "y": -0.45})
    figure.update_yaxes(title_text="metric", secondary_y=False)
    figure.update_yaxes(title_text="drift share", tickformat=".0%", secondary_y=True)
    return figure.to_html(full_html=False, include_plotlyjs=False,
                          config={"displayModeBar": False})


def render_html(report: dict[str, Any], history: list[Any]) -> str:
    import jinja2
    from plotly.offline import get_plotlyjs

    past = [{"id": h.id, "model_version": h.model_version, "status": h.status,
             "drift_share": h.drift_share, "performance": h.performance, "rows": h.rows}
            for h in history]
    past.append({"id": report["batch"], "model_version": report["model"]["version"],
                 "status": report["status"], "drift_share": report["drift_share"],
                 "performance": report["performance"], "rows": report["rows"]})
    figures = {name: distribution_figure(name, entry)
               for name, entry in {**report["feature_results"], **report["prediction"]}.items()}
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("conveyor_monitor", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]))
    return environment.get_template(TEMPLATE).render(
        report=report, figures=figures, history=past, history_figure=history_figure(past),
        plotly_js=get_plotlyjs())
