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
 *	  process (a new error's delivery row goes in without a statement when
 *	  the table allows it: row_insert.c), and qualifies every operator and
 *	  function: the worker runs it as a superuser with search_path =
 *	  pg_catalog, pg_temp, in a database whose owner may not be one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "outbox.h"
#include "recent.h"
#include "registry.h"
#include "row_insert.h"
#include "saved_plan.h"
#include "store.h"

static bool wake_at_commit = false;
static bool xact_callback_registered = false;

/*
 * Insert the delivery row of an error this call stored (a new one can have
 * no delivery row yet: another session's would wait for this transaction's
 * error row) by RowInsert, with the columns its status sets and the rest as
 * their defaults give; *n: how many rows went in (0: a BEFORE trigger kept
 * it out).  False: the table is not one RowInsert takes rows into; nothing
 * was inserted.
 */
static bool
InsertNewDelivery(const EdusyncError *err, bool delivered, int attempts,
				  long status, const char *remote_id, uint64 *n)
{
	ItemPointerData at;
#define DELIVERY_COLUMNS 11
	static const RowColumn columns[DELIVERY_COLUMNS] = {
		{"profile_id", TEXTOID}, {"error_id", UUIDOID}, {"status", TEXTOID},
		{"attempts", INT4OID}, {"next_attempt_at", TIMESTAMPTZOID},
		{"last_status", INT4OID}, {"last_error", TEXTOID},
		{"remote_id", TEXTOID}, {"delivered_at", TIMESTAMPTZOID},
		{"created_at", TIMESTAMPTZOID}, {"last_attempt_at", TIMESTAMPTZOID}};
	Datum		values[DELIVERY_COLUMNS];
	bool		isnull[DELIVERY_COLUMNS];
	Datum		now = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	RowReference ref;

	memset(isnull, true, sizeof(isnull));
	values[0] = TextValue(err->profile_id, &isnull[0]);
	values[1] = UUIDPGetDatum((pg_uuid_t *) &err->id);
	isnull[1] = false;
	values[2] = CStringGetTextDatum(delivered ? "delivered" : "pending");
	isnull[2] = false;
	values[3] = Int32GetDatum(attempts);
	isnull[3] = false;
	values[9] = now;
	isnull[9] = false;
	if (delivered)
	{
		values[5] = Int32GetDatum((int32) status);
		isnull[5] = false;
		values[7] = TextValue(remote_id, &isnull[7]);
		values[8] = values[10] = now;
		isnull[8] = isnull[10] = false;
	}
	else
	{
		values[4] = now;
		isnull[4] = false;
	}
	ref.relname = "sync_errors";
	ref.tid = err->stored_at;
	ref.locked = false;
	ref.nkeys = 2;				/* (profile_id, id) = (profile_id, error_id) */
	if (!RowInsert("deliveries", columns, DELIVERY_COLUMNS, values, isnull,
				   &ref, &at))
		return false;
	*n = ItemPointerIsValid(&at) ? 1 : 0;
	return true;
#undef DELIVERY_COLUMNS
}

/*
 * Queue the error for the worker, which sends it after commit.  fresh: the
 * error was stored by this call (else a replay's may race another replay's).
 */
void
OutboxEnqueue(const EdusyncError *err, bool fresh)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[] = {TEXTOID, UUIDOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	uint64		n;

	if (!fresh || !InsertNewDelivery(err, false, 0, 0, NULL, &n))
	{
		values[0] = CStringGetTextDatum(err->profile_id);
		values[1] = UUIDPGetDatum((pg_uuid_t *) &err->id);
		(void) RunSavedStatement(&plan,
					 "INSERT INTO edusync.deliveries (profile_id, error_id) VALUES ($1, $2) "
					 "ON CONFLICT (profile_id, error_id) DO NOTHING",
					 2, types, values, nulls, false, 0);
	}
	OutboxWakeAtCommit();
}

/*
 * Record a delivery done inside the call (sync mode).  fresh: the error was
 * inserted by this call (see OutboxEnqueue).
 */
