/*-------------------------------------------------------------------------
 *
 * graph_client.c
 *	  Where an error leaves over HTTP: one synchronous request for a backend
 *	  (GraphSend, or GraphSendStart and GraphSendFinish with other work in
 *	  between), several concurrent requests for the delivery worker
 *	  (GraphMulti*), and the Retry-After header of an answer.  URLs are
 *	  built and checked in graph_url.c; what an answer means is policy.c's.
 *
 *	  All libcurl transfers live here (graph_url.c uses libcurl's URL API
 *	  and escaping only).  Every libcurl
 *	  resource is either kept for the life of the process (easy and multi
 *	  handles, so that connections stay alive between requests) or freed on
 *	  every path, ERROR included.  libcurl callbacks never raise an ERROR:
 *	  they only copy bytes (without ereport on out-of-memory) and look at
 *	  the interrupt flags.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <sched.h>
#include <time.h>

#include <curl/curl.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "graph_client.h"
#include "graph_url.h"
#include "settings.h"

#if LIBCURL_VERSION_NUM < 0x073e00
#error "edusync needs libcurl 7.62.0 or later (the URL API)"
#endif

#define GRAPH_USER_AGENT			"edusync/" EDUSYNC_VERSION
#define GRAPH_WAIT_STEP_MS			50	/* longest wait between interrupt
										 * checks */
#define GRAPH_CONNECT_TIMEOUT_MS	5000	/* connect + TLS handshake, at
											 * most */
#define GRAPH_DEFAULT_TIMEOUT_MS	10000
#define GRAPH_MAX_RESPONSE			(16 * 1024 * 1024)
#define GRAPH_RETRY_AFTER_MAX		3600.0	/* seconds */
#define GRAPH_POOL_MAX				256 /* transfers in flight at once */

/*
 * Spinning for a sync answer.  A backend that sleeps in poll() for an
 * answer that comes back within a few hundred us (an endpoint on the same
 * host or network) pays a wake-up on top, and on a virtual machine the
 * wake-up can cost about what the round trip does: single sync creates
 * against nginx on loopback (pgbench -c1, paired runs on 2 vCPUs) ran from
 * 6% to 75% faster spinning, the more the costlier wake-ups were at the
 * time.  So GraphSendFinish first polls
 * the socket for up to GRAPH_SPIN_US, yielding the CPU between polls
 * (sched_yield: anything else runnable on this CPU runs first), and only
 * then sleeps.  A far endpoint (Graph itself answers in milliseconds) does
 * not pay for it: after GRAPH_SPIN_MISSES answers in a row that came later
 * than the spin, only one send in GRAPH_SPIN_PROBE spins, so spinning costs
 * it at most GRAPH_SPIN_US / GRAPH_SPIN_PROBE (8 us) of CPU per send.
 */
#define GRAPH_SPIN_US				500
#define GRAPH_SPIN_MISSES			8
#define GRAPH_SPIN_PROBE			64

/*
 * One transfer: an easy handle kept for reuse, and what belongs to the
 * request it currently carries.  Everything request-specific lives in cxt
 * (reset when the transfer ends), the header list included.  The options
 * every request sets alike are set once per handle (configured), not again
 * for each request: that and the header list built without malloc took a
 * sixth of libcurl's share of a request (callgrind).
 */
typedef struct GraphTransfer
{
	CURL	   *easy;
	MemoryContext cxt;			/* per-request allocations */
	struct curl_slist *headers; /* nodes and lines in cxt */
	struct curl_slist *headers_tail;
	bool		configured;		/* the shared options are set on easy */
	StringInfoData body;		/* the answer, in cxt */
	bool		body_overflow;	/* answer larger than GRAPH_MAX_RESPONSE */
	bool		in_use;
	void	   *tag;
	char		retry_after[64];	/* raw Retry-After value, "" if none */
	char		errbuf[CURL_ERROR_SIZE];
} GraphTransfer;


/* Process-wide state; nothing here is shared between processes. */
static bool graph_curl_ready = false;
static MemoryContext GraphContext = NULL;

static CURLM *sync_multi = NULL;
static GraphTransfer *sync_xfer = NULL;
static bool sync_added = false;	/* sync_xfer is on sync_multi */
static int	sync_spin_misses = 0;	/* answers in a row later than the spin */
static uint32 sync_sends = 0;

