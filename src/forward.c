/*-------------------------------------------------------------------------
 *
 * forward.c
 *	  Where a new error goes after it is stored: nowhere (off), to Graph
 *	  inside the call (sync), or into the outbox for the worker (async).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "edusync.h"

/* Raise 55000 unless the library was preloaded (the contract says why). */
static void
RequirePreload(void)
{
	if (!edusync_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("forwarding needs edusync in shared_preload_libraries"),
				 errhint("Add edusync to shared_preload_libraries and restart the server: "
						 "only a library loaded at server start keeps its secret settings hidden "
						 "and runs the delivery worker.")));
}

/* Decide whether and how a newly stored error is forwarded. */
void
ForwardError(const EdusyncError *err)
{
	if (edusync_forward == EDUSYNC_FORWARD_OFF)
		return;
	RequirePreload();
	elog(ERROR, "forwarding is not built yet");
}