void
OutboxRecordDelivered(const EdusyncError *err, bool fresh, int attempts,
					  long status, const char *remote_id)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[] = {TEXTOID, UUIDOID, INT4OID, INT4OID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	uint64		n = 0;

	if (!fresh || !InsertNewDelivery(err, true, attempts, status, remote_id, &n))
	{
		values[0] = CStringGetTextDatum(err->profile_id);
		values[1] = UUIDPGetDatum((pg_uuid_t *) &err->id);
		values[2] = Int32GetDatum(attempts);
		values[3] = Int32GetDatum((int32) status);
		values[4] = TextParam(remote_id, &nulls[4]);
		n = RunSavedStatement(&plan,
					 "INSERT INTO edusync.deliveries (profile_id, error_id, status, attempts, "
					 "next_attempt_at, last_status, remote_id, delivered_at, last_attempt_at) "
					 "VALUES ($1, $2, 'delivered', $3, NULL, $4, $5, pg_catalog.now(), "
					 "pg_catalog.now()) ON CONFLICT (profile_id, error_id) DO NOTHING",
					 5, types, values, nulls, false, 0);
	}
	RecentNoteDelivered((int64) n);
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
	found = (RunSavedStatement(&plan,
				 "SELECT 1 FROM edusync.deliveries "
				 "WHERE profile_id OPERATOR(pg_catalog.=) $1 "
				 "AND error_id OPERATOR(pg_catalog.=) $2",
				 2, types, values, nulls, false, 1) == 1);
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
	n = RunSavedStatement(&plan,
				 "UPDATE edusync.deliveries "
				 "SET status = 'pending', attempts = 0, next_attempt_at = pg_catalog.now() "
				 "WHERE status OPERATOR(pg_catalog.=) 'failed' "
				 "AND ($1 IS NULL OR profile_id OPERATOR(pg_catalog.=) $1)",
				 1, types, values, nulls, false, 0);
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
 * The worker's claim (OutboxClaimDue): $1 uuid[] to leave out, $2 how
 * many, $3 the lowest next_attempt_at to look at.
 */
#define CLAIM_SQL \
	"SELECT d.attempts, d.profile_id, d.next_attempt_at, " \
	"d.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now(), d.ctid, " \
	STORE_ERROR_COLUMNS("e.") " " \
	"FROM (SELECT profile_id, error_id, attempts, next_attempt_at, ctid " \
	"      FROM edusync.deliveries " \
	"      WHERE status OPERATOR(pg_catalog.=) 'pending' " \
	"      AND next_attempt_at OPERATOR(pg_catalog.>=) $3 " \
	"      AND error_id OPERATOR(pg_catalog.<>) ALL ($1) " \
	"      ORDER BY next_attempt_at LIMIT $2) d " \
	"CROSS JOIN LATERAL " \
	"(SELECT * FROM edusync.sync_errors s " \
	" WHERE s.profile_id OPERATOR(pg_catalog.=) d.profile_id " \
	" AND s.id OPERATOR(pg_catalog.=) d.error_id OFFSET 0) e " \
	"ORDER BY d.next_attempt_at"

/*
 * The worker's record (OutboxRecordVerdicts): eight arrays, joined to the
 * table by TID (a TID scan per row).  No "d.ctid = ANY ($8)" besides: a
 * parameter array is searched from its start for every row, a quadratic
 * filter (0.5 ms of 4 ms for 256 rows).
 */
#define RECORD_SQL \
	"UPDATE edusync.deliveries d SET status = v.s, " \
	"attempts = d.attempts OPERATOR(pg_catalog.+) 1, " \
	"last_attempt_at = pg_catalog.now(), " \
	"last_status = v.ls, last_error = v.le, remote_id = v.r, " \
	"delivered_at = CASE WHEN v.s OPERATOR(pg_catalog.=) 'delivered' " \
	"THEN pg_catalog.now() END, " \
	"next_attempt_at = CASE WHEN v.s OPERATOR(pg_catalog.=) 'pending' " \
	"THEN pg_catalog.now() OPERATOR(pg_catalog.+) " \
	"pg_catalog.make_interval(secs => v.ms OPERATOR(pg_catalog./) 1000) END " \
	"FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), " \
	"pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5), " \
	"pg_catalog.unnest($6), pg_catalog.unnest($7), pg_catalog.unnest($8)) " \
	"AS v(p, e, s, ls, le, r, ms, t) " \
	"WHERE d.ctid OPERATOR(pg_catalog.=) v.t " \
	"AND pg_catalog.texteq(d.profile_id, v.p) " \
	"AND pg_catalog.uuid_eq(d.error_id, v.e) " \
	"AND pg_catalog.texteq(d.status, 'pending') " \
	"RETURNING pg_catalog.texteq(d.status, 'delivered')"

/*
 * The worker's plans are generic (CURSOR_OPT_GENERIC_PLAN): their values (a
 * LIMIT, arrays) must not make the plan cache plan them again on every run,
 * which a custom plan looking cheaper than the generic one would.
 */

/*
 * Read up to limit due deliveries, oldest due first, leaving out the error
 * ids in exclude[] (in flight or held back), into *rows (in the caller's
 * memory).  Returns how many, or -1 when the extension is not installed.
 * *next_due: when the next pending one not read is due (0: there may be
 * more due now; -1: none is pending).  Only rows due at from or later are
 * looked at (-infinity: all); *first_at is when the first row read was due
 * (DT_NOBEGIN when none was read).
 *
 * One statement does both: it walks deliveries_pending_idx in the order of
 * next_attempt_at for limit + 1 rows, and the first row it does not claim
 * says when to look again.  Each error is fetched by its primary key (a
 * LATERAL subquery that cannot be pulled up), so the plan touches only the
 * rows it returns, whatever the table's size or statistics (the worker
 * also rules out sorts and sequential scans: see worker.c).
 */
int
OutboxClaimDue(int limit, Datum *exclude, int nexclude, TimestampTz from,
			   OutboxRow **rows, TimestampTz *next_due, TimestampTz *first_at)
{
	static SPIPlanPtr claim_plan = NULL;
	static const Oid types[] = {UUIDARRAYOID, INT4OID, TIMESTAMPTZOID};
	MemoryContext outer = CurrentMemoryContext;
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	int			nread;
	int			n = 0;

	*rows = NULL;
	*next_due = -1;
	*first_at = DT_NOBEGIN;
	if (!OidIsValid(get_extension_oid("edusync", true)))
		return -1;

	values[0] = PointerGetDatum(construct_array(exclude, nexclude, UUIDOID,
												UUID_LEN, false, TYPALIGN_CHAR));
	values[1] = Int32GetDatum(limit + 1);
	values[2] = TimestampTzGetDatum(from);

	SPI_connect();
	PrepareSavedPlan(&claim_plan, CLAIM_SQL, 3, types, CURSOR_OPT_GENERIC_PLAN);
	/* not read-only: a fresh snapshot sees verdicts recorded just before */
	RunSavedPlan(&claim_plan, CLAIM_SQL, 3, types, values, nulls, false, 0);

	nread = (int) SPI_processed;
	*rows = MemoryContextAllocZero(outer, sizeof(OutboxRow) * Max(nread, 1));
	for (int i = 0; i < nread; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		bool		due = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		char	   *profile_id;

		if (i == 0)
			*first_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
		if (!due || n == limit)
		{
			/* the first one not claimed: due now, or when? */
			*next_due = due ? 0 :
				DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
			break;
		}
		profile_id = TextColumn(tup, desc, 2, outer);
		(*rows)[n].attempts = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		(*rows)[n].tid = *(ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 5, &isnull));
		StoreRowToError(tup, desc, 6, profile_id, outer, &(*rows)[n].err);
		n++;
	}
	SPI_finish();
	return n;
}

