-- bench.create_unpinned with a Graph request body (forward = off)
SELECT bench.create_unpinned('bench-profile', '{
	"@odata.type": "#microsoft.graph.educationSynchronizationError",
	"entryType": "Student", "errorCode": "UnsynchronizableChange",
	"errorMessage": "Student cannot be updated because the source data changed its key.",
	"joiningValue": "richard.2wilson@testschool.edu",
	"recordedDateTime": "2017-07-05T00:52:45Z", "reportableIdentifier": "richard.2wilson"}');
