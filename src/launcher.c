/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: a background worker, registered at preload, that gives
 *	  every database where edusync is installed a delivery worker of its
 *	  own (a dynamic background worker, worker.c).
 *
 *	  It connects to no database and reads pg_database, as PostgreSQL's own
 *	  launchers do.  Each database it has not seen gets a worker that looks
 *	  for the extension: found, the worker stays and delivers; not found,
 *	  it marks the database "extension not installed" and leaves, and the
 *	  launcher starts no other there until CREATE EXTENSION edusync commits
 *	  (registry.c wakes the launcher then).  Template databases are left
 *	  out: a connection to one would make CREATE DATABASE from it fail.
 *	  edusync.databases, when set, narrows the databases served; a reload
 *	  that leaves a database out stops its worker.
 *
 *	  A worker that dies is started again after LAUNCHER_RESTART_MS.  When
 *	  no background worker slot is free (max_worker_processes), the
 *	  database is marked so (worker_status(), and async creates there are
 *	  refused with 55000), a LOG line says so once, and the launcher tries
 *	  again every LAUNCHER_RETRY_MS.  Without wakes it looks at pg_database
 *	  every LAUNCHER_NAP_MS, for databases made from a template that holds
 *	  the extension.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "compat.h"
#include "launcher.h"
#include "registry.h"
#include "settings.h"
#include "worker.h"

#define LAUNCHER_NAME			"edusync launcher"
#define LAUNCHER_NAP_MS			10000	/* look at pg_database this often */
#define LAUNCHER_RETRY_MS		5000	/* no worker slot: try again */
#define LAUNCHER_RESTART_MS		1000	/* a worker died: start it again */
#define LAUNCHER_STOPPING_MS	10000	/* a DROP DATABASE that did not drop */

/* A database the launcher looks after, with its worker's handle. */
typedef struct Served
{
	Oid			dbid;
	char		name[NAMEDATALEN];
	BackgroundWorkerHandle *handle;	/* NULL: none started */
	TimestampTz start_after;	/* no new worker before (0: at once) */
} Served;

PGDLLEXPORT void edusync_launcher_main(Datum main_arg);

static Served served[REGISTRY_MAX_DATABASES];
static int	nserved = 0;
static bool warned_full = false;

/* Register the launcher; from _PG_init when the library is preloaded. */
void
LauncherRegister(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "edusync", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "edusync_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, LAUNCHER_NAME, BGW_MAXLEN);
	strlcpy(worker.bgw_type, LAUNCHER_NAME, BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/* Is the database named in edusync.databases (or is that empty)? */
static bool
Allowed(const char *name)
{
	char	   *copy;
	List	   *names;
	ListCell   *lc;
	bool		found = false;

	if (edusync_databases == NULL || edusync_databases[0] == '\0')
		return true;
	copy = pstrdup(edusync_databases);
	if (!SplitIdentifierString(copy, ',', &names))
		return false;			/* the check hook refuses this */
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), name) == 0)
			found = true;
	return found;
}

/*
 * Read pg_database: the databases to serve (connectable, not templates,
 * allowed), into served[], keeping the handles of those already there.
 */
static void
ReadDatabases(void)
{
	Served		now[REGISTRY_MAX_DATABASES];
	Oid			dbids[REGISTRY_MAX_DATABASES];
	int			n = 0;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext mcxt = CurrentMemoryContext;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL &&
		   n < REGISTRY_MAX_DATABASES)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (!db->datallowconn || db->datistemplate ||
			!Allowed(NameStr(db->datname)))
			continue;
		now[n].dbid = db->oid;
		strlcpy(now[n].name, NameStr(db->datname), NAMEDATALEN);
		now[n].handle = NULL;
		now[n].start_after = 0;
		for (int i = 0; i < nserved; i++)
			if (served[i].dbid == db->oid)
			{
				now[n].handle = served[i].handle;
				now[n].start_after = served[i].start_after;
			}
		dbids[n] = db->oid;
		n++;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(mcxt);

	/*
	 * A database no longer served (dropped, or left out of
	 * edusync.databases at a reload): its worker is asked to leave, and its
	 * slot says so until the worker is gone (async creates there are
	 * refused from now on).
	 */
	for (int i = 0; i < nserved; i++)
	{
		bool		kept = false;

		for (int j = 0; j < n && !kept; j++)
			kept = (now[j].dbid == served[i].dbid);
		if (kept)
			continue;
		if (served[i].handle != NULL)
			TerminateBackgroundWorker(served[i].handle);
		RegistrySetState(served[i].dbid, SLOT_STOPPING, false);
	}
	memcpy(served, now, sizeof(Served) * n);
	nserved = n;
	RegistryForgetOthers(dbids, n);
	for (int i = 0; i < n; i++)
	{
		TimestampTz since;

		if (RegistryGetState(dbids[i], &since) == SLOT_FREE)
			RegistrySetState(dbids[i], SLOT_UNKNOWN, true);
	}
}

