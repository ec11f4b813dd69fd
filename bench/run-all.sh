#!/usr/bin/env bash
# bench/run-all.sh: every edusync benchmark, one command.
#
#   bash bench/run-all.sh            # the whole suite (about 15 minutes on 2 cores)
#   QUICK=1 bash bench/run-all.sh    # a quick pass (about 2-3 minutes)
#
# As root on Debian 12 it installs what it needs (test/lib.sh's packages,
# nginx-light, wrk, gnuplot-nox), builds and installs edusync into the
# server PG_BIN names (default: Debian's PostgreSQL 15), starts a throwaway
# cluster that preloads edusync and forwards to nginx on 127.0.0.1 (a fixed
# 201 Graph body for every POST of an error, a fixed 20-item answer for
# $batch), runs each benchmark, and writes bench/results.md (a table),
# bench/results.tsv (the raw samples) and
# bench/results.png (one bar pair per figure).  Everything it started is
# stopped on exit, also on failure.
#
# Each figure is a ratio against a baseline measured in the same run; both
# are measured every round, alternating which goes first, and the table
# gives the median and the spread of the per-round ratios.  A benchmark whose
# function the installed edusync does not have (to_regprocedure) is reported
# as "n/a (function missing)"; one that fails is reported as failed, the
# run goes on, and the exit status is 1.
#
# Parameters (environment):
#   ROUNDS (3)   rounds of every comparison
#   SECS (5)     seconds of each timed pgbench/wrk run (not SECONDS: bash owns it)
#   CLIENTS (2)  clients for create vs INSERT
#   BULK_N (100000)  rows of the one-statement bulk create vs COPY
#   LIST_N (300000)  errors in the profile the list benchmark pages through
#   DRAIN_N (20000) DRAIN_SMALL (5000) DRAIN_LARGE (40000)  async backlogs
#   DRAIN_TIMEOUT (45)  seconds one drain may take before it is cut short
#                (its rate is then over the part delivered, with a note)
#   QUEUE_N (1000000) delivery rows under the delivery_queue view
#   LAT_N (200)  single commits per round for commit-to-delivered latency
#   RSS_N (100000) RSS_FIRST (1000)  deliveries for the worker memory check
#   SYNC_BULK_N (2000)  errors of the sync bulk create vs single sync creates
#   ONLY         space-separated benchmark names to run (default: all of
#                create sync sync_http bulk latency rss drain list queue bounded
#                sync_bulk), e.g. ONLY=queue bash bench/run-all.sh
#   OUT          folder for results.md / results.png (default bench/)
#   MAX_IN_FLIGHT  edusync.max_in_flight for the run (default: the setting's default)
#   PERF_DIR     if set, each drain runs `perf record -g` on the worker into
#                PERF_DIR/<label>.data (a profile; it slows the drain a little)
source "$(dirname "$0")/../test/lib.sh"

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
	ROUNDS=${ROUNDS:-2}; SECS=${SECS:-2}
	BULK_N=${BULK_N:-20000}; LIST_N=${LIST_N:-30000}
	DRAIN_N=${DRAIN_N:-2000}; DRAIN_SMALL=${DRAIN_SMALL:-500}; DRAIN_LARGE=${DRAIN_LARGE:-4000}
	DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-15}
	QUEUE_N=${QUEUE_N:-100000}; LAT_N=${LAT_N:-50}
	RSS_N=${RSS_N:-10000}; RSS_FIRST=${RSS_FIRST:-1000}
	SYNC_BULK_N=${SYNC_BULK_N:-500}
fi
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
CLIENTS=${CLIENTS:-2}
BULK_N=${BULK_N:-100000}
LIST_N=${LIST_N:-300000}
DRAIN_N=${DRAIN_N:-20000}
DRAIN_SMALL=${DRAIN_SMALL:-5000}
DRAIN_LARGE=${DRAIN_LARGE:-40000}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-45}
QUEUE_N=${QUEUE_N:-1000000}
LAT_N=${LAT_N:-200}
RSS_N=${RSS_N:-100000}
RSS_FIRST=${RSS_FIRST:-1000}
SYNC_BULK_N=${SYNC_BULK_N:-2000}
ONLY=${ONLY:-create sync sync_http bulk latency rss drain list queue bounded sync_bulk}
BENCH=$EDUSYNC_SRC/bench
OUT=${OUT:-$BENCH}
WAIT_MAX=${WAIT_MAX:-300}	# seconds any one wait may take

BENCH_START=$SECONDS
PACKAGES="$PACKAGES nginx-light wrk gnuplot-nox curl"
NGINX_PID=

