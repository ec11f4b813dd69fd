/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  Which delivery worker serves which database: one slot per database
 *	  in shared memory, written by the launcher (launcher.c) and by each
 *	  worker (worker.c), read by backends, which also wake the worker of
 *	  their database at commit and ask (RegistryServes) before queueing.
 *
 *	  The utility hook keeps the registry in step with what users do:
 *	  - CREATE EXTENSION edusync: at commit, the database's slot is set to
 *		"start a worker" and the launcher is woken (a worker started before
 *		the commit would not see the extension; one that looked before the
 *		commit and found nothing is started again: created_gen);
 *	  - DROP EXTENSION edusync: at commit, the database's worker is woken,
 *		so that it notices and leaves at once rather than after its idle
 *		sleep;
 *	  - DROP DATABASE: its worker is asked to leave first, so that the drop
 *		does not fail on the worker's connection;
 *	  - COMMIT PREPARED: wakes the worker, since the XactCallback of the
 *		session that prepared never sees the commit.
 *
 *	  Each slot also holds its database's ring of delivered counts per
 *	  minute (recent.c says how it is seeded and bumped); the ring is reset
 *	  when the slot is taken and put in doubt (unseeded) by CREATE/DROP
 *	  EXTENSION and COMMIT PREPARED.
 *
 *	  One spinlock guards the struct; nothing done under it can fail.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "registry.h"

/* How long DROP DATABASE waits for the worker to leave. */
#define REGISTRY_LEAVE_WAIT_MS	5000

/* What a ring is: unseeded (counts in doubt), being seeded, or seeded. */
typedef enum RingState
{
	RING_UNSEEDED = 0,
	RING_SEEDING,
	RING_SEEDED
} RingState;

/* Deliveries recorded as delivered, per minute, in one database. */
typedef struct DeliveredRing
{
	RingState	state;
	uint32		gen;			/* bumped each time the ring is put in doubt */
	int64		seeded_from;	/* the oldest minute the seed counted */
	int64		minute[RING_MINUTES];	/* the minute a bucket counts */
	int64		count[RING_MINUTES];
} DeliveredRing;

typedef struct WorkerSlot
{
	SlotStatus	status;			/* dbid FREE when unused */
	int			pgprocno;		/* the running worker's PGPROC, or -1 */
	uint32		created_gen;	/* bumped by each CREATE EXTENSION commit */
	DeliveredRing ring;
} WorkerSlot;

typedef struct Registry
{
	slock_t		mutex;
	int			launcher_pgprocno;	/* -1 while no launcher runs */
	WorkerSlot	slots[REGISTRY_MAX_DATABASES];
} Registry;

static Registry *registry = NULL;
static LWLock *ring_lock = NULL;	/* see recent.c */
static int	my_slot = -1;		/* this worker's slot */
static uint32 my_created_gen = 0;	/* its created_gen when the worker began */

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static bool created_here = false;	/* CREATE EXTENSION edusync ran in
									 * this transaction */
static bool dropped_here = false;	/* DROP EXTENSION edusync ran in this
									 * transaction */

static void RegistryProcessUtility(PlannedStmt *pstmt, const char *queryString,
								   bool readOnlyTree,
								   ProcessUtilityContext context,
								   ParamListInfo params,
								   QueryEnvironment *queryEnv,
								   DestReceiver *dest, QueryCompletion *qc);


/* Size of the shared struct. */
static Size
RegistryShmemSize(void)
{
	return MAXALIGN(sizeof(Registry));
}

#if PG_VERSION_NUM >= 150000
/* Ask for the shared struct (PostgreSQL 15 and later). */
static void
RegistryShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(RegistryShmemSize());
	RequestNamedLWLockTranche("edusync ring", 1);
}
#endif

/* Create or attach to the shared struct. */
static void
RegistryShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	registry = ShmemInitStruct("edusync registry", RegistryShmemSize(), &found);
	if (!found)
	{
		memset(registry, 0, sizeof(Registry));
		SpinLockInit(&registry->mutex);
		registry->launcher_pgprocno = -1;
		for (int i = 0; i < REGISTRY_MAX_DATABASES; i++)
			registry->slots[i].pgprocno = -1;
	}
	ring_lock = &(GetNamedLWLockTranche("edusync ring"))->lock;
	LWLockRelease(AddinShmemInitLock);
}

