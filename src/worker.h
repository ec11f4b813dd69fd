/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The delivery worker of one database: its loop sends what the outbox
 *	  holds and records what Graph answered.  The launcher starts it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_WORKER_H
#define EDUSYNC_WORKER_H

#include "postmaster/bgworker.h"

extern void WorkerDescribe(BackgroundWorker *worker, Oid dbid,
						   const char *dbname);

#endif							/* EDUSYNC_WORKER_H */
