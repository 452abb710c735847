"""jepsen_partitions.py's verdict: from what the writers were told, what the nemesis cut,
what the safety API said meanwhile and what every node holds at the end, the writes the
fleet lost to last-write-wins, the deletes that came back, and the report printed."""

# The shared registers the writers overwrite (r:0 .. r:9).
REGISTERS = 10


def in_cut(t, node, cuts):
    return any(a <= t <= b and node in nodes for a, b, nodes in cuts)


def analyse(writers, nemesis, sampler, snaps, end, names):
    cuts = nemesis.cuts(end)
    res = {"per_node": {}}
    acked_incr = sum(w.incr_ok for w in writers)
    unknown_incr = sum(w.incr_unknown for w in writers)
    all_regs = [(k, w.node, n, ts, ta) for w in writers for (k, n, ts, ta) in w.registers]
    deleted = {}
    for w in writers:
        for k, reply, t in w.deletes:
            deleted.setdefault(k, []).append((w.node, reply, t))
    for name, snap in snaps.items():
        lost, lost_in_cut, by_writer = [], 0, {}
        for w in writers:
            for n, t in w.acked_w:
                if f"w:{w.node}:{n}".encode() not in snap:
                    lost.append(f"w:{w.node}:{n}")
                    lost_in_cut += in_cut(t, w.node, cuts)
                    by_writer[w.node] = by_writer.get(w.node, 0) + 1
        counter = snap.get(b"c:shared")
        counter = int(counter) if counter is not None else None
        regs = {}
        for k in range(REGISTERS):
            v = snap.get(f"r:{k}".encode())
            writes = sorted((x for x in all_regs if x[0] == k), key=lambda x: x[4])
            entry = {"value": v.decode() if v else None, "writes": len(writes)}
            if v:
                node, n = v.decode().split(":")
                mine = [x for x in writes if x[1] == node and x[2] == int(n)]
                if mine:
                    s = mine[0]
                    entry["written_at"] = round(s[3], 3)
                    # Writes to k sent after the survivor was acknowledged: later by any clock.
                    entry["later_writes_lost"] = sum(1 for x in writes if x[3] > s[4])
                    entry["survivor_in_cut"] = in_cut(s[3], node, cuts)
                    entry["last_acked"] = writes[-1][1] == node and writes[-1][2] == int(n)
                else:
                    entry["unacknowledged_survivor"] = True
            regs[k] = entry
        resurrected = []
        for k, dels in sorted(deleted.items()):
            if f"d:{k}".encode() in snap:
                resurrected.append({"key": f"d:{k}", "deletes": [
                    {"by": n, "reply": r, "t": round(t, 3), "by_node_cut": in_cut(t, n, cuts)} for n, r, t in dels]})
        w_keys = sum(1 for k in snap if k.startswith(b"w:"))
        res["per_node"][name] = {
            "keys": len(snap), "w_keys": w_keys, "lost_writes": len(lost), "lost_by_writer": by_writer,
            "lost_keys": lost, "lost_written_in_cut": lost_in_cut,
            "counter": counter, "registers": regs, "resurrected": resurrected}
    res["acked_w"] = sum(len(w.acked_w) for w in writers)
    res["unknown_w"] = sum(w.unknown_w for w in writers)
    res["acked_incr"] = acked_incr
    res["unknown_incr"] = unknown_incr
    res["acked_deletes"] = sum(len(w.deletes) for w in writers)
    res["deleted_keys"] = len(deleted)
    res["writer_errors"] = {w.node: w.errors for w in writers}
    res["cuts"] = [{"from": round(a, 2), "to": round(b, 2), "nodes": n} for a, b, n in cuts]
    res["safety"] = safety_figures(sampler, cuts, names)
    return res


