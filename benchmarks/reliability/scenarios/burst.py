"""Fault scenario `burst`: a burst of `burst_x` times the sustained rate: the lag grows,
then drains; memory stays bounded."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.reliability.audit import outcome, table_state
from benchmarks.reliability.events import clicks
from benchmarks.reliability.lab import Lab, Scenario, Sizes, timeout_for


def run(lab: Lab, sizes: Sizes) -> dict:
    """A burst of burst_x times the sustained rate: lag grows, then drains; memory
    stays bounded. The sustained rate is a quarter of the worker's measured capacity.
    The lag and memory plot goes to lab.figures/reliability_burst.png."""
    w = lab.worker()
    probe = clicks(sizes.wipe_events // 2)
    lab.send(probe[:1])
    lab.wait_answered(probe[:1], 60, alive=[w])  # the worker is up and has partitions
    # timed from the send, not from the first answer: a small probe is answered in a
    # batch or two, all at once, which would read as an unbounded capacity
    first = time.monotonic()
    lab.send(probe[1:])
    lab.wait_answered(probe, timeout_for(len(probe)), alive=[w])
    capacity = (len(probe) - 1) / max(time.monotonic() - first, 1e-3)
    rate = capacity / 4
    warm, after = sizes.phase_s, 3 * sizes.phase_s
    schedule = lambda t: rate * (sizes.burst_x if warm <= t < warm + sizes.burst_s else 1.0)
    n = int(rate * (warm + sizes.burst_s * sizes.burst_x + after))
    events = clicks(len(probe) + n)[len(probe):]
    answered0 = len(lab.answers.event_ids)
    sender = lab.send(events, rate=schedule)
    t_start = time.monotonic()
    samples = []  # (s since start, lag in events, worker RSS MB)
    sent_all = None  # s since start when the sender was done
    while True:  # sampled until the lag is 0 with the sender done: the last one drained
        sending = sender.is_alive()
        lag = sender.delivered - (len(lab.answers.event_ids) - answered0)
        rss = lab.rss.series[-1][1] if lab.rss.series else 0.0
        samples.append((time.monotonic() - t_start, max(lag, 0), rss))
        if not sending and sent_all is None:
            sent_all = samples[-1][0]
        if not sending and lag <= 0:
            break
        if time.monotonic() - t_start > timeout_for(n) or w.proc.poll() is not None:
            break
        time.sleep(0.25)
    lab.wait_answered(probe + events, timeout_for(n), alive=[w])
    burst_end = warm + sizes.burst_s
    before = [lag for t, lag, _ in samples if 1 < t < warm]
    calm = max(max(before, default=0), rate * 0.5)
    drained = next((t for t, lag, _ in samples if t > burst_end and lag <= calm), None)
    rss_before = max((r for t, _, r in samples if t < warm), default=0.0)
    rss_peak = max((r for _, _, r in samples), default=0.0)
    time.sleep(1.5)
    w.stop()
    out = outcome(lab, probe + events, table_state(lab.bootstrap, lab.app_id), None)
    out.update(capacity_events_per_s=round(capacity, 1), sustained_rate=round(rate, 1),
               burst_rate=round(rate * sizes.burst_x, 1), burst_s=sizes.burst_s,
               peak_lag=max((lag for _, lag, _ in samples), default=0),
               lag_before_burst=max(before, default=0),
               drain_s=round(drained - burst_end, 2) if drained is not None else None,
               recovery_s=round(drained - burst_end, 2) if drained is not None else None,
               # drained after the last send: the spare capacity was smaller than measured
               drained_while_sending=drained is not None and sent_all is not None
               and drained < sent_all,
               rss_before_burst_mb=round(rss_before, 1), rss_peak_in_run_mb=round(rss_peak, 1),
               rss_peak_vs_before=round(rss_peak / rss_before, 3) if rss_before else None)
    if lab.figures is not None:
        _plot_burst(samples, warm, burst_end, rate, sizes.burst_x,
                    lab.figures / "reliability_burst.png")
    return out


def _plot_burst(samples, warm, burst_end, rate, x, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = [s[0] for s in samples]
    fig, lag_ax = plt.subplots(figsize=(8, 4))
    lag_ax.plot(t, [s[1] for s in samples], color="tab:red", label="lag (events sent, not answered)")
    lag_ax.axvspan(warm, burst_end, color="tab:red", alpha=0.1,
                   label=f"burst {x:g}x ({rate * x:.0f} events/s)")
    lag_ax.set_xlabel("seconds")
    lag_ax.set_ylabel("lag (events)")
    rss_ax = lag_ax.twinx()
    rss_ax.plot(t, [s[2] for s in samples], color="tab:blue", label="worker RSS (MB)")
    rss_ax.set_ylabel("RSS (MB)")
    rss_ax.set_ylim(0, max(s[2] for s in samples) * 1.2 or 1)
    lines = lag_ax.get_legend_handles_labels()[0] + rss_ax.get_legend_handles_labels()[0]
    labels = lag_ax.get_legend_handles_labels()[1] + rss_ax.get_legend_handles_labels()[1]
    lag_ax.legend(lines, labels, loc="upper right", fontsize=8)
    lag_ax.set_title(f"Burst of {x:g}x the sustained {rate:.0f} events/s: lag and memory")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SCENARIO = Scenario("burst", run)
