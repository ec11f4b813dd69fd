#!/usr/bin/env bash
# bench/worker_rss.sh: the delivery worker's memory over many deliveries.
#
# Against a running server that preloads edusync and points
# edusync.graph_url at a Graph (nginx from bench/run-all.sh, or the fake:
# python3 test/fake_graph.py), with the extension created and the profile
# present, queue FIRST errors (default 1000), let the worker deliver them and
# read its RSS, then queue the rest up to N (default 100000) in chunks,
# waiting for each chunk to be delivered, and read it again.  VmRSS counts
# shared buffers the worker touched; RssAnon is its private memory.
#
#   PGHOST=... PGPORT=... bash bench/worker_rss.sh [N] [CHUNK] [FIRST]
#
# Environment: PSQL (the psql to use), PROFILE (default p1), TIMEOUT (seconds
# to wait for one chunk, default 300).  The last line is machine-readable:
#   RESULT n=<N> first=<FIRST> first_anon_kb=<kB> last_anon_kb=<kB> peak_anon_kb=<kB> seconds=<s>
set -euo pipefail

N=${1:-100000}
CHUNK=${2:-5000}
FIRST=${3:-1000}
PROFILE=${PROFILE:-p1}
TIMEOUT=${TIMEOUT:-300}
PSQL=("${PSQL:-psql}" -X -q -At -d "${PGDATABASE:-postgres}")

pid=$("${PSQL[@]}" -c "SELECT pid FROM pg_stat_activity
	WHERE backend_type ILIKE 'edusync%deliver%' AND datname = current_database() LIMIT 1")
[ -n "$pid" ] || { echo "no edusync delivery worker running" >&2; exit 1; }

rss() {
	awk '/^VmRSS|^RssAnon/ { printf "%s %s kB  ", $1, $2 } END { print "" }' "/proc/$pid/status"
}
anon() {
	awk '/^RssAnon/ { print $2 }' "/proc/$pid/status"
}
pending() {
	"${PSQL[@]}" -c "SELECT count(*) FROM edusync.deliveries WHERE status = 'pending'"
}
peak_anon=0
note_peak() {
	local a
	a=$(anon)
	[ "$a" -gt "$peak_anon" ] && peak_anon=$a
	return 0
}
# Queue n errors in one transaction, then wait (bounded) until none is pending.
queue_and_drain() {
	local n=$1 deadline=$((SECONDS + TIMEOUT))
	"${PSQL[@]}" -c "SET edusync.forward = 'async';
		SELECT count(edusync.create_sync_error('$PROFILE', 'Student', 'UnsynchronizableChange',
			'bench rss ' || g)) FROM generate_series(1, $n) g" >/dev/null
	while [ "$(pending)" -gt 0 ]; do
		[ "$SECONDS" -lt "$deadline" ] || { echo "deliveries still pending after ${TIMEOUT}s" >&2; exit 1; }
		note_peak
		sleep 0.2
	done
	note_peak
}

echo "worker $pid before: $(rss)"
start=$(date +%s.%N)
queue_and_drain "$FIRST"
first_anon=$(anon)
echo "delivered $FIRST: $(rss)"
queued=$FIRST
while [ "$queued" -lt "$N" ]; do
	n=$(( N - queued < CHUNK ? N - queued : CHUNK ))
	queue_and_drain "$n"
	queued=$(( queued + n ))
	echo "delivered $queued: $(rss)"
done
end=$(date +%s.%N)
last_anon=$(anon)
echo "worker $pid after:  $(rss)"
"${PSQL[@]}" -c "SELECT status, count(*) FROM edusync.deliveries GROUP BY 1 ORDER BY 1"
secs=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }')
echo "RESULT n=$N first=$FIRST first_anon_kb=$first_anon last_anon_kb=$last_anon peak_anon_kb=$peak_anon seconds=$secs"
