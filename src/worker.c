/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The delivery worker of async mode, one per database (the launcher,
 *	  launcher.c, starts it): a background worker that sends the errors
 *	  queued in edusync.deliveries to Graph after their transaction
 *	  commits, and records what Graph answered.
 *
 *	  Commit wakes the worker (RegistryWakeWorker sets its latch, found in
 *	  its database's slot in shared memory); without wakes it sleeps until the next
 *	  delivery is due, at most WORKER_IDLE_MS.  Each turn of its loop reads
 *	  the due deliveries in a short transaction, sends them with up to
 *	  edusync.max_in_flight requests in flight on kept-alive connections
 *	  (multiplexed over HTTP/2 where the endpoint speaks it; one error per
 *	  request, or up to 20 per $batch request when edusync.batch_size > 1),
 *	  and records the answers of every request finished in the turn in one
 *	  short transaction, with one statement.
 *
 *	  Nothing is marked before it is sent: a delivery stays 'pending' until
 *	  an answer is recorded, so a crash, a restart or a lost answer means it
 *	  is sent again (at least once; client-request-id is the error's id on
 *	  every send).
 *
 *	  Decisions, in one place:
 *	  - attempts counts every send, as in sync mode.  Retryable answers
 *		(no answer, timeout, 408, 429, 500, 502, 503, 504) are retried with
 *		exponential backoff and full jitter (1 s base, 5 min cap), never
 *		sooner than Retry-After; the delivery becomes 'failed' when its
 *		attempts reach edusync.max_attempts.
 *	  - Throttling (429 or 503 with Retry-After, also for one item of a
 *		$batch) pauses every send to Graph until that time.  Other retryable
 *		failures put the host in probe mode: one request at a time, after
 *		a growing pause, until an answer comes back; so during an outage
 *		only the probes spend attempts, and pending deliveries wait.
 *	  - Any other 4xx: 'failed' at once, with Graph's "code: message".
 *	  - 401 with a token from the client-credentials flow: the token is
 *		fetched again once and the delivery is retried at once.  A 401
 *		after that refresh, a 401 with a static token, or a 403 is treated
 *		like an outage (backoff, probe mode, 'failed' after max_attempts):
 *		it is often a credentials or permission fix still under way.
 *	  - A token endpoint that fails sends nothing and spends no attempt:
 *		the worker logs a warning and pauses with backoff.
 *	  - An unsafe configuration (22023: graph_url, errors_path, token_url)
 *		sends nothing and spends no attempt: the worker logs a warning once
 *		and waits for the configuration to be reloaded.
 *	  - A delivery whose outcome cannot be recorded (a user's trigger or
 *		constraint refuses the update) stays pending and is held back in
 *		memory, 1 s and doubling up to 5 min, so it cannot stop the queue
 *		or make the worker spin; any other unexpected ERROR is logged, the
 *		transaction aborted, and the worker pauses (1 s doubling to 60 s).
 *	  - A reload (SIGHUP) clears every pause, so a fix is used at once.
 *	  - The worker's own commits are asynchronous (synchronous_commit =
 *		off): a crash may forget the last outcomes recorded, and those
 *		errors are then sent again, which at-least-once allows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "compat.h"
#include "answer.h"
#include "batch.h"
#include "graph_client.h"
#include "graph_url.h"
#include "outbox.h"
#include "policy.h"
#include "registry.h"
#include "settings.h"
#include "token.h"
#include "worker.h"

#define WORKER_NAME				"edusync delivery worker"
#define WORKER_IDLE_MS			10000	/* longest sleep without a wake */
#define WORKER_DRIVE_MS			20	/* network wait between other checks */
#define WORKER_MAX_WINDOW		64	/* largest edusync.max_in_flight */

#define HOST_BACKOFF_BASE_MS	200 /* probe mode, after a failure */
#define HOST_BACKOFF_CAP_MS		30000
#define THROTTLE_MIN_MS			100 /* shortest pause after a throttle */
#define TROUBLE_BACKOFF_BASE_MS 1000	/* token failures, unexpected errors */
#define TROUBLE_BACKOFF_CAP_MS	60000
#define TROUBLE_MIN_MS			500
#define HOLD_MAX				1024	/* deliveries held back at once */
#define HOLD_BASE_MS			1000	/* first hold of an unrecordable one */
#define HOLD_CAP_MS				300000
#define FAILED_LOG_MAX			10	/* "failed for good" lines a minute */
#define PURGE_BATCH				1000	/* delivered rows deleted at once */
#define PURGE_EVERY_MS			10000

/*
 * Work per transaction.  A claim reads more rows than the window holds and
 * the window is fed from memory (rows read ahead are read again when older
 * than READY_MAX_AGE_MS, so that a cancel or a pause is seen); the answers
 * of requests that went well wait in memory, still pending in the table,
 * until RECORD_ROWS of them are there, RECORD_MAX_MS have passed, nothing
 * is in flight, or the next claim records them in its own transaction.  An
 * answer that is not a plain success is recorded at once, with the rest.
 */
#define CLAIM_AHEAD_MIN			128 /* rows one claim reads, at least */
#define CLAIM_AHEAD_MAX			1024
#define READY_MAX_AGE_MS		1000
#define RECORD_ROWS				256
#define RECORD_MAX_MS			20
#define FINISHED_MAX			256 /* answered requests waiting at once */

/* One error to send, with what it takes to send it. */
typedef struct Delivery
{
	char	   *profile_id;
	pg_uuid_t	error_id;
	ItemPointerData tid;		/* its row, as the claim read it */
	char	   *error_id_text;	/* lowercase GUID: the client-request-id */
	int			attempts;		/* before this send */
	char	   *url;			/* absolute; in a $batch, below graph_url */
	char	   *body;			/* the JSON request body */
} Delivery;

/*
 * One request in flight: one delivery, or up to BATCH_MAX in a $batch.  It
 * lives in its own memory context until its answer is recorded.
 */
