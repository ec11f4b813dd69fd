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

#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mb/pg_wchar.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "graph_client.h"
#include "graph_url.h"
#include "remote.h"
#include "settings.h"
#include "text_util.h"
#include "token.h"

#define TOKEN_FILE_MAX			16384	/* longest secret file read */
#define TOKEN_FORM_TYPE			"application/x-www-form-urlencoded"
#define TOKEN_MARGIN_MAX_S		300 /* refresh this long before expiry, at
									 * most */
#define TOKEN_DEFAULT_EXPIRES_S 300 /* when the answer has no expires_in */
#define TOKEN_MAX_EXPIRES_S		86400
#define TOKEN_MAX_ANSWER		(1024 * 1024)
#define TOKEN_MAX_LENGTH		16384

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

/* What the token endpoint's JSON answer holds (top-level fields). */
typedef struct TokenAnswer
{
	char	   *access_token;
	char	   *token_type;
	char	   *expires_in;
	char	   *error;
	char	   *error_description;
} TokenAnswer;

/* A secret read from a file, with what identifies the file's version. */
typedef struct FileSecret
{
	char	   *path;
	dev_t		dev;
	ino_t		ino;
	struct timespec mtime;
	struct timespec ctime;		/* changes on every write, and on chmod */
	off_t		size;
	char	   *value;			/* wiped when dropped */
} FileSecret;

/* A stat's change and modification times, to the nanosecond. */
#ifdef __APPLE__
#define STAT_MTIME(st) ((st).st_mtimespec)
#define STAT_CTIME(st) ((st).st_ctimespec)
#else
#define STAT_MTIME(st) ((st).st_mtim)
#define STAT_CTIME(st) ((st).st_ctim)
#endif

static TokenCache token_cache;
static FileSecret bearer_file;
static FileSecret secret_file;
static bool token_is_static = false;	/* what the last TokenGet gave */


static bool TokenSettingSet(const char *value);
static void TokenWipe(char **p);
static void TokenCacheDrop(void);
static bool TokenCacheMatches(const char *client_secret);
static char *TokenFormBody(const char *client_secret);
static void TokenVisit(void *arg, const char *path, bool is_string,
					   const char *value);
static void TokenParseAnswer(const char *body, size_t len, TokenAnswer *ans);
static char *TokenEndpointError(const TokenAnswer *ans);
static bool TokenLooksUsable(const char *token);
static double TokenExpiresIn(const char *value);


/* Is a string setting set (not NULL, not empty)? */
static bool
TokenSettingSet(const char *value)
{
	return value != NULL && value[0] != '\0';
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
	RemoteSetSecret(REMOTE_SECRET_FETCHED, NULL);
	TokenWipe(&token_cache.access_token);
	TokenWipe(&token_cache.client_secret);
	TokenWipe(&token_cache.token_url);
	TokenWipe(&token_cache.tenant_id);
	TokenWipe(&token_cache.client_id);
	token_cache.expires_at = 0;
}

/* Was the cached token obtained with the current settings? */
static bool
TokenCacheMatches(const char *client_secret)
{
	return token_cache.access_token != NULL &&
		SameString(token_cache.token_url, edusync_token_url) &&
		SameString(token_cache.tenant_id, edusync_tenant_id) &&
		SameString(token_cache.client_id, edusync_client_id) &&
		SameString(token_cache.client_secret, client_secret);
}

/*
 * The form to POST, built in one allocation so that no stray copy of the
 * secret is left behind in freed memory.  The caller wipes it.
 */
