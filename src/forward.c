/*-------------------------------------------------------------------------
 *
 * forward.c
 *	  Where a new error goes after it is stored: nowhere (off), to Graph
 *	  inside the call (sync), or into the outbox for the worker (async);
 *	  and what an answer from Graph means, for both modes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "edusync.h"
#include "graph_client.h"

/* First backoff step of sync mode: the whole send fits in edusync.timeout. */
#define SYNC_BACKOFF_BASE_MS	250

#define ERRCODE_GRAPH_REJECTED	MAKE_SQLSTATE('Y','G','0','0','1')
#define ERRCODE_GRAPH_UNREACHABLE	MAKE_SQLSTATE('Y','G','0','0','2')
#define ERRCODE_GRAPH_AUTH		MAKE_SQLSTATE('Y','G','0','0','3')

static bool wake_at_commit = false;
static bool xact_callback_registered = false;

/* Raise 55000 unless the library was preloaded (the contract says why). */
static void
RequirePreload(void)
{
	if (!edusync_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("forwarding needs edusync in shared_preload_libraries"),
				 errhint("Add edusync to shared_preload_libraries and restart the server: "
						 "only a library loaded at server start keeps its secret settings hidden "
						 "and runs the delivery worker.")));
}

/* Deepest nesting of a remote JSON answer that is parsed at all. */
#define REMOTE_JSON_MAX_DEPTH	64

/*
 * Is the nesting of arrays and objects in a JSON text at most max deep?
 * The server's parsers recurse and would raise for a hostile depth.
 */
static bool
JsonDepthWithin(const char *s, size_t len, int max)
{
	int			depth = 0;
	bool		in_string = false;

	for (size_t i = 0; i < len; i++)
	{
		if (in_string)
		{
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				in_string = false;
		}
		else if (s[i] == '"')
			in_string = true;
		else if ((s[i] == '{' || s[i] == '[') && ++depth > max)
			return false;
		else if (s[i] == '}' || s[i] == ']')
			depth--;
	}
	return true;
}

/*
 * Parse a body that came over the network as jsonb; NULL when it is not
 * valid JSON (or is nested deeper than any Graph answer).  Checked with the
 * non-throwing parser first, so a malformed answer never raises.
 */
Jsonb *
ParseRemoteJson(const char *body, size_t len)
{
	JsonLexContext *lex;

	if (body == NULL || len == 0 || !JsonDepthWithin(body, len, REMOTE_JSON_MAX_DEPTH))
		return NULL;
	lex = EdusyncJsonLexer(body, len, GetDatabaseEncoding());
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		return NULL;
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
											  CStringGetDatum(pnstrdup(body, len))));
}

/* The value at key in a jsonb object container, or NULL. */
JsonbValue *
JsonbValueAt(JsonbContainer *container, const char *key)
{
	JsonbValue	k;

	if (container == NULL || !JsonContainerIsObject(container))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(container, JB_FOBJECT, &k);
}