/* The columns of deliveries a verdict reads and writes (RecordByTid) */
static const RowColumn verdict_columns[] = {
	{"profile_id", TEXTOID},
	{"error_id", UUIDOID},
	{"status", TEXTOID},
	{"attempts", INT4OID},
	{"last_attempt_at", TIMESTAMPTZOID},
	{"last_status", INT4OID},
	{"last_error", TEXTOID},
	{"remote_id", TEXTOID},
	{"delivered_at", TIMESTAMPTZOID},
	{"next_attempt_at", TIMESTAMPTZOID},
};
enum
{
	VC_PROFILE, VC_ERROR, VC_STATUS, VC_ATTEMPTS, VC_LAST_ATTEMPT_AT,
	VC_LAST_STATUS, VC_LAST_ERROR, VC_REMOTE_ID, VC_DELIVERED_AT,
	VC_NEXT_ATTEMPT_AT, VC_COUNT
};

/* A text Datum, or NULL for no string. */
static inline Datum
OptionalText(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s == NULL ? (Datum) 0 : CStringGetTextDatum(s);
}

/* texteq, as the statement's pg_catalog.texteq calls it */
static inline bool
TextEqual(Datum a, Datum b)
{
	return DatumGetBool(DirectFunctionCall2Coll(texteq, DEFAULT_COLLATION_OID,
												a, b));
}

