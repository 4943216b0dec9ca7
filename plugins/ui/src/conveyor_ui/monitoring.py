"""The monitoring page's data: monitored batches from `conveyor_monitor.records.Monitoring`
(recorded by `conveyor monitor`), drawn as drift per feature against its threshold and
performance over time, with the champion's moves and retraining decisions
(`conveyor_retrain.records`) on the same timeline. Without conveyor-monitor installed the page
says there is nothing to show; without conveyor-retrain it shows no decisions."""

from __future__ import annotations

import time
from typing import Any

from conveyor.store import Registry, Store

MAX_BATCHES = 200
# A p-value method (chi-square, KS) drifts when its score falls below the threshold; a distance
# (PSI, Jensen-Shannon) when it reaches it. The heatmap shows both as "how far past the line":
# 1 is the threshold, above it drifted.
RATIO_CAP = 3.0


def page(store: Store, params: Any) -> dict[str, Any]:
    try:
        from conveyor_monitor.records import Monitoring
    except ImportError:  # conveyor-monitor is not installed: nothing was monitored
        return {"available": False}
    monitoring = Monitoring(store)
    names = monitoring.models()
    if not names:
        return {"available": False}
    model = params.get("model") if params.get("model") in names else names[-1]
    batches = monitoring.batches(model_name=model, limit=MAX_BATCHES)
    chosen = next((b for b in batches if b.id == params.get("batch")), batches[-1])
    decisions = retraining_decisions(store, model)
    moves = [h for h in Registry(store).history(model) if h["alias"] == "champion"]
    start = batches[0].created_at
    moves = [m for m in moves if m["at"] >= start - 7 * 86400]
    return {"available": True, "models": names, "model": model,
            "batches": [_row(b) for b in reversed(batches)], "chosen": _row(chosen),
            "features": _features(chosen),
            "drift_chart": _drift_chart(batches),
            "performance_chart": _performance_chart(batches, moves, decisions),
            "decisions": decisions, "moves": moves[::-1]}


def retraining_decisions(store: Store, model: str) -> list[dict[str, Any]]:
    """The model's retraining decisions (`conveyor_retrain.records.RetrainDecisions`, recorded
    by `conveyor retrain` and `conveyor watch`), oldest first, with the last reason of each;
    none without conveyor-retrain."""
    try:
        from conveyor_retrain.records import RetrainDecisions
    except ImportError:
        return []

    return [{"at": d.created_at, "decision": d.outcome
             + (f" v{d.challenger_version}" if d.challenger_version else ""),
             "reason": d.reasons[-1] if d.reasons else "", "forced": d.forced}
            for d in RetrainDecisions(store).list(model_name=model, limit=MAX_BATCHES)]


def _row(batch: Any) -> dict[str, Any]:
    return {"id": batch.id, "created_at": batch.created_at, "status": batch.status,
            "model_version": batch.model_version, "source": batch.source, "rows": batch.rows,
            "drift_share": batch.drift_share, "drifted_features": batch.drifted_features,
            "features": batch.features, "prediction_drift": batch.prediction_drift,
            "prediction_drifted": batch.prediction_drifted, "performance": batch.performance,
            "performance_breached": batch.performance_breached,
            "labelled_rows": batch.labelled_rows, "message": batch.message,
            "report_html": batch.report_html}


def _features(batch: Any) -> list[dict[str, Any]]:
    rows = []
    for name, result in sorted(batch.feature_results.items()):
        if not isinstance(result, dict):
            continue
        rows.append({"name": name, "kind": result.get("kind"), "method": result.get("method"),
                     "score": result.get("score"), "threshold": result.get("threshold"),
                     "p_value": bool(result.get("p_value")), "drifted": bool(result.get("drifted")),
                     "insufficient": result.get("insufficient") or ""})
    rows.sort(key=lambda r: (not r["drifted"], r["name"]))
    return rows