/* At preload: reserve shared memory and install the utility hook. */
void
RegistryInit(void)
{
#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = RegistryShmemRequest;
#else
	RequestAddinShmemSpace(RegistryShmemSize());
	RequestNamedLWLockTranche("edusync ring", 1);
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = RegistryShmemStartup;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = RegistryProcessUtility;
}

/* The slot of dbid, or -1; the caller holds the mutex. */
static int
FindSlot(Oid dbid)
{
	for (int i = 0; i < REGISTRY_MAX_DATABASES; i++)
		if (registry->slots[i].status.state != SLOT_FREE &&
			registry->slots[i].status.dbid == dbid)
			return i;
	return -1;
}

/*
 * The slot of dbid, taking a free one when it has none; -1 when none is
 * free.  The caller holds the mutex.
 */
static int
TakeSlot(Oid dbid)
{
	int			i = FindSlot(dbid);

	if (i >= 0)
		return i;
	for (i = 0; i < REGISTRY_MAX_DATABASES; i++)
	{
		WorkerSlot *slot = &registry->slots[i];

		if (slot->status.state != SLOT_FREE)
			continue;
		memset(&slot->status, 0, sizeof(SlotStatus));
		slot->status.dbid = dbid;
		slot->status.state = SLOT_UNKNOWN;
		slot->status.since = GetCurrentTimestamp();
		slot->pgprocno = -1;
		slot->ring.state = RING_UNSEEDED;
		slot->ring.gen++;
		return i;
	}
	return -1;
}

/* Put slot i's ring in doubt; the caller holds the mutex. */
static void
RingInDoubt(int i)
{
	registry->slots[i].ring.state = RING_UNSEEDED;
	registry->slots[i].ring.gen++;
}

/* Set a latch by PGPROC number (-1: nobody). */
static void
WakeProcno(int procno)
{
	if (procno >= 0)
		SetLatch(&GetPGProcByNumber(procno)->procLatch);
}

/* Wake the launcher, if it runs. */
static void
RegistryWakeLauncher(void)
{
	int			procno;

	if (registry == NULL)
		return;
	SpinLockAcquire(&registry->mutex);
	procno = registry->launcher_pgprocno;
	SpinLockRelease(&registry->mutex);
	WakeProcno(procno);
}

/* Wake the worker of dbid if it runs; cheap, and silent when it does not. */
void
RegistryWakeWorker(Oid dbid)
{
	int			procno = -1;
	int			i;

	if (registry == NULL)
		return;
	SpinLockAcquire(&registry->mutex);
	i = FindSlot(dbid);
	if (i >= 0)
		procno = registry->slots[i].pgprocno;
	SpinLockRelease(&registry->mutex);
	WakeProcno(procno);
}

/*
 * Will an error queued in dbid be sent?  True while a worker runs there or
 * is being started; *state says what the slot holds otherwise.
 */
bool
RegistryServes(Oid dbid, SlotState *state)
{
	int			i;

	*state = SLOT_FREE;
	if (registry == NULL)
		return false;
	SpinLockAcquire(&registry->mutex);
	i = FindSlot(dbid);
	if (i >= 0)
		*state = registry->slots[i].status.state;
	SpinLockRelease(&registry->mutex);
	return *state == SLOT_UNKNOWN || *state == SLOT_STARTING ||
		*state == SLOT_RUNNING;
}

/* A slot state in words, for worker_status() and messages. */
const char *
RegistryStateName(SlotState state)
{
	switch (state)
	{
		case SLOT_FREE:
			return "not served";
		case SLOT_UNKNOWN:
		case SLOT_STARTING:
			return "starting";
		case SLOT_RUNNING:
			return "running";
		case SLOT_ABSENT:
			return "extension not installed";
		case SLOT_NO_WORKER:
			return "no worker: max_worker_processes exhausted";
		case SLOT_STOPPING:
			return "stopping";
	}
	return "unknown";
}

