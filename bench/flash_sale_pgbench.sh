#!/usr/bin/env bash
# The flash sale's hot SQL alone (issue 10): pgbench runs the hold of one
# buyer (bench/flash_sale_pgbench.sql: chosen seats; _best.sql: best
# available), exactly as the reservation service's transaction runs it, once
# per buyer on a fresh schedule of the reservation database, at <clients>
# connections (-M prepared, as the service's named statements). The
# database's own ceiling for the service's figure (bench/flash_sale.py runs
# both on the same data).
#
#   bench/flash_sale_pgbench.sh <db-url> <schedule-id> <grade> <seats> <buyers> <quantity> <clients> <seats|best>
#
# Prints one JSON line: transactions, tps (without connection set-up),
# p50/p95/p99 ms (pgbench's per-transaction log), and what the database holds
# afterwards (bench-flash-sale --check: seats held, seats held twice; $BENCH_FLASH_SALE
# names the binary, default build/bench/bench-flash-sale). Exit 1 when a seat is held twice.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[ $# -eq 8 ] || { sed -n 2,16p "$0" >&2; exit 2; }
url="$1" sid="$2" grade="$3" seats="$4" buyers="$5" q="$6" clients="$7" mode="$8"
bin="${BENCH_FLASH_SALE:-$ROOT/build/bench/bench-flash-sale}"
case "$mode" in
  seats) script="$ROOT/bench/flash_sale_pgbench.sql" ;;
  best) script="$ROOT/bench/flash_sale_pgbench_best.sql" ;;
  *) echo "mode: seats or best" >&2; exit 2 ;;
esac
perf="$(psql "$url" -qAtX -c "SELECT performance_id FROM inv_schedules WHERE schedule_id = '$sid'")"
[ -n "$perf" ] || { echo "flash_sale_pgbench: schedule $sid not in $url" >&2; exit 2; }
free="$(psql "$url" -qAtX -c "SELECT count(*) FROM seats WHERE schedule_id = '$sid' AND status = 'AVAILABLE'")"
[ "$free" = "$seats" ] || { echo "flash_sale_pgbench: schedule $sid has $free free seats, not $seats" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
per_client=$(((buyers + clients - 1) / clients))
# pgbench's own tps line excludes the connections' set-up, like the warmed-up C program
pgbench -n -M prepared -c "$clients" -j 2 -t "$per_client" \
  -D sid="$sid" -D perf="$perf" -D grade="$grade" -D q="$q" -D blocks=$((seats / q)) -D ttl=86400 \
  -f "$script" --log --log-prefix="$tmp/tx" "$url" >"$tmp/out" 2>"$tmp/err" || {
  cat "$tmp/out" "$tmp/err" >&2; exit 1; }
grep -q "aborted" "$tmp/err" && { cat "$tmp/err" >&2; exit 1; }
tps="$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$tmp/out")"
n="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$tmp/out")"
# per-transaction log: client tx_no latency_us script_no epoch us
read -r p50 p95 p99 < <(cat "$tmp"/tx.* | awk '{print $3}' | sort -n |
  awk '{v[NR]=$1} END {printf "%.2f %.2f %.2f\n", v[int(NR*0.5)+1]/1000, v[int(NR*0.95)+1]/1000, v[int(NR*0.99)+1]/1000}')
check="$("$bin" --check --schedule "$sid" --db "$url")" || rc=$?
echo "{\"mode\":\"$mode\",\"clients\":$clients,\"transactions\":$n,\"tps\":$tps,\"p50_ms\":$p50,\"p95_ms\":$p95,\"p99_ms\":$p99,\"check\":$check}"
exit "${rc:-0}"