typedef struct Flight
{
	MemoryContext cxt;
	int			ndeliveries;
	Delivery   *deliveries;
	bool		batch;
	bool		refreshable;	/* its token came from client credentials */
	uint64		token_gen;		/* which token it carried */
	GraphResponse *resp;		/* the answer, once finished (loop memory) */
	/* once finished: what Graph said, and what becomes of each delivery */
	Outcome    *outs;
	Verdict    *verdicts;
	HostEffect	fx;
	bool		recorded;		/* the verdicts are in the table */
} Flight;

/*
 * A delivery whose outcome could not be recorded (a trigger or a
 * constraint refused the update): not sent again before until, so that one
 * bad row cannot make the worker spin.  strikes grows the hold.
 */
typedef struct Hold
{
	pg_uuid_t	error_id;
	TimestampTz until;
	int			strikes;
} Hold;

PGDLLEXPORT void edusync_worker_main(Datum main_arg);

static void FlushFinished(void);
static void FinishRecorded(void);

/* The worker's own state. */
static Oid	worker_dbid = InvalidOid;
static MemoryContext WorkerContext = NULL;	/* flights in flight */
static MemoryContext LoopContext = NULL;	/* reset every turn of the loop */
static Flight *flights[WORKER_MAX_WINDOW];
static int	nflights = 0;
static TimestampTz next_due = 0;	/* earliest pending not in flight; 0:
									 * unknown, look now */
static TimestampTz paused_until = 0;	/* no new request before this */

/*
 * Where the claim starts in deliveries_pending_idx: the next_attempt_at of
 * the first row the last claim read.  Rows delivered since leave dead
 * entries below it, which a claim from the start would walk through every
 * time.  A row can only appear below it through a commit that wakes the
 * worker (a transaction that started earlier, retry_failed) or a hold that
 * ends, so a wake, a hold, a reload or an empty claim starts from the start
 * again (DT_NOBEGIN).
 */
static TimestampTz claim_from = DT_NOBEGIN;
static int	host_streak = 0;	/* failures in a row: probe mode when > 0 */
static int	trouble_streak = 0; /* token failures or unexpected errors */
static bool config_broken = false;	/* unsafe configuration: wait for reload */
static uint64 token_gen = 1;	/* bumped by each forced token refresh */
static bool token_gen_forced = false;	/* the current token is a refresh
										 * not yet proven good */
static bool refresh_pending = false;	/* refresh the token before the next
										 * send */
static int	reported_flights = -1;	/* what pg_stat_activity shows */
static Hold holds[HOLD_MAX];
static int	nholds = 0;

/* rows read ahead by the last claim, not yet sent (ReadyContext) */
static MemoryContext ReadyContext = NULL;
static OutboxRow *ready = NULL;
static int	nready = 0;
static int	ready_next = 0;
static TimestampTz ready_at = 0;

/* answered requests whose verdicts are not recorded yet (plain successes) */
static Flight *finished[FINISHED_MAX];
static int	nfinished = 0;
static int	nfinished_rows = 0;
static TimestampTz finished_since = 0;

/* the configuration was checked (ConfigUsable) since the last reload */
static bool config_checked = false;
static char waiting_reason[256] = "";	/* why deliveries wait, if they do */


/*
 * Describe the delivery worker of database dbid (named dbname) for the
 * launcher to start: a dynamic background worker, not restarted by the
 * postmaster (the launcher restarts it).
 */
void
WorkerDescribe(BackgroundWorker *worker, Oid dbid, const char *dbname)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker->bgw_library_name, "edusync", BGW_MAXLEN);
	strlcpy(worker->bgw_function_name, "edusync_worker_main", BGW_MAXLEN);
	snprintf(worker->bgw_name, BGW_MAXLEN, "%s for database %s",
			 WORKER_NAME, dbname);
	strlcpy(worker->bgw_type, WORKER_NAME, BGW_MAXLEN);
	worker->bgw_main_arg = ObjectIdGetDatum(dbid);
}


/* ---------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------
 */

/* ts plus ms milliseconds. */
static TimestampTz
PlusMs(TimestampTz ts, long ms)
{
	return ts + (TimestampTz) ms * 1000;
}

/* Milliseconds from now until ts, rounded up; 0 when ts has passed. */
static long
MsUntil(TimestampTz ts, TimestampTz now)
{
	if (ts <= now)
		return 0;
	return (long) ((ts - now + 999) / 1000);
}

/* Pause every new request until at least now + ms. */
static void
PauseFor(long ms)
{
	TimestampTz until = PlusMs(GetCurrentTimestamp(), ms);

	if (until > paused_until)
		paused_until = until;
}

/* Pause after a token failure or an unexpected error, growing each time. */
static void
PauseForTrouble(void)
{
	trouble_streak++;
	PauseFor(Max((long) TROUBLE_MIN_MS,
				 PolicyBackoffMs(trouble_streak, -1, TROUBLE_BACKOFF_BASE_MS,
								TROUBLE_BACKOFF_CAP_MS)));
}

/* Hold back the deliveries of f, whose outcome could not be recorded. */
static void
HoldFlight(const Flight *f)
{
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < f->ndeliveries; i++)
	{
		const pg_uuid_t *id = &f->deliveries[i].error_id;
		Hold	   *h = NULL;
		long		ms;

		for (int j = 0; j < nholds; j++)
			if (memcmp(&holds[j].error_id, id, sizeof(pg_uuid_t)) == 0)
				h = &holds[j];
		if (h == NULL)
		{
			if (nholds < HOLD_MAX)
				h = &holds[nholds++];
			else
			{
				/* full: replace the hold that ends first */
				h = &holds[0];
				for (int j = 1; j < nholds; j++)
					if (holds[j].until < h->until)
						h = &holds[j];
			}
			memcpy(&h->error_id, id, sizeof(pg_uuid_t));
			h->strikes = 0;
		}
		h->strikes++;
		ms = HOLD_BASE_MS;
		for (int k = 1; k < h->strikes && ms < HOLD_CAP_MS; k++)
			ms *= 2;
		h->until = PlusMs(now, Min(ms, (long) HOLD_CAP_MS));
	}
}