static char *
TokenFormBody(const char *client_secret)
{
	char	   *parts[8];
	char	   *form;
	size_t		len = 0;
	char	   *p;
	int			i;

	parts[0] = "client_id=";
	parts[1] = GraphEscape(edusync_client_id);
	parts[2] = "&client_secret=";
	parts[3] = GraphEscape(client_secret);
	parts[4] = "&scope=";
	parts[5] = GraphEscape(edusync_token_scope);
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

/* RemoteJsonWalk's visitor: keep the top-level fields of a token answer. */
static void
TokenVisit(void *arg, const char *path, bool is_string, const char *value)
{
	TokenAnswer *ans = (TokenAnswer *) arg;

	/* expires_in: a number, or (older Azure endpoints) a string of digits */
	if (strcmp(path, "expires_in") == 0)
		ans->expires_in = pstrdup(value);
	else if (!is_string)
		return;
	else if (strcmp(path, "access_token") == 0)
		ans->access_token = pstrdup(value);
	else if (strcmp(path, "token_type") == 0)
		ans->token_type = RemoteText(value, strlen(value), REMOTE_ID_MAX);
	else if (strcmp(path, "error") == 0)
		ans->error = RemoteText(value, strlen(value), REMOTE_ID_MAX);
	else if (strcmp(path, "error_description") == 0)
		ans->error_description = RemoteText(value, strlen(value), REMOTE_TEXT_MAX);
}

/* Read the token endpoint's answer (never raises). */
static void
TokenParseAnswer(const char *body, size_t len, TokenAnswer *ans)
{
	memset(ans, 0, sizeof(*ans));
	if (body == NULL || len == 0 || len > TOKEN_MAX_ANSWER)
		return;
	(void) RemoteJsonWalk(body, len, TokenVisit, ans);
}

/* "error: error_description" from the answer, or NULL; cleaned already. */
static char *
TokenEndpointError(const TokenAnswer *ans)
{
	if (ans->error == NULL && ans->error_description == NULL)
		return NULL;
	if (ans->error != NULL && ans->error_description != NULL)
		return psprintf("%s: %s", ans->error, ans->error_description);
	return pstrdup(ans->error ? ans->error : ans->error_description);
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
 * A secret from its file: read again whenever the file changes (so that
 * rotating it is: write the file, reload), NULL when path is empty.  A
 * change is seen in the file's identity, size and change time (to the
 * nanosecond: a rewrite in place within the same second, with a secret of
 * the same length, changes nothing else).  The file must belong to the server's user and give no access to group or
 * others, as PostgreSQL asks of ssl_key_file; a trailing newline is
 * ignored.  Refusals are 22023 (the worker pauses for them) and never show
 * the content.
 */
static const char *
TokenFileSecret(FileSecret *fs, const char *path, const char *setting)
{
	struct stat st;
	int			fd;
	char	   *buf;
	ssize_t		n;

	if (stat(path, &st) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not use %s: %m", setting),
				 errdetail("The file is \"%s\".", path)));
	/* checked on every use: a chmod alone must not go unnoticed */
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
		(st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
	{
		TokenWipe(&fs->value);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not use %s: the file is not private to the server", setting),
				 errdetail("\"%s\" must be a regular file owned by the server's user, without access for group or others.",
						   path),
				 errhint("chmod 600 it, and chown it to the user the server runs as.")));
	}
	if (fs->value != NULL && fs->path != NULL && strcmp(fs->path, path) == 0 &&
		fs->dev == st.st_dev && fs->ino == st.st_ino &&
		fs->size == st.st_size &&
		fs->mtime.tv_sec == STAT_MTIME(st).tv_sec &&
		fs->mtime.tv_nsec == STAT_MTIME(st).tv_nsec &&
		fs->ctime.tv_sec == STAT_CTIME(st).tv_sec &&
		fs->ctime.tv_nsec == STAT_CTIME(st).tv_nsec)
		return fs->value;

	TokenWipe(&fs->value);
	if (fs->path)
		pfree(fs->path);
	fs->path = NULL;
	if (st.st_size > TOKEN_FILE_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not use %s: the file is larger than %d bytes", setting,
						TOKEN_FILE_MAX)));
	fd = open(path, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not use %s: %m", setting)));
	buf = MemoryContextAllocZero(TopMemoryContext, TOKEN_FILE_MAX + 1);
	n = read(fd, buf, TOKEN_FILE_MAX);
	close(fd);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	if (n <= 0 || memchr(buf, '\0', n) != NULL || strpbrk(buf, "\r\n") != NULL)
	{
		explicit_bzero(buf, TOKEN_FILE_MAX + 1);
		pfree(buf);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not use %s: the file must hold the secret on one line", setting)));
	}
	fs->value = buf;
	fs->path = MemoryContextStrdup(TopMemoryContext, path);
	fs->dev = st.st_dev;
	fs->ino = st.st_ino;
	fs->mtime = STAT_MTIME(st);
	fs->ctime = STAT_CTIME(st);
	fs->size = st.st_size;
	return fs->value;
}

