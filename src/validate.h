/*-------------------------------------------------------------------------
 *
 * validate.h
 *	  Where a request is validated: the profile id, a Graph request body,
 *	  and the fields both entry points share.  Each refusal is an ERROR
 *	  with the contract's SQLSTATE.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_VALIDATE_H
#define EDUSYNC_VALIDATE_H

#include "utils/jsonb.h"

#include "sync_error.h"

extern void ValidateProfileId(const char *profile_id);
extern void ValidateBody(Jsonb *body, EdusyncError *err);
extern void ValidateBodyContainer(JsonbContainer *body, EdusyncError *err);
extern void ValidateFields(EdusyncError *err);

#endif							/* EDUSYNC_VALIDATE_H */
