/*-------------------------------------------------------------------------
 *
 * store.c
 *	  The home of every statement on sync_profiles and sync_errors: insert
 *	  an error (with the idempotent replay of a known id), read one back,
 *	  read a page of them; and the one row-to-error mapping (the outbox
 *	  uses it too).  All SQL runs through SPI with parameters, from plans
 *	  prepared once per process; a new error's row goes in without a
 *	  statement when the table allows it (row_insert.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "answer.h"
#include "row_insert.h"
#include "saved_plan.h"
#include "store.h"
#include "text_util.h"

#define ERROR_COLUMNS	STORE_ERROR_COLUMNS("")
/* sync_errors' columns: profile_id, ERROR_COLUMNS, created_at */
#define ERRORS_TABLE_COLUMNS	9

static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr insert_new_plan = NULL;
static SPIPlanPtr fetch_plan = NULL;
static SPIPlanPtr list_plan = NULL;
static SPIPlanPtr list_after_plan = NULL;
static SPIPlanPtr bulk_insert_plan = NULL;
static SPIPlanPtr bulk_fetch_plan = NULL;
static SPIPlanPtr profile_plan = NULL;
static SPIPlanPtr profile_lock_plan = NULL;

/*
 * Fill err from a row holding STORE_ERROR_COLUMNS from column first_col on,
 * copying into mcxt.
 */
void
StoreRowToError(HeapTuple tup, TupleDesc desc, int first_col,
				const char *profile_id, MemoryContext mcxt, EdusyncError *err)
{
	bool		isnull;
	int			c = first_col;

	memset(err, 0, sizeof(*err));
	err->profile_id = MemoryContextStrdup(mcxt, profile_id);
	memcpy(&err->id, DatumGetUUIDP(SPI_getbinval(tup, desc, c, &isnull)),
		   sizeof(pg_uuid_t));
	err->id_given = true;
	err->entry_type = TextColumn(tup, desc, c + 1, mcxt);
	err->error_code = TextColumn(tup, desc, c + 2, mcxt);
	err->error_message = TextColumn(tup, desc, c + 3, mcxt);
	err->joining_value = TextColumn(tup, desc, c + 4, mcxt);
	err->recorded_date_time =
		DatumGetTimestampTz(SPI_getbinval(tup, desc, c + 5, &isnull));
	err->recorded_given = true;
	err->reportable_identifier = TextColumn(tup, desc, c + 6, mcxt);
}

/*
 * Does a retry carry the stored content?  recordedDateTime is compared
 * only when the retry gave one: absent, it means "the time of the call".
 */
static bool
SameContent(const EdusyncError *retry, const EdusyncError *stored)
{
	return SameString(retry->entry_type, stored->entry_type) &&
		SameString(retry->error_code, stored->error_code) &&
		SameString(retry->error_message, stored->error_message) &&
		SameString(retry->joining_value, stored->joining_value) &&
		SameString(retry->reportable_identifier, stored->reportable_identifier) &&
		(!retry->recorded_given ||
		 retry->recorded_date_time == stored->recorded_date_time);
}

static bool ReadError(const char *profile_id, const pg_uuid_t *id,
					  bool read_only, EdusyncError *err);

/*
 * Raise the contract's 23505 for a known id with other content; index >= 0
 * names the element of create_sync_errors' bodies (0-based).
 */
static pg_noreturn void
Conflict(const EdusyncError *err, int index)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("%serror \"%s\" already exists in synchronization profile \"%s\" with other content",
					index >= 0 ? psprintf("bodies[%d]: ", index) : "",
					FormatGuid(&err->id), err->profile_id),
			 errhint("Send the same content to retry, or leave \"id\" out to create a new error.")));
}

/*
 * Does the profile exist?  lock: and lock it until the transaction ends,
 * as the foreign key's own check locks it (FOR KEY SHARE), so that no one
 * can delete it in between.
 */
