#!/usr/bin/env python3
"""bench/report.py: turn the samples bench/run-all.sh recorded into
bench/results.md (a table) and the data and script for bench/results.png.

    python3 bench/report.py SAMPLES HEADER OUT_MD PLOT_DAT

SAMPLES holds tab-separated lines, in the order the figures should appear:
    META key figure contender baseline unit kind target
        kind "rate": higher is better, ratio = contender / baseline;
        kind "time": lower is better, ratio = baseline / contender.
        So a ratio above 1 always means the contender did better.
    S key round contender_value baseline_value
    NA key reason
    NOTE text
    FAILED benchmark
HEADER is a file whose text goes above the table.
"""
import statistics
import sys


def fmt(v, unit):
    if v is None:
        return ""
    if abs(v) >= 100:
        s = "{:,.0f}".format(v)
    elif abs(v) >= 10:
        s = "{:.1f}".format(v)
    else:
        s = "{:.3g}".format(v)
    return "{} {}".format(s, unit)


def ratio(r):
    """Two decimals, or two significant digits below 0.1."""
    return "{:.2f}".format(r) if r >= 0.1 else "{:.2g}".format(r)


def main():
    samples, header, out_md, plot_dat = sys.argv[1:5]
    order, meta, rows, na, notes, failed = [], {}, {}, {}, [], []
    with open(samples) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "META":
                key = parts[1]
                if key not in meta:
                    order.append(key)
                meta[key] = dict(zip(("figure", "contender", "baseline", "unit",
                                      "kind", "target"), parts[2:8]))
            elif parts[0] == "S":
                rows.setdefault(parts[1], []).append((float(parts[3]), float(parts[4])))
            elif parts[0] == "NA":
                na[parts[1]] = parts[2]
            elif parts[0] == "NOTE":
                notes.append(parts[1])
            elif parts[0] == "FAILED":
                failed.append(parts[1])

    lines = [open(header).read().rstrip("\n"), "",
             "| figure | contender | baseline | ratio (median) | spread (min–max) | rounds "
             "| contender (median) | baseline (median) | target |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    plot = []
    for key in order:
        m = meta[key]
        samples_ = rows.get(key, [])
        if key in na or not samples_:
            reason = na.get(key, "n/a (no sample)")
            lines.append("| {} | {} | {} | {} | | 0 | | | {} |".format(
                m["figure"], m["contender"], m["baseline"], reason, m["target"]))
            continue
        if m["kind"] == "time":
            ratios = [b / c if c > 0 else float("nan") for c, b in samples_]
        else:
            ratios = [c / b if b > 0 else float("nan") for c, b in samples_]
        med = statistics.median(ratios)
        lines.append("| {} | {} | {} | {} | {}–{} | {} | {} | {} | {} |".format(
            m["figure"], m["contender"], m["baseline"], ratio(med), ratio(min(ratios)),
            ratio(max(ratios)),
            len(ratios), fmt(statistics.median(c for c, _ in samples_), m["unit"]),
            fmt(statistics.median(b for _, b in samples_), m["unit"]), m["target"]))
        plot.append((key, med, min(ratios), max(ratios)))

    lines += ["", "Ratios are oriented so that above 1 means the contender did better than "
              "its baseline: contender/baseline for rates, baseline/contender for times. "
              "Spread is the lowest and highest per-round ratio."]
    if failed:
        lines += ["", "Benchmarks that failed (see the run's log): " + ", ".join(failed) + "."]
    if notes:
        lines += ["", "Notes:", ""] + ["- " + n for n in notes]
    with open(out_md, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(plot_dat, "w") as f:
        for key, med, lo, hi in plot:
            f.write('"{}" {:.4f} {:.4f} {:.4f}\n'.format(key, med, lo, hi))


if __name__ == "__main__":
    main()
