/*-------------------------------------------------------------------------
 *
 * token.c
 *	  The bearer token edusync sends to Graph: edusync.bearer_token when
 *	  set, else one obtained with the OAuth2 client-credentials flow and
 *	  cached in this process until shortly before it expires.
 *
 *	  The cache is keyed by every setting that shapes the token (token_url,
 *	  tenant_id, client_id, client_secret), so changing any of them drops
 *	  it.  Secrets are wiped from memory when dropped, and never appear in a
 *	  detail message.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "edusync.h"
#include "graph_client.h"

#define TOKEN_SCOPE				"https://graph.microsoft.com/.default"
#define TOKEN_FORM_TYPE			"application/x-www-form-urlencoded"
#define TOKEN_MARGIN_MAX_S		300 /* refresh this long before expiry, at
									 * most */
#define TOKEN_DEFAULT_EXPIRES_S 300 /* when the answer has no expires_in */
#define TOKEN_MAX_EXPIRES_S		86400
#define TOKEN_MAX_ANSWER		(1024 * 1024)
#define TOKEN_MAX_DEPTH			32
#define TOKEN_MAX_LENGTH		16384
#define TOKEN_DETAIL_MAX		400

/* The cached token and the settings it was obtained with. */
typedef struct TokenCache
{
	char	   *token_url;		/* the setting, before {tenant} is filled */
	char	   *tenant_id;
	char	   *client_id;
	char	   *client_secret;	/* wiped when dropped */
	char	   *access_token;	/* wiped when dropped */
	TimestampTz expires_at;
} TokenCache;

/* What the token endpoint's JSON answer holds (top-level strings). */
typedef struct TokenAnswer
{
	int			depth;
	bool		is_object;
	const char *field;			/* top-level field whose value comes next */
	char	   *access_token;
	char	   *token_type;
	char	   *expires_in;
	char	   *error;
	char	   *error_description;
} TokenAnswer;

static TokenCache token_cache;

static bool TokenSettingSet(const char *value);
static bool TokenStrEq(const char *a, const char *b);
static void TokenWipe(char **p);
static void TokenCacheDrop(void);
static bool TokenCacheMatches(void);
static char *TokenFormBody(void);
static bool TokenPrepareJson(const char *body, size_t len, char *out);
static bool TokenParseAnswer(const char *body, size_t len, TokenAnswer *ans);
static char *TokenSanitize(const char *s);
static char *TokenEndpointError(const TokenAnswer *ans);
static bool TokenLooksUsable(const char *token);
static double TokenExpiresIn(const char *value);
static EDUSYNC_JSON_ACTION TokenObjectStart(void *state);
static EDUSYNC_JSON_ACTION TokenObjectEnd(void *state);
static EDUSYNC_JSON_ACTION TokenArrayStart(void *state);
static EDUSYNC_JSON_ACTION TokenArrayEnd(void *state);
static EDUSYNC_JSON_ACTION TokenFieldStart(void *state, char *fname, bool isnull);
static EDUSYNC_JSON_ACTION TokenScalar(void *state, char *token, JsonTokenType tokentype);


/* Is a string setting set (not NULL, not empty)? */
static bool
TokenSettingSet(const char *value)
{
	return value != NULL && value[0] != '\0';
}

/* Are two possibly NULL strings equal? */
static bool
TokenStrEq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* Zero a palloc'd string and free it. */
static void
TokenWipe(char **p)
{
	if (*p != NULL)
	{
		explicit_bzero(*p, strlen(*p));
		pfree(*p);
		*p = NULL;
	}
}

/* Forget the cached token, wiping the secrets. */
static void
TokenCacheDrop(void)
{
	TokenWipe(&token_cache.access_token);
	TokenWipe(&token_cache.client_secret);
	TokenWipe(&token_cache.token_url);
	TokenWipe(&token_cache.tenant_id);
	TokenWipe(&token_cache.client_id);
	token_cache.expires_at = 0;
}