static bool
ProfileFound(const char *profile_id, bool lock)
{
	static const Oid types[] = {TEXTOID};
	Datum		values[1];
	char		nulls[1];

	/* the lock without the query where that is the same (row_insert.c) */
	if (lock && RowLockKey("sync_profiles", profile_id))
		return true;
	values[0] = TextParam(profile_id, &nulls[0]);
#define PROFILE_SQL \
	"SELECT 1 FROM edusync.sync_profiles WHERE id OPERATOR(pg_catalog.=) $1"
	return RunSavedStatement(lock ? &profile_lock_plan : &profile_plan,
							 lock ? PROFILE_SQL " FOR KEY SHARE" : PROFILE_SQL,
							 1, types, values, nulls, !lock, 1) == 1;
#undef PROFILE_SQL
}

/* Does the profile exist? */
bool
StoreProfileExists(const char *profile_id)
{
	return ProfileFound(profile_id, false);
}

/*
 * Does sync_errors take any row that validation passed: is it as the
 * extension made it, with nothing a user added that could refuse a row?
 * That is: its own columns only (no added default or generated column to
 * evaluate), no trigger but the foreign keys' internal ones, and on insert
 * only the check of its key to the profile (no key a user added), no rule, no
 * row security, no CHECK constraint, and no index but plain ones on
 * columns (no expression or predicate to evaluate) of which only the
 * primary key is unique.  Takes the lock the insert takes.
 */
static bool
ErrorsTablePlain(void)
{
	Oid			relid = RowTableOid("sync_errors");
	Relation	rel;
	TupleDesc	desc;
	List	   *indexes;
	ListCell   *lc;
	int			ncolumns = 0;
	bool		plain;

	if (!OidIsValid(relid))
		return false;
	rel = table_open(relid, RowExclusiveLock);
	desc = RelationGetDescr(rel);
	for (int i = 0; i < desc->natts; i++)
		ncolumns += TupleDescAttr(desc, i)->attisdropped ? 0 : 1;
	plain = ncolumns == ERRORS_TABLE_COLUMNS &&
		rel->rd_rules == NULL && !rel->rd_rel->relrowsecurity &&
		(desc->constr == NULL || desc->constr->num_check == 0);
	for (int i = 0; plain && rel->trigdesc != NULL && i < rel->trigdesc->numtriggers; i++)
		plain = rel->trigdesc->triggers[i].tgisinternal;
	/* of which those on insert are the profile's key's check, and no other */
	plain = plain && RowOnlyKeyChecks(rel, "sync_profiles", 1);
	indexes = plain ? RelationGetIndexList(rel) : NIL;
	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index index;

		if (!HeapTupleIsValid(tup))
		{
			plain = false;
			break;
		}
		index = (Form_pg_index) GETSTRUCT(tup);
		plain = !index->indisexclusion &&
			(!index->indisunique || index->indisprimary) &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL);
		ReleaseSysCache(tup);
		if (!plain)
			break;
	}
	list_free(indexes);
	table_close(rel, NoLock);
	return plain;
}

/*
 * Will storing err (a new error, an id the call generated) succeed
 * whatever it says?  True when sync_errors is plain (ErrorsTablePlain) and
 * the profile exists, locked until the transaction ends (ProfileFound), as
 * err->profile_locked then says: storing it needs no foreign key check of
 * its own (row_insert.c).  forward.c then sends before storing.
 */
bool
StoreWillTake(EdusyncError *err)
{
	err->profile_locked = ErrorsTablePlain() && ProfileFound(err->profile_id, true);
	return err->profile_locked;
}

/* Raise the contract's 23503 for a profile that does not exist. */
void
StoreNoSuchProfile(const char *profile_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
			 errmsg("synchronization profile \"%s\" does not exist", profile_id)));
}

/*
 * In a PG_CATCH, in a memory context of the caller's: is the error being
 * handled sync_errors' foreign key to an unknown profile?
 */
static bool
IsProfileForeignKeyError(void)
{
	ErrorData  *edata = CopyErrorData();
	bool		match;

	match = edata->sqlerrcode == ERRCODE_FOREIGN_KEY_VIOLATION &&
		edata->table_name != NULL &&
		strcmp(edata->table_name, "sync_errors") == 0 &&
		edata->constraint_name != NULL &&
		strcmp(edata->constraint_name, "sync_errors_profile_id_fkey") == 0;
	FreeErrorData(edata);
	return match;
}

/*
 * Insert a new error (an id the call generated) by RowInsert, created_at
 * being now() as its default gives.  False: the table is not one
 * RowInsert takes rows into; nothing was inserted.
 */