def _ratio(result: dict[str, Any]) -> float | None:
    score, threshold = result.get("score"), result.get("threshold")
    if not isinstance(score, int | float) or not isinstance(threshold, int | float):
        return None
    if result.get("p_value"):
        ratio = threshold / score if score > 0 else RATIO_CAP
    else:
        ratio = score / threshold if threshold > 0 else 0.0
    return min(ratio, RATIO_CAP)


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _drift_chart(batches: list[Any]) -> dict[str, Any]:
    features = sorted({f for b in batches for f in b.feature_results})
    labels = [f"{_iso(b.created_at)} · {b.id[-6:]}" for b in batches]
    z, text = [], []
    for feature in features:
        z_row, text_row = [], []
        for batch in batches:
            result = batch.feature_results.get(feature) or {}
            z_row.append(_ratio(result))
            score, threshold = result.get("score"), result.get("threshold")
            if score is None:
                text_row.append(f"{feature}: no verdict {result.get('insufficient') or ''}")
                continue
            side = "below" if result.get("p_value") else "at least"
            text_row.append(
                f"{feature} ({result.get('method')}): {score:.4g}, drifts {side} {threshold:g}"
                f" → {'DRIFT' if result.get('drifted') else 'ok'}")
        z.append(z_row)
        text.append(text_row)
    return {
        "data": [{"type": "heatmap", "z": z, "x": labels, "y": features, "text": text,
                  "hoverinfo": "text", "zmin": 0, "zmax": RATIO_CAP,
                  "colorscale": [[0, "#e3f5ea"], [0.30, "#bfe6cc"], [1 / RATIO_CAP, "#fde68a"],
                                 [0.45, "#f59e0b"], [1, "#b91c1c"]],
                  "colorbar": {"title": {"text": "score / threshold"}, "tickvals": [0, 1, 2, 3],
                               "ticktext": ["0", "1 = threshold", "2", "≥3"]}}],
        "layout": {"title": {"text": "drift per feature and batch (1 = its threshold)"},
                   "height": 120 + 28 * max(len(features), 3),
                   "margin": {"t": 40, "r": 10, "b": 90, "l": 140},
                   "xaxis": {"type": "category"}},
    }


def _performance_chart(batches: list[Any], moves: list[dict[str, Any]],
                       decisions: list[dict[str, Any]] | None) -> dict[str, Any]:
    metrics = sorted({k for b in batches for k in b.performance})
    x = [_iso(b.created_at) for b in batches]
    data: list[dict[str, Any]] = [
        {"type": "scatter", "mode": "lines+markers", "name": metric, "x": x,
         "y": [b.performance.get(metric) for b in batches], "connectgaps": False}
        for metric in metrics]
    data.append({"type": "scatter", "mode": "lines+markers", "name": "drifted share",
                 "x": x, "y": [b.drift_share for b in batches], "yaxis": "y2",
                 "line": {"dash": "dot", "color": "#b91c1c"},
                 "marker": {"symbol": ["x" if b.status == "drift" else "circle"
                                       for b in batches], "size": 9}})
    shapes, annotations = [], []
    for move in moves:
        colour = "#c0392b" if move["action"] == "rollback" else "#2563eb"
        _mark(shapes, annotations, move["at"], colour, f"v{move['version']} {move['action']}")
    for decision in decisions or []:
        if decision["decision"] == "no_action":  # every quiet batch has one: not news
            continue
        _mark(shapes, annotations, decision["at"], "#7c3aed", f"retrain: {decision['decision']}")
    return {
        "data": data,
        "layout": {"title": {"text": "performance on labelled rows, drifted share, and model "
                                     "changes"},
                   "height": 380, "margin": {"t": 50, "r": 60, "b": 60, "l": 50},
                   "yaxis": {"title": {"text": "metric"}},
                   "yaxis2": {"title": {"text": "drifted share"}, "overlaying": "y",
                              "side": "right", "range": [0, 1]},
                   "legend": {"orientation": "h", "y": -0.2},
                   "shapes": shapes, "annotations": annotations},
    }


def _mark(shapes: list, annotations: list, at: float, colour: str, label: str) -> None:
    shapes.append({"type": "line", "x0": _iso(at), "x1": _iso(at), "yref": "paper", "y0": 0,
                   "y1": 1, "line": {"color": colour, "width": 1.5, "dash": "dash"}})
    annotations.append({"x": _iso(at), "yref": "paper", "y": 1.02, "text": label,
                        "showarrow": False, "font": {"size": 10, "color": colour}})