/* Was the cached token obtained with the current settings? */
static bool
TokenCacheMatches(void)
{
	return token_cache.access_token != NULL &&
		TokenStrEq(token_cache.token_url, edusync_token_url) &&
		TokenStrEq(token_cache.tenant_id, edusync_tenant_id) &&
		TokenStrEq(token_cache.client_id, edusync_client_id) &&
		TokenStrEq(token_cache.client_secret, edusync_client_secret);
}

/*
 * The form to POST, built in one allocation so that no stray copy of the
 * secret is left behind in freed memory.  The caller wipes it.
 */
static char *
TokenFormBody(void)
{
	char	   *parts[8];
	char	   *form;
	size_t		len = 0;
	char	   *p;
	int			i;

	parts[0] = "client_id=";
	parts[1] = GraphEscape(edusync_client_id);
	parts[2] = "&client_secret=";
	parts[3] = GraphEscape(edusync_client_secret);
	parts[4] = "&scope=";
	parts[5] = GraphEscape(TOKEN_SCOPE);
	parts[6] = "&grant_type=client_credentials";
	parts[7] = NULL;

	for (i = 0; i < 7; i++)
		len += strlen(parts[i]);
	form = palloc(len + 1);
	p = form;
	for (i = 0; i < 7; i++)
	{
		size_t		n = strlen(parts[i]);

		memcpy(p, parts[i], n);
		p += n;
	}
	*p = '\0';

	TokenWipe(&parts[1]);
	TokenWipe(&parts[3]);
	TokenWipe(&parts[5]);
	return form;
}

/*
 * Copy body into out (len + 1 bytes) for the server's JSON parser, so that
 * the parser cannot raise: refuse nesting deeper than TOKEN_MAX_DEPTH (the
 * parser recurses), and turn \u escapes outside ASCII into \u001a (the
 * backend parser converts them to the server encoding, and raises when it
 * cannot).  A token holding one is then refused; in messages it shows as ?.
 */