/* Copy every used slot's status into out[]; returns how many. */
int
RegistrySnapshot(SlotStatus *out, int max)
{
	int			n = 0;

	if (registry == NULL)
		return 0;
	SpinLockAcquire(&registry->mutex);
	for (int i = 0; i < REGISTRY_MAX_DATABASES && n < max; i++)
		if (registry->slots[i].status.state != SLOT_FREE)
			out[n++] = registry->slots[i].status;
	SpinLockRelease(&registry->mutex);
	return n;
}


/* ---------------------------------------------------------------------
 * The launcher's side
 * ---------------------------------------------------------------------
 */

/* Withdraw the launcher's latch as it exits. */
static void
LauncherUnpublish(int code, Datum arg)
{
	SpinLockAcquire(&registry->mutex);
	registry->launcher_pgprocno = -1;
	SpinLockRelease(&registry->mutex);
}

/* Show the launcher's latch to the backends that will wake it. */
void
RegistryPublishLauncher(void)
{
	if (registry == NULL)
		elog(ERROR, "edusync launcher started without its shared memory");
	SpinLockAcquire(&registry->mutex);
	registry->launcher_pgprocno = EDUSYNC_MY_PROCNO;
	SpinLockRelease(&registry->mutex);
	before_shmem_exit(LauncherUnpublish, (Datum) 0);
}

/*
 * Set dbid's slot to state; create: take a free slot when dbid has none
 * (when none is free, nothing happens: the database stays unserved and
 * async creates there are refused).
 */
void
RegistrySetState(Oid dbid, SlotState state, bool create)
{
	int			i;

	if (registry == NULL)
		return;
	SpinLockAcquire(&registry->mutex);
	i = create ? TakeSlot(dbid) : FindSlot(dbid);
	/*
	 * A worker that found no extension, while a CREATE EXTENSION committed
	 * since it began: it looked too early, so have the launcher start
	 * another rather than mark the database "not installed".
	 */
	if (i >= 0 && i == my_slot && state == SLOT_ABSENT &&
		registry->slots[i].created_gen != my_created_gen)
		state = SLOT_UNKNOWN;
	if (i >= 0 && registry->slots[i].status.state != state)
	{
		registry->slots[i].status.state = state;
		registry->slots[i].status.since = GetCurrentTimestamp();
	}
	SpinLockRelease(&registry->mutex);
}

/* dbid's slot state (SLOT_FREE: none) and since when it holds. */
SlotState
RegistryGetState(Oid dbid, TimestampTz *since)
{
	SlotState	state = SLOT_FREE;
	int			i;

	*since = 0;
	SpinLockAcquire(&registry->mutex);
	i = FindSlot(dbid);
	if (i >= 0)
	{
		state = registry->slots[i].status.state;
		*since = registry->slots[i].status.since;
	}
	SpinLockRelease(&registry->mutex);
	return state;
}

/* Free the slots of databases not in dbids[] (dropped, or left out). */
void
RegistryForgetOthers(const Oid *dbids, int n)
{
	SpinLockAcquire(&registry->mutex);
	for (int i = 0; i < REGISTRY_MAX_DATABASES; i++)
	{
		WorkerSlot *slot = &registry->slots[i];
		bool		keep = false;

		if (slot->status.state == SLOT_FREE)
			continue;
		for (int j = 0; j < n && !keep; j++)
			keep = (dbids[j] == slot->status.dbid);
		if (!keep && slot->pgprocno < 0)
			slot->status.state = SLOT_FREE;
	}
	SpinLockRelease(&registry->mutex);
}

/* The used slots: their databases and states; returns how many. */
int
RegistryList(Oid *dbids, SlotState *states, int max)
{
	int			n = 0;

	SpinLockAcquire(&registry->mutex);
	for (int i = 0; i < REGISTRY_MAX_DATABASES && n < max; i++)
	{
		if (registry->slots[i].status.state == SLOT_FREE)
			continue;
		dbids[n] = registry->slots[i].status.dbid;
		states[n] = registry->slots[i].status.state;
		n++;
	}
	SpinLockRelease(&registry->mutex);
	return n;
}


