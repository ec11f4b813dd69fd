/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  Every statement on edusync.deliveries, in one place:
 *	  - backends queue an error (async), record a delivery done inside the
 *		call (sync), ask whether an error was ever forwarded (replays), and
 *		queue failed ones again (retry_failed);
 *	  - the delivery worker claims what is due and records verdicts;
 *	  - a transaction that queued anything wakes the worker at commit.
 *
 *	  All SQL runs through SPI with parameters from plans prepared once per
 *	  process, and qualifies every operator and function: the worker runs
 *	  it as a superuser with search_path = pg_catalog, pg_temp, in a
 *	  database whose owner may not be one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "outbox.h"
#include "registry.h"
#include "saved_plan.h"
#include "store.h"

static bool wake_at_commit = false;
static bool xact_callback_registered = false;

/* Queue the error for the worker, which sends it after commit. */
void
OutboxEnqueue(const EdusyncError *err)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[] = {TEXTOID, UUIDOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};

	values[0] = CStringGetTextDatum(err->profile_id);
	values[1] = UUIDPGetDatum((pg_uuid_t *) &err->id);
	SPI_connect();
	RunSavedPlan(&plan,
				 "INSERT INTO edusync.deliveries (profile_id, error_id) VALUES ($1, $2) "
				 "ON CONFLICT (profile_id, error_id) DO NOTHING",
				 2, types, values, nulls, false, 0);
	SPI_finish();
	OutboxWakeAtCommit();
}

/* Record a delivery done inside the call (sync mode). */
void
OutboxRecordDelivered(const EdusyncError *err, int attempts, long status,
					  const char *remote_id)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[] = {TEXTOID, UUIDOID, INT4OID, INT4OID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(err->profile_id);
	values[1] = UUIDPGetDatum((pg_uuid_t *) &err->id);
	values[2] = Int32GetDatum(attempts);
	values[3] = Int32GetDatum((int32) status);
	values[4] = TextParam(remote_id, &nulls[4]);

	SPI_connect();
	RunSavedPlan(&plan,
				 "INSERT INTO edusync.deliveries (profile_id, error_id, status, attempts, "
				 "next_attempt_at, last_status, remote_id, delivered_at) "
				 "VALUES ($1, $2, 'delivered', $3, NULL, $4, $5, pg_catalog.now()) "
				 "ON CONFLICT (profile_id, error_id) DO NOTHING",
				 5, types, values, nulls, false, 0);
	SPI_finish();
}

/* Was the error ever handed to forwarding (is there a delivery row)? */
bool
OutboxHasDelivery(const EdusyncError *err)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[] = {TEXTOID, UUIDOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	bool		found;

	values[0] = CStringGetTextDatum(err->profile_id);
	values[1] = UUIDPGetDatum((pg_uuid_t *) &err->id);
	SPI_connect();
	RunSavedPlan(&plan,
				 "SELECT 1 FROM edusync.deliveries "
				 "WHERE profile_id OPERATOR(pg_catalog.=) $1 "
				 "AND error_id OPERATOR(pg_catalog.=) $2",
				 2, types, values, nulls, false, 1);
	found = (SPI_processed == 1);
	SPI_finish();
	return found;
}

/*
 * Queue failed deliveries (of one profile, or of all when profile_id is
 * NULL) again with a fresh count of attempts; the worker is woken at
 * commit.  Returns how many.
 */
uint64
OutboxRetryFailed(const char *profile_id)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[] = {TEXTOID};
	Datum		values[1];
	char		nulls[1];
	uint64		n;

	values[0] = TextParam(profile_id, &nulls[0]);
	SPI_connect();
	RunSavedPlan(&plan,
				 "UPDATE edusync.deliveries "
				 "SET status = 'pending', attempts = 0, next_attempt_at = pg_catalog.now() "
				 "WHERE status OPERATOR(pg_catalog.=) 'failed' "
				 "AND ($1 IS NULL OR profile_id OPERATOR(pg_catalog.=) $1)",
				 1, types, values, nulls, false, 0);
	n = SPI_processed;
	SPI_finish();
	if (n > 0)
		OutboxWakeAtCommit();
	return n;
}

/* At commit, wake the worker if this transaction queued anything. */
static void
WakeAtCommit(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit)
				RegistryWakeWorker(MyDatabaseId);
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction's COMMIT PREPARED wakes (registry.c) */
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

