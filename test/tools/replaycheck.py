#!/usr/bin/env python3
"""replaycheck.py -- checks used by selftest.sh on anomstream-replay output.

Test-only helper (Python is never needed at run time).  Subcommands:

  readback LOG MSGS   MSGS has one consumed message per line,
                      'topic<TAB>partition<TAB>offset<TAB>key<TAB>value'
                      (kcat -f '%t\\t%p\\t%o\\t%k\\t%s\\n', or --print output
                      converted by the caller).  Checks that the consumed
                      messages are exactly the acknowledged ones in LOG, that
                      every value has the envelope shape, and that every row
                      equals the logged fields; malformed (BAD) messages must
                      be malformed in the way the log says.
  cadence LOG         checks the real producer's cadence in LOG: process
                      messages carry 10..50 rows, memory messages 20..80 (or
                      1..5 for late rows, whose ts is older than the machine's
                      newest), each machine's sequence advances by one per row
                      (wrapping to its first value).
  csvmatch LOG CSV    every logged row of CSV's topic equals a CSV record
                      with that machine and sequence.

Invariant: prints one summary line; exit 0 when the check holds, 1 when it
does not, 2 on bad usage.
"""
import csv
import json
import sys


def parse_log(path):
    cols, rows, bad = {}, {}, {}
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "#":
                cols[parts[1]] = parts[7:]
            elif parts[0] == "BAD":
                _, topic, part, off, kind, ri = parts
                bad[(topic, int(part), int(off))] = (kind, int(ri))
            else:
                topic, part, off, ri, key, ts = parts[:6]
                fields = [unescape(x) for x in parts[6:]]
                rows[(topic, int(part), int(off), int(ri))] = (key, int(ts), fields)
    return cols, rows, bad


def unescape(s):
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def same_value(text, value):
    """Does the JSON value equal the CSV text it was made from?"""
    if text == "":
        return value is None
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (int, float)):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return value == text


WHOLE_BAD = {"broken-json", "missing-ts", "data-not-array"}