static CURLM *pool_multi = NULL;
static int	pool_connections = 0;	/* CURLMOPT_MAX_HOST_CONNECTIONS set */
static GraphTransfer **pool = NULL;
static int	pool_size = 0;
static int	pool_in_flight = 0;

static void GraphInit(void);
static GraphTransfer *GraphTransferCreate(void);
static void GraphTransferPrepare(GraphTransfer *xfer, const GraphRequest *req,
								 bool copy_body);
static void GraphTransferRelease(GraphTransfer *xfer);
static void GraphAddHeader(GraphTransfer *xfer, const char *name,
						   const char *value);
static void GraphCheckHeaderValue(const char *name, const char *value);
static pg_noreturn void GraphSetoptFailed(const char *option, CURLcode rc);
static void GraphFillResponse(GraphTransfer *xfer, CURLcode result,
							  bool interrupted, GraphResponse *resp);
static void GraphWait(CURLM *multi, long timeout_ms);
static bool GraphSpinThisSend(void);
static bool GraphSpinOn(instr_time started);
static bool GraphInterruptPending(void);
static CURLM *GraphMultiCreate(bool pooled);
static GraphTransfer *GraphPoolTake(void);
static void GraphPoolFinish(GraphTransfer *xfer);
static int	GraphPoolCollect(GraphDoneCallback done, void *arg);
static size_t GraphWriteBody(char *data, size_t size, size_t nmemb, void *userdata);
static size_t GraphReadHeader(char *data, size_t size, size_t nitems, void *userdata);
static int	GraphProgress(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
						  curl_off_t ultotal, curl_off_t ulnow);

/* Set a libcurl option that safety depends on; raise if libcurl refuses. */
#define GRAPH_SETOPT(h, opt, val) \
	do { \
		CURLcode	setopt_rc_ = curl_easy_setopt((h), (opt), (val)); \
		if (setopt_rc_ != CURLE_OK) \
			GraphSetoptFailed(#opt, setopt_rc_); \
	} while (0)


/* ---------------------------------------------------------------------
 * Initialisation
 * ---------------------------------------------------------------------
 */

/* Initialise libcurl and our memory context, once per process. */
static void
GraphInit(void)
{
	if (graph_curl_ready)
		return;

	if (GraphContext == NULL)
		GraphContext = AllocSetContextCreate(TopMemoryContext,
											 "edusync graph client",
											 ALLOCSET_SMALL_SIZES);

	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));

	graph_curl_ready = true;
}

/* Report that libcurl refused an option we rely on. */
static void
GraphSetoptFailed(const char *option, CURLcode rc)
{
	ereport(ERROR,
			(errcode(ERRCODE_SYSTEM_ERROR),
			 errmsg("could not set libcurl option %s: %s",
					option, curl_easy_strerror(rc))));
}


/* ---------------------------------------------------------------------
 * Answer headers
 * ---------------------------------------------------------------------
 */

/*
 * Retry-After as seconds from now: delta-seconds ("2"), fractional
 * ("2.128", read by strtod; no sign, exponent or hex) or an HTTP-date.
 * Never negative, at most an hour; -1 when absent or unparseable.
 */
double
GraphParseRetryAfter(const char *value)
{
	const char *p = value;
	double		seconds;

	if (p == NULL)
		return -1;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p >= '0' && *p <= '9')
	{
		const char *q = p + strspn(p, "0123456789");

		/* delta-seconds, possibly with a fraction (Graph: "2.128") */
		if (*q == '.')
		{
			size_t		frac = strspn(q + 1, "0123456789");

			if (frac == 0)
				return -1;
			q += 1 + frac;
		}
		while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
			q++;
		if (*q != '\0')
			return -1;
		seconds = strtod(p, NULL);	/* HUGE_VAL on overflow: capped below */
	}
	else if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
	{
		/* HTTP-date: "Sun, 06 Nov 1994 08:49:37 GMT" and the older forms */
		time_t		when = curl_getdate(p, NULL);

		if (when == (time_t) -1)
			return -1;
		seconds = difftime(when, time(NULL));
	}
	else
		return -1;

	if (!(seconds > 0))
		seconds = 0;
	if (seconds > GRAPH_RETRY_AFTER_MAX)
		seconds = GRAPH_RETRY_AFTER_MAX;
	return seconds;
}


