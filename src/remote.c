/*-------------------------------------------------------------------------
 *
 * remote.c
 *	  Remote text: the one JSON reader for what endpoints answer (Graph,
 *	  $batch, the token endpoint), and the cleaning of every remote string
 *	  before it reaches a message, a log line or a table.
 *
 *	  The reader runs the server's JSON parser (pg_parse_json) on a copy of
 *	  the body prepared so that the parser cannot raise: invalid UTF-8
 *	  becomes '?', nesting deeper than REMOTE_JSON_MAX_DEPTH is refused (the
 *	  parser recurses), and in a database that is not UTF-8, \u escapes of
 *	  non-ASCII characters become '?' (PostgreSQL 15 raises when it cannot
 *	  convert one).  Numbers are never converted: they reach the visitor as
 *	  text.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "compat.h"
#include "graph_url.h"
#include "remote.h"
#include "settings.h"

#define REMOTE_JSON_MAX_DEPTH	64
#define REMOTE_REDACTED			"[redacted]"


/* Where the walk is: the key or array position at each level. */
typedef struct WalkState
{
	int			depth;
	const char *keys[REMOTE_JSON_MAX_DEPTH + 1];	/* NULL: array level */
	int			index[REMOTE_JSON_MAX_DEPTH + 1];
	RemoteJsonVisit visit;
	void	   *arg;
	StringInfoData path;		/* the current scalar's path (reused) */
} WalkState;

/*
 * Copies of the secrets edusync sends (REMOTE_SECRET_*), or NULL; and of
 * their percent-encoded forms where those differ (NULL otherwise), made
 * once when a secret is set rather than for every text redacted.
 */
static const char *secrets[REMOTE_SECRETS];
static const char *escaped_secrets[REMOTE_SECRETS];

/* Wipe and free a copy of a secret. */
static void
ForgetSecretCopy(const char *copy)
{
	if (copy != NULL)
	{
		explicit_bzero((char *) copy, strlen(copy));
		pfree((char *) copy);
	}
}

void
RemoteSetSecret(int which, const char *secret)
{
	const char *old = secrets[which];
	const char *old_escaped = escaped_secrets[which];
	char	   *escaped = NULL;

	if (old != NULL && secret != NULL && strcmp(old, secret) == 0)
		return;
	if (secret != NULL && secret[0] != '\0')
	{
		char	   *e = GraphEscape(secret);

		if (strcmp(e, secret) != 0)
			escaped = MemoryContextStrdup(TopMemoryContext, e);
		explicit_bzero(e, strlen(e));
		pfree(e);
	}
	secrets[which] = secret ? MemoryContextStrdup(TopMemoryContext, secret) : NULL;
	escaped_secrets[which] = escaped;
	ForgetSecretCopy(old);
	ForgetSecretCopy(old_escaped);
}

/*
 * A copy of body the parser reads without raising (see the file header);
 * NULL when it is nested too deep.
 */
static char *
PrepareJson(const char *body, size_t len)
{
	bool		utf8_db = (GetDatabaseEncoding() == PG_UTF8);
	bool		in_string = false;
	int			depth = 0;
	char	   *out;
	size_t		i = 0;

	/*
	 * Every change below keeps the length ('?' for a byte, "\u003f" for a
	 * six-byte escape): a copy, mended in place, costs a pass of
	 * comparisons rather than an append per byte.
	 */
	if (len > MaxAllocSize - 1)
		len = MaxAllocSize - 1;
	out = palloc(len + 1);
	memcpy(out, body, len);
	out[len] = '\0';
	while (i < len)
	{
		unsigned char c = (unsigned char) out[i];

		if (c >= 0x80)
		{
			int			l = pg_utf_mblen((const unsigned char *) &out[i]);

			if (i + l > len || !pg_utf8_islegal((const unsigned char *) &out[i], l))
			{
				out[i] = '?';
				l = 1;
			}
			i += l;
			continue;
		}
		if (c == '\0')
			out[i] = c = '?';
		if (in_string)
		{
			if (c == '"')
				in_string = false;
			else if (c == '\\' && i + 1 < len)
			{
				if (!utf8_db && out[i + 1] == 'u' && i + 5 < len &&
					strspn(&out[i + 2], "0123456789abcdefABCDEF") >= 2 &&
					(out[i + 2] != '0' || out[i + 3] != '0' ||
					 !(out[i + 4] >= '0' && out[i + 4] <= '7')))
				{
					/* \u0080 and above: not convertible everywhere */
					memcpy(&out[i], "\\u003f", 6);
					i += 6;
					continue;
				}
				c = (unsigned char) out[++i];
				if (c >= 0x80 || c == '\0')
					out[i] = '?';
			}
		}
		else if (c == '"')
			in_string = true;
		else if ((c == '{' || c == '[') && ++depth > REMOTE_JSON_MAX_DEPTH)
		{
			pfree(out);
			return NULL;
		}
		else if (c == '}' || c == ']')
			depth--;
		i++;
	}
	return out;
}

