/*-------------------------------------------------------------------------
 *
 * graph_url.c
 *	  URL safety: every URL edusync sends to is built and checked here, with
 *	  libcurl's URL API (the parser the transfer itself uses) and its
 *	  percent-encoding.  Unsafe values are refused with 22023 before any
 *	  traffic: a malformed URL, a scheme other than https, http to a host
 *	  that is not loopback, user information, a fragment, an errors_path
 *	  without {profile_id} or that changes the host.  Profile ids and the
 *	  tenant are percent-encoded (dot-segments included) in UTF-8.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <curl/curl.h>

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/memutils.h"

#include "compat.h"
#include "graph_url.h"
#include "settings.h"
#include "text_util.h"

static char *BuildErrorsUrl(const char *profile_id);

#if LIBCURL_VERSION_NUM < 0x073e00
#error "edusync needs libcurl 7.62.0 or later (the URL API)"
#endif

#define GRAPH_PROFILE_PLACEHOLDER	"{profile_id}"
#define GRAPH_TENANT_PLACEHOLDER	"{tenant}"

/* The parts of a URL that the checks look at, palloc'd. */
typedef struct GraphUrlParts
{
	CURLUcode	rc;				/* CURLUE_OK when the URL parsed */
	char	   *scheme;
	char	   *host;
	bool		has_userinfo;
	bool		has_query;
	bool		has_fragment;
} GraphUrlParts;


static CURL *escape_easy = NULL;

static pg_noreturn void GraphRefuseUrl(const char *setting_name, const char *detail);

/* libcurl, once per process, for escaping (URL parsing needs no init). */
static void
UrlInit(void)
{
	static bool ready = false;

	if (ready)
		return;
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
	ready = true;
}

/* Copy a string malloc'd by libcurl into palloc'd memory and free it. */
static char *
GraphCurlStrdup(char *s, bool wipe)
{
	size_t		len = strlen(s);
	char	   *copy = palloc_extended(len + 1, MCXT_ALLOC_NO_OOM);

	if (copy != NULL)
		memcpy(copy, s, len + 1);
	if (wipe)
		explicit_bzero(s, len);
	curl_free(s);
	if (copy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	return copy;
}

/* One part of a parsed URL, palloc'd, or NULL when the URL has none. */
static char *
GraphUrlPart(CURLU *h, CURLUPart what)
{
	char	   *s = NULL;

	if (curl_url_get(h, what, &s, 0) != CURLUE_OK || s == NULL)
		return NULL;
	return GraphCurlStrdup(s, false);
}

/* Does the parsed URL have this part?  Its value is wiped, never kept. */
static bool
UrlHasPart(CURLU *h, CURLUPart what)
{
	char	   *s = NULL;
	bool		has = (curl_url_get(h, what, &s, 0) == CURLUE_OK && s != NULL);

	if (s)
	{
		explicit_bzero(s, strlen(s));
		curl_free(s);
	}
	return has;
}

/* Parse url with libcurl's URL API, the parser the transfer itself uses. */
static void
GraphParseUrl(const char *url, GraphUrlParts *parts)
{
	CURLU	   *volatile h;

	memset(parts, 0, sizeof(*parts));
	h = curl_url();
	if (h == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));

	PG_TRY();
	{
		/*
		 * Same flags as the transfer: no default or guessed scheme, dot
		 * segments kept as they are (CURLOPT_PATH_AS_IS).
		 */
		parts->rc = curl_url_set(h, CURLUPART_URL, url,
								 CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS);
		if (parts->rc == CURLUE_OK)
		{
			parts->scheme = GraphUrlPart(h, CURLUPART_SCHEME);
			parts->host = GraphUrlPart(h, CURLUPART_HOST);
			/* userinfo is only tested for presence, never copied */
			parts->has_userinfo = UrlHasPart(h, CURLUPART_USER) ||
				UrlHasPart(h, CURLUPART_PASSWORD) ||
				UrlHasPart(h, CURLUPART_OPTIONS);
			parts->has_query = UrlHasPart(h, CURLUPART_QUERY);
			parts->has_fragment = UrlHasPart(h, CURLUPART_FRAGMENT);
		}
	}
	PG_FINALLY();
	{
		curl_url_cleanup(h);
	}
	PG_END_TRY();
}

