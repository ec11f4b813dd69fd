/*-------------------------------------------------------------------------
 *
 * graph_client.h
 *	  Where an error leaves over HTTP: every libcurl transfer lives in
 *	  graph_client.c, behind these functions.
 *
 *	  Nothing here raises an ERROR for a network outcome: results come back
 *	  in a GraphResponse so that the backend (sync mode) and the background
 *	  worker (async mode) can each decide what a failure means.  Only an
 *	  unsafe configuration (22023) or out-of-memory raises.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_GRAPH_CLIENT_H
#define EDUSYNC_GRAPH_CLIENT_H

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

/* Retry-After value (delta-seconds, fractional, or HTTP-date) -> seconds. */
extern double GraphParseRetryAfter(const char *value);

/*
 * One request, synchronously, on a connection kept alive across calls in
 * this process.  Returns early (resp->aborted) when QueryCancelPending or
 * ProcDiePending is set; the caller then runs CHECK_FOR_INTERRUPTS().
 * GraphSend is GraphSendStart (the request put on the wire) then
 * GraphSendFinish (its answer waited for); a caller that works in between
 * runs GraphSendAbandon if it raises.
 */
extern void GraphSend(const GraphRequest *req, GraphResponse *resp);
extern void GraphSendStart(const GraphRequest *req);
extern void GraphSendFinish(GraphResponse *resp);
extern void GraphSendAbandon(void);

/*
 * Several requests at once (the worker).  GraphMultiAdd queues a request;
 * GraphMultiRun drives transfers until one finishes, at most wait_ms, calls
 * done() for each finished one, then returns how many are still in flight.
 */
typedef void (*GraphDoneCallback) (void *tag, GraphResponse *resp, void *arg);
extern void GraphMultiAdd(const GraphRequest *req);
extern int	GraphMultiRun(long wait_ms, GraphDoneCallback done, void *arg);
extern int	GraphMultiInFlight(void);

#endif							/* EDUSYNC_GRAPH_CLIENT_H */