/* Parser callbacks: keep track of the path, hand scalars to the visitor. */
static EDUSYNC_JSON_ACTION
WalkObjectStart(void *state)
{
	WalkState  *w = (WalkState *) state;

	w->depth++;
	w->keys[w->depth] = "";
	EDUSYNC_JSON_DONE;
}

static EDUSYNC_JSON_ACTION
WalkEnd(void *state)
{
	((WalkState *) state)->depth--;
	EDUSYNC_JSON_DONE;
}

static EDUSYNC_JSON_ACTION
WalkArrayStart(void *state)
{
	WalkState  *w = (WalkState *) state;

	w->depth++;
	w->keys[w->depth] = NULL;
	w->index[w->depth] = -1;
	EDUSYNC_JSON_DONE;
}

static EDUSYNC_JSON_ACTION
WalkFieldStart(void *state, char *fname, bool isnull)
{
	WalkState  *w = (WalkState *) state;

	w->keys[w->depth] = fname ? fname : "";
	EDUSYNC_JSON_DONE;
}

static EDUSYNC_JSON_ACTION
WalkElementStart(void *state, bool isnull)
{
	WalkState  *w = (WalkState *) state;

	w->index[w->depth]++;
	EDUSYNC_JSON_DONE;
}

static EDUSYNC_JSON_ACTION
WalkScalar(void *state, char *token, JsonTokenType tokentype)
{
	WalkState  *w = (WalkState *) state;
	StringInfo	path = &w->path;

	if (token == NULL)
		EDUSYNC_JSON_DONE;
	resetStringInfo(path);
	for (int level = 1; level <= w->depth; level++)
	{
		if (level > 1)
			appendStringInfoChar(path, '/');
		if (w->keys[level] != NULL)
			appendStringInfoString(path, w->keys[level]);
		else
		{
			char		digits[12];

			pg_ltoa(w->index[level], digits);	/* not a printf per scalar */
			appendStringInfoString(path, digits);
		}
	}
	w->visit(w->arg, path->data, tokentype == JSON_TOKEN_STRING, token);
	EDUSYNC_JSON_DONE;
}

bool
RemoteJsonWalk(const char *body, size_t len, RemoteJsonVisit visit, void *arg)
{
	char	   *copy;
	JsonLexContext *lex;
	JsonSemAction sem;
	WalkState	w;

	if (body == NULL || len == 0)
		return false;
	copy = PrepareJson(body, len);
	if (copy == NULL)
		return false;

	memset(&w, 0, sizeof(w));
	w.visit = visit;
	w.arg = arg;
	initStringInfo(&w.path);
	memset(&sem, 0, sizeof(sem));
	sem.semstate = &w;
	sem.object_start = WalkObjectStart;
	sem.object_end = WalkEnd;
	sem.array_start = WalkArrayStart;
	sem.array_end = WalkEnd;
	sem.object_field_start = WalkFieldStart;
	sem.array_element_start = WalkElementStart;
	sem.scalar = WalkScalar;

	lex = EdusyncJsonLexer(copy, strlen(copy), PG_UTF8);
	return pg_parse_json(lex, &sem) == JSON_SUCCESS;
}

/* Does secret (n bytes) occur in s at i (case-insensitively if asked)? */
static inline bool
SecretAt(const StringInfo s, size_t i, const char *secret, size_t n, bool nocase)
{
	return i + n <= (size_t) s->len &&
		(nocase ? pg_strncasecmp(s->data + i, secret, n) == 0 :
		 strncmp(s->data + i, secret, n) == 0);
}

/* Replace each occurrence of secret in *s (case-insensitively if asked). */
static void
Redact(StringInfo s, const char *secret, bool nocase)
{
	size_t		n;
	StringInfoData out;
	size_t		i = 0;
	size_t		first = 0;

	if (secret == NULL || (n = strlen(secret)) == 0 || (size_t) s->len < n)
		return;
	/* most texts hold no secret: look before copying */
	while (first < (size_t) s->len && !SecretAt(s, first, secret, n, nocase))
		first++;
	if (first >= (size_t) s->len)
		return;

	initStringInfo(&out);
	appendBinaryStringInfo(&out, s->data, (int) first);
	i = first;
	while (i < (size_t) s->len)
	{
		if (SecretAt(s, i, secret, n, nocase))
		{
			appendStringInfoString(&out, REMOTE_REDACTED);
			i += n;
		}
		else
			appendStringInfoChar(&out, s->data[i++]);
	}
	explicit_bzero(s->data, s->len);
	resetStringInfo(s);
	appendBinaryStringInfo(s, out.data, out.len);
	explicit_bzero(out.data, out.len);
	pfree(out.data);
}