# Stop nginx and resume a paused worker before lib.sh stops the cluster.
bench_cleanup() {
	local rc=$?
	set +e	# every step below must run, whatever the one before did
	# a benchmark runs in a subshell: a worker it paused is named in a file
	if [ -s "${WORKDIR:-/nonexistent}/paused_worker" ]; then
		kill -CONT "$(cat "$WORKDIR/paused_worker")" 2>/dev/null
	fi
	if [ -n "$NGINX_PID" ]; then
		kill -QUIT "$NGINX_PID" 2>/dev/null
		for _ in $(seq 1 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$NGINX_PID" 2>/dev/null && kill -KILL "$NGINX_PID"
	fi
	(exit $rc)
	cleanup
}
trap bench_cleanup EXIT
# A benchmark runs in a background subshell that a signal also stops.
BENCH_CHILD=
on_signal() {
	[ -n "$BENCH_CHILD" ] && kill -TERM "$BENCH_CHILD" 2>/dev/null
	exit 130
}
trap on_signal INT TERM

psql_() { "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# --- the fast endpoint: nginx with fixed answers ------------------------------

GRAPH_ANSWER='{"@odata.context":"https://graph.microsoft.com/beta/$metadata#education/synchronizationProfiles/errors/$entity","@odata.type":"#microsoft.graph.educationSynchronizationError","id":"5f5e8a3c-0b1d-4c2e-9f3a-1b2c3d4e5f60","entryType":"Student","errorCode":"UnsynchronizableChange","errorMessage":"Student cannot be updated because the source data changed its key.","joiningValue":"richard.2wilson@testschool.edu","recordedDateTime":"2017-07-05T00:52:45Z","reportableIdentifier":"richard.2wilson"}'
REQUEST_BODY='{"@odata.type":"#microsoft.graph.educationSynchronizationError","entryType":"Student","errorCode":"UnsynchronizableChange","errorMessage":"Student cannot be updated because the source data changed its key.","joiningValue":"richard.2wilson@testschool.edu","recordedDateTime":"2017-07-05T00:52:45Z","reportableIdentifier":"richard.2wilson"}'

# nginx's return text interpolates $variables: "$" in the bodies must come
# from a variable that holds a dollar sign.
nginx_text() { printf '%s' "$1" | sed 's/\$/${dollar}/g'; }

start_nginx() {
	local dir=$WORKDIR/nginx batch_set i
	mkdir -p "$dir"
	NGINX_PORT=$(free_port)
	# nginx takes at most 4 kB in one parameter: the $batch answer is built
	# from four variables of five items each
	batch_set=
	for i in $(seq 1 20); do
		[ $((i % 5)) = 1 ] && batch_set+="            set \$b$(( (i + 4) / 5 )) '"
		[ "$i" = 1 ] && batch_set+='{"responses":['
		[ "$i" -gt 1 ] && [ $((i % 5)) != 1 ] && batch_set+=','
		[ "$i" -gt 1 ] && [ $((i % 5)) = 1 ] && batch_set+=','
		batch_set+=$(nginx_text "{\"id\":\"$i\",\"status\":201,\"headers\":{\"Content-Type\":\"application/json\"},\"body\":$GRAPH_ANSWER}")
		[ "$i" = 20 ] && batch_set+=']}'
		[ $((i % 5)) = 0 ] && batch_set+="';"$'\n'
	done
	cat >"$dir/nginx.conf" <<-EOF
	daemon on;
	worker_processes 1;
	pid $dir/nginx.pid;
	error_log $dir/error.log warn;
	events { worker_connections 1024; }
	http {
	    access_log off;
	    client_body_temp_path $dir/body;
	    proxy_temp_path $dir/proxy;
	    fastcgi_temp_path $dir/fastcgi;
	    uwsgi_temp_path $dir/uwsgi;
	    scgi_temp_path $dir/scgi;
	    keepalive_requests 10000000;
	    keepalive_timeout 300s;
	    client_body_buffer_size 1m;
	    client_max_body_size 10m;
	    geo \$dollar { default "\$"; }
	    server {
	        listen 127.0.0.1:$NGINX_PORT;
	        default_type application/json;
	        location = /\$batch {
	            if (\$request_method != POST) { return 405; }
$batch_set
	            return 200 "\$b1\$b2\$b3\$b4";
	        }
	        location ~ ^/education/synchronizationProfiles/.+/errors\$ {
	            if (\$request_method != POST) { return 405; }
	            return 201 '$(nginx_text "$GRAPH_ANSWER")';
	        }
	        location / { return 404; }
	    }
	}
	EOF
	step "starting nginx on 127.0.0.1:$NGINX_PORT"
	nginx -q -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log"
	NGINX_PID=$(cat "$dir/nginx.pid")
	# wrk's request scripts: one error, and a $batch of 20 (the size edusync sends)
	printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["Authorization"] = "Bearer bench"\nwrk.body = [==[%s]==]\n' \
		"$REQUEST_BODY" >"$WORKDIR/post_error.lua"
	local breq='{"requests":[' 
	for i in $(seq 1 20); do
		[ "$i" -gt 1 ] && breq+=','
		breq+="{\"id\":\"$i\",\"method\":\"POST\",\"url\":\"/education/synchronizationProfiles/bench-profile/errors\",\"headers\":{\"Content-Type\":\"application/json\",\"client-request-id\":\"5f5e8a3c-0b1d-4c2e-9f3a-1b2c3d4e5f60\"},\"body\":$REQUEST_BODY}"
	done
	breq+=']}'
	printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["Authorization"] = "Bearer bench"\nwrk.body = [==[%s]==]\n' \
		"$breq" >"$WORKDIR/post_batch.lua"
	# the answers must be what edusync reads
	curl -sf -X POST -d '{}' "http://127.0.0.1:$NGINX_PORT/education/synchronizationProfiles/p/errors" |
		python3 -c 'import json,sys; assert json.load(sys.stdin)["id"]' ||
		{ echo "nginx does not answer an error POST as expected" >&2; exit 1; }
	curl -sf -X POST -d '{}' "http://127.0.0.1:$NGINX_PORT/\$batch" |
		python3 -c 'import json,sys; r = json.load(sys.stdin)["responses"]; assert [x["id"] for x in r] == [str(i) for i in range(1, 21)] and all(x["status"] == 201 for x in r)' ||
		{ echo "nginx does not answer \$batch as expected" >&2; exit 1; }
}

# Requests/s of wrk against PATH with SCRIPT, C connections, for SECS.
wrk_rate() {
	local path=$1 script=$2 c=$3
	local rate
	rate=$(wrk -t1 -c"$c" -d"${SECS}s" -s "$script" "http://127.0.0.1:$NGINX_PORT$path" |
		sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p')
	[ -n "$rate" ] || { echo "wrk gave no rate for $path" >&2; return 1; }
	echo "$rate"
}
ERRORS_PATH=/education/synchronizationProfiles/bench-profile/errors

# --- recording -------------------------------------------------------------

SAMPLES=	# $WORKDIR/samples.tsv, once there is a WORKDIR
# meta KEY FIGURE CONTENDER BASELINE UNIT KIND TARGET
meta() { printf 'META\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$SAMPLES"; }
# sample KEY ROUND CONTENDER_VALUE BASELINE_VALUE
sample() {
	printf 'S\t%s\t%s\t%s\t%s\n' "$@" >>"$SAMPLES"
	step "  $1 round $2: contender $3, baseline $4"
}
note() { printf 'NOTE\t%s\n' "$1" >>"$SAMPLES"; step "  note: $1"; }
na() { printf 'NA\t%s\t%s\n' "$1" "$2" >>"$SAMPLES"; step "  $1: $2"; }
has_function() {
	[ "$(psql_ -c "SELECT to_regprocedure('$1') IS NOT NULL")" = t ]
}

# tps of a pgbench script (a file in $WORKDIR) with C clients for SECS;
# extra arguments go to pgbench.
pgbench_tps() {
	local file=$1 c=$2 tps; shift 2
	tps=$("$PG_BIN/pgbench" -n -M prepared -c "$c" -j "$c" -T "$SECS" -f "$WORKDIR/$file" "$@" 2>"$WORKDIR/pgbench.err" |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p')
	[ -n "$tps" ] && [ "$(grep -c 'error\|aborted' "$WORKDIR/pgbench.err")" = 0 ] ||
		{ echo "pgbench $file failed:" >&2; tail -n 5 "$WORKDIR/pgbench.err" >&2; return 1; }
	echo "$tps"
}
reset_tables() {
	psql_ -c "TRUNCATE bench.plain_errors, bench.indexed_errors, edusync.sync_errors CASCADE" -c "CHECKPOINT"
}
# Milliseconds one SQL statement takes, by psql's \timing.
statement_ms() {
	local ms
	ms=$(psql_ -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1)
	[ -n "$ms" ] || { echo "no time for: $1" >&2; return 1; }
	echo "$ms"
}
# Wait, bounded, until no delivery is pending.
wait_drained() {
	local deadline=$((SECONDS + WAIT_MAX))
	while [ "$(psql_ -c "SELECT count(*) FROM edusync.deliveries WHERE status = 'pending'")" != 0 ]; do
		[ "$SECONDS" -lt "$deadline" ] || { echo "deliveries still pending after ${WAIT_MAX}s" >&2; return 1; }
		sleep 0.05
	done
}
worker_pid() {
	psql_ -c "SELECT pid FROM pg_stat_activity WHERE backend_type ILIKE 'edusync%deliver%'
		AND datname = current_database() LIMIT 1"
}
set_batch_size() {
	psql_ -c "ALTER SYSTEM SET edusync.batch_size = $1" -c "SELECT pg_reload_conf()" >/dev/null
	sleep 1	# the worker rereads its settings when the SIGHUP wakes it
}

# ROUNDS rounds of a contender against its baseline, each run on reset
# tables, the one that goes first alternating round by round; every round
# is sampled as KEY.  CONTENDER and BASELINE are commands (evaluated here,
# so they may use the caller's variables) that print one number; CHECK, if
# given, must succeed after each round.
alternate() {
	local key=$1 contender=$2 baseline=$3 check=${4:-} r a b
	for r in $(seq 1 "$ROUNDS"); do
		if [ $((r % 2)) = 1 ]; then
			reset_tables; b=$(eval "$baseline")
			reset_tables; a=$(eval "$contender")
		else
			reset_tables; a=$(eval "$contender")
			reset_tables; b=$(eval "$baseline")
		fi
		[ -z "$check" ] || eval "$check" || return 1
		sample "$key" "$r" "$a" "$b"
	done
}

# --- the benchmarks ----------------------------------------------------------

# create_sync_error (forward off) vs a bare INSERT of the same row, CLIENTS
# clients; and vs the same INSERT into a table with sync_errors' indexes.
bench_create() {
	meta create "single create, $CLIENTS clients" 'create_sync_error(profile, jsonb)' 'bare INSERT (same PK, FK)' tps rate '≥ 0.90'
	meta create_typed "single create, $CLIENTS clients" 'create_sync_error(profile, typed…)' 'bare INSERT (same PK, FK)' tps rate '≥ 0.90'
	meta create_indexed "single create, $CLIENTS clients" 'create_sync_error(profile, jsonb)' 'bare INSERT (same PK, FK and list index)' tps rate ''
	local r a b t x
	for r in $(seq 1 "$ROUNDS"); do
		if [ $((r % 2)) = 1 ]; then
			reset_tables; b=$(pgbench_tps bare_insert.sql "$CLIENTS")
			reset_tables; x=$(pgbench_tps bare_insert_indexed.sql "$CLIENTS")
			reset_tables; a=$(pgbench_tps create_json.sql "$CLIENTS")
			reset_tables; t=$(pgbench_tps create_typed.sql "$CLIENTS")
		else
			reset_tables; t=$(pgbench_tps create_typed.sql "$CLIENTS")
			reset_tables; a=$(pgbench_tps create_json.sql "$CLIENTS")
			reset_tables; x=$(pgbench_tps bare_insert_indexed.sql "$CLIENTS")
			reset_tables; b=$(pgbench_tps bare_insert.sql "$CLIENTS")
		fi
		sample create "$r" "$a" "$b"
		sample create_typed "$r" "$t" "$b"
		sample create_indexed "$r" "$a" "$x"
	done
}

# Sync create on one connection to nginx vs the same row INSERTed and POSTed
# with pgsql-http's http() in one statement (keep-alive, the same headers
# and body).  pgsql-http is not in Debian: the figure runs when it is
# installed into the same PostgreSQL (make install PG_CONFIG=...), else n/a.
bench_sync_http() {
	meta sync_http 'sync create, 1 connection, nginx' 'create_sync_error, forward = sync' 'INSERT + pgsql-http http() POST, one statement' 'creates/s' rate '> 1'
	if [ "$(psql_ -c "SELECT count(*) FROM pg_catalog.pg_available_extensions WHERE name = 'http'")" = 0 ]; then
		na sync_http 'n/a (pgsql-http not installed into this PostgreSQL)'
		return 0
	fi
	psql_ -c "CREATE EXTENSION IF NOT EXISTS http"
	sed "s|@URL@|http://127.0.0.1:$NGINX_PORT$ERRORS_PATH|; s|@BODY@|$REQUEST_BODY|" \
		"$BENCH/http_post.sql" >"$WORKDIR/http_post.sql"
	alternate sync_http \
		'PGOPTIONS="$PGOPTIONS -c edusync.forward=sync" pgbench_tps create_json.sql 1' \
		'pgbench_tps http_post.sql 1'
}

# Sync create on one connection to nginx vs the floor: the same create
# without forwarding plus one keep-alive POST (wrk -c1), their times added.
bench_sync() {
	meta sync 'sync create, 1 connection, nginx' "create_sync_error, forward = sync" 'floor: create (off) + one keep-alive POST (wrk -c1)' 'creates/s' rate '≥ 0.80'
	local r s off post floor
	for r in $(seq 1 "$ROUNDS"); do
		reset_tables
		if [ $((r % 2)) = 1 ]; then
			s=$(PGOPTIONS="$PGOPTIONS -c edusync.forward=sync" pgbench_tps create_json.sql 1)
			reset_tables; off=$(pgbench_tps create_json.sql 1)
			post=$(wrk_rate "$ERRORS_PATH" "$WORKDIR/post_error.lua" 1)
		else
			post=$(wrk_rate "$ERRORS_PATH" "$WORKDIR/post_error.lua" 1)
			off=$(pgbench_tps create_json.sql 1)
			reset_tables; s=$(PGOPTIONS="$PGOPTIONS -c edusync.forward=sync" pgbench_tps create_json.sql 1)
		fi
		floor=$(python3 -c "print(1 / (1 / $off + 1 / $post))")
		step "  sync round $r: create off $off/s, POST $post/s"
		sample sync "$r" "$s" "$floor"
	done
}

# BULK_N creates in one statement vs COPY of the same rows (same PK and FK).
bench_bulk() {
	meta bulk "$BULK_N creates in one statement" 'create_sync_errors(profile, jsonb array)' 'COPY of the same rows (same PK, FK)' ms time '≥ 0.50'
	if ! has_function 'edusync.create_sync_errors(text,jsonb)'; then
		na bulk 'n/a (function missing)'
		return
	fi
	psql_ <<-EOF
	DROP TABLE IF EXISTS bench.bulk_rows, bench.bulk_bodies;
	CREATE TABLE bench.bulk_rows AS
		SELECT gen_random_uuid() AS id, g FROM generate_series(1, $BULK_N) g;
	CREATE TABLE bench.bulk_bodies AS
		SELECT jsonb_agg(jsonb_build_object(
			'@odata.type', '#microsoft.graph.educationSynchronizationError',
			'id', id, 'entryType', 'Student', 'errorCode', 'UnsynchronizableChange',
			'errorMessage', 'Student cannot be updated because the source data changed its key.',
			'joiningValue', 'student' || g || '@testschool.edu',
			'recordedDateTime', '2017-07-05T00:52:45Z',
			'reportableIdentifier', 'student' || g) ORDER BY g) AS b
		FROM bench.bulk_rows;
	COPY (SELECT 'bench-profile', id, 'Student', 'UnsynchronizableChange',
			'Student cannot be updated because the source data changed its key.',
			'student' || g || '@testschool.edu', '2017-07-05T00:52:45Z', 'student' || g
		  FROM bench.bulk_rows ORDER BY g) TO '$WORKDIR/bulk.csv' (FORMAT csv);
	EOF
	local create="SELECT count(*) FROM edusync.create_sync_errors('bench-profile', (SELECT b FROM bench.bulk_bodies))"
	local copy="COPY bench.plain_errors (profile_id, id, entry_type, error_code, error_message, joining_value, recorded_date_time, reportable_identifier) FROM '$WORKDIR/bulk.csv' (FORMAT csv)"
	alternate bulk 'statement_ms "$create"' 'statement_ms "$copy"'
	psql_ -c "DROP TABLE bench.bulk_rows, bench.bulk_bodies"
}

# SYNC_BULK_N errors in one create_sync_errors with forward = sync (sent in
# $batch requests of 20) vs the same errors by as many single sync creates
# in one statement (one keep-alive POST each); nginx answers both.
bench_sync_bulk() {
	meta sync_bulk "$SYNC_BULK_N sync creates in one statement, nginx" 'create_sync_errors, forward = sync ($batch of 20)' 'create_sync_error per element, forward = sync (one POST each)' ms time '> 1'
	if ! has_function 'edusync.create_sync_errors(text,jsonb)'; then
		na sync_bulk 'n/a (function missing)'
		return
	fi
	psql_ <<-EOF
	DROP TABLE IF EXISTS bench.sync_bulk_bodies;
	CREATE TABLE bench.sync_bulk_bodies AS
		SELECT jsonb_agg(jsonb_build_object(
			'@odata.type', '#microsoft.graph.educationSynchronizationError',
			'entryType', 'Student', 'errorCode', 'UnsynchronizableChange',
			'errorMessage', 'Student cannot be updated because the source data changed its key.',
			'joiningValue', 'student' || g || '@testschool.edu',
			'recordedDateTime', '2017-07-05T00:52:45Z',
			'reportableIdentifier', 'student' || g) ORDER BY g) AS b
		FROM generate_series(1, $SYNC_BULK_N) g;
	EOF
	local bulk="SELECT count(*) FROM edusync.create_sync_errors('bench-profile', (SELECT b FROM bench.sync_bulk_bodies))"
	local single="SELECT count(edusync.create_sync_error('bench-profile', e)) FROM bench.sync_bulk_bodies, jsonb_array_elements(b) e"
	alternate sync_bulk \
		'PGOPTIONS="$PGOPTIONS -c edusync.forward=sync" statement_ms "$bulk"' \
		'PGOPTIONS="$PGOPTIONS -c edusync.forward=sync" statement_ms "$single"' \
		'[ "$(psql_ -c "SELECT count(*) FROM edusync.deliveries WHERE status = '"'"'delivered'"'"'")" = "$SYNC_BULK_N" ] ||
			{ echo "sync_bulk: not every error was recorded delivered" >&2; false; }'
	psql_ -c "DROP TABLE bench.sync_bulk_bodies"
}

# Commit-to-delivered on an idle server: LAT_N single commits, 20 ms apart,
# created_at (the start of the committing transaction) to delivered_at.
# Baseline: the call time of a sync create on one connection (pgbench -c1),
# what sending inside the call costs instead.
bench_latency() {
	meta lat_median 'commit-to-delivered, idle server: median' 'async create, one commit' 'sync create call time, 1 connection' ms time 'keep (1.0 ms)'
	meta lat_p99 'commit-to-delivered, idle server: p99' 'async create, one commit' 'sync create call time, 1 connection' ms time 'keep (2.1 ms)'
	local r sync_ms stats
	set_batch_size 1
	for r in $(seq 1 "$ROUNDS"); do
		reset_tables
		sync_ms=$(python3 -c "print(1000 / $(PGOPTIONS="$PGOPTIONS -c edusync.forward=sync" pgbench_tps create_json.sql 1))")
		reset_tables
		# the sleep ends its own transaction, so each create's transaction
		# starts right before the create
		psql_ -c "SET edusync.forward = 'async'" -c "DO \$\$
			BEGIN
				FOR i IN 1..$LAT_N LOOP
					PERFORM pg_sleep(0.02);
					COMMIT;
					PERFORM edusync.create_sync_error('bench-profile', 'Student', 'X', 'latency ' || i);
					COMMIT;
				END LOOP;
			END \$\$"
		wait_drained
		stats=$(psql_ -F ' ' -c "SELECT
			percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), count(*)
			FROM (SELECT extract(epoch FROM d.delivered_at - e.created_at) * 1000 AS ms
				  FROM edusync.deliveries d JOIN edusync.sync_errors e
				  ON e.profile_id = d.profile_id AND e.id = d.error_id
				  WHERE d.status = 'delivered') s")
		set -- $stats
		[ "$3" = "$LAT_N" ] || { echo "only $3 of $LAT_N latency probes delivered" >&2; return 1; }
		sample lat_median "$r" "$1" "$sync_ms"
		sample lat_p99 "$r" "$2" "$sync_ms"
	done
}

# Worker private memory after RSS_N deliveries vs after RSS_FIRST.
bench_rss() {
	meta rss "worker RssAnon after $RSS_N deliveries" "after $RSS_N" "after $RSS_FIRST" kB time 'within 10% (ratio ≥ 0.91)'
	set_batch_size 1
	reset_tables
	PSQL="$PG_BIN/psql" PROFILE=bench-profile TIMEOUT=$WAIT_MAX \
		bash "$BENCH/worker_rss.sh" "$RSS_N" 10000 "$RSS_FIRST" | tee "$WORKDIR/rss.log" >&2
	local line
	line=$(grep '^RESULT' "$WORKDIR/rss.log")
	sample rss 1 "$(echo "$line" | sed 's/.*last_anon_kb=\([0-9]*\).*/\1/')" \
		"$(echo "$line" | sed 's/.*first_anon_kb=\([0-9]*\).*/\1/')"
}

# Async drain of an N backlog: created in one transaction while the worker
# is paused (SIGSTOP: it spends no attempt and no backoff), then ANALYZE
# (or, "fresh", the planner statistics of both tables deleted, as on a
# table never analyzed), then the worker resumed; rate = delivered /
# (last delivered_at - resume time).  A drain that takes longer than
# DRAIN_TIMEOUT is cut short: its rate is over what was delivered by then,
# and a note says so.  Prints the rate.
drain_once() {
	local n=$1 mode=$2 label=$3 pid t0 t1 delivered deadline
	reset_tables
	wait_drained
	pid=$(worker_pid)
	[ -n "$pid" ] || { echo "no delivery worker" >&2; return 1; }
	sleep 0.2	# let it settle into its wait
	echo "$pid" >"$WORKDIR/paused_worker"
	kill -STOP "$pid"
	psql_ -c "SET edusync.forward = 'async'" -c "SELECT count(edusync.create_sync_error('bench-profile', 'Student',
		'UnsynchronizableChange', 'drain ' || g)) FROM generate_series(1, $n) g" >/dev/null
	if [ "$mode" = analyzed ]; then
		psql_ -c "ANALYZE edusync.sync_errors, edusync.deliveries"
	else
		psql_ -c "DELETE FROM pg_statistic WHERE starelid IN
			('edusync.sync_errors'::regclass, 'edusync.deliveries'::regclass)"
	fi
	local perf_pid=
	if [ -n "${PERF_DIR:-}" ]; then
		mkdir -p "$PERF_DIR"
		perf record -q -g -p "$pid" -o "$PERF_DIR/$(echo "$label" | tr -c 'A-Za-z0-9_\n' _).data" >/dev/null 2>&1 &
		perf_pid=$!
		sleep 0.5
	fi
	cpu0=$(proc_cpu_ticks "$pid")
	t0=$(date +%s.%N)
	kill -CONT "$pid"
	: >"$WORKDIR/paused_worker"
	deadline=$((SECONDS + DRAIN_TIMEOUT))
	while [ "$(psql_ -c "SELECT count(*) FROM edusync.deliveries WHERE status = 'pending'")" != 0 ]; do
		[ "$SECONDS" -lt "$deadline" ] || break
		sleep 0.05
	done
	cpu1=$(proc_cpu_ticks "$pid")
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid"; wait "$perf_pid" || true
	fi
	t1=$(psql_ -c "SELECT extract(epoch FROM max(delivered_at)) FROM edusync.deliveries")
	delivered=$(psql_ -c "SELECT count(*) FROM edusync.deliveries WHERE status = 'delivered'")
	[ "$delivered" -gt 0 ] || { echo "drain: nothing delivered in ${DRAIN_TIMEOUT}s" >&2; return 1; }
	if [ "$delivered" != "$n" ]; then
		[ "$(psql_ -c "SELECT count(*) FROM edusync.deliveries WHERE status = 'failed'")" = 0 ] ||
			{ echo "drain: deliveries failed" >&2; return 1; }
		note "$label: cut short after ${DRAIN_TIMEOUT} s with $delivered of $n delivered; the rate is over those."
	fi
	# the worker's own CPU (user + system), from /proc, over the drain
	[ "$delivered" -gt 0 ] && printf '%s\t%s\n' "$label" \
		"$(python3 -c "print(round(($cpu1 - $cpu0) / $(getconf CLK_TCK) * 1e6 / $delivered, 1))")" >>"$WORKDIR/drain_cpu.tsv"
	python3 -c "print($delivered / ($t1 - $t0))"
}
# utime + stime of a process, in clock ticks
proc_cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}
bench_drain() {
	meta drain "async drain, $DRAIN_N backlog, after ANALYZE" 'worker, batch_size 1' "nginx ceiling, wrk -c4" 'errors/s' rate '≥ 5,000/s absolute'
	meta drain_small "async drain, $DRAIN_SMALL backlog, after ANALYZE" 'worker, batch_size 1' "nginx ceiling, wrk -c4" 'errors/s' rate ''
	meta drain_large "async drain, $DRAIN_LARGE backlog, after ANALYZE" 'worker, batch_size 1' "nginx ceiling, wrk -c4" 'errors/s' rate ''
	meta drain_scale "async drain: $DRAIN_LARGE backlog rate vs $DRAIN_SMALL" "$DRAIN_LARGE backlog rate" "$DRAIN_SMALL backlog rate" 'errors/s' rate '≥ 0.80'
	meta drain_fresh "async drain, $DRAIN_N backlog, fresh table (no statistics)" 'worker, batch_size 1' "nginx ceiling, wrk -c4" 'errors/s' rate '≥ 10,000/s absolute'
	meta drain_batch "async drain, $DRAIN_N backlog, fresh table, batch_size 20" 'worker, $batch of 20' 'nginx $batch ceiling × 20, wrk -c4' 'errors/s' rate '≥ 25,000/s absolute'
	meta drain_batch_an "async drain, $DRAIN_N backlog, after ANALYZE, batch_size 20" 'worker, $batch of 20' 'nginx $batch ceiling × 20, wrk -c4' 'errors/s' rate ''
	local r ceil bceil mid small large fresh batch batch_an
	: >"$WORKDIR/drain_cpu.tsv"
	for r in $(seq 1 "$ROUNDS"); do
		ceil=$(wrk_rate "$ERRORS_PATH" "$WORKDIR/post_error.lua" 4)
		bceil=$(wrk_rate '/$batch' "$WORKDIR/post_batch.lua" 4)
		bceil=$(python3 -c "print($bceil * 20)")
		step "  drain round $r: nginx ceiling $ceil errors/s, \$batch ceiling $bceil errors/s"
		set_batch_size 1
		if [ $((r % 2)) = 1 ]; then
			small=$(drain_once "$DRAIN_SMALL" analyzed "round $r, $DRAIN_SMALL after ANALYZE")
			mid=$(drain_once "$DRAIN_N" analyzed "round $r, $DRAIN_N after ANALYZE")
			large=$(drain_once "$DRAIN_LARGE" analyzed "round $r, $DRAIN_LARGE after ANALYZE")
			fresh=$(drain_once "$DRAIN_N" fresh "round $r, $DRAIN_N fresh")
		else
			fresh=$(drain_once "$DRAIN_N" fresh "round $r, $DRAIN_N fresh")
			large=$(drain_once "$DRAIN_LARGE" analyzed "round $r, $DRAIN_LARGE after ANALYZE")
			mid=$(drain_once "$DRAIN_N" analyzed "round $r, $DRAIN_N after ANALYZE")
			small=$(drain_once "$DRAIN_SMALL" analyzed "round $r, $DRAIN_SMALL after ANALYZE")
		fi
		set_batch_size 20
		batch=$(drain_once "$DRAIN_N" fresh "round $r, $DRAIN_N fresh, batch_size 20")
		batch_an=$(drain_once "$DRAIN_N" analyzed "round $r, $DRAIN_N after ANALYZE, batch_size 20")
		set_batch_size 1
		while IFS=$'\t' read -r label us; do
			note "$label: worker CPU $us µs per delivery"
		done <"$WORKDIR/drain_cpu.tsv"
		: >"$WORKDIR/drain_cpu.tsv"
		sample drain "$r" "$mid" "$ceil"
		sample drain_small "$r" "$small" "$ceil"
		sample drain_large "$r" "$large" "$ceil"
		sample drain_scale "$r" "$large" "$small"
		sample drain_fresh "$r" "$fresh" "$ceil"
		sample drain_batch "$r" "$batch" "$bceil"
		sample drain_batch_an "$r" "$batch_an" "$bceil"
	done
}

# list_sync_errors: the first page and a deep page (by skip, and by the
# skiptoken of @odata.nextLink when the function takes one) of LIST_N
# errors in one profile, per call on one connection; baseline: SELECT 1 on
# the same connection (the round trip floor), and the first page for deep ones.
bench_list() {
	local deep=$((LIST_N - 200)) token=
	meta list_first "list_sync_errors first page (top 100), $LIST_N errors" 'first page' 'SELECT 1 (round-trip floor)' ms time '< 2 ms'
	meta list_skip "list_sync_errors deep page by skip=$deep" "skip=$deep" 'first page' ms time '< 2 ms'
	meta list_token "list_sync_errors deep page by \$skiptoken" "skiptoken near row $deep" 'first page' ms time '< 2 ms'
	psql_ -c "INSERT INTO edusync.sync_profiles VALUES ('list-profile', 'list') ON CONFLICT DO NOTHING"
	step "  creating $LIST_N errors in profile list-profile"
	psql_ -c "SELECT count(edusync.create_sync_error('list-profile', 'Student', 'UnsynchronizableChange',
		'list ' || g, recorded_date_time => '2020-01-01'::timestamptz + g * interval '1 second'))
		FROM generate_series(1, $LIST_N) g" >/dev/null
	psql_ -c "VACUUM ANALYZE edusync.sync_errors"
	echo "SELECT 1;" >"$WORKDIR/select1.sql"
	echo "SELECT edusync.list_sync_errors('list-profile', 100, 0);" >"$WORKDIR/list_first.sql"
	echo "SELECT edusync.list_sync_errors('list-profile', 100, $deep);" >"$WORKDIR/list_skip.sql"
	if has_function 'edusync.list_sync_errors(text,integer,integer,text)'; then
		token=$(psql_ -c "SELECT edusync.list_sync_errors('list-profile', 100, $((deep - 100)))->>'@odata.nextLink'" |
			python3 -c 'import sys, urllib.parse as u
q = u.parse_qs(u.urlsplit(sys.stdin.read().strip()).query)
print(q.get("$skiptoken", [""])[0])')
		if [ -n "$token" ]; then
			echo "SELECT edusync.list_sync_errors('list-profile', 100, 0, '${token//\'/\'\'}');" >"$WORKDIR/list_token.sql"
		else
			na list_token 'n/a (no $skiptoken in @odata.nextLink)'
		fi
	else
		na list_token 'n/a (function missing)'
	fi
	local r one first skip tok
	for r in $(seq 1 "$ROUNDS"); do
		if [ $((r % 2)) = 1 ]; then
			one=$(pgbench_tps select1.sql 1); first=$(pgbench_tps list_first.sql 1)
			skip=$(pgbench_tps list_skip.sql 1)
			[ -n "$token" ] && tok=$(pgbench_tps list_token.sql 1)
		else
			[ -n "$token" ] && tok=$(pgbench_tps list_token.sql 1)
			skip=$(pgbench_tps list_skip.sql 1)
			first=$(pgbench_tps list_first.sql 1); one=$(pgbench_tps select1.sql 1)
		fi
		ms() { python3 -c "print(1000 / $1)"; }
		sample list_first "$r" "$(ms "$first")" "$(ms "$one")"
		sample list_skip "$r" "$(ms "$skip")" "$(ms "$first")"
		[ -n "$token" ] && sample list_token "$r" "$(ms "$tok")" "$(ms "$first")"
	done
	return 0
}

# The delivery_queue view over QUEUE_N delivery rows (written directly:
# delivered over the last two hours, 1% failed, 0.1% pending but not due).
bench_queue() {
	meta queue "delivery_queue view, $QUEUE_N delivery rows" 'SELECT * FROM edusync.delivery_queue' 'SELECT 1 (round-trip floor)' ms time '< 5 ms'
	psql_ -c "INSERT INTO edusync.sync_profiles VALUES ('queue-profile', 'queue') ON CONFLICT DO NOTHING"
	step "  writing $QUEUE_N errors and deliveries"
	psql_ <<-EOF
	CREATE TEMP TABLE q AS SELECT gen_random_uuid() AS id, g FROM generate_series(1, $QUEUE_N) g;
	INSERT INTO edusync.sync_errors (profile_id, id, entry_type, error_code, error_message, recorded_date_time)
		SELECT 'queue-profile', id, 'Student', 'X', 'queue ' || g, now() FROM q;
	INSERT INTO edusync.deliveries (profile_id, error_id, status, attempts, next_attempt_at,
			last_status, remote_id, delivered_at, created_at)
		SELECT 'queue-profile', id,
			CASE WHEN g % 1000 = 0 THEN 'pending' WHEN g % 100 = 0 THEN 'failed' ELSE 'delivered' END,
			1, CASE WHEN g % 1000 = 0 THEN now() + interval '1 day' END, 201, 'x',
			CASE WHEN g % 100 <> 0 THEN now() - (g % 7200) * interval '1 second' END,
			now() - (g % 7200) * interval '1 second'
		FROM q;
	EOF
	psql_ -c "VACUUM ANALYZE edusync.sync_errors, edusync.deliveries"
	# the first VACUUM right after the load leaves most pages not all-visible
	# (the failed/pending index-only scans then fetch ~9,000 heap pages); a
	# second one sets the visibility map, as autovacuum would on a live table
	psql_ -c "VACUUM edusync.deliveries"
	# the first read seeds delivered_last_hour's ring (one GROUP BY over the
	# hour): its time is a note, the rounds time the reads after it
	has_function 'edusync.delivered_last_hour()' &&
		note "delivery_queue: first read (seeds the ring) $(statement_ms 'SELECT * FROM edusync.delivery_queue') ms; counting the hour from the index instead: $(statement_ms "SELECT count(*) FROM edusync.deliveries WHERE status = 'delivered' AND delivered_at > now() - interval '1 hour'") ms"
	echo "SELECT * FROM edusync.delivery_queue;" >"$WORKDIR/queue.sql"
	local r one q
	for r in $(seq 1 "$ROUNDS"); do
		if [ $((r % 2)) = 1 ]; then
			one=$(pgbench_tps select1.sql 1); q=$(pgbench_tps queue.sql 1)
		else
			q=$(pgbench_tps queue.sql 1); one=$(pgbench_tps select1.sql 1)
		fi
		sample queue "$r" "$(python3 -c "print(1000 / $q)")" "$(python3 -c "print(1000 / $one)")"
	done
}

# The queue under two producers: two pgbench clients create async errors
# (create_json.sql, edusync.forward = async) for SECS while the worker
# drains to nginx; the pending count (delivery_queue) is read every second.
# Figure: deliveries recorded during the producers' run vs errors created
# in it (1.0: the worker kept up); notes: the most pending seen and how
# long the rest took to drain once the producers stopped.
bench_bounded() {
	meta bounded "queue under 2 async producers, ${SECS} s" 'delivered during the run' 'created during the run' errors rate 'bounded (≈ 1.0)'
	local r pid t0 t1 maxp p created delivered drain rate
	set_batch_size 1
	for r in $(seq 1 "$ROUNDS"); do
		reset_tables
		wait_drained
		t0=$(psql_ -c "SELECT extract(epoch FROM clock_timestamp())")
		PGOPTIONS="$PGOPTIONS -c edusync.forward=async" "$PG_BIN/pgbench" -n -M prepared -c 2 -j 2 \
			-T "$SECS" -f "$WORKDIR/create_json.sql" >"$WORKDIR/bounded.out" 2>"$WORKDIR/pgbench.err" &
		pid=$!
		maxp=0
		while kill -0 "$pid" 2>/dev/null; do
			p=$(psql_ -c "SELECT pending FROM edusync.delivery_queue")
			[ "$p" -gt "$maxp" ] && maxp=$p
			sleep 1
		done
		wait "$pid" || { echo "pgbench (two producers) failed:" >&2; tail -n 5 "$WORKDIR/pgbench.err" >&2; return 1; }
		t1=$(psql_ -c "SELECT extract(epoch FROM clock_timestamp())")
		created=$(psql_ -c "SELECT count(*) FROM edusync.deliveries")
		delivered=$(psql_ -c "SELECT count(*) FROM edusync.deliveries WHERE status = 'delivered'
			AND delivered_at <= to_timestamp($t1)")
		wait_drained
		drain=$(psql_ -c "SELECT greatest(0, round((extract(epoch FROM max(delivered_at)) - $t1)::numeric, 2)) FROM edusync.deliveries")
		rate=$(python3 -c "print(round($created / ($t1 - $t0)))")
		note "bounded round $r: $created created ($rate/s over ${SECS} s), $delivered delivered in the run, at most $maxp pending (sampled each second), the rest drained ${drain} s after the producers stopped"
		sample bounded "$r" "$delivered" "$created"
	done
}

# --- the run ---------------------------------------------------------------

# apt-get only when something is missing (another apt may hold the lock)
missing=
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=" $p"
done
if [ -n "$missing" ]; then
	install_deps
else
	step "packages present: $(echo $PACKAGES)"
fi
build_install
make_workdir
SAMPLES=$WORKDIR/samples.tsv
: >"$SAMPLES"
start_nginx
start_cluster "shared_preload_libraries = 'edusync'" "synchronous_commit = off" \
	"autovacuum = off" "max_wal_size = 4GB" "shared_buffers = 256MB" \
	"edusync.graph_url = 'http://127.0.0.1:$NGINX_PORT'" "edusync.bearer_token = 'bench'" \
	${MAX_IN_FLIGHT:+"edusync.max_in_flight = $MAX_IN_FLIGHT"}
export PGOPTIONS="-c client_min_messages=warning"
psql_ -f "$BENCH/setup.sql"
cp "$BENCH"/*.sql "$WORKDIR/"
echo "SELECT 1;" >"$WORKDIR/select1.sql"
chmod -R a+rX "$WORKDIR"
deadline=$((SECONDS + 30))
until [ -n "$(worker_pid)" ]; do
	[ "$SECONDS" -lt "$deadline" ] || { echo "the delivery worker did not start" >&2; exit 1; }
	sleep 0.2
done

for name in $ONLY; do
	step "benchmark: $name"
	started=$SECONDS
	set +e
	(set -e; "bench_$name") &
	BENCH_CHILD=$!
	wait "$BENCH_CHILD"
	rc=$?
	BENCH_CHILD=
	set -e
	if [ $rc -ne 0 ]; then
		step "  $name FAILED (exit $rc)"
		printf 'FAILED\t%s\n' "$name" >>"$SAMPLES"
	fi
	step "  $name took $((SECONDS - started)) s"
done

# --- the report ------------------------------------------------------------

# a failed benchmark's figures without samples: say so
for key in $(awk -F'\t' '$1 == "META" { print $2 }' "$SAMPLES"); do
	grep -q "^S	$key	" "$SAMPLES" || grep -q "^NA	$key	" "$SAMPLES" ||
		na "$key" 'failed (see the run log)'
done
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
elapsed=$((SECONDS - BENCH_START))
{
	echo "# edusync benchmarks"
	echo
	echo "Written by \`bash bench/run-all.sh\`$([ "$QUICK" = 1 ] && echo " (QUICK=1)") on $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "in $((elapsed / 60)) min $((elapsed % 60)) s."
	echo
	echo "Machine: $(nproc) cores, $cpu; PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}');"
	echo "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), one worker process, on 127.0.0.1."
	echo "Cluster: fsync = off, synchronous_commit = off, autovacuum = off, shared_buffers = 256MB."
	echo
	echo "Parameters: ROUNDS=$ROUNDS SECS=$SECS CLIENTS=$CLIENTS BULK_N=$BULK_N LIST_N=$LIST_N"
	echo "DRAIN_N=$DRAIN_N DRAIN_SMALL=$DRAIN_SMALL DRAIN_LARGE=$DRAIN_LARGE QUEUE_N=$QUEUE_N"
	echo "DRAIN_TIMEOUT=$DRAIN_TIMEOUT LAT_N=$LAT_N RSS_N=$RSS_N RSS_FIRST=$RSS_FIRST${MAX_IN_FLIGHT:+ MAX_IN_FLIGHT=$MAX_IN_FLIGHT}."
	echo "SYNC_BULK_N=$SYNC_BULK_N (sync_bulk)."
} >"$WORKDIR/header.md"
mkdir -p "$OUT"
cp "$SAMPLES" "$OUT/results.tsv"	# the raw samples, for another look
python3 "$BENCH/report.py" "$SAMPLES" "$WORKDIR/header.md" "$OUT/results.md" "$WORKDIR/plot.dat"
# the log axis starts a decade below the smallest ratio
ymin=$(awk 'NR == 1 || $3 < m { m = $3 }
	END { x = (m > 0) ? log(m) / log(10) + 1e-9 : -3; e = int(x); if (x < e) e--; e--; if (e > -1) e = -1; printf "1e%d", e }' "$WORKDIR/plot.dat")
cat >"$WORKDIR/plot.gp" <<-EOF
set terminal pngcairo size 1400,800 noenhanced font ",10"
set output "$OUT/results.png"
set title "edusync: each figure against its baseline, measured in the same run (baseline = 1; above 1 = contender better; log scale)"
set style fill solid 0.6 border -1
set boxwidth 0.38
set xtics rotate by -35 nomirror
set ylabel "normalised to baseline"
set grid ytics
set key outside top center horizontal
set logscale y
set yrange [$ymin:4]
set format y "%g"
set bmargin 12
plot "$WORKDIR/plot.dat" using (\$0 - 0.2):(1):xtic(1) with boxes title "baseline", \
     "" using (\$0 + 0.2):2 with boxes title "contender (median)", \
     "" using (\$0 + 0.2):2:3:4 with yerrorbars lc rgb "black" pt 0 title "min–max"
EOF
if [ -s "$WORKDIR/plot.dat" ]; then
	gnuplot "$WORKDIR/plot.gp"
fi
cat "$OUT/results.md"
step "results: $OUT/results.md, $OUT/results.png ($elapsed s)"
# the exit status says whether every benchmark ran
! grep -q '^FAILED' "$SAMPLES"