/* Start the delivery worker of s; false when no worker slot is free. */
static bool
StartWorker(Served *s)
{
	BackgroundWorker worker;

	WorkerDescribe(&worker, s->dbid, s->name);
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &s->handle))
	{
		s->handle = NULL;
		return false;
	}
	return true;
}

/* Is s's worker process gone (or was none started)? */
static bool
WorkerGone(const Served *s)
{
	pid_t		pid;

	return s->handle == NULL ||
		GetBackgroundWorkerPid(s->handle, &pid) == BGWH_STOPPED;
}

/*
 * Bring every database to its right state: start the workers wanted, and
 * again those that died.  Returns how long to sleep before looking again.
 */
static long
Reconcile(void)
{
	TimestampTz now = GetCurrentTimestamp();
	long		sleep_ms = LAUNCHER_NAP_MS;
	bool		full = false;

	for (int i = 0; i < nserved; i++)
	{
		Served	   *s = &served[i];
		TimestampTz since;
		SlotState	state = RegistryGetState(s->dbid, &since);
		long		waited = (long) ((now - since) / 1000);

		switch (state)
		{
			case SLOT_STARTING:
			case SLOT_RUNNING:
				if (!WorkerGone(s))
					break;
				/* it died without saying why: start it again, shortly */
				RegistrySetState(s->dbid, SLOT_UNKNOWN, false);
				s->start_after = TimestampTzPlusMilliseconds(now, LAUNCHER_RESTART_MS);
				sleep_ms = Min(sleep_ms, LAUNCHER_RESTART_MS);
				break;
			case SLOT_UNKNOWN:
			case SLOT_NO_WORKER:
				if (now < s->start_after)
				{
					sleep_ms = Min(sleep_ms, (long) ((s->start_after - now) / 1000) + 1);
					break;
				}
				if (!WorkerGone(s))
				{
					sleep_ms = Min(sleep_ms, LAUNCHER_RESTART_MS);
					break;		/* the last one is still leaving */
				}
				/*
				 * STARTING before the start: a worker quick to say RUNNING
				 * (or "not installed") must not be overwritten by it.
				 */
				RegistrySetState(s->dbid, SLOT_STARTING, false);
				if (!StartWorker(s))
				{
					full = true;
					RegistrySetState(s->dbid, SLOT_NO_WORKER, false);
					s->start_after = TimestampTzPlusMilliseconds(now, LAUNCHER_RETRY_MS);
					sleep_ms = Min(sleep_ms, LAUNCHER_RETRY_MS);
				}
				break;
			case SLOT_STOPPING:
				/* a DROP DATABASE that failed leaves the database served */
				if (waited >= LAUNCHER_STOPPING_MS && WorkerGone(s))
					RegistrySetState(s->dbid, SLOT_UNKNOWN, false);
				else
					sleep_ms = Min(sleep_ms, LAUNCHER_STOPPING_MS);
				break;
			case SLOT_ABSENT:
			case SLOT_FREE:
				break;
		}
	}

	if (full && !warned_full)
		ereport(LOG,
				(errmsg("edusync launcher could not start a delivery worker: no background worker slot is free"),
				 errhint("Raise max_worker_processes (edusync needs one for its launcher and one per database where it is installed) and restart the server; async creates there are refused until a worker runs.")));
	else if (!full && warned_full)
		ereport(LOG,
				(errmsg("edusync launcher started every delivery worker it was waiting for")));
	warned_full = full;
	return Max(sleep_ms, 10);
}

/* Entry point of the launcher. */
void
edusync_launcher_main(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	RegistryPublishLauncher();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname(LAUNCHER_NAME);

	for (;;)
	{
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		ResetLatch(MyLatch);

		ReadDatabases();
		sleep_ms = Reconcile();

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
	}
}
