/*-------------------------------------------------------------------------
 *
 * sync_error.h
 *	  One educationSynchronizationError, as every module passes it around,
 *	  and the contract's bounds.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_SYNC_ERROR_H
#define EDUSYNC_SYNC_ERROR_H

#include "datatype/timestamp.h"
#include "storage/itemptr.h"
#include "utils/uuid.h"

/* Bounds of the contract, in characters. */
#define EDUSYNC_PROFILE_ID_MAX		256
#define EDUSYNC_STRING_MAX			1024
#define EDUSYNC_MESSAGE_MAX			8192

/*
 * One educationSynchronizationError, validated.  Optional strings are NULL
 * when absent; the required ones never are.
 */
typedef struct EdusyncError
{
	char	   *profile_id;
	pg_uuid_t	id;
	bool		id_given;		/* false: the id was generated */
	char	   *entry_type;
	char	   *error_code;
	char	   *error_message;
	char	   *joining_value;
	char	   *reportable_identifier;
	TimestampTz recorded_date_time;
	bool		recorded_given; /* false: the time of the call */
	ItemPointerData stored_at;	/* where this call inserted the row, when it
								 * did so by RowInsert; else invalid */
	bool		profile_locked; /* this call locked the profile FOR KEY
								 * SHARE (StoreWillTake, or store.c's
								 * InsertNewRow by RowLockKey) */
} EdusyncError;

#endif							/* EDUSYNC_SYNC_ERROR_H */
