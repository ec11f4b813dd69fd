/*-------------------------------------------------------------------------
 *
 * graph_client.h
 *	  The HTTP client of edusync: every use of libcurl lives in
 *	  graph_client.c, behind these functions.
 *
 *	  Nothing here raises an ERROR for a network outcome: results come back
 *	  in a GraphResponse so that the backend (sync mode) and the background
 *	  worker (async mode) can each decide what a failure means.  Only an
 *	  unsafe configuration (22023) or out-of-memory raises.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GRAPH_CLIENT_H
#define GRAPH_CLIENT_H

/* What one HTTP exchange gave. */
typedef struct GraphResponse
{
	long		status;			/* HTTP status; 0 when no answer came */
	char	   *body;			/* palloc'd, NUL-terminated ("" if none) */
	size_t		body_len;
	double		retry_after;	/* Retry-After in seconds, -1 if absent */
	bool		timed_out;		/* the request's own timeout ran out */
	bool		aborted;		/* stopped for an interrupt (cancel, die) */
	char	   *transport_error;	/* when status == 0: curl's words, no
									 * secrets; NULL otherwise */
} GraphResponse;

/* One request to send. */
typedef struct GraphRequest
{
	const char *url;
	const char *content_type;	/* "application/json" or form */
	const char *body;
	const char *bearer;			/* NULL: no Authorization header */
	const char *client_request_id;	/* NULL: no client-request-id header */
	long		timeout_ms;		/* the whole exchange; > 0 */
	void	   *tag;			/* caller's, handed back by the multi API */
} GraphRequest;

/*
 * URL building and checks.  Each raises 22023 (before any traffic) for a
 * malformed URL, a scheme other than https, http to a host that is not
 * loopback (127.0.0.0/8, ::1, localhost), or an errors_path without
 * {profile_id}.  Results are palloc'd in CurrentMemoryContext.
 */
extern void GraphCheckUrl(const char *url, const char *setting_name);
extern char *GraphErrorsUrl(const char *profile_id);	/* graph_url +
														 * errors_path */
extern char *GraphBatchUrl(void);	/* graph_url + "/$batch" */
extern char *GraphTokenUrl(void);	/* token_url with {tenant} escaped */
extern char *GraphEscape(const char *s);	/* percent-encode one form
											 * value */
extern char *GraphEscapeSegment(const char *s); /* one path segment, dot
												 * segments included */

/* Retry-After value (delta-seconds, fractional, or HTTP-date) -> seconds. */
extern double GraphParseRetryAfter(const char *value);

/*
 * Retry policy shared by sync mode and the worker.  GraphStatusRetryable:
 * 0 (no answer), 408, 429, 500, 502, 503, 504.  GraphBackoffMs: the delay
 * before the next attempt (attempt >= 1 is the one that just failed), full
 * jitter in [0, min(cap_ms, base_ms * 2^(attempt - 1))], never less than
 * retry_after_s when that is >= 0.
 */
extern bool GraphStatusRetryable(long status);
extern long GraphBackoffMs(int attempt, double retry_after_s, long base_ms,
						   long cap_ms);

/*
 * One request, synchronously, on a connection kept alive across calls in
 * this process.  Returns early (resp->aborted) when QueryCancelPending or
 * ProcDiePending is set; the caller then runs CHECK_FOR_INTERRUPTS().
 */
extern void GraphSend(const GraphRequest *req, GraphResponse *resp);

/*
 * Several requests at once (the worker).  GraphMultiAdd queues a request;
 * GraphMultiRun drives transfers for at most wait_ms and calls done() for
 * each finished one, then returns how many are still in flight.
 */
typedef void (*GraphDoneCallback) (void *tag, GraphResponse *resp, void *arg);
extern void GraphMultiAdd(const GraphRequest *req);
extern int	GraphMultiRun(long wait_ms, GraphDoneCallback done, void *arg);
extern int	GraphMultiInFlight(void);

/* token.c: the bearer token for Graph. */
typedef enum TokenStatus
{
	TOKEN_OK,					/* *token set (NULL: no auth configured) */
	TOKEN_UNREACHABLE,			/* token endpoint unreachable: YG002 */
	TOKEN_REJECTED				/* token endpoint answered an error: YG003 */
} TokenStatus;

/*
 * The token to send: edusync.bearer_token when set, else one obtained by
 * the client-credentials flow and cached (per process) until shortly
 * before it expires; force_refresh drops the cached one first (after a
 * 401).  On failure, *detail says why without any secret.
 */
extern TokenStatus TokenGet(bool force_refresh, long timeout_ms,
							const char **token, char **detail);

#endif							/* GRAPH_CLIENT_H */
