/*-------------------------------------------------------------------------
 *
 * forward.c
 *	  Where a stored error goes: nowhere (off), to Graph inside the call
 *	  (sync: the send loop with its retries, all within edusync.timeout;
 *	  for a bulk create, the same loop over $batch requests of up to
 *	  BATCH_MAX errors), or into the outbox for the delivery worker (async).  What an answer
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
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "answer.h"
#include "batch.h"
#include "forward.h"
#include "graph_client.h"
#include "graph_url.h"
#include "outbox.h"
#include "policy.h"
#include "registry.h"
#include "settings.h"
#include "store.h"
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

/* How a sync send failed for good. */
typedef enum SyncFailure
{
	SYNC_GAVE_UP,				/* YG002: attempts or edusync.timeout ran out */
	SYNC_REJECTED,				/* YG001: Graph rejected the error */
	SYNC_AUTH,					/* YG003: Graph refused the credentials */
	SYNC_TOKEN					/* YG003: the token endpoint answered an error */
} SyncFailure;

/*
 * Raise the error of a sync send that failed for good: YG002 after
 * attempts sends (last: the last outcome), YG001 or YG003 for outcome
 * last (SYNC_TOKEN: last->reason is the token endpoint's words).
 */
static void
RaiseSyncFailure(SyncFailure how, int attempts, const Outcome *last)
{
	switch (how)
	{
		case SYNC_GAVE_UP:
			ereport(ERROR,
					(errcode(ERRCODE_GRAPH_UNREACHABLE),
					 errmsg("could not forward the error to Graph"),
					 errdetail_internal("Gave up after %d attempt%s within edusync.timeout = %d ms; last: %s",
										attempts, attempts == 1 ? "" : "s", edusync_timeout_ms,
										Sentence((last && last->reason) ? last->reason : "no attempt was made"))));
			break;
		case SYNC_REJECTED:
			ereport(ERROR,
					(errcode(ERRCODE_GRAPH_REJECTED),
					 errmsg_internal(PolicyRejectionWords(last->status), last->status),
					 errdetail_internal("%s", Sentence(last->reason))));
			break;
		case SYNC_AUTH:
			ereport(ERROR,
					(errcode(ERRCODE_GRAPH_AUTH),
					 errmsg("Graph refused the credentials with HTTP status %ld",
							last->status),
					 errdetail_internal("%s", Sentence(last->reason))));
			break;
		case SYNC_TOKEN:
			ereport(ERROR,
					(errcode(ERRCODE_GRAPH_AUTH),
					 errmsg("could not authenticate with Graph"),
					 errdetail_internal("%s", Sentence(last->reason))));
			break;
	}
}

