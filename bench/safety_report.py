"""safety_bench.py's figures: per-mode medians, and the paired contrasts between modes with
their 95% intervals (Student's t over the rounds)."""
import statistics


def bases(modes):
    """The modes "on" is compared with, in the summary's columns."""
    return [m for m in ("stopped", "off") if m in modes]


def summarise(rows, phase, modes, names, window):
    rows = [r for r in rows if r["phase"] == phase]
    by = {m: [r for r in rows if r["mode"] == m] for m in modes}
    rounds = len(by["on"])

    def per_round(mode, node):
        return [r["engine_cpu"][node] if node else sum(r["engine_cpu"].values()) for r in by[mode]]

    res = {"window_s": window, "rounds": rounds, "engines": {}}
    for node in names + [None]:
        key = node or "sum"
        on = per_round("on", node)
        e = {"on": statistics.median(on), "on_rounds": on}
        for base in bases(modes):
            other = per_round(base, node)
            diff = statistics.median([a - b for a, b in zip(on, other)])
            e[base] = statistics.median(other)
            e[f"{base}_rounds"] = other
            e[f"diff_vs_{base}"] = diff
            e[f"diff_vs_{base}_pct"] = 100 * diff / e[base] if e[base] else None
        res["engines"][key] = e
    res["daemons_on"] = statistics.median([r["daemon_cpu"] for r in by["on"]])
    if "off" in modes:
        res["daemons_off"] = statistics.median([r["daemon_cpu"] for r in by["off"]])
    res["ops"] = {m: [r["ops"] for r in by[m]] for m in modes}
    return res


# Two-sided 95% quantiles of Student's t by degrees of freedom (then 1.96).
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23,
       11: 2.20, 12: 2.18, 13: 2.16, 14: 2.14, 15: 2.13, 16: 2.12, 17: 2.11, 18: 2.10, 19: 2.09,
       20: 2.09, 25: 2.06, 30: 2.04, 40: 2.02, 60: 2.00, 120: 1.98}


def contrast(rows, phase, mode, base, scale=1.0, meter=lambda r: sum(r["engine_cpu"].values())):
    """`meter` (by default the engines' summed CPU) in `mode` minus `base`, paired by
    round, divided by `scale`: (mean, 95% half-width, mean as % of the base's mean, the
    same for the half-width). Each window's figure is first brought to the phase's mean
    window length, as windows differ by a few tenths of a second (more with --perf)."""
    phase_rows = [r for r in rows if r["phase"] == phase]
    length = statistics.mean(r["seconds"] for r in phase_rows)

    def sums(m):
        return [meter(r) * length / r["seconds"] for r in phase_rows if r["mode"] == m]
    a, b = sums(mode), sums(base)
    diffs = [(x - y) / scale for x, y in zip(a, b)]
    mean = statistics.mean(diffs)
    n = len(diffs)
    half = 0.0
    if n > 1:
        t = T95.get(n - 1) or T95[max(k for k in T95 if k <= n - 1)]
        half = t * statistics.stdev(diffs) / n ** 0.5
    base_mean = statistics.mean(b)
    return mean, half, 100 * mean / base_mean, 100 * half / base_mean


def print_contrasts(rows, phase, modes):
    """What the checks cost the engines, from the paired rounds: on - off directly, and
    amp10 - off divided by ten (the checks at ten times their rates, scaled back)."""
    if "off" not in modes:
        return
    lines = [("on - off", "on", 1.0)]
    if "amp10" in modes:
        lines += [("amp10 - off", "amp10", 1.0), ("(amp10 - off) / 10", "amp10", 10.0)]
    meters = [("summed engine CPU", lambda r: sum(r["engine_cpu"].values()), "the engines' CPU"),
              ("the engines' worker threads", lambda r: sum(r["worker_cpu"].values()), "their CPU"),
              ("the engines' other threads (the time thread)",
               lambda r: sum(r["engine_cpu"].values()) - sum(r["worker_cpu"].values()), "their CPU")]
    if "busy_cpu" in rows[0]:
        meters += [("the engines' CPU outside the lock spin (perf)", lambda r: sum(r["busy_cpu"].values()),
                    "the engines' CPU outside the spin"),
                   ("the engines' CPU in the lock spin (perf)", lambda r: sum(r["spin_cpu"].values()),
                    "the engines' CPU in the spin")]
    for title, meter, of in meters:
        print(f"  the checks' cost, {title}, mean of the paired rounds with its 95% interval:")
        for label, mode, scale in lines:
            m, h, mp, hp = contrast(rows, phase, mode, "off", scale, meter)
            print(f"    {label:20} {m:+.3f} ± {h:.3f} s per window = {mp:+.2f}% ± {hp:.2f}% of {of} without them")
    counts = [("the workers' wake-ups", lambda r: sum(r["worker_wakeups"].values())),
              ("the other threads' wake-ups", lambda r: sum(r["other_wakeups"].values()))]
    for title, meter in counts:
        print(f"  {title} (summed over the engines), per second:")
        for label, mode, scale in lines[:1]:
            m, h, mp, hp = contrast(rows, phase, mode, "off", scale, meter)
            secs = statistics.mean(r["seconds"] for r in rows if r["phase"] == phase)
            base = statistics.mean(meter(r) for r in rows if r["phase"] == phase and r["mode"] == "off")
            print(f"    without the checks {base / secs:8.1f}; {label} {m / secs:+.1f} ± {h / secs:.1f} ({mp:+.1f}%)")


def print_summary(label, s, modes):
    off = "off" in modes
    print(f"{label}: {s['window_s']:.0f} s windows, {s['rounds']} round{'s' if s['rounds'] != 1 else ''}, medians (CPU seconds per window)")
    short = {"stopped": "stop", "off": "off"}
    head = f"{'engine':8}{'on':>8}"
    for base in bases(modes):
        head += f"{base:>9}{'on-' + short[base]:>9}{'%':>7}"
    print(head)
    pct = lambda v: f"{v:>7.1f}" if v is not None else f"{'-':>7}"
    for node, e in s["engines"].items():
        line = f"{node:8}{e['on']:>8.2f}"
        for base in bases(modes):
            line += f"{e[base]:>9.2f}{e[f'diff_vs_{base}']:>9.3f}{pct(e[f'diff_vs_{base}_pct'])}"
        print(line)
    sums = s["engines"]["sum"]
    for base in bases(modes):
        diffs = [a - b for a, b in zip(sums["on_rounds"], sums[f"{base}_rounds"])]
        print(f"  sum on-{short[base]} per round: " + ", ".join(f"{d:+.3f}" for d in diffs))
    line = (f"  daemons' own CPU in 'on' windows (3 daemons): {s['daemons_on']:.2f} s "
            f"({100 * s['daemons_on'] / s['window_s']:.2f}% of one core)")
    if off:
        line += f"; in 'off' windows: {s['daemons_off']:.2f} s"
    print(line)
    if any(s["ops"].values()) and any(v for vs in s["ops"].values() for v in vs):
        print("  requests per window: " + "; ".join(f"{m} {min(v)}..{max(v)}" for m, v in s["ops"].items()))
