#!/usr/bin/env bash
# The README's first command: install, build, start the fake Graph on
# 127.0.0.1 and a throwaway cluster with edusync preloaded and pointed at
# it, create a profile and errors (one answered at once, the others queued
# for the delivery worker), then print what Graph received and the
# delivery rows.  Everything it started is stopped on exit.
source "$(dirname "$0")/lib.sh"

install_deps
build_install
make_workdir

GRAPH_PORT=$(free_port)
step "starting the fake Graph on 127.0.0.1:$GRAPH_PORT"
python3 "$EDUSYNC_SRC/test/fake_graph.py" --port "$GRAPH_PORT" \
	--port-file "$WORKDIR/graph.port" --token demo-token >/dev/null 2>&1 &
GRAPH_PID=$!
trap 'kill "$GRAPH_PID" 2>/dev/null; cleanup' EXIT
for _ in $(seq 1 100); do [ -s "$WORKDIR/graph.port" ] && break; sleep 0.1; done
[ -s "$WORKDIR/graph.port" ] || { echo "the fake Graph did not start" >&2; exit 1; }

# the token lives in a file only the server can read (the recommended way)
install -m 600 -o postgres /dev/null "$WORKDIR/graph.token" 2>/dev/null ||
	install -m 600 /dev/null "$WORKDIR/graph.token"
echo demo-token >"$WORKDIR/graph.token"

start_cluster "shared_preload_libraries = 'edusync'" \
	"edusync.graph_url = 'http://127.0.0.1:$GRAPH_PORT/beta'" \
	"edusync.bearer_token_file = '$WORKDIR/graph.token'"

psql_demo() {
	"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"
}

step "creating the extension, a profile and errors"
psql_demo -At <<'SQL'
CREATE EXTENSION edusync;
INSERT INTO edusync.sync_profiles (id, display_name)
	VALUES ('86d3d8c4-8b3e-4b1f-9d2c-6f0a1e5b7c21', 'Contoso High School');
\echo '--- the 201 body (forwarding off: stored only)'
SELECT jsonb_pretty(edusync.create_sync_error('86d3d8c4-8b3e-4b1f-9d2c-6f0a1e5b7c21', '{
	"@odata.type": "#microsoft.graph.educationSynchronizationError",
	"id": "bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc",
	"entryType": "Student",
	"errorCode": "UnsynchronizableChange",
	"errorMessage": "Student cannot be updated because the source data changed its key.",
	"joiningValue": "richard.2wilson@testschool.edu",
	"recordedDateTime": "2017-07-05T00:52:45Z",
	"reportableIdentifier": "richard.2wilson"
}'));
\echo '--- async: three errors queued in one transaction, sent after commit'
BEGIN;
SET LOCAL edusync.forward = 'async';
SELECT edusync.create_sync_error('86d3d8c4-8b3e-4b1f-9d2c-6f0a1e5b7c21',
	entry_type => 'Teacher', error_code => 'UnsynchronizableChange',
	error_message => 'Teacher ' || g || ' cannot be updated.',
	joining_value => 'teacher' || g || '@testschool.edu')->>'id'
FROM generate_series(1, 3) g;
COMMIT;
SQL

step "waiting for the delivery worker"
for _ in $(seq 1 300); do
	left=$(psql_demo -At -c "SELECT count(*) FROM edusync.deliveries WHERE status = 'pending'")
	[ "$left" = 0 ] && break
	sleep 0.1
done

echo "--- what the fake Graph received"
python3 - "$GRAPH_PORT" <<'PY'
import json, sys, urllib.request
port = sys.argv[1]
with urllib.request.urlopen("http://127.0.0.1:%s/_fake/requests" % port) as r:
    for req in json.load(r):
        print("%s %s -> %s" % (req["method"], req["raw_path"], req["status"]))
        print("   client-request-id: %s" % req["headers"].get("client-request-id"))
        print("   %s" % json.dumps(req["json"]))
PY
echo "--- edusync.deliveries"
psql_demo -c "SELECT error_id, status, attempts, last_status, remote_id IS NOT NULL AS has_remote_id,
	delivered_at - created_at AS commit_to_delivered FROM edusync.deliveries ORDER BY created_at"
echo "--- edusync.worker_status()"
psql_demo -c "SELECT datname, state, activity, sent, delivered FROM edusync.worker_status()"
[ "$left" = 0 ]