/* Forget the holds of f's deliveries: their outcome was recorded. */
static void
ReleaseHolds(const Flight *f)
{
	for (int i = 0; i < f->ndeliveries && nholds > 0; i++)
	{
		for (int j = 0; j < nholds; j++)
		{
			if (memcmp(&holds[j].error_id, &f->deliveries[i].error_id,
					   sizeof(pg_uuid_t)) == 0)
			{
				holds[j] = holds[--nholds];
				break;
			}
		}
	}
}

/* When the first current hold ends, or 0 when none is current. */
static TimestampTz
FirstHoldEnd(TimestampTz now)
{
	TimestampTz first = 0;

	for (int j = 0; j < nholds; j++)
		if (holds[j].until > now && (first == 0 || holds[j].until < first))
			first = holds[j].until;
	return first;
}

/* Tell pg_stat_activity what the worker is doing, when that changes. */
static void
ReportActivity(void)
{
	if (nflights == reported_flights)
		return;
	reported_flights = nflights;
	if (nflights == 0)
		pgstat_report_activity(STATE_IDLE, NULL);
	else
	{
		char		buf[64];

		snprintf(buf, sizeof(buf), "sending %d request%s to Graph",
				 nflights, nflights == 1 ? "" : "s");
		pgstat_report_activity(STATE_RUNNING, buf);
	}
}

/*
 * Start a short transaction with a snapshot, staying in the caller's
 * memory context (what is read must outlive the transaction).
 */
static void
BeginWork(const char *activity)
{
	MemoryContext mcxt = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(mcxt);
	pgstat_report_activity(STATE_RUNNING, activity);
	reported_flights = -1;
}

/* Commit what BeginWork started; back in mcxt afterwards. */
static void
EndWork(MemoryContext mcxt)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(mcxt);
}


/* ---------------------------------------------------------------------
 * Building and sending requests
 * ---------------------------------------------------------------------
 */

/*
 * In a PG_CATCH: pause the worker for an unsafe configuration (22023),
 * with one warning; any other error is thrown again.
 */
static void
PauseForUnsafeConfig(MemoryContext mcxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(mcxt);
	edata = CopyErrorData();
	if (edata->sqlerrcode != ERRCODE_INVALID_PARAMETER_VALUE)
		PG_RE_THROW();
	FlushErrorState();
	config_broken = true;
	RegistryReport("paused", psprintf("configuration: %s", edata->message));
	strlcpy(waiting_reason, psprintf("configuration: %s", edata->message),
			sizeof(waiting_reason));
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("edusync delivery worker paused: %s", edata->message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
			 errhint("Fix the setting and reload the configuration; pending deliveries are kept.")));
}

/*
 * Check the forwarding configuration before any traffic.  On 22023 the
 * worker warns once and waits for a reload; other errors propagate.
 */
static bool
ConfigUsable(void)
{
	MemoryContext mcxt = CurrentMemoryContext;
	volatile bool ok = true;

	if (config_broken)
		return false;
	if (config_checked)
		return true;			/* settings change only with a reload */
	PG_TRY();
	{
		(void) GraphErrorsUrl("profile");
		if (edusync_batch_size > 1)
			(void) GraphBatchUrl();
	}
	PG_CATCH();
	{
		PauseForUnsafeConfig(mcxt);
		ok = false;
	}
	PG_END_TRY();
	config_checked = ok;
	return ok;
}

/*
 * The bearer token for the next requests (NULL: no authentication), with
 * a refresh when a 401 asked for one.  False when none could be had: the
 * worker then warns and pauses, and nothing is sent.
 */
static bool
GetToken(const char **token, bool *refreshable)
{
	MemoryContext mcxt = CurrentMemoryContext;
	volatile TokenStatus ts = TOKEN_OK;
	char	   *volatile detail = NULL;
	volatile bool force = refresh_pending;
	volatile bool unsafe = false;

	*token = NULL;
	PG_TRY();
	{
		const char *t = NULL;
		char	   *dt = NULL;

		ts = TokenGet(force, edusync_timeout_ms, &t, &dt);
		*token = t;
		detail = dt;
	}
	PG_CATCH();
	{
		PauseForUnsafeConfig(mcxt);
		unsafe = true;
	}
	PG_END_TRY();

	if (unsafe)
		return false;
	if (force)
	{
		refresh_pending = false;
		token_gen++;
		token_gen_forced = true;
	}
	if (ts != TOKEN_OK)
	{
		RegistryReport("paused", psprintf("token: %s", detail ? detail : "no detail"));
		strlcpy(waiting_reason, psprintf("token: %s", detail ? detail : "no detail"),
				sizeof(waiting_reason));
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("edusync delivery worker could not obtain a token for Graph"),
				 errdetail_internal("%s", detail ? detail : "No detail."),
				 errhint("Deliveries stay pending; the worker tries again later, or at once after a configuration reload.")));
		PauseForTrouble();
		return false;
	}
	*refreshable = (*token != NULL && !TokenIsStatic());
	return true;
}

/*
 * Build one delivery's URL and body into d (in the current memory).
 * batch: the URL relative to graph_url, as a $batch item wants it.
 */
static void
BuildDelivery(const OutboxRow *row, bool batch, Delivery *d)
{
	/* GraphErrorsUrl keeps the last URL it built and checked */
	char	   *url = GraphErrorsUrl(row->err.profile_id);

	d->profile_id = pstrdup(row->err.profile_id);
	memcpy(&d->error_id, &row->err.id, sizeof(pg_uuid_t));
	d->tid = row->tid;
	d->error_id_text = FormatGuid(&row->err.id);
	d->attempts = row->attempts;
	d->body = AnswerRequestBody(&row->err);
	d->url = batch ? BatchRelativeUrl(url) : url;
}

/*
 * Record the verdicts on the deliveries of fs[0..nf) with one statement: in
 * the transaction under way if there is one (a claim's), else in one short
 * transaction of its own.
 */
