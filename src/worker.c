/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The delivery worker of async mode: a background worker that sends the
 *	  errors queued in edusync.deliveries to Graph after their transaction
 *	  commits, and records what Graph answered.
 *
 *	  Commit wakes the worker (WorkerWake sets its latch, found through a
 *	  small struct in shared memory); without wakes it sleeps until the next
 *	  delivery is due, at most WORKER_IDLE_MS.  Each turn of its loop reads
 *	  the due deliveries in a short transaction, sends them with several
 *	  requests in flight on kept-alive connections (one error per request,
 *	  or up to 20 per $batch request when edusync.batch_size > 1), and
 *	  records each answer in its own short transaction.
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
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "compat.h"
#include "edusync.h"
#include "graph_client.h"

#define WORKER_NAME				"edusync delivery worker"
#define WORKER_RESTART_S		5	/* restart delay after the worker dies */
#define WORKER_IDLE_MS			10000	/* longest sleep without a wake */
#define WORKER_DRIVE_MS			20	/* network wait between other checks */
#define WORKER_MAX_IN_FLIGHT	4	/* requests at once (graph_client keeps
									 * at most 4 connections to one host) */
#define WORKER_BATCH_MAX		20	/* Graph's limit for one $batch */

#define BACKOFF_BASE_MS			1000	/* one delivery's retries */
#define BACKOFF_CAP_MS			300000
#define HOST_BACKOFF_BASE_MS	200 /* probe mode, after a failure */
#define HOST_BACKOFF_CAP_MS		30000
#define THROTTLE_MIN_MS			100 /* shortest pause after a throttle */
#define TROUBLE_BACKOFF_BASE_MS 1000	/* token failures, unexpected errors */
#define TROUBLE_BACKOFF_CAP_MS	60000
#define TROUBLE_MIN_MS			500
#define HOLD_MAX				1024	/* deliveries held back at once */
#define HOLD_BASE_MS			1000	/* first hold of an unrecordable one */
#define HOLD_CAP_MS				300000

/* What every backend needs to wake the worker. */
typedef struct WorkerShared
{
	slock_t		mutex;
	int			pgprocno;		/* the running worker's PGPROC, or -1 */
} WorkerShared;

/* One error to send, with what it takes to send it. */
typedef struct Delivery
{
	char	   *profile_id;
	pg_uuid_t	error_id;
	char	   *error_id_text;	/* lowercase GUID: the client-request-id */
	int			attempts;		/* before this send */
	char	   *url;			/* absolute; in a $batch, below graph_url */
	char	   *body;			/* the JSON request body */
} Delivery;

/*
 * One request in flight: one delivery, or up to 20 in a $batch.  It lives
 * in its own memory context until its answer is recorded.
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

/* A row read by ClaimDue. */
typedef struct ClaimedRow
{
	EdusyncError err;
	int			attempts;
} ClaimedRow;

/* What is recorded for one delivery. */
typedef struct Verdict
{
	const char *status;			/* "delivered", "pending" or "failed" */
	long		last_status;	/* HTTP status, 0 for none */
	char	   *last_error;
	char	   *remote_id;
	long		delay_ms;		/* until the next attempt, when pending */
} Verdict;

/* What the answers to one request say about Graph as a whole. */
typedef struct HostEffect
{
	bool		answered;		/* a delivery or a rejection: Graph works */
	bool		failed;			/* a failure that is not a throttle */
	double		throttle_s;		/* longest Retry-After of a throttle, or -1 */
} HostEffect;

PGDLLEXPORT void edusync_worker_main(Datum main_arg);

/* Shared memory and hooks (every process). */
static WorkerShared *worker_shared = NULL;
#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* The worker's own state. */
static MemoryContext WorkerContext = NULL;	/* flights in flight */
static MemoryContext LoopContext = NULL;	/* reset every turn of the loop */
static Flight *flights[WORKER_MAX_IN_FLIGHT];
static int	nflights = 0;
static TimestampTz next_due = 0;	/* earliest pending not in flight; 0:
									 * unknown, look now */
