/*-------------------------------------------------------------------------
 *
 * store.c
 *	  The home of every statement on sync_profiles and sync_errors: insert
 *	  an error (with the idempotent replay of a known id), read one back,
 *	  read a page of them; and the one row-to-error mapping (the outbox
 *	  uses it too).  All SQL runs through SPI with parameters, from plans
 *	  prepared once per process.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "answer.h"
#include "saved_plan.h"
#include "store.h"
#include "text_util.h"

#define ERROR_COLUMNS	STORE_ERROR_COLUMNS("")

static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr fetch_plan = NULL;
static SPIPlanPtr list_plan = NULL;
static SPIPlanPtr profile_plan = NULL;

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

/* Does the profile exist? */
bool
StoreProfileExists(const char *profile_id)
{
	static const Oid types[] = {TEXTOID};
	Datum		values[1];
	char		nulls[1];
	bool		found;

	values[0] = TextParam(profile_id, &nulls[0]);
	SPI_connect();
	RunSavedPlan(&profile_plan,
			"SELECT 1 FROM edusync.sync_profiles WHERE id OPERATOR(pg_catalog.=) $1",
			1, types, values, nulls, true, 1);
	found = (SPI_processed == 1);
	SPI_finish();
	return found;
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

	SPI_connect();
	/* one statement on the hot path: no row means no profile, or a known id */
	RunSavedPlan(&insert_plan,
			"INSERT INTO edusync.sync_errors (profile_id, " ERROR_COLUMNS ") "
			"SELECT p.id, $2, $3, $4, $5, $6, $7, $8 "
			"FROM edusync.sync_profiles p WHERE p.id OPERATOR(pg_catalog.=) $1 "
			"ON CONFLICT (profile_id, id) DO NOTHING",
			8, types, values, nulls, false, 0);
	inserted = (SPI_processed == 1);
	SPI_finish();
	if (inserted)
		return true;

	/*
	 * Read it back with a new snapshot: the row may have been inserted by
	 * this statement (a replay in the same query) or committed by another
	 * session since the statement began (ON CONFLICT waited for it).
	 */
	if (!ReadError(err->profile_id, &err->id, false, &stored))
		StoreNoSuchProfile(err->profile_id);
	if (!SameContent(err, &stored))
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("error \"%s\" already exists in synchronization profile \"%s\" with other content",
						FormatGuid(&err->id), err->profile_id),
				 errhint("Send the same content to retry, or leave \"id\" out to create a new error.")));
	*err = stored;
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
 * then id), after skipping skip of them.  Returns how many were read into
 * the palloc'd array *errs.
 */
int
StoreListErrors(const char *profile_id, int64 limit, int64 skip,
		   EdusyncError **errs)
{
	static const Oid types[] = {TEXTOID, INT8OID, INT8OID};
	MemoryContext mcxt = CurrentMemoryContext;
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	int			n;

	values[0] = CStringGetTextDatum(profile_id);
	values[1] = Int64GetDatum(limit);
	values[2] = Int64GetDatum(skip);

	SPI_connect();
	RunSavedPlan(&list_plan,
			"SELECT " ERROR_COLUMNS " FROM edusync.sync_errors "
			"WHERE profile_id OPERATOR(pg_catalog.=) $1 "
			"ORDER BY recorded_date_time DESC, id DESC LIMIT $2 OFFSET $3",
			3, types, values, nulls, true, 0);
	n = (int) SPI_processed;
	*errs = MemoryContextAllocZero(mcxt, sizeof(EdusyncError) * Max(n, 1));
	for (int i = 0; i < n; i++)
		StoreRowToError(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, profile_id,
				   mcxt, &(*errs)[i]);
	SPI_finish();
	return n;
}