static bool
TokenPrepareJson(const char *body, size_t len, char *out)
{
	int			depth = 0;
	bool		in_string = false;
	size_t		i;

	memcpy(out, body, len);
	out[len] = '\0';

	for (i = 0; i < len; i++)
	{
		char		c = out[i];

		if (c == '\0')
			return false;
		if (in_string)
		{
			if (c == '"')
				in_string = false;
			else if (c == '\\' && i + 1 < len)
			{
				if (out[i + 1] == 'u' && i + 5 < len)
				{
					unsigned int cp = 0;
					int			k;

					for (k = 2; k <= 5; k++)
					{
						char		h = out[i + k];

						cp <<= 4;
						if (h >= '0' && h <= '9')
							cp |= h - '0';
						else if (h >= 'a' && h <= 'f')
							cp |= h - 'a' + 10;
						else if (h >= 'A' && h <= 'F')
							cp |= h - 'A' + 10;
						else
							return false;
					}
					if (cp > 0x7f || cp == 0)
						memcpy(out + i + 2, "001a", 4);
					i += 5;
				}
				else
					i++;
			}
		}
		else if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[')
		{
			if (++depth > TOKEN_MAX_DEPTH)
				return false;
		}
		else if (c == '}' || c == ']')
			depth--;
	}
	return true;
}

/* Parser callbacks: follow depth, keep the top-level fields we want. */
static EDUSYNC_JSON_ACTION
TokenObjectStart(void *state)
{
	TokenAnswer *ans = (TokenAnswer *) state;

	if (ans->depth == 0)
		ans->is_object = true;
	ans->depth++;
	ans->field = NULL;
	EDUSYNC_JSON_DONE;
}

/* End of an object. */
static EDUSYNC_JSON_ACTION
TokenObjectEnd(void *state)
{
	((TokenAnswer *) state)->depth--;
	EDUSYNC_JSON_DONE;
}

/* Start of an array. */
static EDUSYNC_JSON_ACTION
TokenArrayStart(void *state)
{
	TokenAnswer *ans = (TokenAnswer *) state;

	ans->depth++;
	ans->field = NULL;
	EDUSYNC_JSON_DONE;
}

/* End of an array. */
static EDUSYNC_JSON_ACTION
TokenArrayEnd(void *state)
{
	((TokenAnswer *) state)->depth--;
	EDUSYNC_JSON_DONE;
}

/* A field name: remember it when it is a top-level one we want. */
static EDUSYNC_JSON_ACTION
TokenFieldStart(void *state, char *fname, bool isnull)
{
	TokenAnswer *ans = (TokenAnswer *) state;
	static const char *const wanted[] = {
		"access_token", "token_type", "expires_in", "error",
		"error_description"
	};
	int			i;

	ans->field = NULL;
	if (ans->depth != 1 || fname == NULL)
		EDUSYNC_JSON_DONE;
	for (i = 0; i < lengthof(wanted); i++)
	{
		if (strcmp(fname, wanted[i]) == 0)
		{
			ans->field = wanted[i];
			break;
		}
	}
	EDUSYNC_JSON_DONE;
}

/* A scalar: store it when it is the value of a wanted top-level field. */
static EDUSYNC_JSON_ACTION
TokenScalar(void *state, char *token, JsonTokenType tokentype)
{
	TokenAnswer *ans = (TokenAnswer *) state;
	const char *field = ans->field;

	ans->field = NULL;
	if (ans->depth != 1 || field == NULL || token == NULL)
		EDUSYNC_JSON_DONE;

	if (strcmp(field, "expires_in") == 0)
	{
		/* a number, or (older Azure endpoints) a string of digits */
		if (tokentype == JSON_TOKEN_NUMBER || tokentype == JSON_TOKEN_STRING)
			ans->expires_in = token;
	}
	else if (tokentype == JSON_TOKEN_STRING)
	{
		if (strcmp(field, "access_token") == 0)
			ans->access_token = token;
		else if (strcmp(field, "token_type") == 0)
			ans->token_type = token;
		else if (strcmp(field, "error") == 0)
			ans->error = token;
		else if (strcmp(field, "error_description") == 0)
			ans->error_description = token;
	}
	EDUSYNC_JSON_DONE;
}

/*
 * Parse the token endpoint's answer with the server's JSON parser, without
 * raising for any input.  False when it is not a JSON object.
 */
static bool
TokenParseAnswer(const char *body, size_t len, TokenAnswer *ans)
{
	JsonSemAction sem;
	JsonLexContext *lex;
	char	   *copy;

	memset(ans, 0, sizeof(*ans));
	if (body == NULL || len == 0 || len > TOKEN_MAX_ANSWER)
		return false;

	copy = palloc(len + 1);
	if (!TokenPrepareJson(body, len, copy))
		return false;

	memset(&sem, 0, sizeof(sem));
	sem.semstate = ans;
	sem.object_start = TokenObjectStart;
	sem.object_end = TokenObjectEnd;
	sem.array_start = TokenArrayStart;
	sem.array_end = TokenArrayEnd;
	sem.object_field_start = TokenFieldStart;
	sem.scalar = TokenScalar;

	lex = EdusyncJsonLexer(copy, len, PG_UTF8);
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS)
		return false;
	return ans->is_object;
}

/*
 * Text from the endpoint, fit for a detail message: the first line only,
 * printable ASCII, at most TOKEN_DETAIL_MAX bytes.
 */
static char *
TokenSanitize(const char *s)
{
	StringInfoData buf;
	const unsigned char *p;

	initStringInfo(&buf);
	for (p = (const unsigned char *) s; *p && *p != '\r' && *p != '\n'; p++)
	{
		if (buf.len >= TOKEN_DETAIL_MAX)
		{
			appendStringInfoString(&buf, "...");
			break;
		}
		appendStringInfoChar(&buf, (*p >= 0x20 && *p < 0x7f) ? (char) *p : '?');
	}
	while (buf.len > 0 && (buf.data[buf.len - 1] == ' ' ||
						   buf.data[buf.len - 1] == '.'))
		buf.data[--buf.len] = '\0';
	return buf.data;
}