/* Is host (as libcurl's URL API gives it) a loopback address or name? */
static bool
GraphHostIsLoopback(const char *host)
{
	struct in_addr v4;
	struct in6_addr v6;
	size_t		len;

	if (host == NULL || host[0] == '\0')
		return false;

	/* libcurl (7.78+) resolves "localhost" itself, to 127.0.0.1 and ::1 */
	if (pg_strcasecmp(host, "localhost") == 0)
		return true;

	/* libcurl normalises 127.1, 0x7f000001 etc. to dotted quads */
	if (inet_pton(AF_INET, host, &v4) == 1)
		return (ntohl(v4.s_addr) >> 24) == 127;

	/* IPv6 literals come bracketed; a zone id makes the test fail */
	len = strlen(host);
	if (len > 2 && len < INET6_ADDRSTRLEN + 2 &&
		host[0] == '[' && host[len - 1] == ']')
	{
		char		buf[INET6_ADDRSTRLEN + 2];

		memcpy(buf, host + 1, len - 2);
		buf[len - 2] = '\0';
		if (inet_pton(AF_INET6, buf, &v6) == 1)
			return memcmp(&v6, &in6addr_loopback, sizeof(v6)) == 0;
	}
	return false;
}

/* Refuse an unsafe URL with 22023, naming the setting, never the URL. */
static void
GraphRefuseUrl(const char *setting_name, const char *detail)
{
	if (setting_name != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for parameter \"%s\"", setting_name),
				 errdetail_internal("%s", detail)));
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("refusing to send a request to an unsafe URL"),
				 errdetail_internal("%s", detail)));
}

/*
 * What makes url unsafe to send to, as a sentence; NULL when nothing does
 * (then *host, if asked for, is its host, palloc'd).  Never raises but for
 * out-of-memory, so that check hooks can use it.
 */
const char *
GraphUrlProblem(const char *url, bool allow_query, char **host)
{
	GraphUrlParts parts;

	if (url == NULL || url[0] == '\0')
		return "The URL is empty.";

	/* the URL API needs no curl_global_init: safe in any process */
	GraphParseUrl(url, &parts);

	if (parts.rc != CURLUE_OK)
	{
#if LIBCURL_VERSION_NUM >= 0x075000
		return psprintf("The URL is malformed: %s.", curl_url_strerror(parts.rc));
#else
		return "The URL is malformed.";
#endif
	}
	if (parts.scheme == NULL || parts.host == NULL || parts.host[0] == '\0')
		return "The URL has no scheme or no host.";
	if (parts.has_userinfo)
		return "The URL must not contain user information; credentials belong in edusync.bearer_token_file or edusync.client_secret_file.";
	if (parts.has_fragment)
		return "The URL must not contain a fragment (#).";
	if (parts.has_query && !allow_query)
		return "The URL must not contain a query (?).";
	if (pg_strcasecmp(parts.scheme, "http") == 0 &&
		!GraphHostIsLoopback(parts.host))
		return psprintf("Plain http is allowed only to a loopback host (127.0.0.0/8, ::1, localhost); \"%s\" is not one.",
						parts.host);
	if (pg_strcasecmp(parts.scheme, "https") != 0 &&
		pg_strcasecmp(parts.scheme, "http") != 0)
		return psprintf("The URL must use https (or http to a loopback host), not \"%s\".",
						parts.scheme);
	if (host)
		*host = parts.host;
	return NULL;
}

/* Check url (22023 naming setting_name, or the URL when NULL); its host. */
static char *
GraphCheckUrlInternal(const char *url, const char *setting_name,
					  bool allow_query)
{
	char	   *host = NULL;
	const char *problem = GraphUrlProblem(url, allow_query, &host);

	if (problem != NULL)
		GraphRefuseUrl(setting_name, problem);
	return host;
}

