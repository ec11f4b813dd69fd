/*-------------------------------------------------------------------------
 *
 * skiptoken.h
 *	  The $skiptoken of list_sync_errors' @odata.nextLink: an opaque key of
 *	  a page's last row, tied to its profile.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_SKIPTOKEN_H
#define EDUSYNC_SKIPTOKEN_H

#include "datatype/timestamp.h"
#include "utils/uuid.h"

/* Where a page ends: the key of its last row, in the list's order. */
typedef struct ListKey
{
	TimestampTz recorded_date_time;
	pg_uuid_t	id;
} ListKey;

extern char *SkiptokenEncode(const char *profile_id, const ListKey *key);
extern void SkiptokenDecode(const char *profile_id, const char *token,
							ListKey *key);

#endif							/* EDUSYNC_SKIPTOKEN_H */