/* ---------------------------------------------------------------------
 * libcurl callbacks: they never raise and never allocate with ereport
 * ---------------------------------------------------------------------
 */

/* Append answer bytes to the transfer's buffer; 0 stops the transfer. */
static size_t
GraphWriteBody(char *data, size_t size, size_t nmemb, void *userdata)
{
	GraphTransfer *xfer = (GraphTransfer *) userdata;
	StringInfo	buf = &xfer->body;
	size_t		n = size * nmemb;

	if (n == 0)
		return 0;
	if (n > (size_t) (GRAPH_MAX_RESPONSE - buf->len))
	{
		xfer->body_overflow = true;
		return 0;
	}
	if ((size_t) buf->len + n + 1 > (size_t) buf->maxlen)
	{
		size_t		newlen = (size_t) buf->maxlen * 2;
		char	   *newdata;

		if (newlen < (size_t) buf->len + n + 1)
			newlen = (size_t) buf->len + n + 1;
		if (newlen > GRAPH_MAX_RESPONSE + 1)
			newlen = GRAPH_MAX_RESPONSE + 1;
		newdata = MemoryContextAllocExtended(xfer->cxt, newlen,
											 MCXT_ALLOC_NO_OOM);
		if (newdata == NULL)
			return 0;
		memcpy(newdata, buf->data, buf->len);
		pfree(buf->data);
		buf->data = newdata;
		buf->maxlen = (int) newlen;
	}
	memcpy(buf->data + buf->len, data, n);
	buf->len += (int) n;
	buf->data[buf->len] = '\0';
	return n;
}

/* Keep the Retry-After value of the final answer. */
static size_t
GraphReadHeader(char *data, size_t size, size_t nitems, void *userdata)
{
	GraphTransfer *xfer = (GraphTransfer *) userdata;
	size_t		n = size * nitems;
	static const char name[] = "Retry-After:";
	const size_t namelen = sizeof(name) - 1;

	if (n >= 5 && memcmp(data, "HTTP/", 5) == 0)
	{
		/* a new status line: headers of an earlier (1xx) answer are moot */
		xfer->retry_after[0] = '\0';
	}
	else if (n > namelen && pg_strncasecmp(data, name, namelen) == 0)
	{
		const char *v = data + namelen;
		const char *end = data + n;
		size_t		len;

		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
		while (end > v && (end[-1] == '\r' || end[-1] == '\n' ||
						   end[-1] == ' ' || end[-1] == '\t'))
			end--;
		len = end - v;
		if (len >= sizeof(xfer->retry_after))
			len = sizeof(xfer->retry_after) - 1;
		memcpy(xfer->retry_after, v, len);
		xfer->retry_after[len] = '\0';
	}
	return n;
}

/* Stop a transfer at once when a cancel or termination is pending. */
static int
GraphProgress(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
			  curl_off_t ultotal, curl_off_t ulnow)
{
	return GraphInterruptPending() ? 1 : 0;
}

/* A query cancel or a termination request is waiting to be serviced. */
static bool
GraphInterruptPending(void)
{
	return QueryCancelPending || ProcDiePending;
}


/* ---------------------------------------------------------------------
 * Transfers
 * ---------------------------------------------------------------------
 */

/* A new transfer with its own easy handle and memory context. */
static GraphTransfer *
GraphTransferCreate(void)
{
	GraphTransfer *xfer;

	xfer = MemoryContextAllocZero(GraphContext, sizeof(GraphTransfer));
	xfer->easy = curl_easy_init();
	if (xfer->easy == NULL)
	{
		pfree(xfer);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not create a libcurl handle.")));
	}
	xfer->cxt = AllocSetContextCreate(GraphContext,
									  "edusync transfer",
									  ALLOCSET_DEFAULT_SIZES);
	return xfer;
}

/* Refuse a header value that could end the header line early. */
static void
GraphCheckHeaderValue(const char *name, const char *value)
{
	const unsigned char *p;

	for (p = (const unsigned char *) value; *p; p++)
	{
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("value for HTTP header \"%s\" contains a control character",
							name)));
	}
}