/* ---------------------------------------------------------------------
 * A worker's side
 * ---------------------------------------------------------------------
 */

/* Withdraw the worker's latch as it exits. */
static void
WorkerUnpublish(int code, Datum arg)
{
	if (my_slot < 0)
		return;
	SpinLockAcquire(&registry->mutex);
	registry->slots[my_slot].pgprocno = -1;
	registry->slots[my_slot].status.pid = 0;
	SpinLockRelease(&registry->mutex);
	RegistryWakeLauncher();
}

/* Take dbid's slot as this worker's and show its latch to backends. */
void
RegistryPublishWorker(Oid dbid)
{
	if (registry == NULL)
		elog(ERROR, "edusync delivery worker started without its shared memory");
	SpinLockAcquire(&registry->mutex);
	my_slot = FindSlot(dbid);
	if (my_slot >= 0)
	{
		WorkerSlot *slot = &registry->slots[my_slot];

		slot->pgprocno = EDUSYNC_MY_PROCNO;
		my_created_gen = slot->created_gen;
		slot->status.pid = MyProcPid;
		strlcpy(slot->status.activity, "starting", sizeof(slot->status.activity));
		slot->status.detail[0] = '\0';
	}
	SpinLockRelease(&registry->mutex);
	if (my_slot < 0)
		elog(ERROR, "edusync delivery worker started for a database without a slot");
	before_shmem_exit(WorkerUnpublish, (Datum) 0);
}

/* What the worker is doing, in a word, and why (for worker_status()). */
void
RegistryReport(const char *activity, const char *detail)
{
	if (my_slot < 0)
		return;
	SpinLockAcquire(&registry->mutex);
	strlcpy(registry->slots[my_slot].status.activity, activity,
			sizeof(registry->slots[my_slot].status.activity));
	strlcpy(registry->slots[my_slot].status.detail, detail ? detail : "",
			sizeof(registry->slots[my_slot].status.detail));
	SpinLockRelease(&registry->mutex);
}

/* Add to the worker's counters; success stamps the last success. */
void
RegistryCount(int64 sent, int64 delivered, int64 retried, int64 failed,
			  int64 throttled, int64 batches, bool success)
{
	SlotStatus *st;

	if (my_slot < 0)
		return;
	SpinLockAcquire(&registry->mutex);
	st = &registry->slots[my_slot].status;
	st->sent += sent;
	st->delivered += delivered;
	st->retried += retried;
	st->failed += failed;
	st->throttled += throttled;
	st->batches += batches;
	if (success)
		st->last_success = GetCurrentTimestamp();
	SpinLockRelease(&registry->mutex);
}


/* ---------------------------------------------------------------------
 * The ring of delivered counts (recent.c)
 * ---------------------------------------------------------------------
 */

/* The lock that orders seeding against commits that bump; NULL unpreloaded. */
LWLock *
RegistryRingLock(void)
{
	return registry ? ring_lock : NULL;
}

/* The bucket of a minute (minutes may be negative: before 2000). */
static inline int
RingBucket(int64 minute)
{
	int64		b = minute % RING_MINUTES;

	return (int) (b < 0 ? b + RING_MINUTES : b);
}

/*
 * Count n deliveries recorded as delivered in minute.  A bucket holding an
 * older minute starts over; one holding a newer minute (this one is more
 * than an hour older) is left alone: a reader that needs this minute then
 * finds it gone and counts from the table.
 */
void
RegistryRingAdd(Oid dbid, int64 minute, int64 n)
{
	int			i;

	if (registry == NULL)
		return;
	SpinLockAcquire(&registry->mutex);
	i = FindSlot(dbid);
	if (i >= 0)
	{
		DeliveredRing *ring = &registry->slots[i].ring;
		int			b = RingBucket(minute);

		if (ring->minute[b] == minute)
			ring->count[b] += n;
		else if (ring->minute[b] < minute)
		{
			ring->minute[b] = minute;
			ring->count[b] = n;
		}
	}
	SpinLockRelease(&registry->mutex);
}

