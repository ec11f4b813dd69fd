/*-------------------------------------------------------------------------
 *
 * recent.h
 *	  delivery_queue's delivered_last_hour from a ring of per-minute counts
 *	  in shared memory, bumped at commit by whoever records a delivery.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_RECENT_H
#define EDUSYNC_RECENT_H

/* n rows became delivered in this transaction (counted at its commit). */
extern void RecentNoteDelivered(int64 n);

/* The next deletes from deliveries are of rows older than an hour. */
extern void RecentDeletingOld(bool old);

/* edusync.delivered_last_hour()'s answer. */
extern int64 RecentDeliveredLastHour(void);

/* The trigger deliveries_removed fired (truncate: a TRUNCATE). */
extern void RecentRowsRemoved(bool truncate);

#endif							/* EDUSYNC_RECENT_H */