static TimestampTz paused_until = 0;	/* no new request before this */
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

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr next_due_plan = NULL;
static SPIPlanPtr record_plan = NULL;


/* ---------------------------------------------------------------------
 * Registration, shared memory, waking
 * ---------------------------------------------------------------------
 */

/* Size of the shared struct. */
static Size
WorkerShmemSize(void)
{
	return MAXALIGN(sizeof(WorkerShared));
}

#if PG_VERSION_NUM >= 150000
/* Ask for the shared struct (PostgreSQL 15 and later). */
static void
WorkerShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(WorkerShmemSize());
}
#endif

/* Create or attach to the shared struct. */
static void
WorkerShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	worker_shared = ShmemInitStruct("edusync worker", WorkerShmemSize(), &found);
	if (!found)
	{
		SpinLockInit(&worker_shared->mutex);
		worker_shared->pgprocno = -1;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Reserve shared memory and register the delivery worker; called from
 * _PG_init when the library is preloaded.
 */
void
WorkerRegister(void)
{
	BackgroundWorker worker;

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = WorkerShmemRequest;
#else
	RequestAddinShmemSpace(WorkerShmemSize());
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = WorkerShmemStartup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = WORKER_RESTART_S;
	strlcpy(worker.bgw_library_name, "edusync", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "edusync_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, WORKER_NAME, BGW_MAXLEN);
	strlcpy(worker.bgw_type, WORKER_NAME, BGW_MAXLEN);
	worker.bgw_main_arg = (Datum) 0;
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
}

/* Wake the worker if it runs; cheap, and silent when it does not. */
void
WorkerWake(void)
{
	int			procno;

	if (worker_shared == NULL)
		return;
	SpinLockAcquire(&worker_shared->mutex);
	procno = worker_shared->pgprocno;
	SpinLockRelease(&worker_shared->mutex);
	if (procno >= 0)
		SetLatch(&GetPGProcByNumber(procno)->procLatch);
}

/* Withdraw the worker's latch from shared memory as it exits. */
static void
WorkerUnpublish(int code, Datum arg)
{
	if (worker_shared == NULL)
		return;
	SpinLockAcquire(&worker_shared->mutex);
	if (worker_shared->pgprocno == EDUSYNC_MY_PROCNO)
		worker_shared->pgprocno = -1;
	SpinLockRelease(&worker_shared->mutex);
}

/* Show the worker's latch to the backends that will wake it. */
static void
WorkerPublish(void)
{
	if (worker_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("edusync delivery worker started without its shared memory"),
				 errhint("Load edusync through shared_preload_libraries.")));
	SpinLockAcquire(&worker_shared->mutex);
	worker_shared->pgprocno = EDUSYNC_MY_PROCNO;
	SpinLockRelease(&worker_shared->mutex);
	before_shmem_exit(WorkerUnpublish, (Datum) 0);
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
				 GraphBackoffMs(trouble_streak, -1, TROUBLE_BACKOFF_BASE_MS,
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

/* Start a short transaction with a snapshot and SPI. */
static void
BeginWork(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	reported_flights = -1;
}

/* Commit what BeginWork started; back in mcxt afterwards. */
static void
EndWork(MemoryContext mcxt)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(mcxt);
}

/* A text column as a C string, NULL for SQL NULL. */
static char *
TextColumn(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}


/* ---------------------------------------------------------------------
 * The queue
 * ---------------------------------------------------------------------
 */

/*
 * Read up to limit due deliveries that are not in flight, oldest due
 * first, into *rows (in the caller's memory); returns how many, or -1 when
 * the extension is not installed.  Sets next_due.
 */
static int
ClaimDue(int limit, ClaimedRow **rows)
{
	static const Oid types[] = {UUIDARRAYOID, INT4OID};
	MemoryContext outer = CurrentMemoryContext;
	Datum	   *ids;
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	TimestampTz now;
	TimestampTz hold_end;
	int			n;
	int			i;

	/* the ids in flight or held back, kept out of the answer */
	now = GetCurrentTimestamp();
	ids = palloc(sizeof(Datum) * (nflights * WORKER_BATCH_MAX + nholds + 1));
	n = 0;
	for (i = 0; i < nflights; i++)
		for (int j = 0; j < flights[i]->ndeliveries; j++)
			ids[n++] = UUIDPGetDatum(&flights[i]->deliveries[j].error_id);
	for (i = 0; i < nholds; i++)
		if (holds[i].until > now)
			ids[n++] = UUIDPGetDatum(&holds[i].error_id);
	values[0] = PointerGetDatum(construct_array(ids, n, UUIDOID, UUID_LEN,
												false, TYPALIGN_CHAR));
	values[1] = Int32GetDatum(limit);

	*rows = NULL;
	BeginWork("reading due deliveries");
	if (!OidIsValid(get_extension_oid("edusync", true)))
	{
		EndWork(outer);
		next_due = PlusMs(GetCurrentTimestamp(), WORKER_IDLE_MS);
		return -1;
	}

	RunPlan(&claim_plan,
			"SELECT d.profile_id, d.error_id, d.attempts, e.entry_type, "
			"e.error_code, e.error_message, e.joining_value, "
			"e.recorded_date_time, e.reportable_identifier "
			"FROM edusync.deliveries d "
			"JOIN edusync.sync_errors e "
			"ON e.profile_id = d.profile_id AND e.id = d.error_id "
			"WHERE d.status = 'pending' AND d.next_attempt_at <= now() "
			"AND d.error_id <> ALL ($1) "
			"ORDER BY d.next_attempt_at LIMIT $2",
			2, types, values, nulls, true, 0);

	n = (int) SPI_processed;
	MemoryContextSwitchTo(outer);
	*rows = palloc0(sizeof(ClaimedRow) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		EdusyncError *err = &(*rows)[i].err;
		bool		isnull;

		err->profile_id = TextColumn(tup, desc, 1);
		memcpy(&err->id, DatumGetUUIDP(SPI_getbinval(tup, desc, 2, &isnull)),
			   sizeof(pg_uuid_t));
		err->id_given = true;
		(*rows)[i].attempts = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		err->entry_type = TextColumn(tup, desc, 4);
		err->error_code = TextColumn(tup, desc, 5);
		err->error_message = TextColumn(tup, desc, 6);
		err->joining_value = TextColumn(tup, desc, 7);
		err->recorded_date_time =
			DatumGetTimestampTz(SPI_getbinval(tup, desc, 8, &isnull));
		err->recorded_given = true;
		err->reportable_identifier = TextColumn(tup, desc, 9);
	}

	if (n < limit)
	{
		bool		isnull;
		Datum		d;

		/* every due one not in flight was read: when is the next one due? */
		RunPlan(&next_due_plan,
				"SELECT min(next_attempt_at) FROM edusync.deliveries "
				"WHERE status = 'pending' AND next_attempt_at > now()",
				0, NULL, NULL, NULL, true, 1);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
						  &isnull);
		next_due = isnull ? PlusMs(GetCurrentTimestamp(), WORKER_IDLE_MS) :
			DatumGetTimestampTz(d);
	}
	else
		next_due = 0;			/* there may be more: look again */

	/* a held-back delivery is due again when its hold ends */
	hold_end = FirstHoldEnd(now);
	if (next_due != 0 && hold_end != 0 && hold_end < next_due)
		next_due = hold_end;

	EndWork(outer);
	return n;
}

/* Record the verdicts on the deliveries of one request, in one transaction. */
static void
RecordVerdicts(Flight *f, Verdict *verdicts)
{
	static const Oid types[] = {TEXTOID, UUIDOID, TEXTOID, INT4OID, TEXTOID,
	TEXTOID, FLOAT8OID};
	MemoryContext outer = CurrentMemoryContext;

	BeginWork("recording deliveries");
	for (int i = 0; i < f->ndeliveries; i++)
	{
		Delivery   *d = &f->deliveries[i];
		Verdict    *v = &verdicts[i];
		Datum		values[7];
		char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};

		if (v->status == NULL)
			continue;			/* nothing to record */
		values[0] = CStringGetTextDatum(d->profile_id);
		values[1] = UUIDPGetDatum(&d->error_id);
		values[2] = CStringGetTextDatum(v->status);
		values[3] = Int32GetDatum((int32) v->last_status);
		nulls[3] = v->last_status > 0 ? ' ' : 'n';
		values[4] = v->last_error ? CStringGetTextDatum(v->last_error) : (Datum) 0;
		nulls[4] = v->last_error ? ' ' : 'n';
		values[5] = v->remote_id ? CStringGetTextDatum(v->remote_id) : (Datum) 0;
		nulls[5] = v->remote_id ? ' ' : 'n';
		values[6] = Float8GetDatum((double) v->delay_ms);

		RunPlan(&record_plan,
				"UPDATE edusync.deliveries SET status = $3, "
				"attempts = attempts + 1, last_status = $4, last_error = $5, "
				"remote_id = $6, "
				"delivered_at = CASE WHEN $3 = 'delivered' THEN now() END, "
				"next_attempt_at = CASE WHEN $3 = 'pending' "
				"THEN now() + $7 * interval '1 millisecond' END "
				"WHERE profile_id = $1 AND error_id = $2 AND status = 'pending'",
				7, types, values, nulls, false, 0);
	}
	EndWork(outer);
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
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("edusync delivery worker could not obtain a token for Graph"),
				 errdetail_internal("%s", detail ? detail : "No detail."),
				 errhint("Deliveries stay pending; the worker tries again later, or at once after a configuration reload.")));
		PauseForTrouble();
		return false;
	}
	*refreshable = (*token != NULL && edusync_bearer_token[0] == '\0');
	return true;
}

