/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  The $batch format of Graph's JSON batching: the body of one request
 *	  that carries up to BATCH_MAX errors (each item with its own URL,
 *	  headers and body, identified by "1".."n"), and the reading of each
 *	  item's answer in the "responses" array, in any order, with its own
 *	  status, Retry-After and body.  An item the answer does not mention is
 *	  one that got no answer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/json.h"

#include "batch.h"
#include "graph_client.h"
#include "graph_url.h"
#include "remote.h"
#include "settings.h"

/* One item of a $batch answer, as read (by its position in "responses"). */
typedef struct BatchItem
{
	char	   *id;				/* our request's id, "1".."20" */
	char	   *status;			/* the status, as the number's text */
	double		retry_after;	/* its Retry-After header, or -1 */
	RemoteAnswer body;
} BatchItem;

/* What a $batch answer holds, for RemoteJsonWalk. */
typedef struct BatchRead
{
	int			nitems;
	BatchItem	items[BATCH_MAX];
} BatchRead;

/*
 * An absolute errors URL (below edusync.graph_url) made relative to it, as
 * a $batch item wants it.
 */
char *
BatchRelativeUrl(const char *url)
{
	size_t		base = GraphBaseLength(edusync_graph_url);

	if (strncmp(url, edusync_graph_url, base) != 0 || url[base] != '/')
		elog(ERROR, "errors URL does not start with graph_url");
	return pstrdup(url + base);
}

/* The body of a $batch request carrying parts[0..n). */
char *
BatchBody(const BatchPart *parts, int n)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"requests\":[");
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		appendStringInfo(&buf, "{\"id\":\"%d\",\"method\":\"POST\",\"url\":", i + 1);
		escape_json(&buf, parts[i].url);
		appendStringInfoString(&buf,
							   ",\"headers\":{\"Content-Type\":\"application/json\","
							   "\"client-request-id\":");
		escape_json(&buf, parts[i].request_id);
		appendStringInfoString(&buf, "},\"body\":");
		appendStringInfoString(&buf, parts[i].body);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoString(&buf, "]}");
	return buf.data;
}

/* RemoteJsonWalk's visitor: sort responses/N/... into items[N]. */
static void
BatchVisit(void *arg, const char *path, bool is_string, const char *value)
{
	BatchRead  *br = (BatchRead *) arg;
	const char *rest;
	char	   *end;
	long		pos;
	BatchItem  *item;

	if (strncmp(path, "responses/", 10) != 0)
		return;
	pos = strtol(path + 10, &end, 10);
	if (end == path + 10 || *end != '/' || pos < 0 || pos >= BATCH_MAX)
		return;
	rest = end + 1;
	item = &br->items[pos];
	if (pos >= br->nitems)
	{
		for (int i = br->nitems; i <= pos; i++)
			br->items[i].retry_after = -1;
		br->nitems = pos + 1;
	}

	if (strcmp(rest, "id") == 0 && is_string && item->id == NULL)
		item->id = pstrdup(value);
	else if (strcmp(rest, "status") == 0 && !is_string && item->status == NULL)
		item->status = pstrdup(value);
	else if (pg_strcasecmp(rest, "headers/Retry-After") == 0)
		item->retry_after = GraphParseRetryAfter(value);
	else if (strncmp(rest, "body/", 5) == 0)
		RemoteAnswerVisit(&item->body, rest + 5, is_string, value);
	else if (strcmp(rest, "body") == 0 && is_string)
		RemoteReadAnswer(value, strlen(value), &item->body);
}

/* Read each item's answer from a $batch answer of n items into outs[]. */
void
BatchReadAnswer(const char *body, size_t len, int n, Outcome *outs)
{
	BatchRead  *br = palloc0(sizeof(BatchRead));
	bool	   *seen = palloc0(sizeof(bool) * n);

	(void) RemoteJsonWalk(body, len, BatchVisit, br);
	for (int i = 0; i < br->nitems; i++)
	{
		BatchItem  *item = &br->items[i];
		char	   *end;
		long		idx;
		long		code;

		if (item->id == NULL || item->status == NULL)
			continue;
		idx = strtol(item->id, &end, 10);
		if (*end != '\0' || idx < 1 || idx > n || seen[idx - 1])
			continue;
		code = strtol(item->status, &end, 10);
		if (*end != '\0' || code < 100 || code > 999)
			continue;
		seen[idx - 1] = true;
		ClassifyAnswer(code, &item->body, item->retry_after, NULL,
					   &outs[idx - 1]);
	}

	for (int i = 0; i < n; i++)
		if (!seen[i])
			PolicyNoAnswer(&outs[i], "no answer for this request in the $batch response");
}

