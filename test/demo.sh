#!/usr/bin/env bash
# The README's first command: install, build, start a throwaway cluster,
# create the extension, make a profile and an error, print the JSON.
source "$(dirname "$0")/lib.sh"

install_deps
build_install
make_workdir
start_cluster
step "creating the extension, a profile and an error"
"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -At <<'SQL'
CREATE EXTENSION edusync;
INSERT INTO edusync.sync_profiles (id, display_name)
	VALUES ('86d3d8c4-8b3e-4b1f-9d2c-6f0a1e5b7c21', 'Contoso High School');
SELECT jsonb_pretty(edusync.create_sync_error('86d3d8c4-8b3e-4b1f-9d2c-6f0a1e5b7c21', '{
	"@odata.type": "#microsoft.graph.educationSynchronizationError",
	"entryType": "Student",
	"errorCode": "UnsynchronizableChange",
	"errorMessage": "Student cannot be updated because the source data changed its key.",
	"joiningValue": "richard.2wilson@testschool.edu",
	"recordedDateTime": "2017-07-05T00:52:45Z",
	"reportableIdentifier": "richard.2wilson"
}'));
SQL