/* edusync.graph_url, checked, without trailing slashes; *len its length. */
static char *
GraphBaseUrl(size_t *len)
{
	const char *base = edusync_graph_url;
	char	   *host;

	host = GraphCheckUrlInternal(base, "edusync.graph_url", false);
	*len = GraphBaseLength(base);
	return host;
}

/* Length of a base URL without its trailing slashes. */
size_t
GraphBaseLength(const char *base)
{
	size_t		n = strlen(base);

	while (n > 0 && base[n - 1] == '/')
		n--;
	return n;
}

/*
 * What is wrong with an errors_path's shape, as a sentence; NULL when it
 * starts with "/" and holds {profile_id} exactly once (then *slot, if asked
 * for, points at it).  Never raises: the check hook uses it too.
 */
const char *
GraphErrorsPathProblem(const char *path, const char **slot)
{
	const char *s;

	if (path == NULL || path[0] != '/')
		return "The path must start with \"/\".";
	s = strstr(path, GRAPH_PROFILE_PLACEHOLDER);
	if (s == NULL || strstr(s + 1, GRAPH_PROFILE_PLACEHOLDER) != NULL)
		return "The path must contain \"{profile_id}\" exactly once.";
	if (slot)
		*slot = s;
	return NULL;
}

/*
 * The URL to POST one error to: graph_url + errors_path, with the profile
 * id percent-encoded into {profile_id}.
 */
char *
GraphErrorsUrl(const char *profile_id)
{
	/*
	 * The last URL built, for the settings and profile it was built from:
	 * sync mode sends one profile's errors over and over, and building
	 * checks the URL with three parses by libcurl.
	 */
	static char *last_graph_url = NULL;
	static char *last_errors_path = NULL;
	static char *last_profile_id = NULL;
	static char *last_url = NULL;
	char	   *url;

	if (last_url != NULL && profile_id != NULL &&
		strcmp(profile_id, last_profile_id) == 0 &&
		SameString(edusync_graph_url, last_graph_url) &&
		SameString(edusync_errors_path, last_errors_path))
		return pstrdup(last_url);

	url = BuildErrorsUrl(profile_id);
	if (last_url != NULL)
	{
		if (last_graph_url)
			pfree(last_graph_url);
		if (last_errors_path)
			pfree(last_errors_path);
		pfree(last_profile_id);
		pfree(last_url);
		last_url = NULL;
	}
	last_graph_url = edusync_graph_url ? MemoryContextStrdup(TopMemoryContext, edusync_graph_url) : NULL;
	last_errors_path = edusync_errors_path ? MemoryContextStrdup(TopMemoryContext, edusync_errors_path) : NULL;
	last_profile_id = MemoryContextStrdup(TopMemoryContext, profile_id);
	last_url = MemoryContextStrdup(TopMemoryContext, url);
	return url;
}

/* GraphErrorsUrl without its cache. */
static char *
BuildErrorsUrl(const char *profile_id)
{
	const char *path = edusync_errors_path;
	const char *slot = NULL;
	const char *after;
	const char *problem;
	char	   *base_host;
	char	   *host;
	char	   *escaped;
	size_t		base_len;
	StringInfoData url;

	if (profile_id == NULL || profile_id[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("profile id must not be empty")));

	base_host = GraphBaseUrl(&base_len);

	problem = GraphErrorsPathProblem(path, &slot);
	if (problem != NULL)
		GraphRefuseUrl("edusync.errors_path", problem);
	after = slot + strlen(GRAPH_PROFILE_PLACEHOLDER);

	escaped = GraphEscapeSegment(profile_id);

	initStringInfo(&url);
	appendBinaryStringInfo(&url, edusync_graph_url, base_len);
	appendBinaryStringInfo(&url, path, slot - path);
	appendStringInfoString(&url, escaped);
	appendStringInfoString(&url, after);
	pfree(escaped);

	host = GraphCheckUrlInternal(url.data, "edusync.errors_path", true);
	if (pg_strcasecmp(host, base_host) != 0)
		GraphRefuseUrl("edusync.errors_path",
					   "The path must not change the host of edusync.graph_url.");
	pfree(host);
	pfree(base_host);

	return url.data;
}

