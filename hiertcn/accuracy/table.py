"""The README's accuracy table, in markdown, from a results dict (accuracy.json)."""

from __future__ import annotations

from hiertcn.accuracy.report import LIFT_METRICS, REPORTED


def markdown(report: dict) -> str:
    return "\n\n".join(dataset_table(name, d) for name, d in report["datasets"].items())


def dataset_table(name: str, d: dict) -> str:
    kind = "real sessions" if d["real_sessions"] else "sessions cut at a 30-min gap"
    lines = [f"**{name}** ({d['users']} test users, {d['sessions']} sessions, "
             f"{d['events']} events; {kind})", "",
             "| model | " + " | ".join(REPORTED) + " | epochs | trials |",
             "|---" * (len(REPORTED) + 3) + "|"]
    best = {c: max(m[c] for m in d["models"].values()) for c in REPORTED}
    for model, m in d["models"].items():
        cells = [_cell(m[c], m[c] == best[c]) for c in REPORTED]
        lines.append(f"| {model} | " + " | ".join(cells) +
                     f" | {m['epochs']} | {m['tuning_trials']} |")
    lines.append("")
    each = d["lift"].get("hiertcn_vs_each", {})
    for comparison, per_metric in d["lift"].items():
        if comparison != "hiertcn_vs_each":
            parts = [_lift(metric, per_metric[metric]) for metric in LIFT_METRICS]
            lines.append(f"- {comparison.replace('_', ' ')}: " + "; ".join(parts))
    if each:  # one row per baseline: HierTCN's lift over it, with the interval
        lines += ["", "| hiertcn vs | " + " | ".join(f"{m} lift (95% CI)" for m in LIFT_METRICS)
                  + " |", "|---" * (len(LIFT_METRICS) + 1) + "|"]
        lines += [f"| {model} | " + " | ".join(_span(by[m]) for m in LIFT_METRICS) + " |"
                  for model, by in each.items()]
    return "\n".join(lines)


def _span(lift: dict | None) -> str:
    if lift is None or lift["mean"] is None:
        return "undefined"
    lo, hi = lift["ci95"]
    return f"{lift['mean']:+.1%} ({lo:+.1%} to {hi:+.1%})"


def _cell(value: float, best: bool) -> str:
    return f"**{value:.4f}**" if best else f"{value:.4f}"


def _lift(metric: str, lift: dict | None) -> str:
    if lift is None:
        return f"{metric}: no opponent in this run"
    if lift["mean"] is None:
        return f"{metric}: undefined against {lift['against']} (it scored 0)"
    lo, hi = lift["ci95"]
    return (f"{metric} {lift['mean']:+.1%} (95% CI {lo:+.1%} to {hi:+.1%}) vs "
            f"{lift['against']}")