/* Length of edusync.graph_url without its trailing slashes. */
static size_t
GraphBaseLength(void)
{
	size_t		n = strlen(edusync_graph_url);

	while (n > 0 && edusync_graph_url[n - 1] == '/')
		n--;
	return n;
}

/*
 * Build one delivery's URL and body into d (in the current memory).
 * batch: the URL relative to graph_url, as a $batch item wants it.
 */
static void
BuildDelivery(const ClaimedRow *row, bool batch, Delivery *d)
{
	char	   *url = GraphErrorsUrl(row->err.profile_id);

	d->profile_id = pstrdup(row->err.profile_id);
	memcpy(&d->error_id, &row->err.id, sizeof(pg_uuid_t));
	d->error_id_text = FormatGuid(&row->err.id);
	d->attempts = row->attempts;
	d->body = RequestBody(&row->err);
	if (batch)
	{
		size_t		base = GraphBaseLength();

		if (strncmp(url, edusync_graph_url, base) != 0 || url[base] != '/')
			elog(ERROR, "errors URL does not start with graph_url");
		d->url = pstrdup(url + base);
	}
	else
		d->url = url;
}

/*
 * Build the deliveries of rows[0..n) into f; a row that cannot be built is
 * recorded as failed at once, so it cannot stop the queue.
 */