/*
 * Append "name: value" (or "name:" to suppress a header) to the list, a
 * node and its line in xfer->cxt (libcurl reads the list, never frees it).
 */
static void
GraphAddHeader(GraphTransfer *xfer, const char *name, const char *value)
{
	struct curl_slist *node;
	size_t		namelen = strlen(name);
	size_t		valuelen = value != NULL ? strlen(value) : 0;
	char	   *line;

	if (value != NULL)
		GraphCheckHeaderValue(name, value);
	/* (copied, not formatted: a bearer token can be 2 kB, every request) */
	node = MemoryContextAlloc(xfer->cxt, sizeof(struct curl_slist));
	line = MemoryContextAlloc(xfer->cxt, namelen + valuelen + 3);
	memcpy(line, name, namelen);
	line[namelen] = ':';
	if (value != NULL)
	{
		line[namelen + 1] = ' ';
		memcpy(line + namelen + 2, value, valuelen);
		line[namelen + 2 + valuelen] = '\0';
	}
	else
		line[namelen + 1] = '\0';
	node->data = line;
	node->next = NULL;
	if (xfer->headers == NULL)
		xfer->headers = node;
	else
		xfer->headers_tail->next = node;
	xfer->headers_tail = node;
}

/*
 * Set on xfer's easy handle, from a clean one, the options every request
 * sets alike: the protocols, TLS checks, no redirects, keep-alive, the
 * callbacks and where they write.
 */