static void
RecordFlights(Flight *const *fs, int nf)
{
	MemoryContext outer = CurrentMemoryContext;
	bool		own = !IsTransactionState();
	int			total = 0;
	int			k = 0;
	const char **profile_ids;
	pg_uuid_t  *error_ids;
	ItemPointerData *tids;
	Verdict    *verdicts;

	for (int i = 0; i < nf; i++)
		total += fs[i]->ndeliveries;
	profile_ids = palloc(sizeof(char *) * Max(total, 1));
	error_ids = palloc(sizeof(pg_uuid_t) * Max(total, 1));
	tids = palloc(sizeof(ItemPointerData) * Max(total, 1));
	verdicts = palloc(sizeof(Verdict) * Max(total, 1));
	for (int i = 0; i < nf; i++)
	{
		for (int j = 0; j < fs[i]->ndeliveries; j++)
		{
			profile_ids[k] = fs[i]->deliveries[j].profile_id;
			error_ids[k] = fs[i]->deliveries[j].error_id;
			tids[k] = fs[i]->deliveries[j].tid;
			verdicts[k] = fs[i]->verdicts[j];
			k++;
		}
	}
	if (own)
		BeginWork("recording deliveries");
	OutboxRecordVerdicts(total, profile_ids, error_ids, tids, verdicts);
	if (own)
		EndWork(outer);
}

/*
 * Build the deliveries of rows[0..n) into f; a row that cannot be built is
 * recorded as failed at once, so it cannot stop the queue.
 */
static void
BuildFlight(Flight *f, OutboxRow *rows, int n)
{
	MemoryContext mcxt = CurrentMemoryContext;
	Flight		bad;
	Verdict    *bad_verdicts;

	f->deliveries = palloc0(sizeof(Delivery) * n);
	f->ndeliveries = 0;
	memset(&bad, 0, sizeof(bad));
	bad.deliveries = palloc0(sizeof(Delivery) * n);
	bad_verdicts = palloc0(sizeof(Verdict) * n);

	for (int i = 0; i < n; i++)
	{
		PG_TRY();
		{
			BuildDelivery(&rows[i], f->batch, &f->deliveries[f->ndeliveries]);
			f->ndeliveries++;
		}
		PG_CATCH();
		{
			ErrorData  *edata;
			Delivery   *d = &bad.deliveries[bad.ndeliveries];
			Verdict    *v = &bad_verdicts[bad.ndeliveries];

			MemoryContextSwitchTo(mcxt);
			edata = CopyErrorData();
			FlushErrorState();
			d->profile_id = rows[i].err.profile_id;
			memcpy(&d->error_id, &rows[i].err.id, sizeof(pg_uuid_t));
			d->tid = rows[i].tid;
			v->status = "failed";
			v->last_error = psprintf("could not build the request: %s",
									 edata->message);
			bad.ndeliveries++;
			ereport(WARNING,
					(errcode(edata->sqlerrcode),
					 errmsg("edusync delivery worker could not build the request for error %s of profile \"%s\"",
							FormatGuid(&rows[i].err.id), rows[i].err.profile_id),
					 errdetail_internal("%s", edata->message)));
		}
		PG_END_TRY();
	}
	if (bad.ndeliveries > 0)
	{
		Flight	   *badp = &bad;

		bad.verdicts = bad_verdicts;
		RecordFlights(&badp, 1);
	}
}

