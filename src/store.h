/*-------------------------------------------------------------------------
 *
 * store.h
 *	  The home of every statement on sync_profiles and sync_errors: store
 *	  an error (with the idempotent replay of a known id), or many in one
 *	  statement, read one, read a page (by offset or after a key); and the one mapping of a stored row to an EdusyncError.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_STORE_H
#define EDUSYNC_STORE_H

#include "access/htup.h"
#include "access/tupdesc.h"

#include "compat.h"
#include "skiptoken.h"
#include "sync_error.h"

/* The stored columns of an error, in the order StoreRowToError reads. */
#define STORE_ERROR_COLUMNS(alias) \
	alias "id, " alias "entry_type, " alias "error_code, " \
	alias "error_message, " alias "joining_value, " \
	alias "recorded_date_time, " alias "reportable_identifier"

extern void StoreRowToError(HeapTuple tup, TupleDesc desc, int first_col,
							const char *profile_id, MemoryContext mcxt,
							EdusyncError *err);
extern bool StoreProfileExists(const char *profile_id);
extern bool StoreWillTake(EdusyncError *err);
extern pg_noreturn void StoreNoSuchProfile(const char *profile_id);
extern bool StoreError(EdusyncError *err);
extern void StoreErrors(EdusyncError *errs, int n, bool *inserted);
extern bool StoreFetchError(const char *profile_id, const pg_uuid_t *id,
							EdusyncError *err);
extern int	StoreListErrors(const char *profile_id, const ListKey *after,
							int64 limit, int64 skip, EdusyncError **errs);

#endif							/* EDUSYNC_STORE_H */