/* Ask for the worker to be woken when this transaction commits. */
void
OutboxWakeAtCommit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(WakeAtCommit, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
}

/*
 * Read up to limit due deliveries, oldest due first, leaving out the error
 * ids in exclude[] (in flight or held back), into *rows (in the caller's
 * memory).  Returns how many, or -1 when the extension is not installed.
 * *next_due: when the next pending one not read is due (0: there may be
 * more due now; -1: none is pending).
 */
int
OutboxClaimDue(int limit, Datum *exclude, int nexclude, OutboxRow **rows,
			   TimestampTz *next_due)
{
	static SPIPlanPtr claim_plan = NULL;
	static SPIPlanPtr next_due_plan = NULL;
	static const Oid types[] = {UUIDARRAYOID, INT4OID};
	MemoryContext outer = CurrentMemoryContext;
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	int			n;

	*rows = NULL;
	*next_due = -1;
	if (!OidIsValid(get_extension_oid("edusync", true)))
		return -1;

	values[0] = PointerGetDatum(construct_array(exclude, nexclude, UUIDOID,
												UUID_LEN, false, TYPALIGN_CHAR));
	values[1] = Int32GetDatum(limit);

	SPI_connect();
	RunSavedPlan(&claim_plan,
				 "SELECT d.attempts, d.profile_id, " STORE_ERROR_COLUMNS("e.") " "
				 "FROM edusync.deliveries d "
				 "JOIN edusync.sync_errors e "
				 "ON e.profile_id OPERATOR(pg_catalog.=) d.profile_id "
				 "AND e.id OPERATOR(pg_catalog.=) d.error_id "
				 "WHERE d.status OPERATOR(pg_catalog.=) 'pending' "
				 "AND d.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now() "
				 "AND d.error_id OPERATOR(pg_catalog.<>) ALL ($1) "
				 "ORDER BY d.next_attempt_at LIMIT $2",
				 2, types, values, nulls, true, 0);

	n = (int) SPI_processed;
	*rows = MemoryContextAllocZero(outer, sizeof(OutboxRow) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *profile_id = TextColumn(tup, desc, 2, outer);

		(*rows)[i].attempts = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		StoreRowToError(tup, desc, 3, profile_id, outer, &(*rows)[i].err);
	}

	if (n < limit)
	{
		bool		isnull;
		Datum		d;

		/* every due one not excluded was read: when is the next one due? */
		RunSavedPlan(&next_due_plan,
					 "SELECT pg_catalog.min(next_attempt_at) FROM edusync.deliveries "
					 "WHERE status OPERATOR(pg_catalog.=) 'pending' "
					 "AND next_attempt_at OPERATOR(pg_catalog.>) pg_catalog.now()",
					 0, NULL, NULL, NULL, true, 1);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
						  &isnull);
		*next_due = isnull ? -1 : DatumGetTimestampTz(d);
	}
	else
		*next_due = 0;			/* there may be more: look again */

	SPI_finish();
	return n;
}

/* Record the verdicts on n deliveries, in the caller's transaction. */
void
OutboxRecordVerdicts(int n, const char *const *profile_ids,
					 const pg_uuid_t *error_ids, const Verdict *verdicts)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[] = {TEXTOID, UUIDOID, TEXTOID, INT4OID, TEXTOID,
	TEXTOID, FLOAT8OID};

	SPI_connect();
	for (int i = 0; i < n; i++)
	{
		const Verdict *v = &verdicts[i];
		Datum		values[7];
		char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};

		if (v->status == NULL)
			continue;			/* nothing to record */
		values[0] = CStringGetTextDatum(profile_ids[i]);
		values[1] = UUIDPGetDatum((pg_uuid_t *) &error_ids[i]);
		values[2] = CStringGetTextDatum(v->status);
		values[3] = Int32GetDatum((int32) v->last_status);
		nulls[3] = v->last_status > 0 ? ' ' : 'n';
		values[4] = TextParam(v->last_error, &nulls[4]);
		values[5] = TextParam(v->remote_id, &nulls[5]);
		values[6] = Float8GetDatum((double) v->delay_ms);

		RunSavedPlan(&plan,
					 "UPDATE edusync.deliveries SET status = $3, "
					 "attempts = attempts OPERATOR(pg_catalog.+) 1, "
					 "last_status = $4, last_error = $5, remote_id = $6, "
					 "delivered_at = CASE WHEN $3 OPERATOR(pg_catalog.=) 'delivered' "
					 "THEN pg_catalog.now() END, "
					 "next_attempt_at = CASE WHEN $3 OPERATOR(pg_catalog.=) 'pending' "
					 "THEN pg_catalog.now() OPERATOR(pg_catalog.+) "
					 "pg_catalog.make_interval(secs => $7 OPERATOR(pg_catalog./) 1000) END "
					 "WHERE profile_id OPERATOR(pg_catalog.=) $1 "
					 "AND error_id OPERATOR(pg_catalog.=) $2 "
					 "AND status OPERATOR(pg_catalog.=) 'pending'",
					 7, types, values, nulls, false, 0);
	}
	SPI_finish();
}

