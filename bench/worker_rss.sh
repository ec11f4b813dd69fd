#!/usr/bin/env bash
# bench/worker_rss.sh: the delivery worker's memory over many deliveries.
#
# Against a running server that preloads edusync and points
# edusync.graph_url at a Graph (the fake: python3 test/fake_graph.py), with
# the extension created and profile 'p1' present, queue N errors (default
# 100000) in chunks, let the worker deliver them, and sample its RSS
# (VmRSS, and RssAnon: its private memory, without shared buffers).
#
#   PGHOST=... PGPORT=... bash bench/worker_rss.sh [N] [CHUNK]
set -euo pipefail

N=${1:-100000}
CHUNK=${2:-5000}
PSQL=(psql -X -q -At -d "${PGDATABASE:-postgres}")

pid=$("${PSQL[@]}" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'edusync delivery worker'")
[ -n "$pid" ] || { echo "no edusync delivery worker running" >&2; exit 1; }

rss() {
	awk '/^VmRSS|^RssAnon/ { printf "%s %s kB  ", $1, $2 } END { print "" }' "/proc/$pid/status"
}
pending() {
	"${PSQL[@]}" -c "SELECT count(*) FROM edusync.deliveries WHERE status = 'pending'"
}

echo "worker $pid before: $(rss)"
start=$(date +%s.%N)
queued=0
peak_anon=0
while [ "$queued" -lt "$N" ]; do
	n=$(( N - queued < CHUNK ? N - queued : CHUNK ))
	"${PSQL[@]}" -c "SET edusync.forward = 'async';
		SELECT count(edusync.create_sync_error('p1', 'Student', 'UnsynchronizableChange',
			'bench ' || g)) FROM generate_series(1, $n) g" >/dev/null
	queued=$(( queued + n ))
	anon=$(awk '/^RssAnon/ { print $2 }' "/proc/$pid/status")
	[ "$anon" -gt "$peak_anon" ] && peak_anon=$anon
	echo "queued $queued, pending $(pending): $(rss)"
done
while [ "$(pending)" -gt 0 ]; do
	sleep 1
	anon=$(awk '/^RssAnon/ { print $2 }' "/proc/$pid/status")
	[ "$anon" -gt "$peak_anon" ] && peak_anon=$anon
done
end=$(date +%s.%N)
echo "worker $pid after:  $(rss)"
echo "peak RssAnon: $peak_anon kB"
"${PSQL[@]}" -c "SELECT status, count(*) FROM edusync.deliveries GROUP BY 1 ORDER BY 1"
awk -v s="$start" -v e="$end" -v n="$N" 'BEGIN { printf "%d deliveries in %.1f s (%.0f/s)\n", n, e - s, n / (e - s) }'