/*
 * RECORD_SQL's work done row by row without the statement (row_insert.c's
 * RowUpdate): each row fetched where the claim read it, checked against
 * its key and status, and given the same new values.  False when the
 * statement must do it (RowUpdateBegin says when); *delivered: how many
 * rows became delivered.
 */
static bool
RecordByTid(int n, const char *const *profile_ids,
			const pg_uuid_t *error_ids, const ItemPointerData *tids,
			const Verdict *verdicts, int64 *delivered)
{
	RowUpdate  *u = RowUpdateBegin("deliveries", verdict_columns, VC_COUNT);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	Datum		pending = CStringGetTextDatum("pending");

	StaticAssertStmt(lengthof(verdict_columns) == VC_COUNT,
					 "one name for each verdict column");
	*delivered = 0;
	if (u == NULL)
		return false;
	for (int i = 0; i < n; i++)
	{
		const Verdict *v = &verdicts[i];
		Datum		values[VC_COUNT];
		bool		isnull[VC_COUNT];
		int32		attempts;

		if (v->status == NULL ||
			!RowUpdateFetch(u, (ItemPointer) &tids[i], values, isnull))
			continue;
		if (isnull[VC_PROFILE] || isnull[VC_ERROR] || isnull[VC_STATUS] ||
			isnull[VC_ATTEMPTS] ||
			!TextEqual(values[VC_PROFILE], CStringGetTextDatum(profile_ids[i])) ||
			memcmp(DatumGetUUIDP(values[VC_ERROR]), &error_ids[i],
				   sizeof(pg_uuid_t)) != 0 ||
			!TextEqual(values[VC_STATUS], pending))
			continue;

		if (pg_add_s32_overflow(DatumGetInt32(values[VC_ATTEMPTS]), 1, &attempts))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("integer out of range")));
		values[VC_STATUS] = CStringGetTextDatum(v->status);
		values[VC_ATTEMPTS] = Int32GetDatum(attempts);
		values[VC_LAST_ATTEMPT_AT] = TimestampTzGetDatum(now);
		isnull[VC_LAST_ATTEMPT_AT] = false;
		values[VC_LAST_STATUS] = Int32GetDatum((int32) v->last_status);
		isnull[VC_LAST_STATUS] = !(v->last_status > 0);
		values[VC_LAST_ERROR] = OptionalText(v->last_error, &isnull[VC_LAST_ERROR]);
		values[VC_REMOTE_ID] = OptionalText(v->remote_id, &isnull[VC_REMOTE_ID]);
		values[VC_DELIVERED_AT] = TimestampTzGetDatum(now);
		isnull[VC_DELIVERED_AT] = strcmp(v->status, "delivered") != 0;
		values[VC_NEXT_ATTEMPT_AT] = (Datum) 0;
		isnull[VC_NEXT_ATTEMPT_AT] = strcmp(v->status, "pending") != 0;
		if (!isnull[VC_NEXT_ATTEMPT_AT])
		{
			Interval	delay;

			/* make_interval(secs => ms / 1000), as the statement says */
			memset(&delay, 0, sizeof(delay));
			delay.time = (int64) v->delay_ms * 1000;
			values[VC_NEXT_ATTEMPT_AT] =
				DirectFunctionCall2(timestamptz_pl_interval,
									TimestampTzGetDatum(now),
									IntervalPGetDatum(&delay));
		}
		if (RowUpdateStore(u, values, isnull) && !isnull[VC_DELIVERED_AT])
			(*delivered)++;
	}
	RowUpdateEnd(u);
	return true;
}

