/*-------------------------------------------------------------------------
 *
 * policy.h
 *	  What an answer from Graph means and what to do next, for sync mode
 *	  and the delivery worker alike: the outcome of one answer, which
 *	  statuses are retried, the backoff, and the verdict for one delivery
 *	  (with its effect on the endpoint as a whole).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_POLICY_H
#define EDUSYNC_POLICY_H

#include "remote.h"

/* What one answer from Graph means. */
typedef enum OutcomeKind
{
	OUTCOME_DELIVERED,			/* 2xx: remote_id set when Graph gave one */
	OUTCOME_RETRY,				/* transport error, 408, 429, 5xx: try again */
	OUTCOME_REJECTED,			/* any other status: permanent */
	OUTCOME_AUTH				/* 401 or 403 */
} OutcomeKind;

typedef struct Outcome
{
	OutcomeKind kind;
	long		status;			/* HTTP status, 0 when no answer came */
	double		retry_after;	/* seconds, -1 when not given */
	char	   *remote_id;
	char	   *reason;			/* "code: message" of Graph, or why no answer */
} Outcome;

/* What the worker records for one delivery. */
typedef struct Verdict
{
	const char *status;			/* "delivered", "pending" or "failed" */
	long		last_status;	/* HTTP status, 0 for none */
	char	   *last_error;
	char	   *remote_id;
	long		delay_ms;		/* until the next attempt, when pending */
	bool		refresh_token;	/* a 401 asks for a new token first */
} Verdict;

/* What the answers to one request say about the endpoint as a whole. */
typedef struct HostEffect
{
	bool		answered;		/* a delivery or a rejection: Graph works */
	bool		failed;			/* a failure that is not a throttle */
	double		throttle_s;		/* longest Retry-After of a throttle, or -1 */
} HostEffect;

/* Backoff of one delivery's retries in the worker. */
#define POLICY_BACKOFF_BASE_MS	1000
#define POLICY_BACKOFF_CAP_MS	300000

extern void ClassifyResponse(long status, const char *body, size_t body_len,
							 double retry_after, const char *transport_error,
							 Outcome *out);
extern void ClassifyAnswer(long status, const RemoteAnswer *ans,
						   double retry_after, const char *transport_error,
						   Outcome *out);
extern void PolicyNoAnswer(Outcome *out, const char *reason);
extern const char *PolicyRejectionWords(long status);
extern bool PolicyRetryable(long status);
extern long PolicyBackoffMs(int attempt, double retry_after_s, long base_ms,
							long cap_ms);
extern void PolicyJudge(const Outcome *o, int attempts_before, bool may_refresh,
						Verdict *v, HostEffect *fx);
extern char *Sentence(const char *text);

#endif							/* EDUSYNC_POLICY_H */
