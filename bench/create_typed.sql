-- edusync.create_sync_error with typed arguments (forward = off)
SELECT edusync.create_sync_error('bench-profile', 'Student', 'UnsynchronizableChange',
	'Student cannot be updated because the source data changed its key.',
	'richard.2wilson@testschool.edu', 'richard.2wilson', '2017-07-05T00:52:45Z');