/*
 * Queue the errors of a profile (all, or those in ids) that were never
 * forwarded (created while forwarding was off); returns how many.
 */
uint64
OutboxQueueUnsent(const char *profile_id, Datum ids, bool all)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[] = {TEXTOID, UUIDARRAYOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	uint64		n;

	values[0] = CStringGetTextDatum(profile_id);
	values[1] = ids;
	nulls[1] = all ? 'n' : ' ';
	SPI_connect();
	RunSavedPlan(&plan,
				 "INSERT INTO edusync.deliveries (profile_id, error_id) "
				 "SELECT e.profile_id, e.id FROM edusync.sync_errors e "
				 "WHERE e.profile_id OPERATOR(pg_catalog.=) $1 "
				 "AND ($2 IS NULL OR e.id OPERATOR(pg_catalog.=) ANY ($2)) "
				 "ON CONFLICT (profile_id, error_id) DO NOTHING",
				 2, types, values, nulls, false, 0);
	n = SPI_processed;
	SPI_finish();
	if (n > 0)
		OutboxWakeAtCommit();
	return n;
}

/*
 * Move one delivery from status from_status to pending (retry: from
 * failed) or to failed with reason (cancel: from pending).  Returns
 * whether it was in from_status.
 */
bool
OutboxSetOne(const char *profile_id, const pg_uuid_t *error_id,
			 const char *from_status, const char *reason)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[] = {TEXTOID, UUIDOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		found;

	values[0] = CStringGetTextDatum(profile_id);
	values[1] = UUIDPGetDatum((pg_uuid_t *) error_id);
	values[2] = CStringGetTextDatum(from_status);
	values[3] = TextParam(reason, &nulls[3]);
	SPI_connect();
	RunSavedPlan(&plan,
				 "UPDATE edusync.deliveries SET "
				 "status = CASE WHEN $3 OPERATOR(pg_catalog.=) 'failed' "
				 "THEN 'pending' ELSE 'failed' END, "
				 "attempts = CASE WHEN $3 OPERATOR(pg_catalog.=) 'failed' "
				 "THEN 0 ELSE attempts END, "
				 "next_attempt_at = CASE WHEN $3 OPERATOR(pg_catalog.=) 'failed' "
				 "THEN pg_catalog.now() END, "
				 "last_error = COALESCE($4, last_error) "
				 "WHERE profile_id OPERATOR(pg_catalog.=) $1 "
				 "AND error_id OPERATOR(pg_catalog.=) $2 "
				 "AND status OPERATOR(pg_catalog.=) $3",
				 4, types, values, nulls, false, 0);
	found = (SPI_processed == 1);
	SPI_finish();
	if (found && strcmp(from_status, "failed") == 0)
		OutboxWakeAtCommit();
	return found;
}

/*
 * Delete up to limit delivered rows older than retention_s seconds, in the
 * caller's transaction; returns how many.
 */
uint64
OutboxPurgeDelivered(int retention_s, int limit)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[] = {FLOAT8OID, INT4OID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	uint64		n;

	values[0] = Float8GetDatum((double) retention_s);
	values[1] = Int32GetDatum(limit);
	SPI_connect();
	RunSavedPlan(&plan,
				 "DELETE FROM edusync.deliveries WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
				 "SELECT ctid FROM edusync.deliveries "
				 "WHERE status OPERATOR(pg_catalog.=) 'delivered' "
				 "AND delivered_at OPERATOR(pg_catalog.<) (pg_catalog.now() "
				 "OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1)) "
				 "LIMIT $2))",
				 2, types, values, nulls, false, 0);
	n = SPI_processed;
	SPI_finish();
	return n;
}