/*
 * Record the verdicts on n deliveries, in the caller's transaction: row by
 * row without a statement (RecordByTid), or else with one statement.
 * Either way each row is found where the claim read it (tids[]; in the
 * statement, a TID scan) and checked against its primary key and status,
 * so that the work is bounded by n whatever the table's size or
 * statistics: the statement's checks are written as function calls, so
 * that no index (the primary key for a full scan, a partial index on
 * status) can stand in for the TID scan.  A row updated since it was
 * claimed (moved by a user's UPDATE or a VACUUM FULL) is not found: its
 * delivery stays pending and is sent again (at least once).
 */
void
OutboxRecordVerdicts(int n, const char *const *profile_ids,
					 const pg_uuid_t *error_ids, const ItemPointerData *tids,
					 const Verdict *verdicts)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[] = {TEXTARRAYOID, UUIDARRAYOID, TEXTARRAYOID,
	INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, FLOAT8ARRAYOID, TIDARRAYOID};
	static const Oid elemtypes[] = {TEXTOID, UUIDOID, TEXTOID, INT4OID,
	TEXTOID, TEXTOID, FLOAT8OID, TIDOID};
	Datum	   *cols[8];
	bool	   *colnulls[8];
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int			m = 0;
	int64		delivered = 0;

	if (RecordByTid(n, profile_ids, error_ids, tids, verdicts, &delivered))
	{
		RecentNoteDelivered(delivered);
		return;
	}
	for (int c = 0; c < 8; c++)
	{
		cols[c] = palloc(sizeof(Datum) * Max(n, 1));
		colnulls[c] = palloc0(sizeof(bool) * Max(n, 1));
	}
	for (int i = 0; i < n; i++)
	{
		const Verdict *v = &verdicts[i];

		if (v->status == NULL)
			continue;			/* nothing to record */
		cols[0][m] = CStringGetTextDatum(profile_ids[i]);
		cols[1][m] = UUIDPGetDatum((pg_uuid_t *) &error_ids[i]);
		cols[2][m] = CStringGetTextDatum(v->status);
		cols[3][m] = Int32GetDatum((int32) v->last_status);
		colnulls[3][m] = !(v->last_status > 0);
		cols[4][m] = OptionalText(v->last_error, &colnulls[4][m]);
		cols[5][m] = OptionalText(v->remote_id, &colnulls[5][m]);
		cols[6][m] = Float8GetDatum((double) v->delay_ms);
		cols[7][m] = PointerGetDatum(&tids[i]);
		m++;
	}
	if (m == 0)
		return;
	for (int c = 0; c < 8; c++)
		values[c] = ArrayParam(cols[c], colnulls[c], m, elemtypes[c]);

	SPI_connect();
	PrepareSavedPlan(&plan, RECORD_SQL, 8, types, CURSOR_OPT_GENERIC_PLAN);
	RunSavedPlan(&plan, RECORD_SQL, 8, types, values, nulls, false, 0);
	/* the rows that became delivered, for delivered_last_hour (recent.c) */
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
									   SPI_tuptable->tupdesc, 1, &isnull)))
			delivered++;
	}
	RecentNoteDelivered(delivered);
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
	n = RunSavedStatement(&plan,
				 "INSERT INTO edusync.deliveries (profile_id, error_id) "
				 "SELECT e.profile_id, e.id FROM edusync.sync_errors e "
				 "WHERE e.profile_id OPERATOR(pg_catalog.=) $1 "
				 "AND ($2 IS NULL OR e.id OPERATOR(pg_catalog.=) ANY ($2)) "
				 "ON CONFLICT (profile_id, error_id) DO NOTHING",
				 2, types, values, nulls, false, 0);
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
	found = (RunSavedStatement(&plan,
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
				 4, types, values, nulls, false, 0) == 1);
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
	/* rows older than an hour do not put delivered_last_hour in doubt */
	RecentDeletingOld(retention_s >= SECS_PER_HOUR);
	n = RunSavedStatement(&plan,
				 "DELETE FROM edusync.deliveries WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
				 "SELECT ctid FROM edusync.deliveries "
				 "WHERE status OPERATOR(pg_catalog.=) 'delivered' "
				 "AND delivered_at OPERATOR(pg_catalog.<) (pg_catalog.now() "
				 "OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1)) "
				 "LIMIT $2))",
				 2, types, values, nulls, false, 0);
	RecentDeletingOld(false);
	return n;
}

/*
 * Say on n pending deliveries why they wait (the token endpoint, an
 * unusable configuration), spending no attempt; in the caller's
 * transaction.
 */