/* Raise YG002: Graph unreachable, or still failing when time or attempts ran out. */
static void
GiveUp(int attempts, const Outcome *last)
{
	RaiseSyncFailure(SYNC_GAVE_UP, attempts, last);
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

/* The request of one sync send of a JSON body to url. */
static void
JsonRequest(GraphRequest *req, const char *url, const char *body,
			const char *token, const char *request_id, long remaining)
{
	memset(req, 0, sizeof(*req));
	req->url = url;
	req->content_type = "application/json";
	req->body = body;
	req->bearer = token;
	req->client_request_id = request_id;
	req->timeout_ms = Max(remaining, 1);
}

/* Wait for the send on the wire; honour a cancel that stopped it. */
static void
FinishJson(GraphResponse *resp)
{
	GraphSendFinish(resp);
	if (resp->aborted)
		CHECK_FOR_INTERRUPTS();
}

/* POST a JSON body to url and wait for the answer. */
static void
SendJson(const char *url, const char *body, const char *token,
		 const char *request_id, long remaining, GraphResponse *resp)
{
	GraphRequest req;

	JsonRequest(&req, url, body, token, request_id, remaining);
	GraphSendStart(&req);
	FinishJson(resp);
}

/* One error's sync send: what every attempt sends, and until when. */
typedef struct SyncSend
{
	const EdusyncError *err;
	char	   *url;
	char	   *body;
	char	   *request_id;
	TimestampTz deadline;
	/* the first attempt, when ForwardSyncEarly began it */
	TokenStatus ts;				/* its token, fetched */
	const char *token;
	char	   *detail;
	bool		on_wire;		/* and its request sent */
} SyncSend;

/*
 * The first attempt of a sync send that ForwardSyncEarly began before the
 * error was stored; ForwardSync goes on with it.
 */
static SyncSend early;
static bool early_begun = false;

static void
SyncSendInit(SyncSend *send, const EdusyncError *err)
{
	send->err = err;
	send->url = GraphErrorsUrl(err->profile_id);	/* 22023 if unsafe */
	send->body = AnswerRequestBody(err);
	send->request_id = FormatGuid(&err->id);
	send->deadline = GetCurrentTimestamp() +
		(TimestampTz) edusync_timeout_ms * 1000;
	send->ts = TOKEN_OK;
	send->token = NULL;
	send->detail = NULL;
	send->on_wire = false;
}

/*
 * Begin the sync send of a new error before it is stored, so that the
 * endpoint answers while the row is inserted: fetch the token and put the
 * request on the wire; ForwardError then goes on from there.  Only when
 * storing cannot refuse the row for what it is (the id is the call's own,
 * and StoreWillTake: the profile exists and is locked, sync_errors is as
 * the extension made it); otherwise nothing happens here and the error is
 * stored first.  The request's url, body and id stay in the call's memory
 * until ForwardSync has waited for the answer.  A failure of the store that
 * remains (out of disk, a cancel) then raises after the send, as a
 * rollback of the caller's transaction would: sync mode sends inside it.
 * When the token cannot be had, nothing is sent: ForwardError reports it
 * after the store, as it would have.  Returns whether it began; a caller
 * that raises before ForwardError runs ForwardSyncAbandon.
 */
bool
ForwardSyncEarly(EdusyncError *err)
{
	GraphRequest req;

	early_begun = false;
	if (edusync_forward != EDUSYNC_FORWARD_SYNC || err->id_given)
		return false;
	/* (an unknown profile is the insert's to refuse, before anything else) */
	if (!StoreWillTake(err))
		return false;
	RequirePreload();
	RequireEndpoint();

	SyncSendInit(&early, err);
	early.ts = TokenGet(false, RemainingMs(early.deadline), &early.token,
						&early.detail);
	CHECK_FOR_INTERRUPTS();
	if (early.ts == TOKEN_OK)
	{
		JsonRequest(&req, early.url, early.body, early.token,
					early.request_id, RemainingMs(early.deadline));
		GraphSendStart(&req);
		early.on_wire = true;
		elog(DEBUG2, "edusync: the send of error %s began before its row was stored",
			 early.request_id);
	}
	/* only now: a raise above leaves nothing for ForwardSync to go on with */
	early_begun = true;
	return true;
}

/* Drop what ForwardSyncEarly began, when the call raises before it is used. */
void
ForwardSyncAbandon(void)
{
	early_begun = false;
	GraphSendAbandon();
}

/*
 * Send the error to Graph before the call returns, with retries, all
 * within edusync.timeout and edusync.max_attempts.  Success records the
 * delivery; failure raises YG001/YG002/YG003 (the caller's statement then
 * fails, and the row is not kept).  The first attempt may have begun
 * already (ForwardSyncEarly).
 */
static void
ForwardSync(const EdusyncError *err, bool fresh)
{
	SyncSend	local;
	SyncSend   *send = &local;
	bool		begun = early_begun && early.err == err;
	bool		refresh = false;
	bool		refreshed = false;
	int			attempt = 0;
	Outcome		out;

	if (begun)
		send = &early;
	else
		SyncSendInit(&local, err);
	early_begun = false;

	memset(&out, 0, sizeof(out));
	for (;;)
	{
		long		remaining = RemainingMs(send->deadline);
		const char *token = send->token;
		char	   *detail = send->detail;
		TokenStatus ts = send->ts;

		if (!begun)
		{
			if (remaining <= 0)
				GiveUp(attempt, &out);
			ts = TokenGet(refresh, remaining, &token, &detail);
			CHECK_FOR_INTERRUPTS();
		}
		refresh = false;
		if (ts == TOKEN_REJECTED)
		{
			out.reason = detail;
			RaiseSyncFailure(SYNC_TOKEN, attempt, &out);
		}

		attempt++;
		if (ts == TOKEN_UNREACHABLE)
			PolicyNoAnswer(&out, detail ? detail : "no token");
		else
		{
			GraphResponse resp;

			if (begun && send->on_wire)
				FinishJson(&resp);
			else
				SendJson(send->url, send->body, token, send->request_id,
						 remaining, &resp);
			ClassifyResponse(resp.status, resp.body, resp.body_len,
							 resp.retry_after, resp.transport_error, &out);
		}
		begun = false;

		switch (out.kind)
		{
			case OUTCOME_DELIVERED:
				OutboxRecordDelivered(err, fresh, attempt, out.status, out.remote_id);
				return;
			case OUTCOME_REJECTED:
				RaiseSyncFailure(SYNC_REJECTED, attempt, &out);
				break;
			case OUTCOME_AUTH:
				/* a fetched token may have been revoked: fetch a new one once */
				if (out.status == 401 && !refreshed && !TokenIsStatic() &&
					token != NULL)
				{
					refresh = refreshed = true;
					continue;
				}
				RaiseSyncFailure(SYNC_AUTH, attempt, &out);
				break;
			case OUTCOME_RETRY:
				break;
		}

		if (attempt >= edusync_max_attempts)
			GiveUp(attempt, &out);
		if (out.retry_after * 1000 >= RemainingMs(send->deadline))
			GiveUp(attempt, &out);	/* Graph asks for a longer wait */
		SleepUntilDeadline(Min(PolicyBackoffMs(attempt, out.retry_after,
								   SYNC_BACKOFF_BASE_MS, RemainingMs(send->deadline)),
					RemainingMs(send->deadline)));
	}
}

/* One error of a bulk sync send: where it is in the call, how it fares. */
typedef struct BulkItem
{
	const EdusyncError *err;
	int			index;			/* its element of the bodies array */
	char	   *request_id;		/* its client-request-id */
	int			attempts;		/* sends so far */
	bool		fresh;			/* inserted by this call: no delivery row yet */
	bool		done;			/* delivered and recorded */
	Outcome		out;			/* its last outcome */
} BulkItem;

/*
 * Raise for element index of a bulk call the error a single create raises
 * when its send fails for good (RaiseSyncFailure), its message prefixed with
 * "bodies[i]: " as validation names an element.
 */
static void
RaiseBulkFailure(int index, SyncFailure how, int attempts, const Outcome *last)
{
	MemoryContext mcxt = CurrentMemoryContext;

	PG_TRY();
	{
		RaiseSyncFailure(how, attempts, last);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(mcxt);
		edata = CopyErrorData();
		FlushErrorState();
		edata->message = psprintf("bodies[%d]: %s", index, edata->message);
		ReThrowError(edata);
	}
	PG_END_TRY();
}

/*
 * Send items[0..n) (n <= BATCH_MAX) in one $batch, then the ones that are
 * worth another try in further $batches, as a single sync create sends one
 * error: every item's answer judged by policy.c, retries with backoff that
 * honours the longest Retry-After of the retried items, one new token after
 * a 401, all within edusync.timeout and edusync.max_attempts sends of each
 * item.  A delivered item is recorded at once.  The first item (in the
 * call's order) that fails for good raises its single create's error.
 */
static void
SendBulkBatch(BulkItem *items, int n, const char *batch_url,
			  const char *item_url)
{
	TimestampTz deadline = GetCurrentTimestamp() +
		(TimestampTz) edusync_timeout_ms * 1000;
	bool		refresh = false;
	bool		refreshed = false;
	BulkItem   *pending[BATCH_MAX];
	Outcome		outs[BATCH_MAX];
	BatchPart	parts[BATCH_MAX];

	Assert(n > 0 && n <= BATCH_MAX);
	for (int i = 0; i < n; i++)
	{
		parts[i].url = item_url;
		parts[i].request_id = items[i].request_id;
		parts[i].body = AnswerRequestBody(items[i].err);
	}

	for (;;)
	{
		long		remaining = RemainingMs(deadline);
		const char *token = NULL;
		char	   *detail = NULL;
		TokenStatus ts;
		BatchPart	send[BATCH_MAX];
		int			npending = 0;
		int			attempt = 0;
		double		retry_after = -1;
		bool		retry = false;

		for (int i = 0; i < n; i++)
			if (!items[i].done)
			{
				send[npending] = parts[i];
				pending[npending++] = &items[i];
			}
		if (npending == 0)
			return;
		if (remaining <= 0)
			RaiseBulkFailure(pending[0]->index, SYNC_GAVE_UP,
							 pending[0]->attempts, &pending[0]->out);

		ts = TokenGet(refresh, remaining, &token, &detail);
		CHECK_FOR_INTERRUPTS();
		refresh = false;
		if (ts == TOKEN_REJECTED)
		{
			pending[0]->out.reason = detail;
			RaiseBulkFailure(pending[0]->index, SYNC_TOKEN,
							 pending[0]->attempts, &pending[0]->out);
		}

		for (int i = 0; i < npending; i++)
			pending[i]->attempts++;
		if (ts == TOKEN_UNREACHABLE)
		{
			/* as a transport error of every item: worth another try */
			for (int i = 0; i < npending; i++)
				PolicyNoAnswer(&outs[i], detail ? detail : "no token");
		}
		else
		{
			GraphResponse resp;

			SendJson(batch_url, BatchBody(send, npending), token, NULL,
					 remaining, &resp);
			if (resp.status >= 200 && resp.status < 300)
				BatchReadAnswer(resp.body, resp.body_len, npending, outs);
			else
			{
				/* the $batch failed as a whole: the same for every item */
				ClassifyResponse(resp.status, resp.body, resp.body_len,
								 resp.retry_after, resp.transport_error,
								 &outs[0]);
				for (int i = 1; i < npending; i++)
					outs[i] = outs[0];
			}
		}

		/*
		 * Record the delivered items; the first (in the call's order) that
		 * fails for good raises what its single create raises.
		 */
		for (int i = 0; i < npending; i++)
		{
			BulkItem   *item = pending[i];
			Outcome    *o = &outs[i];

			item->out = *o;
			switch (o->kind)
			{
				case OUTCOME_DELIVERED:
					OutboxRecordDelivered(item->err, item->fresh, item->attempts,
										  o->status, o->remote_id);
					item->done = true;
					break;
				case OUTCOME_REJECTED:
					RaiseBulkFailure(item->index, SYNC_REJECTED,
									 item->attempts, o);
					break;
				case OUTCOME_AUTH:
					/* a fetched token may have been revoked: fetch a new one once */
					if (o->status == 401 && !refreshed && !TokenIsStatic() &&
						token != NULL)
						refresh = true;
					else
						RaiseBulkFailure(item->index, SYNC_AUTH,
										 item->attempts, o);
					break;
				case OUTCOME_RETRY:
					retry = true;
					attempt = Max(attempt, item->attempts);
					retry_after = Max(retry_after, o->retry_after);
					break;
			}
		}
		if (refresh)
			refreshed = true;
		if (!retry)
			continue;			/* everything delivered, or a new token first */

		for (int i = 0; i < npending; i++)
			if (pending[i]->out.kind == OUTCOME_RETRY &&
				pending[i]->attempts >= edusync_max_attempts)
				RaiseBulkFailure(pending[i]->index, SYNC_GAVE_UP,
								 pending[i]->attempts, &pending[i]->out);
		for (int i = 0; i < npending; i++)
			if (pending[i]->out.kind == OUTCOME_RETRY &&
				pending[i]->out.retry_after * 1000 >= RemainingMs(deadline))
				RaiseBulkFailure(pending[i]->index, SYNC_GAVE_UP,
								 pending[i]->attempts, &pending[i]->out);	/* Graph asks for a longer wait */
		SleepUntilDeadline(Min(PolicyBackoffMs(attempt, retry_after,
											   SYNC_BACKOFF_BASE_MS,
											   RemainingMs(deadline)),
							   RemainingMs(deadline)));
	}
}

/* Is id among the ids of items[0..n)? */
static bool
BulkHasId(const BulkItem *items, int n, const pg_uuid_t *id)
{
	for (int i = 0; i < n; i++)
		if (memcmp(&items[i].err->id, id, sizeof(pg_uuid_t)) == 0)
			return true;
	return false;
}

/*
 * Sync mode for a bulk call: send the errors of errs[0..n) that a single
 * create would send (every new one; a replay only when it was never
 * forwarded, and only once in the call) in $batch requests of BATCH_MAX,
 * in the call's order, each as SendBulkBatch says.
 */
static void
ForwardSyncBulk(const EdusyncError *errs, const bool *inserted, int n)
{
	MemoryContext chunk_cxt;
	MemoryContext old;
	BulkItem   *items;
	char	   *batch_url = NULL;
	char	   *item_url = NULL;
	int			nitems = 0;

	chunk_cxt = AllocSetContextCreate(CurrentMemoryContext,
									  "edusync sync $batch",
									  ALLOCSET_DEFAULT_SIZES);
	items = palloc0(sizeof(BulkItem) * BATCH_MAX);
	for (int i = 0; i <= n; i++)
	{
		bool		flush = (i == n) ? nitems > 0 : nitems == BATCH_MAX;

		if (flush)
		{
			old = MemoryContextSwitchTo(chunk_cxt);
			SendBulkBatch(items, nitems, batch_url, item_url);
			MemoryContextSwitchTo(old);
			MemoryContextReset(chunk_cxt);
			nitems = 0;
		}
		if (i == n)
			break;
		CHECK_FOR_INTERRUPTS();
		if (!inserted[i] &&
			(BulkHasId(items, nitems, &errs[i].id) || OutboxHasDelivery(&errs[i])))
			continue;
		if (batch_url == NULL)
		{
			/* as the single create: refused before any traffic */
			RequirePreload();
			RequireEndpoint();
			batch_url = GraphBatchUrl();	/* 22023 if unsafe */
			item_url = BatchRelativeUrl(GraphErrorsUrl(errs[i].profile_id));
		}
		memset(&items[nitems], 0, sizeof(BulkItem));
		items[nitems].err = &errs[i];
		items[nitems].index = i;
		items[nitems].fresh = inserted[i];
		old = MemoryContextSwitchTo(chunk_cxt);
		items[nitems].request_id = FormatGuid(&errs[i].id);
		MemoryContextSwitchTo(old);
		nitems++;
	}
	MemoryContextDelete(chunk_cxt);
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
			ForwardSync(err, !replay);
			break;
		case EDUSYNC_FORWARD_ASYNC:
			ForwardRequireAsync();
			/* refuse an unusable configuration now, not in the worker */
			(void) GraphErrorsUrl(err->profile_id);
			OutboxEnqueue(err, !replay);
			break;
	}
}

/*
 * Forward the errors of a bulk call, errs[0..n) (inserted[i]: stored by
 * this call; else a replay), as create_sync_error forwards each: async
 * queues one delivery per error, sync sends them in $batch requests of up
 * to BATCH_MAX (ForwardSyncBulk).
 */
void
ForwardErrors(const EdusyncError *errs, const bool *inserted, int n)
{
	MemoryContext cxt;
	MemoryContext old;

	switch (edusync_forward)
	{
		case EDUSYNC_FORWARD_OFF:
			return;
		case EDUSYNC_FORWARD_SYNC:
			ForwardSyncBulk(errs, inserted, n);
			return;
		case EDUSYNC_FORWARD_ASYNC:
			cxt = AllocSetContextCreate(CurrentMemoryContext,
										"edusync forward",
										ALLOCSET_SMALL_SIZES);
			old = MemoryContextSwitchTo(cxt);
			for (int i = 0; i < n; i++)
			{
				CHECK_FOR_INTERRUPTS();
				ForwardError(&errs[i], !inserted[i]);
				MemoryContextReset(cxt);
			}
			MemoryContextSwitchTo(old);
			MemoryContextDelete(cxt);
			return;
	}
}
