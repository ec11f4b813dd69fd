/*-------------------------------------------------------------------------
 *
 * answer.h
 *	  Where an error is turned into Graph's JSON: the 201 body (also what
 *	  get and list answer) and the request body sent to Graph.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_ANSWER_H
#define EDUSYNC_ANSWER_H

#include "utils/jsonb.h"

#include "sync_error.h"

extern void AnswerPushPair(JsonbParseState **state, const char *key,
						   const char *value);
extern JsonbValue *AnswerPush(JsonbParseState **state,
							  const EdusyncError *err, bool with_id);
extern Jsonb *AnswerJsonb(const EdusyncError *err, bool with_id);
extern char *AnswerRequestBody(const EdusyncError *err);
extern char *FormatDateTimeOffset(TimestampTz ts);
extern char *FormatGuid(const pg_uuid_t *id);

#endif							/* EDUSYNC_ANSWER_H */