static void
BuildFlight(Flight *f, ClaimedRow *rows, int n)
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
		RecordVerdicts(&bad, bad_verdicts);
}

/* The body of a $batch request carrying f's deliveries. */
static char *
BatchBody(const Flight *f)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"requests\":[");
	for (int i = 0; i < f->ndeliveries; i++)
	{
		const Delivery *d = &f->deliveries[i];

		if (i > 0)
			appendStringInfoChar(&buf, ',');
		appendStringInfo(&buf, "{\"id\":\"%d\",\"method\":\"POST\",\"url\":", i + 1);
		escape_json(&buf, d->url);
		appendStringInfoString(&buf,
							   ",\"headers\":{\"Content-Type\":\"application/json\","
							   "\"client-request-id\":");
		escape_json(&buf, d->error_id_text);
		appendStringInfoString(&buf, "},\"body\":");
		appendStringInfoString(&buf, d->body);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoString(&buf, "]}");
	return buf.data;
}

/* Build a request for rows[0..n) and put it in flight (or record it failed). */
static void
StartFlight(ClaimedRow *rows, int n, bool batch, const char *token,
			bool refreshable)
{
	MemoryContext mcxt = CurrentMemoryContext;
	MemoryContext fcxt;
	Flight	   *f;
	GraphRequest req;

	/* under the loop's memory until it is in flight: an ERROR frees it */
	fcxt = AllocSetContextCreate(LoopContext, "edusync flight",
								 ALLOCSET_SMALL_SIZES);
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
		req.url = GraphBatchUrl();
		req.body = BatchBody(f);
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
 * Send what is due, as far as the window allows: WORKER_MAX_IN_FLIGHT
 * requests, one in probe mode, none while paused.
 */
static void
FillWindow(void)
{
	int			window = host_streak > 0 ? 1 : WORKER_MAX_IN_FLIGHT;
	int			per_request = Max(1, Min(edusync_batch_size, WORKER_BATCH_MAX));
	TimestampTz now = GetCurrentTimestamp();
	ClaimedRow *rows;
	const char *token;
	bool		refreshable = false;
	int			n;
	int			room = window - nflights;

	if (room <= 0 || now < paused_until || (next_due != 0 && now < next_due))
		return;
	if (!ConfigUsable())
		return;

	n = ClaimDue(room * per_request, &rows);
	if (n <= 0)
		return;

	if (!GetToken(&token, &refreshable))
	{
		next_due = 0;			/* what was read is still due */
		return;
	}

	for (int i = 0; i < n; i += per_request)
		StartFlight(&rows[i], Min(per_request, n - i), per_request > 1,
					token, refreshable);
}


/* ---------------------------------------------------------------------
 * Answers
 * ---------------------------------------------------------------------
 */

/* A JSON number as text. */
static char *
NumericText(Numeric n)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
}