/* The string at key in a jsonb object container; NULL if absent or not a string. */
static char *
StringAt(JsonbContainer *container, const char *key)
{
	JsonbValue *v = JsonbValueAt(container, key);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* The object at key in a jsonb object container, or NULL. */
static JsonbContainer *
ObjectAt(JsonbContainer *container, const char *key)
{
	JsonbValue *v = JsonbValueAt(container, key);

	if (v == NULL || v->type != jbvBinary ||
		!JsonContainerIsObject(v->val.binary.data))
		return NULL;
	return v->val.binary.data;
}

/*
 * What one answer from Graph means: delivered (with the remote id), worth
 * another try, rejected for good, or an authentication failure.  Graph's
 * error code and message, when the body has them, go into out->reason.
 */
void
ClassifyResponse(long status, const char *body, size_t body_len,
				 double retry_after, const char *transport_error,
				 Outcome *out)
{
	Jsonb	   *json = ParseRemoteJson(body, body_len);
	JsonbContainer *root = json ? &json->root : NULL;
	JsonbContainer *error = ObjectAt(root, "error");
	char	   *code = StringAt(error, "code");
	char	   *message = StringAt(error, "message");

	memset(out, 0, sizeof(*out));
	out->status = status;
	out->retry_after = retry_after;

	if (status == 0)
		out->reason = pstrdup(transport_error ? transport_error : "no answer");
	else if (code || message)
		out->reason = psprintf("%s: %s", code ? code : "(no code)",
							   message ? message : "(no message)");
	else
		out->reason = psprintf("HTTP status %ld", status);

	if (status >= 200 && status < 300)
	{
		out->kind = OUTCOME_DELIVERED;
		out->remote_id = StringAt(root, "id");
		out->reason = NULL;
	}
	else if (status == 401 || status == 403)
		out->kind = OUTCOME_AUTH;
	else if (GraphStatusRetryable(status))
		out->kind = OUTCOME_RETRY;
	else
		out->kind = OUTCOME_REJECTED;
}

/* Milliseconds left until deadline (never negative). */
static long
RemainingMs(TimestampTz deadline)
{
	TimestampTz now = GetCurrentTimestamp();

	return (now >= deadline) ? 0 : (long) ((deadline - now) / 1000);
}

/* Record a delivery done inside the call (sync mode). */
static void
RecordSyncDelivery(const EdusyncError *err, int attempts, const Outcome *out)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[] = {TEXTOID, UUIDOID, INT4OID, INT4OID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(err->profile_id);
	values[1] = UUIDPGetDatum((pg_uuid_t *) &err->id);
	values[2] = Int32GetDatum(attempts);
	values[3] = Int32GetDatum((int32) out->status);
	values[4] = out->remote_id ? CStringGetTextDatum(out->remote_id) : (Datum) 0;
	nulls[4] = out->remote_id ? ' ' : 'n';

	SPI_connect();
	RunPlan(&plan,
			"INSERT INTO edusync.deliveries (profile_id, error_id, status, attempts, "
			"next_attempt_at, last_status, remote_id, delivered_at) "
			"VALUES ($1, $2, 'delivered', $3, NULL, $4, $5, now())",
			5, types, values, nulls, false, 0);
	SPI_finish();
}

/* Raise YG002: Graph unreachable, or still failing when time or attempts ran out. */
static void
GiveUp(int attempts, const Outcome *last)
{
	ereport(ERROR,
			(errcode(ERRCODE_GRAPH_UNREACHABLE),
			 errmsg("could not forward the error to Graph"),
			 errdetail("Gave up after %d attempt%s within edusync.timeout = %d ms; last: %s.",
					   attempts, attempts == 1 ? "" : "s", edusync_timeout_ms,
					   (last && last->reason) ? last->reason : "no attempt was made")));
}

/* Wait ms milliseconds, interruptibly. */
static void
SleepMs(long ms)
{
	if (ms <= 0)
		return;
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * Send the error to Graph before the call returns, with retries, all
 * within edusync.timeout and edusync.max_attempts.  Success records the
 * delivery; failure raises YG001/YG002/YG003 (the caller's statement then
 * fails, and the row is not kept).
 */
static void
ForwardSync(const EdusyncError *err)
{
	char	   *url = GraphErrorsUrl(err->profile_id);	/* 22023 if unsafe */
	char	   *body = RequestBody(err);
	char	   *request_id = FormatGuid(&err->id);
	TimestampTz deadline = GetCurrentTimestamp() +
		(TimestampTz) edusync_timeout_ms * 1000;
	bool		refresh = false;
	bool		refreshed = false;
	int			attempt = 0;
	Outcome		out;

	memset(&out, 0, sizeof(out));
	for (;;)
	{
		long		remaining = RemainingMs(deadline);
		const char *token = NULL;
		char	   *detail = NULL;
		TokenStatus ts;

		if (remaining <= 0)
			GiveUp(attempt, &out);

		ts = TokenGet(refresh, remaining, &token, &detail);
		CHECK_FOR_INTERRUPTS();
		refresh = false;
		if (ts == TOKEN_REJECTED)
			ereport(ERROR,
					(errcode(ERRCODE_GRAPH_AUTH),
					 errmsg("could not authenticate with Graph"),
					 errdetail("The token endpoint answered: %s.", detail)));

		attempt++;
		if (ts == TOKEN_UNREACHABLE)
		{
			memset(&out, 0, sizeof(out));
			out.kind = OUTCOME_RETRY;
			out.retry_after = -1;
			out.reason = psprintf("token endpoint: %s", detail);
		}
		else
		{
			GraphRequest req;
			GraphResponse resp;

			memset(&req, 0, sizeof(req));
			req.url = url;
			req.content_type = "application/json";
			req.body = body;
			req.bearer = token;
			req.client_request_id = request_id;
			req.timeout_ms = Max(remaining, 1);
			GraphSend(&req, &resp);
			if (resp.aborted)
				CHECK_FOR_INTERRUPTS();
			ClassifyResponse(resp.status, resp.body, resp.body_len,
							 resp.retry_after, resp.transport_error, &out);
		}

		switch (out.kind)
		{
			case OUTCOME_DELIVERED:
				RecordSyncDelivery(err, attempt, &out);
				return;
			case OUTCOME_REJECTED:
				ereport(ERROR,
						(errcode(ERRCODE_GRAPH_REJECTED),
						 errmsg("Graph rejected the error with HTTP status %ld",
								out.status),
						 errdetail("%s.", out.reason)));
				break;
			case OUTCOME_AUTH:
				/* a fetched token may have been revoked: fetch a new one once */
				if (out.status == 401 && !refreshed && edusync_bearer_token[0] == '\0' &&
					token != NULL)
				{
					refresh = refreshed = true;
					continue;
				}
				ereport(ERROR,
						(errcode(ERRCODE_GRAPH_AUTH),
						 errmsg("Graph refused the credentials with HTTP status %ld",
								out.status),
						 errdetail("%s.", out.reason)));
				break;
			case OUTCOME_RETRY:
				break;
		}

		if (attempt >= edusync_max_attempts)
			GiveUp(attempt, &out);
		if (out.retry_after * 1000 >= RemainingMs(deadline))
			GiveUp(attempt, &out);	/* Graph asks for a longer wait */
		SleepMs(Min(GraphBackoffMs(attempt, out.retry_after,
								   SYNC_BACKOFF_BASE_MS, RemainingMs(deadline)),
					RemainingMs(deadline)));
	}
}

/* Put the error into the outbox; the worker sends it after commit. */
static void
Enqueue(const EdusyncError *err)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[] = {TEXTOID, UUIDOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};

	values[0] = CStringGetTextDatum(err->profile_id);
	values[1] = UUIDPGetDatum((pg_uuid_t *) &err->id);
	SPI_connect();
	RunPlan(&plan,
			"INSERT INTO edusync.deliveries (profile_id, error_id) VALUES ($1, $2)",
			2, types, values, nulls, false, 0);
	SPI_finish();
	WakeWorkerAtCommit();
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
				WorkerWake();
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

/* Ask for the worker to be woken when this transaction commits. */
void
WakeWorkerAtCommit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(WakeAtCommit, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
}

/* Decide whether and how a newly stored error is forwarded. */
void
ForwardError(const EdusyncError *err)
{
	switch (edusync_forward)
	{
		case EDUSYNC_FORWARD_OFF:
			return;
		case EDUSYNC_FORWARD_SYNC:
			RequirePreload();
			ForwardSync(err);
			break;
		case EDUSYNC_FORWARD_ASYNC:
			RequirePreload();
			/* refuse an unusable configuration now, not in the worker */
			(void) GraphErrorsUrl(err->profile_id);
			Enqueue(err);
			break;
	}
}