static bool
InsertNewRow(EdusyncError *err)
{
	static const RowColumn columns[ERRORS_TABLE_COLUMNS] = {
		{"profile_id", TEXTOID}, {"id", UUIDOID}, {"entry_type", TEXTOID},
		{"error_code", TEXTOID}, {"error_message", TEXTOID},
		{"joining_value", TEXTOID}, {"recorded_date_time", TIMESTAMPTZOID},
		{"reportable_identifier", TEXTOID}, {"created_at", TIMESTAMPTZOID}};
	Datum		values[ERRORS_TABLE_COLUMNS];
	bool		isnull[ERRORS_TABLE_COLUMNS];
	RowReference profile;

	values[0] = TextValue(err->profile_id, &isnull[0]);
	values[1] = UUIDPGetDatum(&err->id);
	isnull[1] = false;
	values[2] = TextValue(err->entry_type, &isnull[2]);
	values[3] = TextValue(err->error_code, &isnull[3]);
	values[4] = TextValue(err->error_message, &isnull[4]);
	values[5] = TextValue(err->joining_value, &isnull[5]);
	values[6] = TimestampTzGetDatum(err->recorded_date_time);
	isnull[6] = false;
	values[7] = TextValue(err->reportable_identifier, &isnull[7]);
	values[8] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	isnull[8] = false;
	/*
	 * The foreign key's check locks the profile with a query of its own
	 * when the insert ends; where RowLockKey takes that lock for less, the
	 * check is known to pass and is left out.
	 */
	if (!err->profile_locked)
		err->profile_locked = RowLockKey("sync_profiles", err->profile_id);
	profile.relname = "sync_profiles";
	ItemPointerSetInvalid(&profile.tid);
	profile.locked = true;
	profile.nkeys = 1;			/* (profile_id) = (id) */
	return RowInsert("sync_errors", columns, ERRORS_TABLE_COLUMNS, values, isnull,
					 err->profile_locked ? &profile : NULL, &err->stored_at);
}

/*
 * Insert a validated error.  Returns true when a row was inserted; false
 * for the idempotent replay of a known id with the same content, err then
 * holding the stored row.  Raises 23503 for an unknown profile, 23505 for a
 * known id with other content.
 */
bool
StoreError(EdusyncError *err)
{
	static const Oid types[] = {TEXTOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[8];
	char		nulls[8];
	bool		inserted;
	EdusyncError stored;
	MemoryContext mcxt = CurrentMemoryContext;

	ItemPointerSetInvalid(&err->stored_at);
	values[0] = TextParam(err->profile_id, &nulls[0]);
	values[1] = UUIDPGetDatum(&err->id);
	nulls[1] = ' ';
	values[2] = TextParam(err->entry_type, &nulls[2]);
	values[3] = TextParam(err->error_code, &nulls[3]);
	values[4] = TextParam(err->error_message, &nulls[4]);
	values[5] = TextParam(err->joining_value, &nulls[5]);
	values[6] = TimestampTzGetDatum(err->recorded_date_time);
	nulls[6] = ' ';
	values[7] = TextParam(err->reportable_identifier, &nulls[7]);

	/*
	 * One statement on the hot path, as plain as an application's INSERT:
	 * no row means a known id.  An unknown profile is left to the foreign
	 * key, whose check every insert pays anyway (looking the profile up
	 * first would cost a sixth of the call), and its error is given in the
	 * contract's words; the statement has failed by then, so nothing goes
	 * on after the catch but raising.
	 */
	for (int attempt = 1;; attempt++)
	{
		uint64		processed;

		SPI_connect();
		PG_TRY();
		{
			/*
			 * An id the call generated (a random UUID) is new: inserted
			 * without a statement (row_insert.c), or without ON CONFLICT,
			 * whose speculative insertion costs a tenth of the call.  Were
			 * it ever taken, the unique violation would be the contract's
			 * 23505 all the same.
			 */
#define INSERT_ERROR_SQL \
	"INSERT INTO edusync.sync_errors (profile_id, " ERROR_COLUMNS ") " \
	"VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
			if (!err->id_given && InsertNewRow(err))
				processed = ItemPointerIsValid(&err->stored_at) ? 1 : 0;
			else
			{
				RunSavedPlan(err->id_given ? &insert_plan : &insert_new_plan,
							 err->id_given ?
							 INSERT_ERROR_SQL " ON CONFLICT (profile_id, id) DO NOTHING" :
							 INSERT_ERROR_SQL,
							 8, types, values, nulls, false, 0);
				processed = SPI_processed;
			}
#undef INSERT_ERROR_SQL
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(mcxt);
			if (IsProfileForeignKeyError())
			{
				FlushErrorState();
				StoreNoSuchProfile(err->profile_id);
			}
			PG_RE_THROW();
		}
		PG_END_TRY();
		inserted = (processed == 1);
		SPI_finish();
		if (inserted)
			return true;

		/*
		 * A known id: read it back with a new snapshot, as the row may have
		 * been inserted by this statement (a replay in the same query) or
		 * committed by another session since the statement began (ON
		 * CONFLICT waited for it).  A row deleted since is inserted again.
		 */
		if (ReadError(err->profile_id, &err->id, false, &stored))
			break;
		if (attempt == 3)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("error \"%s\" of synchronization profile \"%s\" was deleted while it was being created",
							FormatGuid(&err->id), err->profile_id),
					 errhint("Retry the call.")));
	}
	if (!SameContent(err, &stored))
		Conflict(err, -1);
	*err = stored;
	ItemPointerSetInvalid(&err->stored_at);
	return false;
}