static void
GraphTransferConfigure(GraphTransfer *xfer)
{
	CURL	   *h = xfer->easy;

	curl_easy_reset(h);
#if LIBCURL_VERSION_NUM >= 0x075500
	GRAPH_SETOPT(h, CURLOPT_PROTOCOLS_STR, "http,https");
	GRAPH_SETOPT(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	GRAPH_SETOPT(h, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
	GRAPH_SETOPT(h, CURLOPT_REDIR_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	GRAPH_SETOPT(h, CURLOPT_FOLLOWLOCATION, 0L);
	GRAPH_SETOPT(h, CURLOPT_SSL_VERIFYPEER, 1L);
	GRAPH_SETOPT(h, CURLOPT_SSL_VERIFYHOST, 2L);
	GRAPH_SETOPT(h, CURLOPT_PATH_AS_IS, 1L);
	GRAPH_SETOPT(h, CURLOPT_NOSIGNAL, 1L);

	/* keep idle connections alive; not essential, so errors are ignored */
	(void) curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	(void) curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 60L);
	(void) curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 30L);

	GRAPH_SETOPT(h, CURLOPT_POST, 1L);
	GRAPH_SETOPT(h, CURLOPT_WRITEFUNCTION, GraphWriteBody);
	GRAPH_SETOPT(h, CURLOPT_WRITEDATA, (void *) xfer);
	GRAPH_SETOPT(h, CURLOPT_HEADERFUNCTION, GraphReadHeader);
	GRAPH_SETOPT(h, CURLOPT_HEADERDATA, (void *) xfer);
	GRAPH_SETOPT(h, CURLOPT_XFERINFOFUNCTION, GraphProgress);
	GRAPH_SETOPT(h, CURLOPT_XFERINFODATA, (void *) xfer);
	GRAPH_SETOPT(h, CURLOPT_NOPROGRESS, 0L);
	GRAPH_SETOPT(h, CURLOPT_ERRORBUFFER, xfer->errbuf);
	GRAPH_SETOPT(h, CURLOPT_PRIVATE, (void *) xfer);
	xfer->configured = true;
}

/*
 * Set every option of the request on xfer's easy handle.  On ERROR the
 * caller runs GraphTransferRelease.  copy_body: the body must outlive the
 * caller's memory (the multi interface).
 */
static void
GraphTransferPrepare(GraphTransfer *xfer, const GraphRequest *req,
					 bool copy_body)
{
	CURL	   *h = xfer->easy;
	MemoryContext oldcxt;
	const char *body;
	size_t		body_len;
	long		timeout_ms;

	Assert(xfer->headers == NULL);

	MemoryContextReset(xfer->cxt);
	oldcxt = MemoryContextSwitchTo(xfer->cxt);
	initStringInfo(&xfer->body);
	body = req->body ? req->body : "";
	body_len = strlen(body);
	if (copy_body)
		body = pstrdup(body);
	MemoryContextSwitchTo(oldcxt);

	xfer->body_overflow = false;
	xfer->retry_after[0] = '\0';
	xfer->errbuf[0] = '\0';
	xfer->tag = req->tag;

	timeout_ms = req->timeout_ms;
	if (timeout_ms <= 0)
		timeout_ms = edusync_timeout_ms > 0 ? edusync_timeout_ms :
			GRAPH_DEFAULT_TIMEOUT_MS;

	/* headers */
	GraphAddHeader(xfer, "Content-Type",
				   req->content_type ? req->content_type : "application/json");
	GraphAddHeader(xfer, "Accept", "application/json");
	if (req->bearer != NULL)
	{
		char	   *value = psprintf("Bearer %s", req->bearer);

		PG_TRY();
		{
			GraphAddHeader(xfer, "Authorization", value);
		}
		PG_FINALLY();
		{
			explicit_bzero(value, strlen(value));
		}
		PG_END_TRY();
		pfree(value);
	}
	if (req->client_request_id != NULL)
		GraphAddHeader(xfer, "client-request-id", req->client_request_id);
	GraphAddHeader(xfer, "User-Agent", GRAPH_USER_AGENT);
	GraphAddHeader(xfer, "Expect", NULL);

	/* options: those every request shares once per handle, then its own */
	if (!xfer->configured)
		GraphTransferConfigure(xfer);
	GRAPH_SETOPT(h, CURLOPT_URL, req->url);
	GRAPH_SETOPT(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	GRAPH_SETOPT(h, CURLOPT_CONNECTTIMEOUT_MS,
				 Min(timeout_ms, (long) GRAPH_CONNECT_TIMEOUT_MS));
	GRAPH_SETOPT(h, CURLOPT_POSTFIELDS, body);
	GRAPH_SETOPT(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body_len);
	GRAPH_SETOPT(h, CURLOPT_HTTPHEADER, xfer->headers);
}

/*
 * End xfer's request: wipe its header lines, drop the options that point
 * into its per-request memory, then that memory.  Safe to call more than
 * once.
 */
static void
GraphTransferRelease(GraphTransfer *xfer)
{
	struct curl_slist *l;

	/* the handle must not keep pointers to what is freed below */
	if (curl_easy_setopt(xfer->easy, CURLOPT_HTTPHEADER, NULL) != CURLE_OK ||
		curl_easy_setopt(xfer->easy, CURLOPT_POSTFIELDS, NULL) != CURLE_OK)
	{
		curl_easy_reset(xfer->easy);
		xfer->configured = false;
	}
	for (l = xfer->headers; l != NULL; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	xfer->headers = NULL;
	xfer->headers_tail = NULL;
	MemoryContextReset(xfer->cxt);
	xfer->body.data = NULL;
	xfer->body.len = 0;
	xfer->body.maxlen = 0;
	xfer->tag = NULL;
	xfer->in_use = false;
}

/* Build the caller's GraphResponse, in CurrentMemoryContext. */
static void
GraphFillResponse(GraphTransfer *xfer, CURLcode result, bool interrupted,
				  GraphResponse *resp)
{
	memset(resp, 0, sizeof(*resp));
	resp->retry_after = -1;
	resp->body = palloc0(1);
	if (xfer->retry_after[0] != '\0')
		resp->retry_after = GraphParseRetryAfter(xfer->retry_after);

	if (interrupted)
	{
		resp->aborted = true;
		resp->transport_error = pstrdup("interrupted");
		return;
	}

	if (result == CURLE_OK)
	{
		long		code = 0;

		if (curl_easy_getinfo(xfer->easy, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK)
			code = 0;
		resp->status = code;
		if (code == 0)
		{
			resp->transport_error = pstrdup("no HTTP status received");
			return;
		}
		if (xfer->body.data != NULL && xfer->body.len > 0)
		{
			pfree(resp->body);
			resp->body = palloc(xfer->body.len + 1);
			memcpy(resp->body, xfer->body.data, xfer->body.len + 1);
			resp->body_len = xfer->body.len;
		}
		return;
	}

	/* no usable answer: a transport error, a timeout, or an interrupt */
	resp->status = 0;
	resp->timed_out = (result == CURLE_OPERATION_TIMEDOUT);
	resp->aborted = (result == CURLE_ABORTED_BY_CALLBACK);
	if (resp->aborted)
		resp->transport_error = pstrdup("interrupted");
	else if (xfer->body_overflow)
		resp->transport_error = psprintf("answer larger than %d bytes",
										 GRAPH_MAX_RESPONSE);
	else if (xfer->errbuf[0] != '\0')
	{
		size_t		len;

		/* libcurl's own words; they hold host names, never headers */
		xfer->errbuf[CURL_ERROR_SIZE - 1] = '\0';
		len = strlen(xfer->errbuf);
		while (len > 0 && (xfer->errbuf[len - 1] == '\n' ||
						   xfer->errbuf[len - 1] == '\r'))
			len--;
		resp->transport_error = pnstrdup(xfer->errbuf, len);
	}
	else
		resp->transport_error = pstrdup(curl_easy_strerror(result));
}

/* Wait for socket activity for at most timeout_ms, as a wait event. */
static void
GraphWait(CURLM *multi, long timeout_ms)
{
	if (timeout_ms <= 0)
		return;
	if (timeout_ms > GRAPH_WAIT_STEP_MS)
		timeout_ms = GRAPH_WAIT_STEP_MS;

	pgstat_report_wait_start(PG_WAIT_EXTENSION);
#if LIBCURL_VERSION_NUM >= 0x074200
	(void) curl_multi_poll(multi, NULL, 0, (int) timeout_ms, NULL);
#else
	{
		int			numfds = 0;

		/* curl_multi_wait returns at once when it has nothing to wait on */
		if (curl_multi_wait(multi, NULL, 0, (int) timeout_ms, &numfds) == CURLM_OK &&
			numfds == 0)
			pg_usleep(Min(timeout_ms, 10L) * 1000L);
	}
#endif
	pgstat_report_wait_end();
}

/* Should this sync send spin for its answer before sleeping? */
static bool
GraphSpinThisSend(void)
{
	sync_sends++;
	return sync_spin_misses < GRAPH_SPIN_MISSES ||
		sync_sends % GRAPH_SPIN_PROBE == 0;
}

/* Keep spinning: is the send that started then younger than the spin? */
static bool
GraphSpinOn(instr_time started)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, started);
	return INSTR_TIME_GET_MICROSEC(now) < GRAPH_SPIN_US;
}

/* A multi handle; the pooled one allows multiplexing and caps connections. */
static CURLM *
GraphMultiCreate(bool pooled)
{
	CURLM	   *multi = curl_multi_init();

	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not create a libcurl multi handle.")));
	if (pooled)
	{
		(void) curl_multi_setopt(multi, CURLMOPT_PIPELINING,
								 (long) CURLPIPE_MULTIPLEX);
	}
	return multi;
}

/*
 * Put one request on the wire without waiting for its answer: the caller
 * may do other work (store the error) while the endpoint answers, then
 * calls GraphSendFinish, or GraphSendAbandon if it raises meanwhile.  The
 * body is not copied (it may hold a client secret, which the caller wipes):
 * it must stay as it is until then.
 */
void
GraphSendStart(const GraphRequest *req)
{
	GraphTransfer *xfer;

	/* belt and braces: callers build URLs with the checked builders */
	GraphCheckSendUrl(req->url);

	GraphInit();
	if (sync_multi == NULL)
		sync_multi = GraphMultiCreate(false);
	if (sync_xfer == NULL)
		sync_xfer = GraphTransferCreate();
	xfer = sync_xfer;
	if (xfer->in_use)
		elog(ERROR, "GraphSendStart called while a request is in progress");

	PG_TRY();
	{
		CURLMcode	mrc;
		int			running = 0;

		xfer->in_use = true;
		GraphTransferPrepare(xfer, req, false);
		mrc = curl_multi_add_handle(sync_multi, xfer->easy);
		if (mrc != CURLM_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not start HTTP request: %s",
							curl_multi_strerror(mrc))));
		sync_added = true;
		/* connect if need be, send what the socket takes; never waits */
		(void) curl_multi_perform(sync_multi, &running);
	}
	PG_CATCH();
	{
		GraphSendAbandon();
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* Drop the request GraphSendStart began, if any, answered or not. */
void
GraphSendAbandon(void)
{
	if (sync_xfer == NULL || !sync_xfer->in_use)
		return;
	if (sync_added)
		curl_multi_remove_handle(sync_multi, sync_xfer->easy);
	sync_added = false;
	GraphTransferRelease(sync_xfer);
}

/*
 * Wait for the answer to the request GraphSendStart began, keeping the
 * connection alive for the next one.  Returns early with resp->aborted set
 * when a cancel or termination is pending; the caller then runs
 * CHECK_FOR_INTERRUPTS().
 */
void
GraphSendFinish(GraphResponse *resp)
{
	GraphTransfer *xfer = sync_xfer;

	memset(resp, 0, sizeof(*resp));
	resp->body = "";
	resp->retry_after = -1;
	if (xfer == NULL || !xfer->in_use)
		elog(ERROR, "GraphSendFinish called without a request in progress");

	PG_TRY();
	{
		CURLcode	result = CURLE_OK;
		bool		finished = false;
		bool		interrupted = false;
		bool		spin = GraphSpinThisSend();
		instr_time	started;

		INSTR_TIME_SET_CURRENT(started);
		for (;;)
		{
			int			running = 0;
			int			queued = 0;
			CURLMsg    *msg;
			CURLMcode	mrc;

			mrc = curl_multi_perform(sync_multi, &running);
			if (mrc != CURLM_OK && mrc != CURLM_CALL_MULTI_PERFORM)
			{
				result = CURLE_FAILED_INIT;
				snprintf(xfer->errbuf, sizeof(xfer->errbuf), "%s",
						 curl_multi_strerror(mrc));
				break;
			}
			while ((msg = curl_multi_info_read(sync_multi, &queued)) != NULL)
			{
				if (msg->msg == CURLMSG_DONE && msg->easy_handle == xfer->easy)
				{
					result = msg->data.result;
					finished = true;
				}
			}
			if (finished)
				break;
			if (GraphInterruptPending())
			{
				interrupted = true;
				break;
			}
			if (spin)
				spin = GraphSpinOn(started);
			if (spin)
			{
				sched_yield();
				continue;
			}
			GraphWait(sync_multi, GRAPH_WAIT_STEP_MS);
		}
		if (finished)
			sync_spin_misses = spin ? 0 : Min(sync_spin_misses + 1, GRAPH_SPIN_MISSES);

		GraphFillResponse(xfer, result, interrupted, resp);
	}
	PG_FINALLY();
	{
		GraphSendAbandon();
	}
	PG_END_TRY();
}

/* Send one request and wait for its answer (GraphSendStart + Finish). */
void
GraphSend(const GraphRequest *req, GraphResponse *resp)
{
	GraphSendStart(req);
	GraphSendFinish(resp);
}


/* ---------------------------------------------------------------------
 * Several requests at once (the background worker)
 * ---------------------------------------------------------------------
 */

/* A free transfer from the pool, growing it when all are busy. */
static GraphTransfer *
GraphPoolTake(void)
{
	GraphTransfer *xfer;
	int			i;

	for (i = 0; i < pool_size; i++)
	{
		if (!pool[i]->in_use)
		{
			pool[i]->in_use = true;
			return pool[i];
		}
	}

	if (pool_size >= GRAPH_POOL_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many HTTP requests in flight"),
				 errdetail("At most %d requests can be in flight at once.",
						   GRAPH_POOL_MAX)));

	if (pool == NULL)
		pool = MemoryContextAllocZero(GraphContext,
									  GRAPH_POOL_MAX * sizeof(GraphTransfer *));
	xfer = GraphTransferCreate();
	pool[pool_size++] = xfer;
	xfer->in_use = true;
	return xfer;
}

/*
 * Queue a request on the worker's multi handle.  Its answer comes back
 * through GraphMultiRun's done callback, with req->tag.
 */
void
GraphMultiAdd(const GraphRequest *req)
{
	GraphTransfer *volatile xfer;

	GraphCheckSendUrl(req->url);

	GraphInit();
	if (pool_multi == NULL)
		pool_multi = GraphMultiCreate(true);
	/* as many connections to one host as requests may be in flight */
	if (pool_connections != edusync_max_in_flight)
	{
		(void) curl_multi_setopt(pool_multi, CURLMOPT_MAX_HOST_CONNECTIONS,
								 (long) edusync_max_in_flight);
		pool_connections = edusync_max_in_flight;
	}
	xfer = GraphPoolTake();

	PG_TRY();
	{
		CURLMcode	mrc;

		GraphTransferPrepare(xfer, req, true);
		/* wait for a connection to multiplex on rather than open another */
		(void) curl_easy_setopt(xfer->easy, CURLOPT_PIPEWAIT, 1L);

		mrc = curl_multi_add_handle(pool_multi, xfer->easy);
		if (mrc != CURLM_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not start HTTP request: %s",
							curl_multi_strerror(mrc))));
	}
	PG_CATCH();
	{
		GraphTransferRelease(xfer);
		PG_RE_THROW();
	}
	PG_END_TRY();

	pool_in_flight++;
}