/*
 * The deliveries of dbid's ring from from_minute (and the
 * RING_MINUTES - 1 minutes after it) on: RING_SUM with *sum when the ring is
 * seeded and holds all of them; RING_SEED when it is unseeded, the caller
 * now being its seeder (*gen: the generation to seed); RING_TABLE otherwise.
 */
RingAnswer
RegistryRingSum(Oid dbid, int64 from_minute, int64 *sum, uint32 *gen)
{
	RingAnswer	answer = RING_TABLE;
	int			i;

	*sum = 0;
	*gen = 0;
	if (registry == NULL)
		return RING_TABLE;
	SpinLockAcquire(&registry->mutex);
	i = FindSlot(dbid);
	if (i >= 0)
	{
		DeliveredRing *ring = &registry->slots[i].ring;

		if (ring->state == RING_UNSEEDED)
		{
			ring->state = RING_SEEDING;
			*gen = ring->gen;
			answer = RING_SEED;
		}
		else if (ring->state == RING_SEEDED && from_minute >= ring->seeded_from)
		{
			answer = RING_SUM;
			for (int64 m = from_minute; m < from_minute + RING_MINUTES; m++)
			{
				int			b = RingBucket(m);

				if (ring->minute[b] == m)
					*sum += ring->count[b];
				else if (ring->minute[b] > m)
				{
					answer = RING_TABLE;	/* that minute is gone */
					break;
				}
				/* an older minute there: none was counted in m */
			}
		}
	}
	SpinLockRelease(&registry->mutex);
	if (answer != RING_SUM)
		*sum = 0;
	return answer;
}

/*
 * The ring of dbid while its seeder of generation gen is at work, or NULL
 * (no slot, or the ring was put in doubt since).  Under registry->mutex.
 */
static DeliveredRing *
SeederRing(Oid dbid, uint32 gen)
{
	int			i = FindSlot(dbid);

	if (i < 0 || registry->slots[i].ring.state != RING_SEEDING ||
		registry->slots[i].ring.gen != gen)
		return NULL;
	return &registry->slots[i].ring;
}

/*
 * The seeder of generation gen empties the ring, whose seed counts from
 * from_minute on; false when the ring was put in doubt meanwhile.  The
 * caller holds RegistryRingLock() exclusively.
 */
bool
RegistryRingZero(Oid dbid, uint32 gen, int64 from_minute)
{
	bool		ok = false;
	DeliveredRing *ring;

	SpinLockAcquire(&registry->mutex);
	ring = SeederRing(dbid, gen);
	if (ring != NULL)
	{
		for (int b = 0; b < RING_MINUTES; b++)
		{
			ring->minute[b] = PG_INT64_MIN;
			ring->count[b] = 0;
		}
		ring->seeded_from = from_minute;
		ok = true;
	}
	SpinLockRelease(&registry->mutex);
	return ok;
}

/*
 * The seeder of generation gen is done: ok, the ring is seeded; else (it
 * failed) unseeded again.  False when the ring was put in doubt meanwhile.
 */
bool
RegistryRingEndSeed(Oid dbid, uint32 gen, bool ok)
{
	bool		done = false;
	DeliveredRing *ring;

	SpinLockAcquire(&registry->mutex);
	ring = SeederRing(dbid, gen);
	if (ring != NULL)
	{
		ring->state = ok ? RING_SEEDED : RING_UNSEEDED;
		done = ok;
	}
	SpinLockRelease(&registry->mutex);
	return done;
}

/* Put dbid's ring in doubt: the next reader seeds it again. */
void
RegistryRingInvalidate(Oid dbid)
{
	int			i;

	if (registry == NULL)
		return;
	SpinLockAcquire(&registry->mutex);
	i = FindSlot(dbid);
	if (i >= 0)
		RingInDoubt(i);
	SpinLockRelease(&registry->mutex);
}


/* ---------------------------------------------------------------------
 * The utility hook
 * ---------------------------------------------------------------------
 */

