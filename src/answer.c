/*-------------------------------------------------------------------------
 *
 * answer.c
 *	  The Graph-shaped JSON of an error: the 201 body create answers (and
 *	  get/list repeat), and the request body sent to Graph (the same without
 *	  the read-only id).  The answer is built with the server's jsonb API;
 *	  the request body is written as the text that jsonb would print.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "answer.h"

#define ODATA_TYPE	"#microsoft.graph.educationSynchronizationError"

/* Push one "key": "string" (or null) pair. */
void
AnswerPushPair(JsonbParseState **state, const char *key, const char *value)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	pushJsonbValue(state, WJB_KEY, &v);

	if (value == NULL)
		v.type = jbvNull;
	else
	{
		v.val.string.val = (char *) value;
		v.val.string.len = strlen(value);
	}
	pushJsonbValue(state, WJB_VALUE, &v);
}

/*
 * A DateTimeOffset in UTC: 2017-07-05T00:52:45Z, with a fraction of a
 * second only when it is not zero, whatever TimeZone and DateStyle say.
 */
/* Write value as width decimal digits (zero-padded) at p; returns the end. */
static char *
PutDigits(char *p, int value, int width)
{
	for (int i = width - 1; i >= 0; i--)
	{
		p[i] = (char) ('0' + value % 10);
		value /= 10;
	}
	return p + width;
}

char *
FormatDateTimeOffset(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;
	StringInfoData buf;

	if (TIMESTAMP_NOT_FINITE(ts) ||
		timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "cannot format timestamp " INT64_FORMAT, (int64) ts);

	/* years of four digits, every answer's: digits put, not printed */
	if (tm.tm_year >= 1 && tm.tm_year <= 9999)
	{
		char	   *out = palloc(sizeof("0000-00-00T00:00:00.000000Z"));
		char	   *p = out;

		p = PutDigits(p, tm.tm_year, 4);
		*p++ = '-';
		p = PutDigits(p, tm.tm_mon, 2);
		*p++ = '-';
		p = PutDigits(p, tm.tm_mday, 2);
		*p++ = 'T';
		p = PutDigits(p, tm.tm_hour, 2);
		*p++ = ':';
		p = PutDigits(p, tm.tm_min, 2);
		*p++ = ':';
		p = PutDigits(p, tm.tm_sec, 2);
		if (fsec != 0)
		{
			*p++ = '.';
			p = PutDigits(p, (int) fsec, 6);
			while (p[-1] == '0')
				p--;
		}
		*p++ = 'Z';
		*p = '\0';
		return out;
	}

	initStringInfo(&buf);
	appendStringInfo(&buf, "%04d-%02d-%02dT%02d:%02d:%02d",
					 tm.tm_year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (fsec != 0)
	{
		char		frac[8];
		int			len;

		snprintf(frac, sizeof(frac), "%06d", (int) fsec);
		for (len = 6; frac[len - 1] == '0'; len--)
			;
		appendStringInfo(&buf, ".%.*s", len, frac);
	}
	appendStringInfoChar(&buf, 'Z');
	return buf.data;
}

/* A GUID as Graph writes it: lowercase 8-4-4-4-12. */
char *
FormatGuid(const pg_uuid_t *id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out,
											   UUIDPGetDatum((pg_uuid_t *) id)));
}

#define ANSWER_PAIRS_MAX 8

/* Set pair i of an object to "key": value (a C string, or null). */
static void
SetPair(JsonbPair *pairs, int i, const char *key, const char *value)
{
	pairs[i].key.type = jbvString;
	pairs[i].key.val.string.val = (char *) key;
	pairs[i].key.val.string.len = strlen(key);
	if (value == NULL)
		pairs[i].value.type = jbvNull;
	else
	{
		pairs[i].value.type = jbvString;
		pairs[i].value.val.string.val = (char *) value;
		pairs[i].value.val.string.len = strlen(value);
	}
	pairs[i].order = i;
}

/*
 * The properties of the resource as pairs (at most ANSWER_PAIRS_MAX), null
 * when absent; with_id false leaves out the read-only id (the body of a
 * request to Graph).  The one list of them, in the order jsonb keeps keys
 * (shorter first, then bytewise), which is also the order its text shows.
 * Returns how many.
 */
static int
AnswerPairs(const EdusyncError *err, bool with_id, JsonbPair *pairs)
{
	int			n = 0;

	if (with_id)
		SetPair(pairs, n++, "id", FormatGuid(&err->id));
	SetPair(pairs, n++, "entryType", err->entry_type);
	SetPair(pairs, n++, "errorCode", err->error_code);
	SetPair(pairs, n++, "@odata.type", ODATA_TYPE);
	SetPair(pairs, n++, "errorMessage", err->error_message);
	SetPair(pairs, n++, "joiningValue", err->joining_value);
	SetPair(pairs, n++, "recordedDateTime",
			FormatDateTimeOffset(err->recorded_date_time));
	SetPair(pairs, n++, "reportableIdentifier", err->reportable_identifier);
	return n;
}

/*
 * Push the error as Graph's JSON object: every property of the resource,
 * null when absent; with_id false leaves out the read-only id (the body of
 * a request to Graph).
 */
JsonbValue *
AnswerPush(JsonbParseState **state, const EdusyncError *err, bool with_id)
{
	JsonbPair	pairs[ANSWER_PAIRS_MAX];
	int			n = AnswerPairs(err, with_id, pairs);

	pushJsonbValue(state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < n; i++)
	{
		pushJsonbValue(state, WJB_KEY, &pairs[i].key);
		pushJsonbValue(state, WJB_VALUE, &pairs[i].value);
	}
	return pushJsonbValue(state, WJB_END_OBJECT, NULL);
}

/*
 * The error as a Graph JSON document: what AnswerPush builds, made
 * straight from its pairs (already in jsonb's key order, without
 * duplicates), so without the parse state's sorting.  Every create, get and
 * bulk element answers with one.
 */
Jsonb *
AnswerJsonb(const EdusyncError *err, bool with_id)
{
	JsonbPair	pairs[ANSWER_PAIRS_MAX];
	JsonbValue	object;

	object.type = jbvObject;
	object.val.object.nPairs = AnswerPairs(err, with_id, pairs);
	object.val.object.pairs = pairs;
	return JsonbValueToJsonb(&object);
}

/*
 * The body of a request to Graph: the answer without the read-only id, in
 * UTF-8 whatever the database encoding.  Written straight as text, the
 * bytes the jsonb of AnswerJsonb(err, false) prints, without building that
 * jsonb: the worker writes one per delivery.
 */
char *
AnswerRequestBody(const EdusyncError *err)
{
	JsonbPair	pairs[ANSWER_PAIRS_MAX];
	int			n = AnswerPairs(err, false, pairs);
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, pairs[i].key.val.string.val);
		appendStringInfoString(&buf, ": ");
		if (pairs[i].value.type == jbvNull)
			appendStringInfoString(&buf, "null");
		else
			escape_json(&buf, pairs[i].value.val.string.val);
	}
	appendStringInfoChar(&buf, '}');
	return pg_server_to_any(buf.data, buf.len, PG_UTF8);
}