/* Build a request for rows[0..n) and put it in flight (or record it failed). */
static void
StartFlight(OutboxRow *rows, int n, bool batch, const char *token,
			bool refreshable)
{
	MemoryContext mcxt = CurrentMemoryContext;
	MemoryContext fcxt;
	Flight	   *f;
	GraphRequest req;

	/*
	 * Under the loop's memory until it is in flight: an ERROR frees it.  A
	 * request's body, URL and answer fit in a context of the default size,
	 * which a deleted one's freelist hands to the next flight as it is:
	 * without a malloc (a small one grew by three, each freed again).
	 */
	fcxt = AllocSetContextCreate(LoopContext, "edusync flight",
								 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(fcxt);
	f = palloc0(sizeof(Flight));
	f->cxt = fcxt;
	f->batch = batch;
	f->refreshable = refreshable;
	f->token_gen = token_gen;
	BuildFlight(f, rows, n);
	MemoryContextSwitchTo(fcxt);

	if (f->ndeliveries == 0)
	{
		MemoryContextSwitchTo(mcxt);
		return;
	}

	memset(&req, 0, sizeof(req));
	req.content_type = "application/json";
	req.bearer = token;
	req.timeout_ms = edusync_timeout_ms;
	req.tag = f;
	if (batch)
	{
		BatchPart  *parts = palloc(sizeof(BatchPart) * f->ndeliveries);

		for (int i = 0; i < f->ndeliveries; i++)
		{
			parts[i].url = f->deliveries[i].url;
			parts[i].request_id = f->deliveries[i].error_id_text;
			parts[i].body = f->deliveries[i].body;
		}
		req.url = GraphBatchUrl();
		req.body = BatchBody(parts, f->ndeliveries);
		req.client_request_id = NULL;
	}
	else
	{
		req.url = f->deliveries[0].url;
		req.body = f->deliveries[0].body;
		req.client_request_id = f->deliveries[0].error_id_text;
	}
	MemoryContextSwitchTo(mcxt);

	GraphMultiAdd(&req);
	MemoryContextSetParent(fcxt, WorkerContext);
	flights[nflights++] = f;
}


/*
 * Fill ids with the deliveries a claim must leave out: those in flight and
 * those held back (until they may be sent again).  Returns how many.
 */
static int
LeftOutIds(Datum *ids, TimestampTz now)
{
	int			nids = 0;

	for (int i = 0; i < nflights; i++)
		for (int j = 0; j < flights[i]->ndeliveries; j++)
			ids[nids++] = UUIDPGetDatum(&flights[i]->deliveries[j].error_id);
	for (int i = 0; i < nholds; i++)
		if (holds[i].until > now)
			ids[nids++] = UUIDPGetDatum(&holds[i].error_id);
	return nids;
}

/*
 * Read up to limit due deliveries that are not in flight or held back, in
 * a short transaction, into *rows in rows_cxt; sets next_due.  Answers
 * waiting to be recorded are recorded first, in the same transaction when
 * that works (else as RecordFinished does).  Returns how many, or -1 when
 * the extension is not installed.
 */
static int
ClaimDue(int limit, OutboxRow **rows, MemoryContext rows_cxt)
{
	MemoryContext outer = CurrentMemoryContext;
	TimestampTz now = GetCurrentTimestamp();
	Datum	   *ids = palloc(sizeof(Datum) * (nflights * BATCH_MAX + HOLD_MAX + 1));
	TimestampTz due = -1;
	TimestampTz first_at = DT_NOBEGIN;
	TimestampTz hold_end;
	int			nids = 0;
	volatile int n = 0;
	volatile bool merged = false;

	/*
	 * Recorded answers are no longer pending when the claim reads (it runs
	 * after the record, in the same transaction or a later one), so only
	 * what is in flight or held back is left out.
	 */
	nids = LeftOutIds(ids, now);

	if (nfinished > 0)
	{
		PG_TRY();
		{
			TimestampTz d;
			TimestampTz fa;

			MemoryContextSwitchTo(rows_cxt);
			BeginWork("recording deliveries and reading due ones");
			RecordFlights(finished, nfinished);
			n = OutboxClaimDue(limit, ids, nids,
							   nholds > 0 ? DT_NOBEGIN : claim_from,
							   rows, &d, &fa);
			EndWork(outer);
			due = d;
			first_at = fa;
			merged = true;
		}
		PG_CATCH();
		{
			/* recorded again below, one request at a time if need be */
			HOLD_INTERRUPTS();
			AbortCurrentTransaction();
			MemoryContextSwitchTo(outer);
			FlushErrorState();
			RESUME_INTERRUPTS();
		}
		PG_END_TRY();
		if (merged)
		{
			for (int i = 0; i < nfinished; i++)
				finished[i]->recorded = true;
		}
		else
			FlushFinished();
	}
	if (!merged)
	{
		/* (FlushFinished may have held some back: leave them out too) */
		nids = LeftOutIds(ids, now);
		MemoryContextSwitchTo(rows_cxt);
		BeginWork("reading due deliveries");
		n = OutboxClaimDue(limit, ids, nids, nholds > 0 ? DT_NOBEGIN : claim_from,
						   rows, &due, &first_at);
		EndWork(outer);
	}
	claim_from = (n > 0 && nholds == 0) ? first_at : DT_NOBEGIN;

	if (due < 0)
		next_due = PlusMs(GetCurrentTimestamp(), WORKER_IDLE_MS);
	else
		next_due = due;
	/* a held-back delivery is due again when its hold ends */
	hold_end = FirstHoldEnd(now);
	if (next_due != 0 && hold_end != 0 && hold_end < next_due)
		next_due = hold_end;
	if (merged)
		FinishRecorded();
	return n;
}

/*
 * Say on the deliveries just read why they wait (waiting_reason), so that
 * a row held by token or configuration trouble tells why; best effort.
 */
static void
NoteWaiting(OutboxRow *rows, int n)
{
	MemoryContext mcxt = CurrentMemoryContext;
	const char **profile_ids = palloc(sizeof(char *) * n);
	pg_uuid_t  *error_ids = palloc(sizeof(pg_uuid_t) * n);

	for (int i = 0; i < n; i++)
	{
		profile_ids[i] = rows[i].err.profile_id;
		error_ids[i] = rows[i].err.id;
	}
	BeginWork("noting why deliveries wait");
	OutboxNoteWaiting(n, profile_ids, error_ids,
					  psprintf("waiting: %s", waiting_reason));
	EndWork(mcxt);
}

/* Forget the rows read ahead (they are read again when due). */
static void
DropReady(void)
{
	if (ReadyContext != NULL)
		MemoryContextReset(ReadyContext);
	ready = NULL;
	nready = 0;
	ready_next = 0;
}

/*
 * Send what is due, as far as the window allows: edusync.max_in_flight
 * requests, one in probe mode, none while paused.  Requests are fed from
 * the rows the last claim read ahead; a claim reads more (up to
 * CLAIM_AHEAD_MAX rows) when they are used up.
 */
static void
FillWindow(void)
{
	int			window = host_streak > 0 ? 1 :
		Min(edusync_max_in_flight, WORKER_MAX_WINDOW);
	int			per_request = Max(1, Min(edusync_batch_size, BATCH_MAX));
	TimestampTz now = GetCurrentTimestamp();
	const char *token;
	bool		refreshable = false;
	int			room = window - nflights;
	int			sent = 0;
	int			requests = 0;

	/* rows read ahead long ago are read again: a cancel or a pause shows */
	if (ready_next < nready && now - ready_at > (TimestampTz) READY_MAX_AGE_MS * 1000)
	{
		DropReady();
		next_due = 0;
	}
	if (room <= 0 || now < paused_until)
		return;
	if (ready_next >= nready)
	{
		OutboxRow  *rows;
		int			ahead;
		int			n;

		if (next_due != 0 && now < next_due)
			return;
		if (!ConfigUsable())
			return;
		ahead = Min(Max(window * per_request * 8, CLAIM_AHEAD_MIN),
					CLAIM_AHEAD_MAX);
		DropReady();
		n = ClaimDue(Max(room * per_request, ahead), &rows, ReadyContext);
		if (n < 0)
		{
			/* DROP EXTENSION: nothing left to deliver here */
			ereport(LOG,
					(errmsg("edusync delivery worker stops: the extension is no longer installed in this database")));
			RegistrySetState(worker_dbid, SLOT_ABSENT, false);
			proc_exit(0);
		}
		if (n == 0)
			return;
		ready = rows;
		nready = n;
		ready_next = 0;
		ready_at = GetCurrentTimestamp();
	}
	else if (!ConfigUsable())
		return;

	if (!GetToken(&token, &refreshable))
	{
		NoteWaiting(&ready[ready_next], nready - ready_next);
		DropReady();
		next_due = 0;			/* what was read is still due */
		return;
	}

	while (room > 0 && ready_next < nready)
	{
		int			k = Min(per_request, nready - ready_next);

		StartFlight(&ready[ready_next], k, per_request > 1, token, refreshable);
		ready_next += k;
		sent += k;
		requests++;
		room--;
	}
	RegistryCount(sent, 0, 0, 0, 0, per_request > 1 ? requests : 0, false);
}


/* ---------------------------------------------------------------------
 * Answers
 * ---------------------------------------------------------------------
 */

/* What Graph answered for each delivery of f, into outs[]. */
static void
ReadAnswers(const Flight *f, const GraphResponse *resp, Outcome *outs)
{
	if (f->batch && resp->status >= 200 && resp->status < 300)
		BatchReadAnswer(resp->body, resp->body_len, f->ndeliveries, outs);
	else
	{
		/* one request, or a $batch that failed as a whole: same for all */
		ClassifyResponse(resp->status, resp->body, resp->body_len,
						 resp->retry_after, resp->transport_error, &outs[0]);
		for (int i = 1; i < f->ndeliveries; i++)
			outs[i] = outs[0];
	}
}

/*
 * Count what was recorded for worker_status(), and say in the log when a
 * delivery failed for good: at most FAILED_LOG_MAX lines a minute, then
 * how many more there were.
 */
static void
CountVerdicts(const Flight *f, const Outcome *outs, const Verdict *verdicts)
{
	static TimestampTz window_start = 0;
	static int	logged = 0;
	static int	unlogged = 0;
	TimestampTz now = GetCurrentTimestamp();
	int64		delivered = 0;
	int64		retried = 0;
	int64		failed = 0;

	if (now - window_start > 60 * USECS_PER_SEC)
	{
		if (unlogged > 0)
			ereport(LOG,
					(errmsg("edusync delivery worker: %d more deliveries failed for good in the last minute",
							unlogged)));
		window_start = now;
		logged = unlogged = 0;
	}
	for (int i = 0; i < f->ndeliveries; i++)
	{
		const char *status = verdicts[i].status;

		if (strcmp(status, "delivered") == 0)
			delivered++;
		else if (strcmp(status, "pending") == 0)
			retried++;
		else
		{
			failed++;
			if (logged++ < FAILED_LOG_MAX)
				ereport(LOG,
						(errmsg("edusync delivery worker: error %s of profile \"%s\" failed for good after %d attempt%s",
								f->deliveries[i].error_id_text, f->deliveries[i].profile_id,
								f->deliveries[i].attempts + 1,
								f->deliveries[i].attempts == 0 ? "" : "s"),
						 errdetail_internal("%s", Sentence(outs[i].reason ? outs[i].reason : "no reason"))));
			else
				unlogged++;
		}
	}
	RegistryCount(0, delivered, retried, failed, 0, 0, delivered > 0);
	if (delivered > 0 && host_streak == 0 && paused_until <= now)
		RegistryReport(nflights > 0 ? "sending" : "idle", NULL);
}

/*
 * Judge each delivery of a finished request (into f->verdicts and f->fx).
 * False when there is nothing to record: stopped for an interrupt, it was
 * never answered and is still due, and no attempt was spent.
 */
static bool
JudgeFlight(Flight *f)
{
	MemoryContext mcxt = CurrentMemoryContext;
	GraphResponse *resp = f->resp;
	Outcome    *outs;
	Verdict    *verdicts;

	if (resp->aborted)
		return false;

	outs = f->outs = palloc0(sizeof(Outcome) * f->ndeliveries);
	verdicts = f->verdicts = palloc0(sizeof(Verdict) * f->ndeliveries);
	PG_TRY();
	{
		ReadAnswers(f, resp, outs);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		char	   *reason;

		/* an answer we cannot read is one we did not get */
		MemoryContextSwitchTo(mcxt);
		edata = CopyErrorData();
		FlushErrorState();
		reason = psprintf("could not read the answer: %s", edata->message);
		for (int i = 0; i < f->ndeliveries; i++)
		{
			PolicyNoAnswer(&outs[i], reason);
			outs[i].status = resp->status;
		}
	}
	PG_END_TRY();

	memset(&f->fx, 0, sizeof(f->fx));
	f->fx.throttle_s = -1;
	for (int i = 0; i < f->ndeliveries; i++)
	{
		/* a 401 with a token that a newer one may cure */
		bool		may_refresh = f->refreshable &&
			(f->token_gen < token_gen || !token_gen_forced);

		PolicyJudge(&outs[i], f->deliveries[i].attempts, may_refresh,
					&verdicts[i], &f->fx);
		if (verdicts[i].refresh_token && f->token_gen == token_gen)
			refresh_pending = true;
		if (strcmp(verdicts[i].status, "delivered") == 0 &&
			f->token_gen == token_gen)
			token_gen_forced = false;	/* this token works */
	}
	return true;
}

/*
 * Record f's verdicts in a transaction of its own.  When that fails (a
 * user's trigger or constraint refuses the update), say why and hold f's
 * deliveries back rather than send them in a loop.  Returns f->recorded.
 */
static bool
RecordOneFlight(Flight *f)
{
	MemoryContext mcxt = CurrentMemoryContext;

	PG_TRY();
	{
		RecordFlights(&f, 1);
		f->recorded = true;
	}
	PG_CATCH();
	{
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(mcxt);
		FlushErrorState();
		RESUME_INTERRUPTS();
		f->recorded = false;
	}
	PG_END_TRY();

	if (!f->recorded)
	{
		HoldFlight(f);
		ereport(WARNING,
				(errmsg("edusync delivery worker could not record what Graph answered for error %s of profile \"%s\"%s",
						f->deliveries[0].error_id_text, f->deliveries[0].profile_id,
						f->ndeliveries > 1 ? " and the rest of its $batch" : ""),
				 errdetail("The delivery stays pending and is sent again later, after a delay that grows each time.")));
	}
	return f->recorded;
}

/*
 * Record the verdicts of every request finished in one round: all in one
 * transaction with one statement; when that fails, one request at a time,
 * so that only a request whose outcome cannot be recorded is held back.
 */
static void
RecordFinished(Flight **done, int ndone)
{
	MemoryContext mcxt = CurrentMemoryContext;
	volatile bool ok = false;

	if (ndone > 1)
	{
		PG_TRY();
		{
			RecordFlights(done, ndone);
			ok = true;
		}
		PG_CATCH();
		{
			/* the one-at-a-time records below say which one and why */
			HOLD_INTERRUPTS();
			AbortCurrentTransaction();
			MemoryContextSwitchTo(mcxt);
			FlushErrorState();
			RESUME_INTERRUPTS();
		}
		PG_END_TRY();
	}
	for (int i = 0; i < ndone; i++)
	{
		if (ok)
			done[i]->recorded = true;
		else
			(void) RecordOneFlight(done[i]);
	}
}

/* After f's verdicts were recorded (or not): holds, counters, pauses. */
static void
AfterFlight(Flight *f)
{
	const Outcome *outs = f->outs;
	const Verdict *verdicts = f->verdicts;
	TimestampTz now;

	if (!f->recorded)
	{
		next_due = 0;
		return;
	}
	if (nholds > 0)
		ReleaseHolds(f);

	/* the next due time may now be sooner */
	now = GetCurrentTimestamp();
	for (int i = 0; i < f->ndeliveries; i++)
	{
		if (verdicts[i].status != NULL &&
			strcmp(verdicts[i].status, "pending") == 0 && next_due != 0)
			next_due = Min(next_due, PlusMs(now, verdicts[i].delay_ms));
	}

	CountVerdicts(f, outs, verdicts);

	if (f->fx.throttle_s >= 0)
	{
		bool		was_throttled = (paused_until > now);

		PauseFor(Max((long) THROTTLE_MIN_MS, (long) ceil(f->fx.throttle_s * 1000.0)));
		RegistryCount(0, 0, 0, 0, 1, 0, false);
		if (!was_throttled)
			ereport(LOG,
					(errmsg("edusync delivery worker throttled by Graph until %s",
							timestamptz_to_str(paused_until))));
		RegistryReport("throttled", psprintf("until %s", timestamptz_to_str(paused_until)));
	}
	if (f->fx.answered)
	{
		if (host_streak > 0)
		{
			ereport(LOG,
					(errmsg("edusync delivery worker: Graph answers again, after %d failed attempt%s",
							host_streak, host_streak == 1 ? "" : "s")));
			/* the probe may have been the last delivery: say so now */
			if (paused_until <= now)
				RegistryReport(nflights > 0 ? "sending" : "idle", NULL);
		}
		host_streak = 0;
	}
	else if (f->fx.failed)
	{
		if (host_streak == 0)
			ereport(LOG,
					(errmsg("edusync delivery worker: Graph is failing, sending one request at a time until it answers"),
					 errdetail_internal("%s", Sentence(outs[0].reason ? outs[0].reason : "no answer"))));
		host_streak++;
		PauseFor(PolicyBackoffMs(host_streak, -1, HOST_BACKOFF_BASE_MS,
								 HOST_BACKOFF_CAP_MS));
		RegistryReport("probing", outs[0].reason);
	}
	trouble_streak = 0;
}

/* Remember a finished request's answer (GraphMultiRun's callback). */
static void
FlightDone(void *tag, GraphResponse *resp, void *arg)
{
	((Flight *) tag)->resp = resp;
}

/*
 * Record the verdicts of the answered requests waiting in finished[] (as
 * RecordFinished does), then apply them (FinishRecorded).
 */
static void
FlushFinished(void)
{
	if (nfinished == 0)
		return;
	RecordFinished(finished, nfinished);
	FinishRecorded();
}

/* After finished[] was recorded (or not): AfterFlight each, free them. */
static void
FinishRecorded(void)
{
	int			n = nfinished;

	/* emptied first: an ERROR below must not see them twice */
	nfinished = 0;
	nfinished_rows = 0;
	for (int i = 0; i < n; i++)
	{
		/* freed with the loop's memory, whatever happens next */
		MemoryContextSetParent(finished[i]->cxt, LoopContext);
		AfterFlight(finished[i]);
	}
}

/*
 * A request whose answer needs nothing but recording: every delivery
 * delivered, and no pause, probe, hold or token refresh to attend to.
 */
static bool
PlainSuccess(const Flight *f)
{
	if (f->fx.failed || f->fx.throttle_s >= 0 || host_streak > 0 ||
		nholds > 0 || refresh_pending)
		return false;
	for (int i = 0; i < f->ndeliveries; i++)
		if (f->verdicts[i].status == NULL ||
			strcmp(f->verdicts[i].status, "delivered") != 0)
			return false;
	return true;
}

/* Would FillWindow send something in the next turn? */
static bool
MoreToSend(TimestampTz now)
{
	if (config_broken || now < paused_until)
		return false;
	if (ready_next < nready)
		return true;
	return next_due == 0 || now >= next_due;
}

/*
 * Drive the requests in flight a little (until one finishes, at most
 * WORKER_DRIVE_MS); judge those that finished.  Plain successes wait in
 * finished[] to be recorded with others (or with the next claim); anything
 * else is recorded at once, together with them.
 */
static void
DriveFlights(void)
{
	bool		flush = false;
	TimestampTz now;

	(void) GraphMultiRun(WORKER_DRIVE_MS, FlightDone, NULL);

	for (int i = 0; i < nflights;)
	{
		Flight	   *f = flights[i];
		MemoryContext mcxt;
		bool		judged;

		if (f->resp == NULL)
		{
			i++;
			continue;
		}
		flights[i] = flights[--nflights];
		/* the verdicts live with the flight until they are recorded */
		mcxt = MemoryContextSwitchTo(f->cxt);
		judged = JudgeFlight(f);
		MemoryContextSwitchTo(mcxt);
		if (!judged)
		{
			MemoryContextSetParent(f->cxt, LoopContext);
			claim_from = DT_NOBEGIN;	/* never answered: still due */
			continue;
		}
		if (nfinished == 0)
			finished_since = GetCurrentTimestamp();
		finished[nfinished++] = f;
		nfinished_rows += f->ndeliveries;
		if (!PlainSuccess(f))
			flush = true;
	}
	if (nfinished == 0)
		return;
	now = GetCurrentTimestamp();
	if (flush || nfinished_rows >= RECORD_ROWS ||
		nfinished > FINISHED_MAX - WORKER_MAX_WINDOW ||
		now - finished_since >= (TimestampTz) RECORD_MAX_MS * 1000 ||
		(nflights == 0 && !MoreToSend(now)))
		FlushFinished();
}


/* ---------------------------------------------------------------------
 * The loop
 * ---------------------------------------------------------------------
 */

/* Apply a configuration reload: new settings, and every pause cleared. */
static void
Reload(void)
{
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	config_broken = false;
	paused_until = 0;
	host_streak = 0;
	trouble_streak = 0;
	next_due = 0;
	claim_from = DT_NOBEGIN;
	config_checked = false;
	DropReady();
}

/*
 * After an unexpected ERROR: report it, abort the transaction, forget
 * answers not yet recorded (those errors are sent again), pause a while.
 */
static void
Recover(void)
{
	HOLD_INTERRUPTS();
	EmitErrorReport();
	AbortCurrentTransaction();
	MemoryContextSwitchTo(WorkerContext);
	FlushErrorState();
	pgstat_report_wait_end();

	for (int i = 0; i < nflights;)
	{
		if (flights[i]->resp != NULL)
		{
			MemoryContextDelete(flights[i]->cxt);
			flights[i] = flights[--nflights];
		}
		else
			i++;
	}
	/* answers not recorded yet: those errors are sent again */
	for (int i = 0; i < nfinished; i++)
		if (MemoryContextGetParent(finished[i]->cxt) == WorkerContext)
			MemoryContextDelete(finished[i]->cxt);
	nfinished = 0;
	nfinished_rows = 0;
	DropReady();
	next_due = 0;
	claim_from = DT_NOBEGIN;
	reported_flights = -1;
	PauseForTrouble();
	RESUME_INTERRUPTS();
}

/* How long to sleep before anything can be done; 0: do it now. */
static long
IdleMs(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz until;

	if (nflights > 0 || nfinished > 0)
		return 0;
	if (config_broken)
		return WORKER_IDLE_MS;
	until = (next_due == 0 || ready_next < nready) ? now : next_due;
	if (paused_until > until)
		until = paused_until;
	return Min(MsUntil(until, now), (long) WORKER_IDLE_MS);
}

/*
 * When idle, delete delivered rows older than edusync.delivered_retention,
 * PURGE_BATCH at a time, at most every PURGE_EVERY_MS unless more remain.
 */
static void
PurgeDelivered(void)
{
	static TimestampTz next_purge = 0;
	MemoryContext mcxt = CurrentMemoryContext;
	TimestampTz now = GetCurrentTimestamp();
	uint64		n;

	if (edusync_delivered_retention_s <= 0 || nflights > 0 || now < next_purge)
		return;
	BeginWork("deleting old delivered rows");
	n = OutboxPurgeDelivered(edusync_delivered_retention_s, PURGE_BATCH);
	EndWork(mcxt);
	next_purge = (n == PURGE_BATCH) ? now : PlusMs(now, PURGE_EVERY_MS);
}

/* One turn: take wakes, send what is due, drive what is in flight. */
static void
Turn(void)
{
	/* a wake (a commit, a reload) means: look at the queue now */
	if (MyLatch->is_set)
	{
		ResetLatch(MyLatch);
		next_due = 0;
		claim_from = DT_NOBEGIN;
	}

	FillWindow();
	PurgeDelivered();
	if (nflights > 0)
	{
		ReportActivity();
		DriveFlights();
		if (!PostmasterIsAlive())
			proc_exit(1);
	}
	ReportActivity();
}

/* Entry point of the delivery worker of one database (main_arg: its oid). */
void
edusync_worker_main(Datum main_arg)
{
	bool		installed;
	char	   *dbname;

	worker_dbid = DatumGetObjectId(main_arg);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	RegistryPublishWorker(worker_dbid);
	BackgroundWorkerInitializeConnectionByOid(worker_dbid, InvalidOid, 0);
	pgstat_report_appname(WORKER_NAME);

	/*
	 * The worker is a superuser in a database whose owner may not be one:
	 * nothing the owner set (ALTER DATABASE ... SET search_path) may choose
	 * which functions or operators its statements run.  Every name in its
	 * SQL is qualified too.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET,
					PGC_S_OVERRIDE);

	/* losing the last outcomes in a crash only means sending them again */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * Plans that cannot go wrong whatever the statistics.  The worker's
	 * statements (outbox.c) are written for index scans and nested loops
	 * over the few rows of one round; a plan made while the queue was
	 * small, or from statistics that say so, must not become a scan of the
	 * whole queue once it is large (plans are kept until the table's
	 * definition or statistics change).  Nothing but the worker is
	 * affected.
	 */
	SetConfigOption("enable_seqscan", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("enable_bitmapscan", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("enable_sort", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("enable_hashjoin", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("enable_mergejoin", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("enable_material", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/* nothing to do where edusync is not installed: say so, and leave */
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("edusync", true));
	dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(worker_dbid));
	CommitTransactionCommand();
	if (!installed)
	{
		RegistrySetState(worker_dbid, SLOT_ABSENT, false);
		proc_exit(0);
	}
	RegistrySetState(worker_dbid, SLOT_RUNNING, false);
	RegistryReport("idle", NULL);

	WorkerContext = AllocSetContextCreate(TopMemoryContext,
										  "edusync worker",
										  ALLOCSET_DEFAULT_SIZES);
	LoopContext = AllocSetContextCreate(TopMemoryContext,
										"edusync worker loop",
										ALLOCSET_DEFAULT_SIZES);
	ReadyContext = AllocSetContextCreate(TopMemoryContext,
										 "edusync worker rows read ahead",
										 ALLOCSET_DEFAULT_SIZES);

	ereport(LOG,
			(errmsg("edusync delivery worker started for database \"%s\"",
					dbname)));

	for (;;)
	{
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
			Reload();

		MemoryContextReset(LoopContext);
		MemoryContextSwitchTo(LoopContext);
		PG_TRY();
		{
			Turn();
		}
		PG_CATCH();
		{
			Recover();
		}
		PG_END_TRY();
		MemoryContextSwitchTo(LoopContext);

		sleep_ms = IdleMs();
		if (sleep_ms > 0)
		{
			pgstat_report_stat(false);
			(void) WaitLatch(MyLatch,
							 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, PG_WAIT_EXTENSION);
		}
	}
}