/* A secret: from its file when that is set, else inline; NULL if neither. */
static const char *
TokenSecret(FileSecret *fs, const char *path, const char *inline_value,
			const char *setting)
{
	if (TokenSettingSet(path))
		return TokenFileSecret(fs, path, setting);
	TokenWipe(&fs->value);
	return TokenSettingSet(inline_value) ? inline_value : NULL;
}

/*
 * The token to send: the static one (edusync.bearer_token_file, else
 * edusync.bearer_token) when set, else one obtained by the
 * client-credentials flow (the secret from edusync.client_secret_file, else
 * edusync.client_secret) and cached until shortly before it expires;
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
	const char *static_token;
	const char *client_secret;

	*token = NULL;
	*detail = NULL;

	/* a static token wins; there is nothing to refresh */
	static_token = TokenSecret(&bearer_file, edusync_bearer_token_file,
							   edusync_bearer_token, "edusync.bearer_token_file");
	RemoteSetSecret(REMOTE_SECRET_STATIC, static_token);
	token_is_static = (static_token != NULL);
	if (static_token != NULL)
	{
		*token = static_token;
		return TOKEN_OK;
	}

	client_secret = TokenSecret(&secret_file, edusync_client_secret_file,
								edusync_client_secret, "edusync.client_secret_file");
	RemoteSetSecret(REMOTE_SECRET_CLIENT, client_secret);
	if (!TokenSettingSet(edusync_tenant_id) &&
		!TokenSettingSet(edusync_client_id) && client_secret == NULL)
	{
		TokenCacheDrop();
		return TOKEN_OK;		/* no authentication configured */
	}
	if (!TokenSettingSet(edusync_tenant_id) ||
		!TokenSettingSet(edusync_client_id) || client_secret == NULL)
	{
		TokenCacheDrop();
		*detail = psprintf("The client-credentials flow needs edusync.tenant_id, edusync.client_id and a client secret, and %s is not set.",
						   !TokenSettingSet(edusync_tenant_id) ? "edusync.tenant_id" :
						   !TokenSettingSet(edusync_client_id) ? "edusync.client_id" :
						   "edusync.client_secret_file (or edusync.client_secret)");
		return TOKEN_REJECTED;
	}

	now = GetCurrentTimestamp();
	if (!force_refresh && TokenCacheMatches(client_secret) && now < token_cache.expires_at)
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

	form = TokenFormBody(client_secret);
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
							   RemoteText(resp.transport_error, strlen(resp.transport_error),
										  REMOTE_TEXT_MAX) : "no answer");
		return TOKEN_UNREACHABLE;
	}

	TokenParseAnswer(resp.body, resp.body_len, &ans);
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
						   ans.token_type);
		return TOKEN_REJECTED;
	}

	/* cache it, to be refreshed a little before it expires */
	expires_in = TokenExpiresIn(ans.expires_in);
	margin = Min((double) TOKEN_MARGIN_MAX_S, expires_in / 10.0);

	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	token_cache.token_url = pstrdup(edusync_token_url ? edusync_token_url : "");
	token_cache.tenant_id = pstrdup(edusync_tenant_id);
	token_cache.client_id = pstrdup(edusync_client_id);
	token_cache.client_secret = pstrdup(client_secret);
	token_cache.access_token = pstrdup(ans.access_token);
	MemoryContextSwitchTo(oldcxt);
	RemoteSetSecret(REMOTE_SECRET_FETCHED, token_cache.access_token);
	token_cache.expires_at = now +
		(TimestampTz) ((expires_in - margin) * USECS_PER_SEC);

	/* the answer (in the caller's memory) holds the token: wipe it */
	explicit_bzero(ans.access_token, strlen(ans.access_token));
	if (resp.body_len > 0)
		explicit_bzero(resp.body, resp.body_len);

	*token = token_cache.access_token;
	return TOKEN_OK;
}

/* Was the last token a static one (nothing a refresh could change)? */
bool
TokenIsStatic(void)
{
	return token_is_static;
}