/* "error: error_description" from the answer, or NULL; never the secret. */
static char *
TokenEndpointError(const TokenAnswer *ans)
{
	char	   *text;

	if (ans->error == NULL && ans->error_description == NULL)
		return NULL;
	if (ans->error != NULL && ans->error_description != NULL)
		text = psprintf("%s: %s", TokenSanitize(ans->error),
						TokenSanitize(ans->error_description));
	else
		text = TokenSanitize(ans->error ? ans->error : ans->error_description);

	/* an endpoint that echoes what it was sent must not leak the secret */
	if (TokenSettingSet(edusync_client_secret) &&
		strstr(text, edusync_client_secret) != NULL)
		text = pstrdup("(the endpoint's message repeats the client secret and is not shown)");
	return text;
}

/* A token we can put in an Authorization header: visible ASCII only. */
static bool
TokenLooksUsable(const char *token)
{
	const unsigned char *p;

	if (token == NULL || token[0] == '\0' || strlen(token) > TOKEN_MAX_LENGTH)
		return false;
	for (p = (const unsigned char *) token; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f)
			return false;
	return true;
}

/* expires_in as seconds, TOKEN_DEFAULT_EXPIRES_S when absent or odd. */
static double
TokenExpiresIn(const char *value)
{
	char	   *end;
	double		v;

	if (value == NULL || value[0] == '\0')
		return TOKEN_DEFAULT_EXPIRES_S;
	errno = 0;
	v = strtod(value, &end);
	if (errno != 0 || *end != '\0' || isnan(v) || v < 0)
		return TOKEN_DEFAULT_EXPIRES_S;
	if (v > TOKEN_MAX_EXPIRES_S)
		v = TOKEN_MAX_EXPIRES_S;
	return v;
}

/*
 * The token to send: edusync.bearer_token when set, else one obtained by
 * the client-credentials flow and cached until shortly before it expires;
 * force_refresh drops the cached one first (after a 401).  *token stays
 * valid until the next call.  On failure, *detail is a sentence saying
 * why, without any secret.
 */