void
OutboxNoteWaiting(int n, const char *const *profile_ids,
				  const pg_uuid_t *error_ids, const char *reason)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[] = {TEXTOID, UUIDOID, TEXTOID};

	SPI_connect();
	for (int i = 0; i < n; i++)
	{
		Datum		values[3];
		char		nulls[3] = {' ', ' ', ' '};

		values[0] = CStringGetTextDatum(profile_ids[i]);
		values[1] = UUIDPGetDatum((pg_uuid_t *) &error_ids[i]);
		values[2] = CStringGetTextDatum(reason);
		RunSavedPlan(&plan,
					 "UPDATE edusync.deliveries SET last_error = $3 "
					 "WHERE profile_id OPERATOR(pg_catalog.=) $1 "
					 "AND error_id OPERATOR(pg_catalog.=) $2 "
					 "AND status OPERATOR(pg_catalog.=) 'pending' "
					 "AND last_error IS DISTINCT FROM $3",
					 3, types, values, nulls, false, 0);
	}
	SPI_finish();
}

/*
 * How many deliveries have delivered_at after after and, unless before is
 * DT_NOEND, before before: one range of deliveries_delivered_idx.
 */
uint64
OutboxCountDelivered(TimestampTz after, TimestampTz before)
{
	static SPIPlanPtr plan_open = NULL;
	static SPIPlanPtr plan_range = NULL;
	static const Oid types[] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	bool		isnull;
	uint64		n;

	values[0] = TimestampTzGetDatum(after);
	values[1] = TimestampTzGetDatum(before);
	SPI_connect();
	if (TIMESTAMP_IS_NOEND(before))
		RunSavedPlan(&plan_open,
					 "SELECT pg_catalog.count(*) FROM edusync.deliveries "
					 "WHERE status OPERATOR(pg_catalog.=) 'delivered' "
					 "AND delivered_at OPERATOR(pg_catalog.>) $1",
					 1, types, values, nulls, true, 0);
	else
		RunSavedPlan(&plan_range,
					 "SELECT pg_catalog.count(*) FROM edusync.deliveries "
					 "WHERE status OPERATOR(pg_catalog.=) 'delivered' "
					 "AND delivered_at OPERATOR(pg_catalog.>) $1 "
					 "AND delivered_at OPERATOR(pg_catalog.<) $2",
					 2, types, values, nulls, true, 0);
	n = (uint64) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return n;
}

/*
 * The deliveries with delivered_at from from on, per minute (UTC, whatever
 * the TimeZone), as seen by snap, oldest minute first, into *minutes and
 * *counts (in the caller's memory); returns how many minutes.
 */
int
OutboxDeliveredPerMinute(TimestampTz from, Snapshot snap,
						 TimestampTz **minutes, int64 **counts)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[] = {TIMESTAMPTZOID};
	static const char *sql =
		"SELECT pg_catalog.date_bin('1 minute'::pg_catalog.interval, delivered_at, "
		"'2000-01-01 00:00:00+00'::pg_catalog.timestamptz) AS m, pg_catalog.count(*) "
		"FROM edusync.deliveries "
		"WHERE status OPERATOR(pg_catalog.=) 'delivered' "
		"AND delivered_at OPERATOR(pg_catalog.>=) $1 "
		"GROUP BY 1 ORDER BY 1";
	MemoryContext outer = CurrentMemoryContext;
	Datum		values[1];
	char		nulls[1] = {' '};
	int			ret;
	int			n;

	values[0] = TimestampTzGetDatum(from);
	SPI_connect();
	PrepareSavedPlan(&plan, sql, 1, types, 0);
	ret = SPI_execute_snapshot(plan, values, nulls, snap, InvalidSnapshot,
							   true, false, 0);
	if (ret < 0)
		elog(ERROR, "SPI_execute_snapshot failed: %s", SPI_result_code_string(ret));
	n = (int) SPI_processed;
	*minutes = MemoryContextAlloc(outer, sizeof(TimestampTz) * Max(n, 1));
	*counts = MemoryContextAlloc(outer, sizeof(int64) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		(*minutes)[i] = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc, 1, &isnull));
		(*counts)[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
												   SPI_tuptable->tupdesc, 2, &isnull));
	}
	SPI_finish();
	return n;
}