/* The $batch URL: graph_url + "/$batch". */
char *
GraphBatchUrl(void)
{
	char	   *base_host;
	char	   *url;
	size_t		base_len;

	base_host = GraphBaseUrl(&base_len);
	url = psprintf("%.*s/$batch", (int) base_len, edusync_graph_url);
	pfree(GraphCheckUrlInternal(url, "edusync.graph_url", false));
	pfree(base_host);
	return url;
}

/* The token endpoint: token_url with {tenant} replaced by the escaped id. */
char *
GraphTokenUrl(void)
{
	const char *tmpl = edusync_token_url;
	const char *p;
	const char *slot;
	char	   *escaped = NULL;
	StringInfoData url;

	if (tmpl == NULL || tmpl[0] == '\0')
		GraphRefuseUrl("edusync.token_url", "The URL is empty.");

	initStringInfo(&url);
	p = tmpl;
	while ((slot = strstr(p, GRAPH_TENANT_PLACEHOLDER)) != NULL)
	{
		if (escaped == NULL)
		{
			if (edusync_tenant_id == NULL || edusync_tenant_id[0] == '\0')
				GraphRefuseUrl("edusync.tenant_id",
							   "edusync.token_url contains \"{tenant}\" but edusync.tenant_id is not set.");
			escaped = GraphEscape(edusync_tenant_id);
		}
		appendBinaryStringInfo(&url, p, slot - p);
		appendStringInfoString(&url, escaped);
		p = slot + strlen(GRAPH_TENANT_PLACEHOLDER);
	}
	appendStringInfoString(&url, p);
	if (escaped)
		pfree(escaped);

	pfree(GraphCheckUrlInternal(url.data, "edusync.token_url", true));
	return url.data;
}

/*
 * Percent-encode s with libcurl: everything but ALPHA, DIGIT and "-._~" is
 * escaped, so the result is one path segment or one form value.
 */
char *
GraphEscape(const char *s)
{
	size_t		len;
	char	   *e;

	UrlInit();
	if (s == NULL)
		s = "";
	len = strlen(s);
	if (len > INT_MAX / 3)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value too long to percent-encode")));

	/* libcurl before 7.82 wants a handle here; it keeps no state in it */
	if (escape_easy == NULL)
	{
		escape_easy = curl_easy_init();
		if (escape_easy == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Could not create a libcurl handle.")));
	}

	e = curl_easy_escape(escape_easy, s, (int) len);
	if (e == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));

	/* the value may be a secret: wipe libcurl's copy */
	return GraphCurlStrdup(e, true);
}

/*
 * Percent-encode s as one path segment: GraphEscape, and the dot-segments
 * "." and ".." (which libcurl leaves alone) as %2E, so that no value can
 * climb the path even where the server normalises it.
 */
char *
GraphEscapeSegment(const char *s)
{
	char	   *e = GraphEscape(pg_server_to_any(s, strlen(s), PG_UTF8));

	if (strcmp(e, ".") == 0 || strcmp(e, "..") == 0)
	{
		char	   *dots = pstrdup(strlen(e) == 1 ? "%2E" : "%2E%2E");

		pfree(e);
		return dots;
	}
	return e;
}


/* Check a URL about to be sent to (22023 when unsafe), as the builders do. */
void
GraphCheckSendUrl(const char *url)
{
	static char *last_ok = NULL;	/* the last URL that passed */

	if (last_ok != NULL && strcmp(url, last_ok) == 0)
		return;
	pfree(GraphCheckUrlInternal(url, NULL, true));
	if (last_ok != NULL)
		pfree(last_ok);
	last_ok = MemoryContextStrdup(TopMemoryContext, url);
}