/* Read one stored error into err (in the current memory context). */
bool
StoreFetchError(const char *profile_id, const pg_uuid_t *id, EdusyncError *err)
{
	return ReadError(profile_id, id, true, err);
}

/*
 * Read one stored error into err.  read_only: in the caller's snapshot;
 * else in a new one that sees what this statement and others committed.
 */
static bool
ReadError(const char *profile_id, const pg_uuid_t *id, bool read_only,
		  EdusyncError *err)
{
	static const Oid types[] = {TEXTOID, UUIDOID};
	MemoryContext mcxt = CurrentMemoryContext;
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	bool		found;

	values[0] = CStringGetTextDatum(profile_id);
	values[1] = UUIDPGetDatum((pg_uuid_t *) id);

	SPI_connect();
	RunSavedPlan(&fetch_plan,
			"SELECT " ERROR_COLUMNS " FROM edusync.sync_errors "
			"WHERE profile_id OPERATOR(pg_catalog.=) $1 AND id OPERATOR(pg_catalog.=) $2",
			2, types, values, nulls, read_only, 1);
	found = (SPI_processed == 1);
	if (found)
		StoreRowToError(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, profile_id,
				   mcxt, err);
	SPI_finish();
	return found;
}

/*
 * Read up to limit errors of a profile, newest first (by recordedDateTime,
 * then id), after the row whose key is *after (when not NULL), then
 * skipping skip of them.  Returns how many were read into the palloc'd
 * array *errs.  With a key, the index on (profile_id, recorded_date_time
 * DESC, id DESC) starts at the key: every page costs what the first does.
 */
int
StoreListErrors(const char *profile_id, const ListKey *after, int64 limit,
				int64 skip, EdusyncError **errs)
{
	static const Oid types[] = {TEXTOID, INT8OID, INT8OID, TIMESTAMPTZOID, UUIDOID};
	MemoryContext mcxt = CurrentMemoryContext;
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int			n;

	values[0] = CStringGetTextDatum(profile_id);
	values[1] = Int64GetDatum(limit);
	values[2] = Int64GetDatum(skip);

	SPI_connect();
	if (after == NULL)
		RunSavedPlan(&list_plan,
				"SELECT " ERROR_COLUMNS " FROM edusync.sync_errors "
				"WHERE profile_id OPERATOR(pg_catalog.=) $1 "
				"ORDER BY recorded_date_time DESC, id DESC LIMIT $2 OFFSET $3",
				3, types, values, nulls, true, 0);
	else
	{
		values[3] = TimestampTzGetDatum(after->recorded_date_time);
		values[4] = UUIDPGetDatum((pg_uuid_t *) &after->id);
		RunSavedPlan(&list_after_plan,
				"SELECT " ERROR_COLUMNS " FROM edusync.sync_errors "
				"WHERE profile_id OPERATOR(pg_catalog.=) $1 "
				"AND ROW(recorded_date_time, id) OPERATOR(pg_catalog.<) ROW($4, $5) "
				"ORDER BY recorded_date_time DESC, id DESC LIMIT $2 OFFSET $3",
				5, types, values, nulls, true, 0);
	}
	n = (int) SPI_processed;
	*errs = MemoryContextAllocZero(mcxt, sizeof(EdusyncError) * Max(n, 1));
	for (int i = 0; i < n; i++)
		StoreRowToError(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, profile_id,
				   mcxt, &(*errs)[i]);
	SPI_finish();
	return n;
}

