/*-------------------------------------------------------------------------
 *
 * batch.h
 *	  Where the $batch body is built, and each item's answer read: Graph's
 *	  JSON batching, up to BATCH_MAX requests in one POST {graph_url}/$batch.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_BATCH_H
#define EDUSYNC_BATCH_H

#include "policy.h"

/* Graph's limit on the requests of one $batch. */
#define BATCH_MAX	20

/* One request of a $batch. */
typedef struct BatchPart
{
	const char *url;			/* relative to graph_url (BatchRelativeUrl) */
	const char *request_id;		/* its client-request-id */
	const char *body;			/* its JSON body */
} BatchPart;

extern char *BatchRelativeUrl(const char *url);
extern char *BatchBody(const BatchPart *parts, int n);
extern void BatchReadAnswer(const char *body, size_t len, int n, Outcome *outs);

#endif							/* EDUSYNC_BATCH_H */