/* Redact secret k in every form edusync sends it: raw and percent-encoded. */
static void
RedactSecret(StringInfo s, int k)
{
	Redact(s, secrets[k], false);
	Redact(s, escaped_secrets[k], true);
}

/* Append one character (a Unicode code point) in the server encoding. */
static void
AppendServerChar(StringInfo out, pg_wchar ch, const char *utf8, int len)
{
	int			enc = GetDatabaseEncoding();

	if (ch < 0x80 || enc == PG_UTF8)
		appendBinaryStringInfo(out, utf8, len);
	else if (enc == PG_SQL_ASCII)
		appendStringInfoChar(out, '?');
	else
	{
#if PG_VERSION_NUM >= 160000
		unsigned char buf[MAX_MULTIBYTE_CHAR_LEN + 1];

		if (pg_unicode_to_server_noerror(ch, buf))
			appendStringInfoString(out, (char *) buf);
		else
#endif
			appendStringInfoChar(out, '?');
	}
}

char *
RemoteText(const char *text, size_t len, int max_chars)
{
	StringInfoData s;
	StringInfoData out;
	int			chars = 0;
	int			i = 0;

	/* valid UTF-8 first, so that nothing below can be misled */
	initStringInfo(&s);
	enlargeStringInfo(&s, (int) Min(len, (size_t) (MaxAllocSize / 2)));
	while ((size_t) i < len)
	{
		int			l;

		if ((unsigned char) text[i] < 0x80 && text[i] != '\0')
		{
			/* ASCII, the common case, without the multibyte checks */
			appendStringInfoCharMacro(&s, text[i]);
			i++;
			continue;
		}
		l = pg_utf_mblen((const unsigned char *) &text[i]);
		if ((unsigned char) text[i] < 0x80)
			l = 1;
		if ((size_t) (i + l) <= len && text[i] != '\0' &&
			pg_utf8_islegal((const unsigned char *) &text[i], l))
			appendBinaryStringInfo(&s, &text[i], l);
		else
		{
			appendStringInfoChar(&s, '?');
			l = 1;
		}
		i += l;
	}

	for (int k = 0; k < REMOTE_SECRETS; k++)
		RedactSecret(&s, k);

	initStringInfo(&out);
	for (i = 0; i < s.len;)
	{
		int			l;
		pg_wchar	ch;

		if (chars >= max_chars)
		{
			appendStringInfoString(&out, "...");
			break;
		}
		if ((unsigned char) s.data[i] < 0x80)
		{
			/* ASCII: a control character becomes a space */
			ch = (unsigned char) s.data[i];
			appendStringInfoCharMacro(&out, (ch < 0x20 || ch == 0x7f) ? ' ' : (char) ch);
			chars++;
			i++;
			continue;
		}
		l = pg_utf_mblen((const unsigned char *) &s.data[i]);
		ch = utf8_to_unicode((const unsigned char *) &s.data[i]);
		if (ch < 0x20 || (ch >= 0x7f && ch <= 0x9f))
			appendStringInfoChar(&out, ' ');
		else
			AppendServerChar(&out, ch, &s.data[i], l);
		chars++;
		i += l;
	}
	explicit_bzero(s.data, s.len);
	pfree(s.data);
	return out.data;
}

void
RemoteAnswerVisit(RemoteAnswer *ans, const char *path, bool is_string,
				  const char *value)
{
	char	  **field = NULL;
	int			max = REMOTE_TEXT_MAX;

	if (!is_string)
		return;
	if (strcmp(path, "id") == 0)
	{
		field = &ans->id;
		max = REMOTE_ID_MAX;
	}
	else if (strcmp(path, "error/code") == 0)
		field = &ans->code;
	else if (strcmp(path, "error/message") == 0)
		field = &ans->message;
	else if (pg_strcasecmp(path, "error/innerError/request-id") == 0)
	{
		field = &ans->request_id;
		max = REMOTE_ID_MAX;
	}
	if (field != NULL && *field == NULL)
		*field = RemoteText(value, strlen(value), max);
}

/* RemoteJsonWalk's visitor for RemoteReadAnswer. */
static void
AnswerVisit(void *arg, const char *path, bool is_string, const char *value)
{
	RemoteAnswerVisit((RemoteAnswer *) arg, path, is_string, value);
}

void
RemoteReadAnswer(const char *body, size_t len, RemoteAnswer *ans)
{
	memset(ans, 0, sizeof(*ans));
	(void) RemoteJsonWalk(body, len, AnswerVisit, ans);
}
