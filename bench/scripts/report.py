#!/usr/bin/env python3
"""bench/run.sh's report: reads the run's measurements (one JSON object a
line) and writes latest.json, latest.md (the tables) and
mpps-vs-flows.svg (Mpps against active flows per implementation).

    python3 bench/scripts/report.py DATA.jsonl OUTDIR
"""
import json
import math
import sys


def load(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def fmt(v, digits=1):
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return round(a / b, 3)


def tables(d):
    run = next((x for x in d if x["kind"] == "run"), {})
    md = [f"Run: `bench/run.sh --{run.get('mode', '?')}`, profile `{run.get('profile', '?')}`, "
          f"{run.get('date', '?')}, {run.get('nproc', '?')} CPUs, {run.get('seconds', '?')} s.", ""]

    eng = [x for x in d if x["kind"] == "engine"]
    cg = {x["case"]: x["instructions_per_packet"] for x in d if x["kind"] == "callgrind"}
    if eng:
        parse = next((x["ns_per_packet"] for x in eng if x["case"] == "parse-tcp4"), None)
        md += ["### Engine (no I/O)", "",
               "| case | ns/packet | × parse | instructions/packet | allocs/packet | flows/s | bytes/flow |",
               "|---|---:|---:|---:|---:|---:|---:|"]
        for x in eng:
            md.append(f"| `{x['case']}` | {fmt(x['ns_per_packet'])} | {fmt(ratio(x['ns_per_packet'], parse), 2)} | "
                      f"{fmt(cg.get(x['case']))} | {fmt(x['allocs_per_packet'], 3)} | "
                      f"{fmt(x.get('flows_per_sec'))} | {fmt(x.get('bytes_per_flow'))} |")
        md.append("")

    sf = [x for x in d if x["kind"] == "scale-flows"]
    if sf:
        base = sf[0]["ns_per_packet"]
        md += ["### UFT hit against live flows (`uft-out-udp4-flows`)", "",
               "| live flows | ns/packet | × 1 flow |", "|---:|---:|---:|"]
        for x in sf:
            md.append(f"| {x.get('active_flows', '?')} | {fmt(x['ns_per_packet'])} | {fmt(ratio(x['ns_per_packet'], base), 2)} |")
        md.append("")

    sr = [x for x in d if x["kind"] == "scale-rules"]
    if sr:
        base = sr[0]["ns_per_packet"]
        md += ["### First packet against firewall rules (`new-flow-out-udp4-rules`)", "",
               "| rules | ns/new flow | × fewest rules | flows/s |", "|---:|---:|---:|---:|"]
        for x in sr:
            md.append(f"| {x.get('rules', '?')} | {fmt(x['ns_per_packet'])} | {fmt(ratio(x['ns_per_packet'], base), 2)} | "
                      f"{fmt(x.get('flows_per_sec'), 0)} |")
        md.append("")

    lr = [x for x in d if x["kind"] == "linerate"]
    summary = {}
    if lr:
        flows = sorted({x["flows"] for x in lr})
        who = []
        for x in lr:
            if x["who"] not in who:
                who.append(x["who"])
        get = {(x["who"], x["flows"]): x["mpps"] for x in lr}
        md += ["### Line rate, one core, DPDK virtual devices (Mpps)", "",
               "| flows | " + " | ".join(who) + " | sluice egress / OVS ct+encap | sluice egress / testpmd macswap | sluice egress / testpmd io |",
               "|---:|" + "---:|" * (len(who) + 3)]
        for f in flows:
            eg = get.get(("sluice-egress", f))
            r_ovs = ratio(eg, get.get(("ovs-ct-encap", f)))
            r_mac = ratio(eg, get.get(("testpmd-macswap", f)))
            r_io = ratio(eg, get.get(("testpmd-io", f)))
            summary[str(f)] = {"vs_ovs_ct_encap": r_ovs, "vs_testpmd_macswap": r_mac, "vs_testpmd_io": r_io}
            md.append(f"| {f} | " + " | ".join(fmt(get.get((w, f)), 2) for w in who) +
                      f" | {fmt(r_ovs, 2)} | {fmt(r_mac, 2)} | {fmt(r_io, 2)} |")
        md += ["", "Goals: sluice egress ≥ 3× OVS conntrack + Geneve encap; ≥ 0.5× testpmd macswap.", ""]

    cr = [x for x in d if x["kind"] == "connrate"]
    if cr:
        md += ["### Connection setup, one core, DPDK virtual devices (a SYN per connection)", "",
               "| connections | sluice (conn/s) | OVS ct(commit) + encap (conn/s) | sluice / OVS |",
               "|---:|---:|---:|---:|"]
        for f in sorted({x["flows"] for x in cr}):
            get = {x["who"]: x["conns_per_s"] for x in cr if x["flows"] == f}
            s_, o_ = get.get("sluice"), get.get("ovs")
            md.append(f"| {f} | {fmt(s_, 0)} | {fmt(o_, 0)} | {fmt(ratio(s_, o_), 2)} |")
        md += ["", "Goal: sluice ≥ 3× OVS conntrack. Rate over the capture's first pass "
               "(every frame a new connection), from the flow or connection count sampled "
               "every few milliseconds.", ""]

    fl = {x["who"]: x for x in d if x["kind"] == "flood"}
    if fl:
        alone, flooded = fl.get("sluice-neighbour"), fl.get("sluice-neighbour-flooded")
        md += ["### SYN flood: a neighbour's throughput (one core, DPDK virtual devices)", "",
               "| vm2 (1 024 established flows) | Mpps | × alone |", "|---|---:|---:|"]
        for name, x in [("alone", alone), ("while vm1 floods SYNs into a full table", flooded)]:
            if x:
                md.append(f"| {name} | {fmt(x['mpps'], 3)} | {fmt(ratio(x['mpps'], alone and alone['mpps']), 2)} |")
        md += ["", "Goal: the neighbour keeps ≥ 0.9× its throughput during the flood.", ""]

    kern = [x for x in d if x["kind"] == "kernel"]
    if kern:
        md += ["### Kernel path (tests/e2e/run.sh)", ""] + [f"- {x['line']}" for x in kern] + [""]

    cp = [x for x in d if x["kind"] == "control-plane"]
    if cp:
        md += ["### Control plane (HTTP API, persisted)", "", "| figure | value |", "|---|---:|"]
        for x in cp:
            for k, v in x.items():
                if k != "kind":
                    md.append(f"| {k} | {fmt(v, 3)} |")
        md.append("")

    notes = [x["text"] for x in d if x["kind"] == "note"]
    if notes:
        md += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(md), summary


def svg(d):
    lr = [x for x in d if x["kind"] == "linerate"]
    series = {}
    for x in lr:
        series.setdefault(x["who"], []).append((x["flows"], x["mpps"]))
    W, H, L, R, T, B = 640, 400, 60, 170, 30, 50
    xs = sorted({f for s in series.values() for f, _ in s}) or [1]
    ymax = max([m for s in series.values() for _, m in s] + [1.0])
    ymax = math.ceil(ymax / 5) * 5
    lx0, lx1 = math.log10(min(xs)), math.log10(max(xs))
    if lx1 == lx0:
        lx0, lx1 = lx0 - 1, lx1 + 1

    def px(f):
        return L + (math.log10(f) - lx0) / (lx1 - lx0) * (W - L - R)

    def py(m):
        return H - B - m / ymax * (H - T - B)

    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L}" y="18" font-size="14">Mpps against active flows (one core, DPDK net_pcap → net_null)</text>',
         f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
         f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>']
    for i in range(6):
        m = ymax * i / 5
        o.append(f'<line x1="{L}" y1="{py(m):.1f}" x2="{W - R}" y2="{py(m):.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{py(m) + 4:.1f}" text-anchor="end">{m:g}</text>')
    for f in xs:
        o.append(f'<text x="{px(f):.1f}" y="{H - B + 16}" text-anchor="middle">{f}</text>')
    o.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">active flows (log scale)</text>')
    o.append(f'<text x="14" y="{(T + H - B) / 2}" transform="rotate(-90 14 {(T + H - B) / 2})" text-anchor="middle">Mpps</text>')
    for i, (who, pts) in enumerate(series.items()):
        c = colours[i % len(colours)]
        pts = sorted(pts)
        path = " ".join(f"{px(f):.1f},{py(m):.1f}" for f, m in pts)
        o.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        for f, m in pts:
            o.append(f'<circle cx="{px(f):.1f}" cy="{py(m):.1f}" r="3" fill="{c}"/>')
        ly = T + 10 + i * 18
        o.append(f'<line x1="{W - R + 10}" y1="{ly}" x2="{W - R + 30}" y2="{ly}" stroke="{c}" stroke-width="2"/>')
        o.append(f'<text x="{W - R + 35}" y="{ly + 4}">{who}</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


def main():
    data, out = sys.argv[1], sys.argv[2]
    d = load(data)
    md, summary = tables(d)
    with open(f"{out}/latest.json", "w") as f:
        json.dump({"measurements": d, "ratios": summary}, f, indent=1)
        f.write("\n")
    with open(f"{out}/latest.md", "w") as f:
        f.write(md + "\n")
    if any(x["kind"] == "linerate" for x in d):
        with open(f"{out}/mpps-vs-flows.svg", "w") as f:
            f.write(svg(d))
    print(md)


if __name__ == "__main__":
    main()