/* Take a finished transfer off the multi handle and back into the pool. */
static void
GraphPoolFinish(GraphTransfer *xfer)
{
	curl_multi_remove_handle(pool_multi, xfer->easy);
	GraphTransferRelease(xfer);
	pool_in_flight--;
}

/*
 * Hand every finished transfer to done(), freeing its resources first;
 * returns how many.
 */
static int
GraphPoolCollect(GraphDoneCallback done, void *arg)
{
	CURLMsg    *msg;
	int			queued = 0;
	volatile int ndone = 0;

	while ((msg = curl_multi_info_read(pool_multi, &queued)) != NULL)
	{
		CURL	   *easy;
		CURLcode	result;
		char	   *priv = NULL;
		GraphTransfer *xfer;
		GraphResponse *resp;
		void	   *tag;

		if (msg->msg != CURLMSG_DONE)
			continue;

		/* msg does not survive curl_multi_remove_handle: copy it first */
		easy = msg->easy_handle;
		result = msg->data.result;
		if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv) != CURLE_OK ||
			priv == NULL)
			elog(ERROR, "finished libcurl transfer without its state");
		xfer = (GraphTransfer *) priv;
		tag = xfer->tag;

		resp = palloc_extended(sizeof(GraphResponse), MCXT_ALLOC_NO_OOM);
		PG_TRY();
		{
			if (resp == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_OUT_OF_MEMORY),
						 errmsg("out of memory")));
			GraphFillResponse(xfer, result, false, resp);
		}
		PG_CATCH();
		{
			GraphPoolFinish(xfer);
			PG_RE_THROW();
		}
		PG_END_TRY();
		GraphPoolFinish(xfer);
		ndone++;

		if (done != NULL)
			done(tag, resp, arg);
	}
	return ndone;
}

