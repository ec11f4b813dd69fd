/*-------------------------------------------------------------------------
 *
 * registry.h
 *	  Shared memory that says which delivery worker serves which database,
 *	  and in what state; how backends wake a worker or the launcher; and
 *	  the utility hook that keeps both in step with CREATE EXTENSION, DROP
 *	  DATABASE and COMMIT PREPARED.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_REGISTRY_H
#define EDUSYNC_REGISTRY_H

#include "datatype/timestamp.h"

/* Most databases served at once (one slot each). */
#define REGISTRY_MAX_DATABASES	256

/* What a database's slot says. */
typedef enum SlotState
{
	SLOT_FREE = 0,				/* unused */
	SLOT_UNKNOWN,				/* the launcher is to start a worker */
	SLOT_STARTING,				/* a worker was started, not yet running */
	SLOT_RUNNING,				/* a worker serves the database */
	SLOT_ABSENT,				/* edusync is not installed there */
	SLOT_NO_WORKER,				/* no background worker slot was free */
	SLOT_STOPPING				/* DROP DATABASE asked the worker to leave */
} SlotState;

/* What edusync.worker_status() shows of a slot. */
typedef struct SlotStatus
{
	Oid			dbid;
	SlotState	state;
	int			pid;
	TimestampTz since;
	char		activity[64];	/* the worker's own word: idle, sending... */
	char		detail[128];	/* why it is paused, throttled until... */
	TimestampTz last_success;
	int64		sent;
	int64		delivered;
	int64		retried;
	int64		failed;
	int64		throttled;
	int64		batches;
} SlotStatus;

extern void RegistryInit(void);

/* Backends. */
extern void RegistryWakeWorker(Oid dbid);
extern bool RegistryServes(Oid dbid, SlotState *state);
extern const char *RegistryStateName(SlotState state);
extern int	RegistrySnapshot(SlotStatus *out, int max);

/* The launcher. */
extern void RegistryPublishLauncher(void);
extern void RegistrySetState(Oid dbid, SlotState state, bool create);
extern SlotState RegistryGetState(Oid dbid, TimestampTz *since);
extern void RegistryForgetOthers(const Oid *dbids, int n);
extern int	RegistryList(Oid *dbids, SlotState *states, int max);

/* A delivery worker. */
extern void RegistryPublishWorker(Oid dbid);
extern void RegistryReport(const char *activity, const char *detail);
extern void RegistryCount(int64 sent, int64 delivered, int64 retried,
						  int64 failed, int64 throttled, int64 batches,
						  bool success);

/*
 * The ring of deliveries recorded as delivered per minute (recent.c): one
 * per slot, 60 one-minute buckets, minutes counted from PostgreSQL's epoch.
 */
#define RING_MINUTES	60

typedef enum RingAnswer
{
	RING_SUM,					/* *sum holds the answer */
	RING_SEED,					/* unseeded: the caller is now its seeder */
	RING_TABLE					/* no ring, seeding elsewhere, or in doubt */
} RingAnswer;

struct LWLock;
extern struct LWLock *RegistryRingLock(void);
extern void RegistryRingAdd(Oid dbid, int64 minute, int64 n);
extern RingAnswer RegistryRingSum(Oid dbid, int64 from_minute, int64 *sum,
								  uint32 *gen);
extern bool RegistryRingZero(Oid dbid, uint32 gen, int64 from_minute);
extern bool RegistryRingEndSeed(Oid dbid, uint32 gen, bool ok);
extern void RegistryRingInvalidate(Oid dbid);

#endif							/* EDUSYNC_REGISTRY_H */
