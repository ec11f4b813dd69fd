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

#endif							/* EDUSYNC_RECENT_H */