/* Retry-After in a $batch item's headers object (any case), or -1. */
static double
ItemRetryAfter(JsonbValue *headers)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		want = false;
	double		ra = -1;

	if (headers == NULL || headers->type != jbvBinary ||
		!JsonContainerIsObject(headers->val.binary.data))
		return -1;
	it = JsonbIteratorInit(headers->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			want = (v.val.string.len == 11 &&
					pg_strncasecmp(v.val.string.val, "Retry-After", 11) == 0);
		else if (tok == WJB_VALUE && want)
		{
			if (v.type == jbvString)
				ra = GraphParseRetryAfter(pnstrdup(v.val.string.val,
												   v.val.string.len));
			else if (v.type == jbvNumeric)
				ra = GraphParseRetryAfter(NumericText(v.val.numeric));
			want = false;
		}
	}
	return ra;
}

/* Set out to "no usable answer for this delivery", worth a retry. */
static void
NoAnswer(Outcome *out, const char *reason)
{
	memset(out, 0, sizeof(*out));
	out->kind = OUTCOME_RETRY;
	out->status = 0;
	out->retry_after = -1;
	out->reason = pstrdup(reason);
}

/* Read each item's answer from a $batch answer into outs[]. */
static void
ReadBatchAnswer(const Flight *f, const GraphResponse *resp, Outcome *outs)
{
	Jsonb	   *json = ParseRemoteJson(resp->body, resp->body_len);
	JsonbValue *responses = json ? JsonbValueAt(&json->root, "responses") : NULL;
	bool	   *seen = palloc0(sizeof(bool) * f->ndeliveries);
	JsonbContainer *arr;
	int			count;

	if (responses != NULL && responses->type == jbvBinary &&
		JsonContainerIsArray(responses->val.binary.data))
	{
		arr = responses->val.binary.data;
		count = JsonContainerSize(arr);
		for (int i = 0; i < count; i++)
		{
			JsonbValue *item = getIthJsonbValueFromContainer(arr, i);
			JsonbContainer *obj;
			JsonbValue *id;
			JsonbValue *status;
			JsonbValue *body;
			char	   *idtext;
			char	   *end;
			long		idx;
			long		code;
			char	   *text = NULL;
			size_t		len = 0;

			if (item == NULL || item->type != jbvBinary ||
				!JsonContainerIsObject(item->val.binary.data))
				continue;
			obj = item->val.binary.data;
			id = JsonbValueAt(obj, "id");
			status = JsonbValueAt(obj, "status");
			if (id == NULL || id->type != jbvString ||
				status == NULL || status->type != jbvNumeric)
				continue;
			idtext = pnstrdup(id->val.string.val, id->val.string.len);
			idx = strtol(idtext, &end, 10);
			if (*end != '\0' || idx < 1 || idx > f->ndeliveries || seen[idx - 1])
				continue;
			code = strtol(NumericText(status->val.numeric), &end, 10);
			if (*end != '\0' || code < 100 || code > 999)
				continue;

			body = JsonbValueAt(obj, "body");
			if (body != NULL && body->type == jbvBinary)
			{
				text = JsonbToCString(NULL, body->val.binary.data,
									  body->val.binary.len);
				len = strlen(text);
			}
			else if (body != NULL && body->type == jbvString)
			{
				text = pnstrdup(body->val.string.val, body->val.string.len);
				len = body->val.string.len;
			}
			seen[idx - 1] = true;
			ClassifyResponse(code, text, len, ItemRetryAfter(JsonbValueAt(obj, "headers")),
							 NULL, &outs[idx - 1]);
		}
	}

	for (int i = 0; i < f->ndeliveries; i++)
		if (!seen[i])
			NoAnswer(&outs[i], "no answer for this request in the $batch response");
}

