/*-------------------------------------------------------------------------
 *
 * policy.c
 *	  What an answer from Graph means and what to do next, in one place for
 *	  sync mode (forward.c) and the delivery worker (worker.c):
 *	  - ClassifyResponse/ClassifyAnswer: delivered, worth a retry,
 *		rejected for good, or an authentication failure, with Graph's
 *		words (code, message, request-id) as the reason;
 *	  - PolicyRetryable: which statuses are retried (none, 408, 429, 500,
 *		502, 503, 504);
 *	  - PolicyBackoffMs: exponential backoff with full jitter, never sooner
 *		than Retry-After;
 *	  - PolicyJudge: what the worker records for one delivery, and whether
 *		the endpoint as a whole is throttled or failing.
 *	  Retry-After itself is read from the answer's headers by
 *	  graph_client.c; how long the worker pauses is worker.c's business.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#if PG_VERSION_NUM >= 150000
#include "common/pg_prng.h"
#endif

#include "policy.h"
#include "remote.h"
#include "settings.h"

/* Longest Retry-After honoured, in seconds. */
#define POLICY_RETRY_AFTER_MAX	3600.0

/*
 * What one answer from Graph means: delivered (with the remote id), worth
 * another try, rejected for good, or an authentication failure.  Graph's
 * error code and message, when the body has them, go into out->reason.
 */
void
ClassifyResponse(long status, const char *body, size_t body_len,
				 double retry_after, const char *transport_error,
				 Outcome *out)
{
	RemoteAnswer ans;

	RemoteReadAnswer(body, body_len, &ans);
	ClassifyAnswer(status, &ans, retry_after, transport_error, out);
}

/* A sentence: text with a final period, unless it already has one. */
char *
Sentence(const char *text)
{
	size_t		n = strlen(text);

	return (n > 0 && text[n - 1] == '.') ? pstrdup(text) : psprintf("%s.", text);
}

/* As ClassifyResponse, for an answer body already read into ans. */
void
ClassifyAnswer(long status, const RemoteAnswer *ans, double retry_after,
			   const char *transport_error, Outcome *out)
{
	memset(out, 0, sizeof(*out));
	out->status = status;
	out->retry_after = retry_after;

	if (status == 0)
	{
		const char *why = transport_error ? transport_error : "no answer";

		out->reason = RemoteText(why, strlen(why), REMOTE_TEXT_MAX);
	}
	else if (ans->code || ans->message)
		out->reason = psprintf("%s: %s", ans->code ? ans->code : "(no code)",
							   ans->message ? ans->message : "(no message)");
	else
		out->reason = psprintf("HTTP status %ld", status);
	if (status != 0 && ans->request_id)
		out->reason = psprintf("%s (request-id %s)", out->reason, ans->request_id);

	if (status >= 200 && status < 300)
	{
		out->kind = OUTCOME_DELIVERED;
		out->remote_id = ans->id;
		out->reason = NULL;
	}
	else if (status == 401 || status == 403)
		out->kind = OUTCOME_AUTH;
	else if (PolicyRetryable(status))
		out->kind = OUTCOME_RETRY;
	else
		out->kind = OUTCOME_REJECTED;
}

/* What a permanent answer is, in words, for the primary message. */
const char *
PolicyRejectionWords(long status)
{
	if (status >= 300 && status < 400)
		return "Graph answered with a redirect (HTTP status %ld), which edusync never follows";
	if (status >= 400 && status < 500)
		return "Graph rejected the error with HTTP status %ld";
	if (status >= 500)
		return "Graph failed the request with HTTP status %ld, which is not worth retrying";
	return "Graph answered with the unexpected HTTP status %ld";
}

/* Is an HTTP status (0: no answer) worth another attempt? */
bool
PolicyRetryable(long status)
{
	switch (status)
	{
		case 0:
		case 408:
		case 429:
		case 500:
		case 502:
		case 503:
		case 504:
			return true;
		default:
			return false;
	}
}

/*
 * Delay before attempt + 1, in ms: full jitter, a random value in
 * [0, min(cap, base * 2^(attempt - 1))], but never less than Retry-After
 * when the server gave one (retry_after_s >= 0).
 */
long
PolicyBackoffMs(int attempt, double retry_after_s, long base_ms, long cap_ms)
{
	uint64		ceiling;
	uint64		delay;
	int			i;

	if (attempt < 1)
		attempt = 1;
	if (base_ms < 0)
		base_ms = 0;
	if (cap_ms < 0)
		cap_ms = 0;

	ceiling = (uint64) base_ms;
	for (i = 1; i < attempt && ceiling > 0 && ceiling < (uint64) cap_ms; i++)
		ceiling *= 2;
	if (ceiling > (uint64) cap_ms)
		ceiling = (uint64) cap_ms;

#if PG_VERSION_NUM >= 150000
	delay = pg_prng_uint64_range(&pg_global_prng_state, 0, ceiling);
#else
	delay = (uint64) ((double) random() / 2147483648.0 * (double) (ceiling + 1));
	if (delay > ceiling)
		delay = ceiling;
#endif

	if (retry_after_s >= 0)
	{
		double		ra = retry_after_s;
		uint64		ra_ms;

		if (ra > POLICY_RETRY_AFTER_MAX)
			ra = POLICY_RETRY_AFTER_MAX;
		ra_ms = (uint64) ceil(ra * 1000.0);
		if (delay < ra_ms)
			delay = ra_ms;
	}
	return (long) delay;
}

/* Set out to "no usable answer for this delivery", worth a retry. */
void
PolicyNoAnswer(Outcome *out, const char *reason)
{
	memset(out, 0, sizeof(*out));
	out->kind = OUTCOME_RETRY;
	out->status = 0;
	out->retry_after = -1;
	out->reason = pstrdup(reason);
}

/*
 * The verdict for one delivery after outcome o, its attempts_before this
 * send, and the outcome's effect on the endpoint (fx).  may_refresh: a
 * 401 may be answered by fetching a new token and retrying at once.
 *
 * - delivered: recorded with Graph's id.
 * - rejected (any other 4xx, 3xx, 501...): failed at once, with Graph's words.
 * - 401 that a new token may cure: pending, due at once, refresh first.
 * - retryable, 403, or a 401 no token cures: pending with exponential
 *   backoff and full jitter, never sooner than Retry-After; failed once
 *   edusync.max_attempts sends were spent.  A 429 or 503 with Retry-After
 *   is a throttle of the whole endpoint, any other one a failure of it.
 */
void
PolicyJudge(const Outcome *o, int attempts_before, bool may_refresh,
			Verdict *v, HostEffect *fx)
{
	int			attempt = attempts_before + 1;

	memset(v, 0, sizeof(*v));
	v->last_status = o->status;

	switch (o->kind)
	{
		case OUTCOME_DELIVERED:
			v->status = "delivered";
			v->remote_id = o->remote_id;
			fx->answered = true;
			return;

		case OUTCOME_REJECTED:
			v->status = "failed";
			v->last_error = o->reason;
			fx->answered = true;
			return;

		case OUTCOME_AUTH:
			if (o->status == 401 && may_refresh)
			{
				v->status = "pending";
				v->last_error = o->reason;
				v->delay_ms = 0;
				v->refresh_token = true;
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
		v->delay_ms = PolicyBackoffMs(attempt, o->retry_after,
									  POLICY_BACKOFF_BASE_MS,
									  POLICY_BACKOFF_CAP_MS);
	}
}
