/*-------------------------------------------------------------------------
 *
 * outbox.h
 *	  The home of every statement on edusync.deliveries, the outbox of
 *	  async mode and the record of every forwarded error; and the wake-up
 *	  of the delivery worker when a transaction that queued one commits.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_OUTBOX_H
#define EDUSYNC_OUTBOX_H

#include "utils/snapshot.h"

#include "storage/itemptr.h"

#include "policy.h"
#include "sync_error.h"

/* A due delivery, with the error to send. */
typedef struct OutboxRow
{
	EdusyncError err;
	int			attempts;		/* sends before this one */
	ItemPointerData tid;		/* where the claim read its row */
} OutboxRow;

/* Backends: one error's delivery row. */
extern void OutboxEnqueue(const EdusyncError *err, bool fresh);
extern void OutboxRecordDelivered(const EdusyncError *err, bool fresh, int attempts,
								  long status, const char *remote_id);
extern bool OutboxHasDelivery(const EdusyncError *err);
extern uint64 OutboxRetryFailed(const char *profile_id);
extern void OutboxWakeAtCommit(void);
extern uint64 OutboxQueueUnsent(const char *profile_id, Datum ids, bool all);
extern bool OutboxSetOne(const char *profile_id, const pg_uuid_t *error_id,
						 const char *from_status, const char *reason);

/* The worker, inside a transaction with a snapshot. */
extern int	OutboxClaimDue(int limit, Datum *exclude, int nexclude,
						   TimestampTz from, OutboxRow **rows,
						   TimestampTz *next_due, TimestampTz *first_at);
extern void OutboxRecordVerdicts(int n, const char *const *profile_ids,
								 const pg_uuid_t *error_ids,
								 const ItemPointerData *tids,
								 const Verdict *verdicts);
extern uint64 OutboxPurgeDelivered(int retention_s, int limit);

/* delivered_last_hour (recent.c). */
extern uint64 OutboxCountDelivered(TimestampTz after, TimestampTz before);
extern int	OutboxDeliveredPerMinute(TimestampTz from, Snapshot snap,
									 TimestampTz **minutes, int64 **counts);
extern void OutboxNoteWaiting(int n, const char *const *profile_ids,
							  const pg_uuid_t *error_ids, const char *reason);

#endif							/* EDUSYNC_OUTBOX_H */
