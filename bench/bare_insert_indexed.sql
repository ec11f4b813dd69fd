-- baseline: a bare INSERT of the same row into a table with edusync.sync_errors' indexes
INSERT INTO bench.indexed_errors (profile_id, id, entry_type, error_code, error_message,
	joining_value, recorded_date_time, reportable_identifier)
VALUES ('bench-profile', gen_random_uuid(), 'Student', 'UnsynchronizableChange',
	'Student cannot be updated because the source data changed its key.',
	'richard.2wilson@testschool.edu', '2017-07-05T00:52:45Z', 'richard.2wilson');
