"""What the stream benchmark's figures say: ratios to the ceilings measured in the same
run, the issue's targets met or missed, and the notes that explain them."""

from __future__ import annotations

from benchmarks.streambench.common import LATENCY_LINGER_MS

WORKLOADS = ("concurrent", "bursty")


def _ratio(a, b, digits=4):
    return round(a / b, digits) if a is not None and b else None


def ratios(r: dict) -> dict:
    c, w = r["ceilings"], r["workloads"]
    pe = r["per_event_ms_by_session_len"]
    out = {"faust_consume_only_vs_raw": _ratio(c["faust_consume_only_events_per_s"],
                                               c["raw_consume_events_per_s"]),
           "faust_passthrough_vs_consume_only": _ratio(c["faust_passthrough_events_per_s"],
                                                       c["faust_consume_only_events_per_s"]),
           "session_len_50_vs_1": _ratio(pe["50"], pe["1"], 3),
           "bursty_vs_concurrent_ms_per_event": _ratio(w["bursty"]["ms_per_event"],
                                                       w["concurrent"]["ms_per_event"], 3),
           "two_workers_vs_one": r["two_workers_vs_one"]}
    for name in WORKLOADS:
        out[f"{name}_vs_faust_consume_only"] = w[name]["vs_faust_consume_only"]
        out[f"{name}_vs_faust_passthrough"] = _ratio(w[name]["events_per_s"],
                                                     c["faust_passthrough_events_per_s"])
    pe1 = r.get("per_event_ms_by_session_len_one_thread")
    naive = r.get("naive_encode_ms_by_session_len")
    if pe1 and naive:
        out["session_len_50_vs_1_one_thread"] = _ratio(pe1["50"], pe1["1"], 3)
        out["naive_encode_50_vs_1"] = _ratio(naive["50"], naive["1"], 3)
        out["naive_vs_incremental_at_50_one_thread"] = _ratio(naive["50"], pe1["50"], 2)
    return out


def _target(value, limit, at_most=True) -> dict:
    met = value is not None and (value <= limit if at_most else value >= limit)
    return {"value": value, "met": met}


def targets(r: dict) -> dict:
    ra, out = r["ratios"], {}
    for name in WORKLOADS:
        w = r["workloads"][name]
        half = w["half_load"]
        out[f"{name}: full worker >= 0.6 x Faust consume-only"] = _target(
            w["vs_faust_consume_only"], 0.6, at_most=False)
        out[f"{name}: p50_ms <= 15 at half load"] = _target(half["p50_ms"], 15)
        out[f"{name}: p99_ms <= 50 at half load"] = _target(half["p99_ms"], 50)
        first, last = half["p50_ms_first_quarter"], half["p50_ms_last_quarter"]
        out[f"{name}: last quarter p50 <= 1.5 x first quarter's"] = _target(
            _ratio(last, first, 3), 1.5)
    out["bursty per-event cost <= 1.5 x concurrent's"] = _target(
        ra["bursty_vs_concurrent_ms_per_event"], 1.5)
    out["per-event cost at session length 50 <= 1.5 x length 1"] = _target(
        ra["session_len_50_vs_1"], 1.5)
    return out


def target_lines(t: dict) -> list[str]:
    return [f"{'met   ' if v['met'] else 'MISSED'} {k}: {v['value']}" for k, v in t.items()]


def notes(r: dict) -> list[str]:
    c, w, ra = r["ceilings"], r["workloads"], r["ratios"]
    conc, burst = w["concurrent"], w["bursty"]
    info = conc["half_load_run"].get("schedule", {})
    pe = r["per_event_ms_by_session_len"]
    out = [
        f"Workloads: concurrent = {conc['users']} users replaying their own MovieLens "
        f"sequences at once ({info.get('note', 'no user reused')}; at half load "
        f"{info.get('users_with_clicks_in_run')} of them clicked during the run, gaps "
        f"capped at {info.get('max_gap_s')} s of event time, event time "
        f"{1 / info['wall_s_per_event_s']:.1f}x the wall clock)"
        if info.get("wall_s_per_event_s") else "Workloads: concurrent (schedule.py)",
        "bursty = the MovieLens log in event-time order (few users per micro-batch, many "
        "events each)" + (f"; its half-load run was {burst['half_load_run']['schedule']['note']}"
                          if "note" in burst["half_load_run"].get("schedule", {}) else "") + ".",
        f"Ceilings on the concurrent topic: raw confluent-kafka consume "
        f"{c['raw_consume_events_per_s']:,.0f}/s, Faust consume-only agent "
        f"(take_events(1000), no sends, no tables) {c['faust_consume_only_events_per_s']:,.0f}/s, "
        f"Faust pass-through (consume + one send per event) "
        f"{c['faust_passthrough_events_per_s']:,.0f}/s; each workload's vs_faust_consume_only "
        f"uses the consume-only rate on its own topic.",
        f"Full worker at its maximum rate (pre-loaded topic, drained as fast as it goes): "
        f"concurrent {conc['events_per_s']:,.0f}/s ({conc['ms_per_event']} ms/event, "
        f"{conc['vs_faust_consume_only']:.1%} of consume-only), bursty "
        f"{burst['events_per_s']:,.0f}/s ({burst['ms_per_event']} ms/event, "
        f"{burst['vs_faust_consume_only']:.1%}); bursty costs "
        f"x{ra['bursty_vs_concurrent_ms_per_event']} per event. process_batch share of the "
        f"worker's wall time (its /metrics/): concurrent "
        f"{conc['max_rate_run'].get('process_batch_share_of_wall')}, bursty "
        f"{burst['max_rate_run'].get('process_batch_share_of_wall')}; mean micro-batch "
        f"{conc['max_rate_run'].get('mean_batch_events')} / "
        f"{burst['max_rate_run'].get('mean_batch_events')} events, holding about "
        f"{conc['info'].get('users_per_200_clicks')} / {burst['info'].get('users_per_200_clicks')}"
        f" users per 200 clicks: the worker reads and writes one table row (and its "
        f"changelog message) per user of a batch, not per event.",
        "Latency = the recommendation's broker timestamp (its topic is LogAppendTime: "
        "when it reached Kafka, however the worker sends) minus the click's producer "
        "timestamp (the load generator's send time), matched by event_id; every click "
        "counts, an unanswered one as waited until the run's end (drain included). "
        f"Producer linger.ms={LATENCY_LINGER_MS}; a warm-up of 100 clicks of other users "
        "is answered before the clock starts. The workers run with their own defaults "
        f"(batch_within_s {r.get('worker_batch_within_s')} s).",
        f"Hot path without Kafka (process_batch, 200 distinct users a batch): "
        f"{pe['1']}/{pe['10']}/{pe['50']} ms/event at session length 1/10/50 "
        f"(x{ra['session_len_50_vs_1']} from 1 to 50).",
        f"Two workers in one group (concurrent clicks, produced once both were in the "
        f"group): x{r['two_workers_vs_one']} one worker's rate, on the same cores.",
        "Max rates are first-to-last output over at most --events outputs or --window-s "
        "seconds, by the outputs' broker timestamps. The machine's cores are shared by the "
        "broker, the worker(s), this script's producer and reader and whatever else runs "
        "(machine.loadavg_at_start/at_end): compare the ratios, not the absolute rates.",
    ]
    return out
