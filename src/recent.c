/*-------------------------------------------------------------------------
 *
 * recent.c
 *	  edusync.delivered_last_hour(), delivery_queue's delivered_last_hour,
 *	  without counting an hour of index entries.
 *
 *	  Each database's slot in shared memory (registry.c) holds a ring of 60
 *	  one-minute buckets: how many deliveries were recorded as delivered
 *	  with delivered_at in that minute.  delivered_at is now(), the start of
 *	  the recording transaction, so a transaction's deliveries all fall in
 *	  one bucket, the one the table's row says.  Whoever records deliveries
 *	  (the worker's verdicts, a sync create: outbox.c) notes how many rows
 *	  became delivered; the count is added to the ring when the transaction
 *	  commits (none on abort; a rolled-back subtransaction takes its own
 *	  back).
 *
 *	  The answer for a reader whose now() is t: the buckets of the 60 whole
 *	  minutes after t - 1 hour, plus the rows of the part-minute before them
 *	  counted from deliveries_delivered_idx (at most a minute of rows): the
 *	  same window as counting the table, delivered_at > now() - 1 hour.
 *
 *	  Seeding.  After a server start (or whenever the ring is in doubt) the
 *	  ring is empty; the first reader seeds it from the table, one GROUP BY
 *	  per minute over the last hour.  A delivery committed before the seed's
 *	  snapshot is in the table; one committed after it must be in the ring,
 *	  and none may be in both.  Commit makes rows visible before any commit
 *	  callback runs, so "bump after commit" alone leaves a gap.  Closed with
 *	  one LWLock: a committing transaction that delivered takes it shared
 *	  before its commit becomes visible (XACT_EVENT_PRE_COMMIT) and releases
 *	  it after bumping (XACT_EVENT_COMMIT); the seeder takes it exclusively
 *	  (conditionally: it never waits behind a commit) to empty the ring and
 *	  take its snapshot.  So each commit-and-bump is wholly before the seed
 *	  (in the snapshot, its bump emptied) or wholly after (not in the
 *	  snapshot, its bump kept).
 *
 *	  Counting from the table, exactly as before, whenever the ring cannot
 *	  answer: edusync not preloaded (no shared memory), a standby
 *	  (RecoveryInProgress: replayed deliveries bump nothing), no slot for
 *	  the database, another session seeding, the lock busy, a minute the
 *	  reader needs already rotated out, or a ring in doubt until reseeded.
 *	  In doubt: after CREATE/DROP EXTENSION, COMMIT PREPARED (what a prepared
 *	  transaction delivered was not counted), and a commit that deleted or
 *	  truncated delivery rows (trigger deliveries_removed; the worker's own
 *	  purge of rows older than an hour aside).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "outbox.h"
#include "recent.h"
#include "registry.h"

/* Tries (a millisecond apart) at the seeding lock before counting the table. */
#define SEED_LOCK_TRIES	20

/* Deliveries noted in one subtransaction. */
typedef struct Noted
{
	SubTransactionId subid;
	int64		n;
} Noted;

#define NOTED_MAX	64

static Noted noted[NOTED_MAX];
static int	nnoted = 0;
static int64 noted_minute = 0;	/* the minute of this transaction's now() */
static bool in_doubt = false;	/* put the ring in doubt at commit */
static bool holding = false;	/* the ring lock, shared, across commit */
static bool deleting_old = false;
static bool callbacks_registered = false;
static bool seeding = false;	/* this process is seeding (seed_gen) */
static uint32 seed_gen = 0;


/* The minute (since 2000-01-01 00:00 UTC) that holds t. */
static int64
MinuteOf(TimestampTz t)
{
	int64		m = t / USECS_PER_MINUTE;

	if (t < 0 && t % USECS_PER_MINUTE != 0)
		m--;
	return m;
}

/* Forget what this transaction noted. */
static void
ForgetNoted(void)
{
	nnoted = 0;
	in_doubt = false;
	holding = false;
}

/* Commit: lock before the commit is visible, bump and unlock after. */
static void
RecentXactCallback(XactEvent event, void *arg)
{
	int64		total = 0;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			for (int i = 0; i < nnoted; i++)
				total += noted[i].n;
			if (total > 0 && !in_doubt && RegistryRingLock() != NULL)
			{
				LWLockAcquire(RegistryRingLock(), LW_SHARED);
				holding = true;
			}
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (holding)
			{
				for (int i = 0; i < nnoted; i++)
					total += noted[i].n;
				RegistryRingAdd(MyDatabaseId, noted_minute, total);
				LWLockRelease(RegistryRingLock());
			}
			if (in_doubt)
				RegistryRingInvalidate(MyDatabaseId);
			ForgetNoted();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* AbortTransaction released every LWLock already */
			ForgetNoted();
			break;
		case XACT_EVENT_PREPARE:
			/* COMMIT PREPARED puts the ring in doubt (registry.c) */
			ForgetNoted();
			break;
		default:
			break;
	}
}