/* An id of StoreErrors: inserted by its statement, or read back. */
typedef struct IdEntry
{
	pg_uuid_t	id;				/* the hash key */
	bool		claimed;		/* inserted, and an element answered for it */
	EdusyncError stored;		/* read back: the stored row */
} IdEntry;

/* A set of ids in mcxt, sized for n. */
static HTAB *
IdSet(const char *name, int n, MemoryContext mcxt)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(IdEntry);
	ctl.hcxt = mcxt;
	return hash_create(name, Max(n, 16), &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* A text array of one string field of n errors (NULL elements for NULL). */
static Datum
TextArrayParam(const EdusyncError *errs, int n, size_t field)
{
	Datum	   *elems = palloc(sizeof(Datum) * n);
	bool	   *nulls = palloc(sizeof(bool) * n);

	for (int i = 0; i < n; i++)
	{
		const char *s = *(char *const *) ((const char *) &errs[i] + field);

		nulls[i] = (s == NULL);
		elems[i] = s ? CStringGetTextDatum(s) : (Datum) 0;
	}
	return ArrayParam(elems, nulls, n, TEXTOID);
}

/* The parameters of the bulk inserts: the profile id, then a column each. */
static const Oid bulk_types[] = {TEXTOID, UUIDARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID};

/* The rows of the bulk inserts, in the order of ERROR_COLUMNS. */
#define BULK_ROWS \
	"ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), " \
	"pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), " \
	"pg_catalog.unnest($7), pg_catalog.unnest($8)) " \
	"AS u(" ERROR_COLUMNS ")"

/*
 * Try to insert all n rows as new errors, in a subtransaction: true when
 * every row was inserted; false (nothing inserted) when the profile does
 * not exist or an id is known (a replay, a conflict, or a row another
 * session is inserting).  A plain INSERT: the speculative insertion of ON
 * CONFLICT costs a sixth of the statement, for what is rare in a bulk.
 */
static bool
InsertAllNew(Datum *values, const char *nulls, int n)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext mcxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool all = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(mcxt);
	PG_TRY();
	{
		SPI_connect();
		RunSavedPlan(&plan,
				"INSERT INTO edusync.sync_errors (profile_id, " ERROR_COLUMNS ") "
				"SELECT p.id, u.* FROM edusync.sync_profiles p, "
				BULK_ROWS " WHERE p.id OPERATOR(pg_catalog.=) $1 "
				"ORDER BY u.id",
				8, bulk_types, values, nulls, false, 0);
		all = (SPI_processed == (uint64) n);
		SPI_finish();
		if (all)
			ReleaseCurrentSubTransaction();
		else
			RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(mcxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* leave no subtransaction behind, whatever the error */
		MemoryContextSwitchTo(mcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(mcxt);
		CurrentResourceOwner = owner;
		if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
			ReThrowError(edata);
		FreeErrorData(edata);
		all = false;
	}
	PG_END_TRY();
	return all;
}

/*
 * Insert n validated errors of one profile (errs[0].profile_id) in one
 * statement, all or none.  inserted[i] tells whether errs[i] was inserted;
 * if not, it was the idempotent replay of a known id (stored before, or by
 * an earlier element) and errs[i] now holds the stored row.  Raises 23503
 * for an unknown profile, 23505 naming the first element (its index in
 * create_sync_errors' bodies) whose id is known with other content.
 * Works in the caller's memory context.
 */
void
StoreErrors(EdusyncError *errs, int n, bool *inserted)
{
	static const Oid fetch_types[] = {TEXTOID, UUIDARRAYOID};
	MemoryContext mcxt = CurrentMemoryContext;
	const char *profile_id;
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Datum	   *ids;
	Datum	   *times;
	uint64		ninserted;
	HTAB	   *fresh;
	HTAB	   *stored;
	int			npending = 0;

	if (n == 0)
		return;
	profile_id = errs[0].profile_id;
	ids = palloc(sizeof(Datum) * n);
	times = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		ids[i] = UUIDPGetDatum(&errs[i].id);
		times[i] = TimestampTzGetDatum(errs[i].recorded_date_time);
	}
	values[0] = CStringGetTextDatum(profile_id);
	values[1] = ArrayParam(ids, NULL, n, UUIDOID);
	values[2] = TextArrayParam(errs, n, offsetof(EdusyncError, entry_type));
	values[3] = TextArrayParam(errs, n, offsetof(EdusyncError, error_code));
	values[4] = TextArrayParam(errs, n, offsetof(EdusyncError, error_message));
	values[5] = TextArrayParam(errs, n, offsetof(EdusyncError, joining_value));
	values[6] = ArrayParam(times, NULL, n, TIMESTAMPTZOID);
	values[7] = TextArrayParam(errs, n, offsetof(EdusyncError, reportable_identifier));

	/* the usual case: every element is a new error */
	if (InsertAllNew(values, nulls, n))
	{
		memset(inserted, true, sizeof(bool) * n);
		return;
	}

	SPI_connect();
	/* rows go in array order: of two equal ids, the first one is stored */
	RunSavedPlan(&bulk_insert_plan,
			"INSERT INTO edusync.sync_errors (profile_id, " ERROR_COLUMNS ") "
			"SELECT p.id, u.* FROM edusync.sync_profiles p, "
			BULK_ROWS " WHERE p.id OPERATOR(pg_catalog.=) $1 "
			"ON CONFLICT (profile_id, id) DO NOTHING RETURNING id",
			8, bulk_types, values, nulls, false, 0);
	ninserted = SPI_processed;
	fresh = IdSet("edusync inserted ids", (int) ninserted, mcxt);
	for (uint64 r = 0; r < ninserted; r++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull);
		IdEntry    *e = hash_search(fresh, DatumGetUUIDP(d), HASH_ENTER, NULL);

		e->claimed = false;
	}
	SPI_finish();
	if (ninserted == 0 && !StoreProfileExists(profile_id))
		StoreNoSuchProfile(profile_id);

	/* an inserted id answers for its first element; the others are replays */
	for (int i = 0; i < n; i++)
	{
		IdEntry    *e = hash_search(fresh, &errs[i].id, HASH_FIND, NULL);

		inserted[i] = (e != NULL && !e->claimed);
		if (inserted[i])
			e->claimed = true;
		else
			ids[npending++] = UUIDPGetDatum(&errs[i].id);
	}

	/* read the replayed ids back, in a snapshot that sees this statement's rows */
	stored = IdSet("edusync stored ids", npending, mcxt);
	values[1] = ArrayParam(ids, NULL, npending, UUIDOID);
	SPI_connect();
	RunSavedPlan(&bulk_fetch_plan,
			"SELECT " ERROR_COLUMNS " FROM edusync.sync_errors "
			"WHERE profile_id OPERATOR(pg_catalog.=) $1 "
			"AND id OPERATOR(pg_catalog.=) ANY ($2)",
			2, fetch_types, values, nulls, false, 0);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		EdusyncError row;
		IdEntry    *e;

		StoreRowToError(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1,
						profile_id, mcxt, &row);
		e = hash_search(stored, &row.id, HASH_ENTER, NULL);
		e->stored = row;
	}
	SPI_finish();

	for (int i = 0; i < n; i++)
	{
		IdEntry    *e;

		if (inserted[i])
			continue;
		e = hash_search(stored, &errs[i].id, HASH_FIND, NULL);
		if (e == NULL)
			StoreNoSuchProfile(profile_id);	/* as StoreError: gone since */
		if (!SameContent(&errs[i], &e->stored))
			Conflict(&errs[i], i);
		errs[i] = e->stored;
	}
}