/* What Graph answered for each delivery of f, into outs[]. */
static void
ReadAnswers(const Flight *f, const GraphResponse *resp, Outcome *outs)
{
	if (f->batch && resp->status >= 200 && resp->status < 300)
		ReadBatchAnswer(f, resp, outs);
	else
	{
		/* one request, or a $batch that failed as a whole: same for all */
		ClassifyResponse(resp->status, resp->body, resp->body_len,
						 resp->retry_after, resp->transport_error, &outs[0]);
		for (int i = 1; i < f->ndeliveries; i++)
			outs[i] = outs[0];
	}
}

/* Decide what to record for delivery d after outcome o, and its host effect. */
static void
Judge(const Flight *f, const Delivery *d, const Outcome *o, Verdict *v,
	  HostEffect *fx)
{
	int			attempt = d->attempts + 1;

	memset(v, 0, sizeof(*v));
	v->last_status = o->status;

	switch (o->kind)
	{
		case OUTCOME_DELIVERED:
			v->status = "delivered";
			v->remote_id = o->remote_id;
			fx->answered = true;
			if (f->token_gen == token_gen)
				token_gen_forced = false;	/* this token works */
			return;

		case OUTCOME_REJECTED:
			v->status = "failed";
			v->last_error = o->reason;
			fx->answered = true;
			return;

		case OUTCOME_AUTH:
			if (o->status == 401 && f->refreshable &&
				(f->token_gen < token_gen || !token_gen_forced))
			{
				/* a newer token exists, or fetch one: try again at once */
				if (f->token_gen == token_gen)
					refresh_pending = true;
				v->status = "pending";
				v->last_error = o->reason;
				v->delay_ms = 0;
				return;
			}
			fx->failed = true;
			break;

		case OUTCOME_RETRY:
			if ((o->status == 429 || o->status == 503) && o->retry_after >= 0)
				fx->throttle_s = Max(fx->throttle_s, o->retry_after);
			else
				fx->failed = true;
			break;
	}

	v->last_error = o->reason;
	if (attempt >= edusync_max_attempts)
		v->status = "failed";
	else
	{
		v->status = "pending";
		v->delay_ms = GraphBackoffMs(attempt, o->retry_after, BACKOFF_BASE_MS,
									 BACKOFF_CAP_MS);
	}
}