def safety_figures(sampler, cuts, names):
    links = sorted({l for s in sampler.samples for l in s["ages"]})
    max_age = {l: max((s["ages"].get(l) or 0) for s in sampler.samples) for l in links}
    max_lag = {l: max((s["lags"].get(l) or 0) for s in sampler.samples) for l in links}
    longest_cut = {}
    for l in links:
        a, b = l.split("->")
        d = [e - s for s, e, nodes in cuts if a in nodes or b in nodes]
        longest_cut[l] = max(d) if d else 0.0
    fleet_disagree, safety_disagree = [], []
    wrong = []
    for s in sampler.samples:
        fa = s["fleet_atomic"]
        if len(fa) == len(names) and len(set(fa.values())) > 1:
            fleet_disagree.append({"t": round(s["t"], 2), "values": fa})
        sa = s["safety_atomic"]
        if len(sa) == len(names) and len(set(sa.values())) > 1:
            safety_disagree.append({"t": round(s["t"], 2), "values": sa})
        # Well inside a cut (1.5 s after it was applied, 0.5 s before the heal): one node
        # cut means the first node by name of the other two; two cut means none.
        for a, b, nodes in cuts:
            if a + 1.5 <= s["t"] <= b - 0.5:
                rest = [n for n in names if n not in nodes]
                want = rest[0] if len(rest) >= 2 else None
                for node, got in fa.items():
                    if got != want:
                        wrong.append({"t": round(s["t"], 2), "cut": nodes, "daemon": node, "said": got, "expected": want})
    last = sampler.samples[-1]["ages"] if sampler.samples else {}
    # Up -> not up transitions of each link in the samples (1 s apart: a flap shorter than
    # that can be missed here, never invented).
    seen_flaps = {}
    for l in links:
        states = [s["links"].get(l) for s in sampler.samples if l in s["links"]]
        seen_flaps[l] = sum(1 for a, b in zip(states, states[1:]) if a == "up" and b != "up")
    return {"samples": len(sampler.samples), "sample_errors": sum(len(s["errors"]) for s in sampler.samples),
            "max_canary_age": max_age, "final_canary_age": last, "seen_flaps": seen_flaps, "max_lag": max_lag, "longest_cut": longest_cut,
            "fleet_atomic_seen": sorted({str(v) for s in sampler.samples for v in s["fleet_atomic"].values()}),
            "fleet_atomic_disagreements": fleet_disagree, "safety_atomic_disagreements": safety_disagree,
            "fleet_atomic_wrong_in_cut": wrong}


