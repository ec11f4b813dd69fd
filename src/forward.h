/*-------------------------------------------------------------------------
 *
 * forward.h
 *	  Where a stored error goes: nowhere, to Graph inside the call (sync),
 *	  or to the outbox (async), as edusync.forward says.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_FORWARD_H
#define EDUSYNC_FORWARD_H

#include "sync_error.h"

extern void ForwardError(const EdusyncError *err, bool replay);
extern void ForwardErrors(const EdusyncError *errs, const bool *inserted,
						  int n);
extern void ForwardRequireAsync(void);
extern bool ForwardSyncEarly(EdusyncError *err);
extern void ForwardSyncAbandon(void);

#endif							/* EDUSYNC_FORWARD_H */
