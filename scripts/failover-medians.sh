#!/usr/bin/env bash
# Failover figures of BENCHMARKS.md: `drill kill-active` RUNS times (default 5) per way of dying
# (operator kill, crash behind the control plane, freeze), on a fresh local stack per group
# protocol, and the median of each figure. Usage: scripts/failover-medians.sh [classic|consumer ...]
# Needs a built workspace and the set-up of scripts/bootstrap.sh; stops any stack in $CHAT4ALL_HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
CTL=${CTL:-target/debug/chat4allctl}
RUNS=${RUNS:-5}
protocols=("$@")
[ ${#protocols[@]} -gt 0 ] || protocols=(classic consumer)
out=$(mktemp -d)
for protocol in "${protocols[@]}"; do
  "$CTL" down >/dev/null 2>&1 || true
  "$CTL" up --detach --group-protocol "$protocol" >/dev/null
  for how in operator crash freeze; do
    flag=""
    [ "$how" = operator ] || flag="--$how"
    for i in $(seq 1 "$RUNS"); do
      "$CTL" drill kill-active $flag -o json >"$out/$protocol-$how-$i.json" || true
    done
  done
done
"$CTL" down >/dev/null 2>&1 || true
python3 - "$out" <<'PY'
import glob, json, os, statistics, sys
out = sys.argv[1]
rows = {}
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    protocol, how, _ = os.path.basename(f)[:-5].split("-")
    try:
        r = json.load(open(f))
    except ValueError:
        rows.setdefault((protocol, how), []).append(None)
        continue
    k = r["kills"][0]["failover"]
    rows.setdefault((protocol, how), []).append(
        (r["passed"], k["detectionMs"], k["takeoverMs"], k["recoveryMs"], r["counts"]["lost"], r["counts"]["duplicated"]))
print("| protocol | death | runs passed | detection ms (median) | takeover ms (median) | kill -> first event processed ms (median) | each run | lost | duplicated |")
print("|---|---|---|---|---|---|---|---|---|")
for (protocol, how), runs in sorted(rows.items()):
    ok = [r for r in runs if r]
    med = lambda i: statistics.median([r[i] for r in ok if r[i] is not None]) if ok else None
    each = ", ".join(str(r[3]) for r in ok)
    print(f"| {protocol} | {how} | {sum(1 for r in ok if r[0])}/{len(runs)} | {med(1)} | {med(2)} | {med(3)} | {each} | {sum(r[4] for r in ok)} | {sum(r[5] for r in ok)} |")
PY
