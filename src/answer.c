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

/*
 * A DateTimeOffset in UTC: 2017-07-05T00:52:45Z, with a fraction of a
 * second only when it is not zero, whatever TimeZone and DateStyle say.
 * Digits are put, not printed (printf was 2,500 instructions of an answer),
 * but for a year outside 0-9999, which printf's "%04d" writes.
 */
char *
FormatDateTimeOffset(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;
	char	   *out;
	char	   *p;

	if (TIMESTAMP_NOT_FINITE(ts) ||
		timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "cannot format timestamp " INT64_FORMAT, (int64) ts);

	/* room for a year of up to 11 characters (an int) */
	out = palloc(sizeof("-0000000000-00-00T00:00:00.000000Z"));
	if (tm.tm_year >= 0 && tm.tm_year <= 9999)
		p = PutDigits(out, tm.tm_year, 4);
	else
		p = out + sprintf(out, "%04d", tm.tm_year);
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