/*
 * DROP DATABASE is about to run: ask the database's worker to leave, and
 * wait (at most REGISTRY_LEAVE_WAIT_MS) until it has, so that the drop
 * does not fail for the worker's connection.  The launcher does not start
 * a worker in a STOPPING slot.
 */
static void
LeaveDatabase(const char *dbname)
{
	Oid			dbid = get_database_oid(dbname, true);
	TimestampTz deadline;
	int			i;
	int			procno = -1;

	if (!OidIsValid(dbid) || registry == NULL)
		return;
	SpinLockAcquire(&registry->mutex);
	i = FindSlot(dbid);
	if (i >= 0)
	{
		registry->slots[i].status.state = SLOT_STOPPING;
		registry->slots[i].status.since = GetCurrentTimestamp();
		procno = registry->slots[i].pgprocno;
	}
	SpinLockRelease(&registry->mutex);
	if (procno < 0)
		return;

	kill(GetPGProcByNumber(procno)->pid, SIGTERM);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   REGISTRY_LEAVE_WAIT_MS);
	while (GetCurrentTimestamp() < deadline)
	{
		SpinLockAcquire(&registry->mutex);
		procno = registry->slots[i].pgprocno;
		SpinLockRelease(&registry->mutex);
		if (procno < 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * At commit of a CREATE EXTENSION edusync: have the launcher start a
 * worker; of a DROP EXTENSION edusync: wake the worker, so that it leaves.
 */
static void
ExtensionAtCommit(XactEvent event, void *arg)
{
	if (!created_here && !dropped_here)
		return;
	if ((event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT) &&
		registry != NULL)
	{
		if (created_here)
		{
			int			i;

			SpinLockAcquire(&registry->mutex);
			i = TakeSlot(MyDatabaseId);
			if (i >= 0)
			{
				WorkerSlot *slot = &registry->slots[i];

				slot->created_gen++;
				RingInDoubt(i);
				/* a worker that runs or starts already stays */
				if (slot->pgprocno >= 0 || slot->status.state == SLOT_STARTING)
					;
				else if (slot->status.state != SLOT_UNKNOWN)
				{
					slot->status.state = SLOT_UNKNOWN;
					slot->status.since = GetCurrentTimestamp();
				}
			}
			SpinLockRelease(&registry->mutex);
			RegistryWakeLauncher();
		}
		else
		{
			RegistryRingInvalidate(MyDatabaseId);
			RegistryWakeWorker(MyDatabaseId);
		}
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		created_here = dropped_here = false;
}

/* Does a DROP statement name the extension edusync? */
static bool
DropsEdusync(DropStmt *drop)
{
	ListCell   *lc;

	if (drop->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, drop->objects)
		if (strcmp(strVal(lfirst(lc)), "edusync") == 0)
			return true;
	return false;
}

/* The utility statements that concern the workers (see the file header). */
static void
RegistryProcessUtility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	static bool callback_registered = false;
	Node	   *stmt = pstmt->utilityStmt;
	bool		wake = false;

	if (IsA(stmt, DropdbStmt))
		LeaveDatabase(((DropdbStmt *) stmt)->dbname);
	else if (IsA(stmt, TransactionStmt) &&
			 ((TransactionStmt *) stmt)->kind == TRANS_STMT_COMMIT_PREPARED)
		wake = true;
	else if ((IsA(stmt, CreateExtensionStmt) &&
			  strcmp(((CreateExtensionStmt *) stmt)->extname, "edusync") == 0) ||
			 (IsA(stmt, DropStmt) && DropsEdusync((DropStmt *) stmt)))
	{
		if (!callback_registered)
		{
			RegisterXactCallback(ExtensionAtCommit, NULL);
			callback_registered = true;
		}
		if (IsA(stmt, CreateExtensionStmt))
			created_here = true;
		else
			dropped_here = true;
	}

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
	if (wake)
	{
		/* what the prepared transaction delivered was not counted */
		RegistryRingInvalidate(MyDatabaseId);
		RegistryWakeWorker(MyDatabaseId);
	}
}