def readback(log, msgs):
    cols, rows, bad = parse_log(log)
    logged_msgs = {(t, p, o) for (t, p, o, _) in rows} | set(bad)
    seen_msgs, nrows, errors = set(), 0, []

    def err(msg):
        if len(errors) < 10:
            errors.append(msg)

    with open(msgs, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            topic, part, off, key, value = line.split("\t", 4)
            ident = (topic, int(part), int(off))
            if ident in seen_msgs:
                err("duplicate message %r" % (ident,))
            seen_msgs.add(ident)
            kind = bad.get(ident, (None, -1))[0]
            try:
                env = json.loads(value)
            except ValueError:
                if kind != "broken-json":
                    err("invalid JSON at %r" % (ident,))
                continue
            if kind == "broken-json":
                err("expected broken JSON at %r" % (ident,))
                continue
            if not isinstance(env, dict):
                err("envelope not an object at %r" % (ident,))
                continue
            if kind == "missing-ts":
                if "ts" in env:
                    err("expected no ts at %r" % (ident,))
                continue
            if not isinstance(env.get("ts"), (int, str)):
                err("bad ts at %r" % (ident,))
                continue
            if kind == "data-not-array":
                if isinstance(env.get("data"), list):
                    err("expected data not an array at %r" % (ident,))
                continue
            if not isinstance(env.get("data"), list) or not env["data"]:
                err("data not a non-empty array at %r" % (ident,))
                continue
            for ri, elem in enumerate(env["data"]):
                obj = json.loads(elem) if isinstance(elem, str) else elem
                if not isinstance(obj, dict):
                    err("row %d not an object at %r" % (ri, ident))
                    continue
                if kind is not None and ri == bad[ident][1]:
                    continue
                nrows += 1
                want = rows.get(ident + (ri,))
                if want is None:
                    err("row %r not in the log" % (ident + (ri,),))
                    continue
                wkey, wts, fields = want
                if wkey != key:
                    err("key %s != logged %s at %r" % (key, wkey, ident))
                ts = env["ts"]
                if isinstance(ts, str) and ts.isdigit():
                    ts = int(ts)
                if isinstance(ts, int) and ts != wts:
                    err("ts %r != logged %d at %r" % (ts, wts, ident))
                names = cols[topic]
                if list(obj.keys()) != names:
                    err("keys %r != header at %r" % (list(obj.keys()), ident))
                    continue
                for name, text in zip(names, fields):
                    if not same_value(text, obj[name]):
                        err("%s=%r != logged %r at %r" % (name, obj[name], text, ident + (ri,)))
    missing = logged_msgs - seen_msgs
    if missing:
        err("%d logged messages not read back, e.g. %r" % (len(missing), sorted(missing)[:3]))
    print("readback: %d messages (%d logged), %d rows (%d logged), %d malformed: %s"
          % (len(seen_msgs), len(logged_msgs), nrows, len(rows), len(bad),
             "ok" if not errors and nrows == len(rows) else "; ".join(errors) or "row count differs"))
    return 0 if not errors and nrows == len(rows) else 1


def cadence(log):
    cols, rows, bad = parse_log(log)
    msgs = {}
    for (t, p, o, ri), (key, ts, fields) in rows.items():
        msgs.setdefault((t, p, o), []).append((ri, key, ts, fields))
    errors = []
    newest, counts, per_machine = {}, {}, {}
    for ident in sorted(msgs):
        t = ident[0]
        rs = sorted(msgs[ident])
        key, ts = rs[0][1], rs[0][2]
        n = len(rs)
        # main messages have strictly increasing ts per machine; late rows
        # come after the main message and repeat an older (or the same) ts
        late = (t, key) in newest and ts <= newest[(t, key)]
        newest[(t, key)] = max(ts, newest.get((t, key), ts))
        lo, hi = (1, 5) if late else ((10, 50) if t == "process" else (20, 80))
        if t not in ("process", "memory"):
            lo, hi = 1, 10 ** 9
        if not lo <= n <= hi:
            errors.append("%r: %d rows, expected %d..%d" % (ident, n, lo, hi))
        counts[(t, late)] = counts.get((t, late), 0) + 1
        for ri, k, _, fields in rs:
            per_machine.setdefault((t, k), []).append((ts, ident[1], ident[2], ri, fields))
    # in event-time order each machine's sequence advances by one (or wraps)
    for (t, k), lst in per_machine.items():
        if "sequence" not in cols[t]:
            continue
        si = cols[t].index("sequence")
        lst.sort(key=lambda x: x[:4])
        first = prev = None
        for ts, p, o, ri, fields in lst:
            seq = int(fields[si])
            if first is None:
                first = seq
            elif seq != prev + 1 and seq != first:
                errors.append("%s machine %s: sequence %d after %d (offset %d)" % (t, k, seq, prev, o))
            prev = seq
    summary = ", ".join("%s%s: %d" % (t, " late" if late else "", c)
                        for (t, late), c in sorted(counts.items()))
    print("cadence: %s: %s" % (summary, "ok" if not errors else "; ".join(errors[:5])))
    return 1 if errors else 0


def csvmatch(log, path):
    cols, rows, _ = parse_log(log)
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        r = csv.reader(f)
        header = next(r)
        index = {}
        mi, si = header.index("machine"), header.index("sequence")
        for rec in r:
            if rec:
                index[(rec[mi], rec[si])] = rec
    topic = next((t for t, c in cols.items() if c == header), None)
    if topic is None:
        print("csvmatch: no topic in the log has the header of %s" % path)
        return 1
    n, bad = 0, 0
    for (t, _, _, _), (_, _, fields) in rows.items():
        if t != topic:
            continue
        n += 1
        if index.get((fields[mi], fields[si])) != fields:
            bad += 1
    print("csvmatch %s: %d rows compared, %d differ" % (topic, n, bad))
    return 0 if n > 0 and bad == 0 else 1


def main(argv):
    if len(argv) == 4 and argv[1] == "readback":
        return readback(argv[2], argv[3])
    if len(argv) == 3 and argv[1] == "cadence":
        return cadence(argv[2])
    if len(argv) == 4 and argv[1] == "csvmatch":
        return csvmatch(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