TokenStatus
TokenGet(bool force_refresh, long timeout_ms, const char **token,
		 char **detail)
{
	GraphRequest req;
	GraphResponse resp;
	TokenAnswer ans;
	char	   *form;
	char	   *url;
	char	   *endpoint_error;
	TimestampTz now;
	double		expires_in;
	double		margin;
	MemoryContext oldcxt;

	*token = NULL;
	*detail = NULL;

	/* a static token wins; there is nothing to refresh */
	if (TokenSettingSet(edusync_bearer_token))
	{
		*token = edusync_bearer_token;
		return TOKEN_OK;
	}

	if (!TokenSettingSet(edusync_tenant_id) &&
		!TokenSettingSet(edusync_client_id) &&
		!TokenSettingSet(edusync_client_secret))
	{
		TokenCacheDrop();
		return TOKEN_OK;		/* no authentication configured */
	}
	if (!TokenSettingSet(edusync_tenant_id) ||
		!TokenSettingSet(edusync_client_id) ||
		!TokenSettingSet(edusync_client_secret))
	{
		TokenCacheDrop();
		*detail = psprintf("The client-credentials flow needs edusync.tenant_id, edusync.client_id and edusync.client_secret, and %s is not set.",
						   !TokenSettingSet(edusync_tenant_id) ? "edusync.tenant_id" :
						   !TokenSettingSet(edusync_client_id) ? "edusync.client_id" :
						   "edusync.client_secret");
		return TOKEN_REJECTED;
	}

	now = GetCurrentTimestamp();
	if (!force_refresh && TokenCacheMatches() && now < token_cache.expires_at)
	{
		*token = token_cache.access_token;
		return TOKEN_OK;
	}
	TokenCacheDrop();

	/* raises 22023 for an unsafe token_url, before any traffic */
	url = GraphTokenUrl();

	memset(&req, 0, sizeof(req));
	req.url = url;
	req.content_type = TOKEN_FORM_TYPE;
	req.bearer = NULL;
	req.client_request_id = NULL;
	req.timeout_ms = timeout_ms > 0 ? timeout_ms : edusync_timeout_ms;

	form = TokenFormBody();
	req.body = form;
	PG_TRY();
	{
		GraphSend(&req, &resp);
	}
	PG_CATCH();
	{
		explicit_bzero(form, strlen(form));
		PG_RE_THROW();
	}
	PG_END_TRY();
	explicit_bzero(form, strlen(form));
	pfree(form);

	if (resp.aborted)
	{
		*detail = pstrdup("interrupted");
		return TOKEN_UNREACHABLE;
	}
	if (resp.status == 0)
	{
		if (resp.timed_out)
			*detail = psprintf("The token endpoint did not answer within %ld ms.",
							   req.timeout_ms);
		else
			*detail = psprintf("The token endpoint could not be reached: %s.",
							   resp.transport_error ?
							   TokenSanitize(resp.transport_error) : "no answer");
		return TOKEN_UNREACHABLE;
	}

	(void) TokenParseAnswer(resp.body, resp.body_len, &ans);
	endpoint_error = TokenEndpointError(&ans);

	if (resp.status == 429 || resp.status >= 500)
	{
		if (endpoint_error)
			*detail = psprintf("The token endpoint answered HTTP %ld (%s).",
							   resp.status, endpoint_error);
		else
			*detail = psprintf("The token endpoint answered HTTP %ld.",
							   resp.status);
		return TOKEN_UNREACHABLE;
	}
	if (resp.status != 200)
	{
		if (endpoint_error)
			*detail = psprintf("The token endpoint answered HTTP %ld: %s.",
							   resp.status, endpoint_error);
		else
			*detail = psprintf("The token endpoint answered HTTP %ld.",
							   resp.status);
		return TOKEN_REJECTED;
	}
	if (!TokenLooksUsable(ans.access_token))
	{
		if (endpoint_error)
			*detail = psprintf("The token endpoint's answer holds no usable access_token: %s.",
							   endpoint_error);
		else
			*detail = pstrdup("The token endpoint's answer holds no usable access_token.");
		return TOKEN_REJECTED;
	}
	if (ans.token_type != NULL && pg_strcasecmp(ans.token_type, "Bearer") != 0)
	{
		*detail = psprintf("The token endpoint issued a token of type \"%s\", not Bearer.",
						   TokenSanitize(ans.token_type));
		return TOKEN_REJECTED;
	}

	/* cache it, to be refreshed a little before it expires */
	expires_in = TokenExpiresIn(ans.expires_in);
	margin = Min((double) TOKEN_MARGIN_MAX_S, expires_in / 10.0);

	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	token_cache.token_url = pstrdup(edusync_token_url ? edusync_token_url : "");
	token_cache.tenant_id = pstrdup(edusync_tenant_id);
	token_cache.client_id = pstrdup(edusync_client_id);
	token_cache.client_secret = pstrdup(edusync_client_secret);
	token_cache.access_token = pstrdup(ans.access_token);
	MemoryContextSwitchTo(oldcxt);
	token_cache.expires_at = now +
		(TimestampTz) ((expires_in - margin) * USECS_PER_SEC);

	/* the answer (in the caller's memory) holds the token: wipe it */
	explicit_bzero(ans.access_token, strlen(ans.access_token));
	if (resp.body_len > 0)
		explicit_bzero(resp.body, resp.body_len);

	*token = token_cache.access_token;
	return TOKEN_OK;
}