/*
 * Drive the worker's transfers for at most wait_ms, calling done() for
 * each finished one; returns as soon as one has finished (so that the
 * caller can start the next), or early when a cancel or termination is
 * pending.  Returns how many requests are still in flight.
 */
int
GraphMultiRun(long wait_ms, GraphDoneCallback done, void *arg)
{
	TimestampTz start;

	if (pool_multi == NULL)
		return 0;

	start = GetCurrentTimestamp();
	for (;;)
	{
		int			running = 0;
		CURLMcode	mrc;
		long		elapsed_ms;

		mrc = curl_multi_perform(pool_multi, &running);
		if (mrc != CURLM_OK && mrc != CURLM_CALL_MULTI_PERFORM)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not drive HTTP requests: %s",
							curl_multi_strerror(mrc))));
		if (GraphPoolCollect(done, arg) > 0)
			break;
		if (pool_in_flight == 0 || GraphInterruptPending())
			break;
		elapsed_ms = (long) ((GetCurrentTimestamp() - start) / 1000);
		if (elapsed_ms >= wait_ms)
			break;
		GraphWait(pool_multi, Min(wait_ms - elapsed_ms, (long) GRAPH_WAIT_STEP_MS));
	}
	return pool_in_flight;
}

/* How many requests GraphMultiAdd queued that have not finished yet. */
int
GraphMultiInFlight(void)
{
	return pool_in_flight;
}
