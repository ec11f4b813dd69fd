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
#include "commands/dbcommands.h"
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

#include "edusync.h"
#include "graph_client.h"
#include "remote.h"

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

/* Raise 55000 unless an endpoint is configured: no default points at Graph. */
static void
RequireEndpoint(void)
{
	if (edusync_graph_url == NULL || edusync_graph_url[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("forwarding needs an endpoint, and edusync.graph_url is empty"),
				 errhint("Set edusync.graph_url in postgresql.conf (Graph itself is https://graph.microsoft.com/beta) and reload.")));
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
	RemoteAnswer ans;

	RemoteReadAnswer(body, body_len, &ans);
	ClassifyAnswer(status, &ans, retry_after, transport_error, out);
}

/* A sentence: text with a final period, unless it already has one. */
char *
Sentence(const char *text)
{
	size_t		n = strlen(text);

	return (n > 0 && text[n - 1] == '.') ? pstrdup(text) : psprintf("%s.", text);
}

/* As ClassifyResponse, for an answer body already read into ans. */
void
ClassifyAnswer(long status, const RemoteAnswer *ans, double retry_after,
			   const char *transport_error, Outcome *out)
{
	memset(out, 0, sizeof(*out));
	out->status = status;
	out->retry_after = retry_after;

	if (status == 0)
		out->reason = RemoteText(transport_error ? transport_error : "no answer",
								 strlen(transport_error ? transport_error : "no answer"),
								 REMOTE_TEXT_MAX);
	else if (ans->code || ans->message)
		out->reason = psprintf("%s: %s", ans->code ? ans->code : "(no code)",
							   ans->message ? ans->message : "(no message)");
	else
		out->reason = psprintf("HTTP status %ld", status);
	if (status != 0 && ans->request_id)
		out->reason = psprintf("%s (request-id %s)", out->reason, ans->request_id);

	if (status >= 200 && status < 300)
	{
		out->kind = OUTCOME_DELIVERED;
		out->remote_id = ans->id;
		out->reason = NULL;
	}
	else if (status == 401 || status == 403)
		out->kind = OUTCOME_AUTH;
	else if (GraphStatusRetryable(status))
		out->kind = OUTCOME_RETRY;
	else
		out->kind = OUTCOME_REJECTED;
}

/* What a permanent answer is, in words, for the primary message. */
static const char *
RejectionWords(long status)
{
	if (status >= 300 && status < 400)
		return "Graph answered with a redirect (HTTP status %ld), which edusync never follows";
	if (status >= 400 && status < 500)
		return "Graph rejected the error with HTTP status %ld";
	if (status >= 500)
		return "Graph failed the request with HTTP status %ld, which is not worth retrying";
	return "Graph answered with the unexpected HTTP status %ld";
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
			"VALUES ($1, $2, 'delivered', $3, NULL, $4, $5, pg_catalog.now()) "
			"ON CONFLICT (profile_id, error_id) DO NOTHING",
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
			 errdetail_internal("Gave up after %d attempt%s within edusync.timeout = %d ms; last: %s",
								attempts, attempts == 1 ? "" : "s", edusync_timeout_ms,
								Sentence((last && last->reason) ? last->reason : "no attempt was made"))));
}

/*
 * Wait ms milliseconds, interruptibly.  Whatever sets the latch (a catch-up
 * interrupt, pg_log_backend_memory_contexts) does not end the wait early:
 * it lasts until its deadline.
 */
static void
SleepMs(long ms)
{
	TimestampTz deadline;

	if (ms <= 0)
		return;
	deadline = GetCurrentTimestamp() + (TimestampTz) ms * 1000;
	while ((ms = RemainingMs(deadline)) > 0)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
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
					 errdetail_internal("%s", Sentence(detail))));

		attempt++;
		if (ts == TOKEN_UNREACHABLE)
		{
			memset(&out, 0, sizeof(out));
			out.kind = OUTCOME_RETRY;
			out.retry_after = -1;
			out.reason = pstrdup(detail);
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
						 errmsg_internal(RejectionWords(out.status), out.status),
						 errdetail_internal("%s", Sentence(out.reason))));
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
						 errdetail_internal("%s", Sentence(out.reason))));
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
			"INSERT INTO edusync.deliveries (profile_id, error_id) VALUES ($1, $2) "
			"ON CONFLICT (profile_id, error_id) DO NOTHING",
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

/* Was the error ever handed to forwarding (is there a delivery row)? */
static bool
DeliveryExists(const EdusyncError *err)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[] = {TEXTOID, UUIDOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	bool		found;

	values[0] = CStringGetTextDatum(err->profile_id);
	values[1] = UUIDPGetDatum((pg_uuid_t *) &err->id);
	SPI_connect();
	RunPlan(&plan,
			"SELECT 1 FROM edusync.deliveries "
			"WHERE profile_id OPERATOR(pg_catalog.=) $1 "
			"AND error_id OPERATOR(pg_catalog.=) $2",
			2, types, values, nulls, false, 1);
	found = (SPI_processed == 1);
	SPI_finish();
	return found;
}

/*
 * Decide whether and how a stored error is forwarded.  A replay (the
 * stored error answered again) is forwarded only if it never was: an error
 * created while forwarding was off is sent by the first replay that asks.
 */
void
ForwardError(const EdusyncError *err, bool replay)
{
	if (edusync_forward == EDUSYNC_FORWARD_OFF)
		return;
	if (replay && DeliveryExists(err))
		return;

	switch (edusync_forward)
	{
		case EDUSYNC_FORWARD_OFF:
			return;
		case EDUSYNC_FORWARD_SYNC:
			RequirePreload();
			RequireEndpoint();
			ForwardSync(err);
			break;
		case EDUSYNC_FORWARD_ASYNC:
			RequirePreload();
			RequireEndpoint();
			if (!WorkerServesDatabase(MyDatabaseId))
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("no delivery worker serves database \"%s\"",
								get_database_name(MyDatabaseId)),
						 errdetail("The delivery worker serves database \"%s\" (edusync.database); an error queued here would never be sent.",
								   edusync_database),
						 errhint("Use edusync.forward = 'sync' here, or set edusync.database to this database and restart the server.")));
			/* refuse an unusable configuration now, not in the worker */
			(void) GraphErrorsUrl(err->profile_id);
			Enqueue(err);
			break;
	}
}