/* Handle a finished request: judge each delivery, record, adjust pauses. */
static void
FinishFlight(Flight *f)
{
	MemoryContext mcxt = CurrentMemoryContext;
	GraphResponse *resp = f->resp;
	Outcome    *outs;
	Verdict    *verdicts;
	HostEffect	fx;
	TimestampTz now;

	/* stopped for an interrupt: never answered, still due, not an attempt */
	if (resp->aborted)
		return;

	outs = palloc0(sizeof(Outcome) * f->ndeliveries);
	verdicts = palloc0(sizeof(Verdict) * f->ndeliveries);
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
			NoAnswer(&outs[i], reason);
			outs[i].status = resp->status;
		}
	}
	PG_END_TRY();

	memset(&fx, 0, sizeof(fx));
	fx.throttle_s = -1;
	for (int i = 0; i < f->ndeliveries; i++)
		Judge(f, &f->deliveries[i], &outs[i], &verdicts[i], &fx);

	PG_TRY();
	{
		RecordVerdicts(f, verdicts);
	}
	PG_CATCH();
	{
		/* say why, and hold these back rather than send them in a loop */
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(mcxt);
		FlushErrorState();
		RESUME_INTERRUPTS();
		HoldFlight(f);
		ereport(WARNING,
				(errmsg("edusync delivery worker could not record what Graph answered for error %s of profile \"%s\"%s",
						f->deliveries[0].error_id_text, f->deliveries[0].profile_id,
						f->ndeliveries > 1 ? " and the rest of its $batch" : ""),
				 errdetail("The delivery stays pending and is sent again later, after a delay that grows each time.")));
		next_due = 0;
		return;
	}
	PG_END_TRY();
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

	if (fx.throttle_s >= 0)
		PauseFor(Max((long) THROTTLE_MIN_MS, (long) ceil(fx.throttle_s * 1000.0)));
	if (fx.answered)
		host_streak = 0;
	else if (fx.failed)
	{
		host_streak++;
		PauseFor(GraphBackoffMs(host_streak, -1, HOST_BACKOFF_BASE_MS,
								HOST_BACKOFF_CAP_MS));
	}
	trouble_streak = 0;
}

/* Remember a finished request's answer (GraphMultiRun's callback). */
static void
FlightDone(void *tag, GraphResponse *resp, void *arg)
{
	((Flight *) tag)->resp = resp;
}

/* Drive the requests in flight a little; handle those that finished. */
static void
DriveFlights(void)
{
	(void) GraphMultiRun(WORKER_DRIVE_MS, FlightDone, NULL);

	for (int i = 0; i < nflights;)
	{
		Flight	   *f = flights[i];

		if (f->resp == NULL)
		{
			i++;
			continue;
		}
		flights[i] = flights[--nflights];
		/* freed with the loop's memory, whatever happens next */
		MemoryContextSetParent(f->cxt, LoopContext);
		FinishFlight(f);
	}
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
	next_due = 0;
	reported_flights = -1;
	PauseForTrouble();
	RESUME_INTERRUPTS();
}

/* How long to sleep before anything can be done; 0: do it now. */
static long
SleepMs(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz until;

	if (nflights > 0)
		return 0;
	if (config_broken)
		return WORKER_IDLE_MS;
	until = (next_due == 0) ? now : next_due;
	if (paused_until > until)
		until = paused_until;
	return Min(MsUntil(until, now), (long) WORKER_IDLE_MS);
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
	}

	FillWindow();
	if (nflights > 0)
	{
		ReportActivity();
		DriveFlights();
		if (!PostmasterIsAlive())
			proc_exit(1);
	}
	ReportActivity();
}

/* Entry point of the delivery worker. */
void
edusync_worker_main(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	WorkerPublish();
	BackgroundWorkerInitializeConnection(edusync_database, NULL, 0);
	pgstat_report_appname(WORKER_NAME);

	/* losing the last outcomes in a crash only means sending them again */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	WorkerContext = AllocSetContextCreate(TopMemoryContext,
										  "edusync worker",
										  ALLOCSET_DEFAULT_SIZES);
	LoopContext = AllocSetContextCreate(TopMemoryContext,
										"edusync worker loop",
										ALLOCSET_DEFAULT_SIZES);

	ereport(LOG,
			(errmsg("edusync delivery worker started for database \"%s\"",
					edusync_database)));

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

		sleep_ms = SleepMs();
		if (sleep_ms > 0)
		{
			pgstat_report_stat(false);
			(void) WaitLatch(MyLatch,
							 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, PG_WAIT_EXTENSION);
		}
	}
}
