/*-------------------------------------------------------------------------
 *
 * forward.c
 *	  Where a stored error goes: nowhere (off), to Graph inside the call
 *	  (sync: the send loop with its retries, all within edusync.timeout),
 *	  or into the outbox for the delivery worker (async).  What an answer
 *	  means is policy.c's; the outbox's SQL is outbox.c's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "answer.h"
#include "forward.h"
#include "graph_client.h"
#include "graph_url.h"
#include "outbox.h"
#include "policy.h"
#include "registry.h"
#include "settings.h"
#include "token.h"

/* First backoff step of sync mode: the whole send fits in edusync.timeout. */
#define SYNC_BACKOFF_BASE_MS	250

#define ERRCODE_GRAPH_REJECTED	MAKE_SQLSTATE('Y','G','0','0','1')
#define ERRCODE_GRAPH_UNREACHABLE	MAKE_SQLSTATE('Y','G','0','0','2')
#define ERRCODE_GRAPH_AUTH		MAKE_SQLSTATE('Y','G','0','0','3')


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

/*
 * Raise 55000 unless a delivery worker serves this database (or is being
 * started for it): an error queued here would otherwise wait for nobody.
 */
static void
RequireWorker(void)
{
	SlotState	state;

	if (RegistryServes(MyDatabaseId, &state))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("no delivery worker serves database \"%s\"",
					get_database_name(MyDatabaseId)),
			 errdetail("Its state: %s; an error queued here would never be sent.",
					   RegistryStateName(state)),
			 state == SLOT_NO_WORKER ?
			 errhint("Raise max_worker_processes and restart the server, or use edusync.forward = 'sync' here.") :
			 errhint("Add this database to edusync.databases (or empty it) and reload, or use edusync.forward = 'sync' here.")));
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
 * Refuse (55000) to queue an error for the delivery worker unless the
 * library is preloaded, an endpoint is set and a worker serves this
 * database.
 */
void
ForwardRequireAsync(void)
{
	RequirePreload();
	RequireEndpoint();
	RequireWorker();
}

/* Milliseconds left until deadline (never negative). */
static long
RemainingMs(TimestampTz deadline)
{
	TimestampTz now = GetCurrentTimestamp();

	return (now >= deadline) ? 0 : (long) ((deadline - now) / 1000);
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
SleepUntilDeadline(long ms)
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
	char	   *body = AnswerRequestBody(err);
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
				OutboxRecordDelivered(err, attempt, out.status, out.remote_id);
				return;
			case OUTCOME_REJECTED:
				ereport(ERROR,
						(errcode(ERRCODE_GRAPH_REJECTED),
						 errmsg_internal(PolicyRejectionWords(out.status), out.status),
						 errdetail_internal("%s", Sentence(out.reason))));
				break;
			case OUTCOME_AUTH:
				/* a fetched token may have been revoked: fetch a new one once */
				if (out.status == 401 && !refreshed && !TokenIsStatic() &&
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
		SleepUntilDeadline(Min(PolicyBackoffMs(attempt, out.retry_after,
								   SYNC_BACKOFF_BASE_MS, RemainingMs(deadline)),
					RemainingMs(deadline)));
	}
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
	if (replay && OutboxHasDelivery(err))
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
			ForwardRequireAsync();
			/* refuse an unusable configuration now, not in the worker */
			(void) GraphErrorsUrl(err->profile_id);
			OutboxEnqueue(err);
			break;
	}
}