def report(res, names):
    cuts = res["cuts"]
    one = sum(1 for c in cuts if len(c["nodes"]) == 1)
    print(f"jepsen_partitions: 3 KeyDB nodes, {res['duration']:.0f} s, {res['rate']:.0f} iterations/s per writer, seed {res['seed']}")
    if res["no_nemesis"]:
        print("nemesis: none (control run)")
    else:
        print(f"nemesis: {len(cuts)} partitions ({one} of one node, {len(cuts) - one} of two = every link cut), "
              f"cut {sum(c['to'] - c['from'] for c in cuts):.1f} s in all: "
              + ", ".join(f"{'+'.join(c['nodes'])} {c['from']:.1f}-{c['to']:.1f}" for c in cuts))
    failed = [e for e in res["nemesis"] if e["rc"] != 0]
    if failed:
        print(f"nemesis commands that failed: {len(failed)}, e.g. {failed[0]['action']} {failed[0]['nodes']}: {failed[0]['out']}")
    errors = {n: e for n, e in res["writer_errors"].items() if e}
    print(f"writers: {sum(res['iterations'].values())} iterations answered ({', '.join(f'{n} {v}' for n, v in res['iterations'].items())}), "
          f"{res['unknown_w']} unanswered, errors: {errors or 'none'}")
    for n, d in res["engines_down"].items():
        print(f"ENGINE DOWN at the end: {n} ({d['error']}; its process: {d['engine_state'] or 'gone'})")
    for line in res["dev_exits"]:
        print(f"  keyfleet dev: {line}")
    if res["converged"]:
        print(f"converged: yes, every node equal {res['converge_seconds']} s after the writers stopped "
              f"(DBSIZE {list(res['dbsize'].values())[0]})")
    else:
        print(f"converged: NO after {res['converge_seconds']} s: {res['differing_keys']} keys differ between nodes "
              f"(DBSIZE {', '.join(f'{n} {v}' for n, v in res['dbsize'].items())}): {', '.join(res['differing_sample'][:10])}")
    nodes = res["per_node"]
    show = [names[0]] if res["converged"] else [n for n in names if n in nodes]
    if not show:
        return
    label = "every node" if res["converged"] else None

    def per(f):
        return f"{label}: {f(nodes[show[0]])}" if label else ", ".join(f"{n} {f(nodes[n])}" for n in show)

    print(f"lost writes (acknowledged w: keys missing, of {res['acked_w']}): " + per(lambda r: r["lost_writes"]))
    for n in show:
        if nodes[n]["lost_writes"]:
            r = nodes[n]
            print(f"  {n}: by writer {r['lost_by_writer']}, {r['lost_written_in_cut']} written while their node was cut off")
    acked = res["acked_incr"]
    print(f"c:shared: {per(lambda r: r['counter'])}; acknowledged INCRs {acked} (+{res['unknown_incr']} unanswered); lost: "
          + per(lambda r: f"{acked - (r['counter'] or 0)} ({100 * (acked - (r['counter'] or 0)) / max(acked, 1):.1f}%)"))
    print("registers (value kept; * = the last acknowledged write to it, else how many acknowledged writes sent "
          "after it was acknowledged were lost, c = written while its node was cut off):")
    for k in range(REGISTERS):
        cells = []
        for n in show:
            e = nodes[n]["registers"][k]
            mark = "*" if e.get("last_acked") else f" -{e.get('later_writes_lost', '?')}" + ("c" if e.get("survivor_in_cut") else "")
            cells.append(f"{str(e['value']) + mark:<18}")
        print(f"  r:{k}  " + "".join(cells) + f"({nodes[show[0]]['registers'][k]['writes']} writes)")
    print(f"  kept the last acknowledged write: " + per(lambda r: f"{sum(1 for e in r['registers'].values() if e.get('last_acked'))}/{REGISTERS}"))
    print(f"resurrected deletes (of {res['deleted_keys']} d: keys deleted by {res['acked_deletes']} acknowledged DELs): "
          + per(lambda r: len(r["resurrected"])))
    seen = {}
    for n in show:
        for x in nodes[n]["resurrected"]:
            seen.setdefault(x["key"], (x, []))[1].append(n)
    for key, (x, on) in list(seen.items())[:10]:
        dels = ", ".join(f"{d['by']} at {d['t']:.1f} s{' (cut off)' if d['by_node_cut'] else ''} reply {d['reply']}" for d in x["deletes"])
        print(f"  {key}: deleted by {dels}; back on {', '.join(on)}")
    if len(seen) > 10:
        print(f"  ... {len(seen) - 10} more")
    s = res["safety"]
    print(f"safety API: {s['samples']} samples of each daemon, {s['sample_errors']} failed requests")
    print("  max canary_age_seconds per link (longest cut of that link): "
          + ", ".join(f"{l} {a:.1f} ({s['longest_cut'][l]:.1f})" for l, a in s["max_canary_age"].items()))
    print("  canary_age_seconds 3 s after the last heal: "
          + ", ".join(f"{l} {a:.1f}" for l, a in s["final_canary_age"].items() if a is not None))
    print("  max lag_seconds per link: " + ", ".join(f"{l} {a:.2f}" for l, a in s["max_lag"].items()))
    dis = s["fleet_atomic_disagreements"]
    print(f"  atomic_writes_node (/api/v1/fleet) seen: {', '.join(s['fleet_atomic_seen'])}; daemons differed in "
          f"{len(dis)} of {s['samples']} samples" + (f" (at {', '.join(str(d['t']) for d in dis[:8])} s)" if dis else ""))
    print(f"  atomic_writes_node (/api/v1/safety, each daemon's latest choice): differed in {len(s['safety_atomic_disagreements'])} samples")
    wrong = s["fleet_atomic_wrong_in_cut"]
    print(f"  /api/v1/fleet answers other than expected well inside a cut: {len(wrong)}" + (f", e.g. {wrong[:3]}" if wrong else ""))
    print(f"  full_syncs at the end: {', '.join(f'{n} {v}' for n, v in res['full_syncs'].items())}")
    flaps = {f"{peer}->{n}": v for n, d in res["link_flaps"].items() for peer, v in d.items()}
    print("  link_flaps per link (up->down seen in the samples; cuts of that link): " + ", ".join(
        f"{l} {flaps.get(l)} ({s['seen_flaps'].get(l)}; {sum(1 for c in cuts if set(l.split('->')) & set(c['nodes']))})"
        for l in sorted(flaps)))