/* A subtransaction's deliveries go to its parent, or away with it. */
static void
RecentSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	int			j = 0;

	if (event != SUBXACT_EVENT_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB)
		return;
	for (int i = 0; i < nnoted; i++)
	{
		if (noted[i].subid == mySubid)
		{
			if (event == SUBXACT_EVENT_ABORT_SUB)
				continue;
			noted[i].subid = parentSubid;
		}
		if (j > 0 && noted[j - 1].subid == noted[i].subid)
			noted[j - 1].n += noted[i].n;
		else
			noted[j++] = noted[i];
	}
	nnoted = j;
}

static void
RegisterCallbacks(void)
{
	if (callbacks_registered)
		return;
	RegisterXactCallback(RecentXactCallback, NULL);
	RegisterSubXactCallback(RecentSubXactCallback, NULL);
	callbacks_registered = true;
}

/* n rows became delivered in this transaction (counted at its commit). */
void
RecentNoteDelivered(int64 n)
{
	SubTransactionId subid = GetCurrentSubTransactionId();

	if (n <= 0)
		return;
	RegisterCallbacks();
	noted_minute = MinuteOf(GetCurrentTransactionStartTimestamp());
	if (nnoted > 0 && noted[nnoted - 1].subid == subid)
		noted[nnoted - 1].n += n;
	else if (nnoted < NOTED_MAX)
	{
		noted[nnoted].subid = subid;
		noted[nnoted].n = n;
		nnoted++;
	}
	else
		in_doubt = true;		/* too many subtransactions to follow */
}

/* The next deletes from deliveries are of rows older than an hour. */
void
RecentDeletingOld(bool old)
{
	deleting_old = old;
}

/* A seeder that exits before it is done leaves the ring unseeded. */
static void
SeedAtExit(int code, Datum arg)
{
	if (seeding)
		(void) RegistryRingEndSeed(MyDatabaseId, seed_gen, false);
	seeding = false;
}

/*
 * Seed the ring (generation gen) with the table's rows delivered from
 * from_minute on.  False when it could not (lock busy, or the ring was put
 * in doubt meanwhile): the caller counts from the table.
 */
static bool
SeedRing(uint32 gen, int64 from_minute)
{
	static bool exit_registered = false;
	volatile bool locked = false;
	bool		ok = false;
	bool		done = false;

	if (!exit_registered)
	{
		before_shmem_exit(SeedAtExit, (Datum) 0);
		exit_registered = true;
	}
	seeding = true;
	seed_gen = gen;
	PG_TRY();
	{
		Snapshot	snap = NULL;

		for (int i = 0; i < SEED_LOCK_TRIES && !locked; i++)
		{
			if (i > 0)
			{
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 1, PG_WAIT_EXTENSION);
				ResetLatch(MyLatch);
				CHECK_FOR_INTERRUPTS();
			}
			locked = LWLockConditionalAcquire(RegistryRingLock(), LW_EXCLUSIVE);
		}
		if (locked)
		{
			/* no commit that bumps is between visible and bumped now */
			if (RegistryRingZero(MyDatabaseId, gen, from_minute))
				snap = RegisterSnapshot(GetLatestSnapshot());
			LWLockRelease(RegistryRingLock());
			locked = false;
		}
		if (snap != NULL)
		{
			int			n;
			TimestampTz *minutes;
			int64	   *counts;

			n = OutboxDeliveredPerMinute(from_minute * USECS_PER_MINUTE, snap,
										 &minutes, &counts);
			UnregisterSnapshot(snap);
			snap = NULL;
			for (int i = 0; i < n; i++)
				RegistryRingAdd(MyDatabaseId, MinuteOf(minutes[i]), counts[i]);
			ok = true;
		}
		done = RegistryRingEndSeed(MyDatabaseId, gen, ok);
		seeding = false;
	}
	PG_CATCH();
	{
		if (locked)
			LWLockRelease(RegistryRingLock());
		(void) RegistryRingEndSeed(MyDatabaseId, gen, false);
		seeding = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
	return done;
}

/*
 * Deliveries with delivered_at after now() - 1 hour (edusync.delivered_last_hour()),
 * from the ring when it can answer, else from the table.
 */
int64
RecentDeliveredLastHour(void)
{
	TimestampTz since = GetCurrentTransactionStartTimestamp() - USECS_PER_HOUR;
	int64		first = MinuteOf(since) + 1;	/* the first whole minute */
	int64		sum;
	uint32		gen;
	RingAnswer	answer = RING_TABLE;

	if (RegistryRingLock() != NULL && !RecoveryInProgress())
	{
		answer = RegistryRingSum(MyDatabaseId, first, &sum, &gen);
		if (answer == RING_SEED)
		{
			if (SeedRing(gen, first))
				answer = RegistryRingSum(MyDatabaseId, first, &sum, &gen);
			else
				answer = RING_TABLE;
		}
	}
	if (answer != RING_SUM)
		return (int64) OutboxCountDelivered(since, DT_NOEND);
	/* the part-minute before the first whole one, from the index */
	return sum + (int64) OutboxCountDelivered(since, first * USECS_PER_MINUTE);
}

/*
 * Delivery rows were deleted (truncate: all of them), as the trigger
 * deliveries_removed says: rows the ring counted may be gone, so it is put
 * in doubt at commit, unless the worker is purging rows older than an hour.
 */
void
RecentRowsRemoved(bool truncate)
{
	if (!deleting_old || truncate)
	{
		RegisterCallbacks();
		in_doubt = true;
	}
}
