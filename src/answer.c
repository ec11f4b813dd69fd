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
char *
FormatDateTimeOffset(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;
	StringInfoData buf;

	if (TIMESTAMP_NOT_FINITE(ts) ||
		timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "cannot format timestamp " INT64_FORMAT, (int64) ts);

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

/*
 * Push the error as Graph's JSON object: every property of the resource,
 * null when absent; with_id false leaves out the read-only id (the body of
 * a request to Graph).
 */
JsonbValue *
AnswerPush(JsonbParseState **state, const EdusyncError *err, bool with_id)
{
	pushJsonbValue(state, WJB_BEGIN_OBJECT, NULL);
	AnswerPushPair(state, "@odata.type", ODATA_TYPE);
	if (with_id)
		AnswerPushPair(state, "id", FormatGuid(&err->id));
	AnswerPushPair(state, "entryType", err->entry_type);
	AnswerPushPair(state, "errorCode", err->error_code);
	AnswerPushPair(state, "errorMessage", err->error_message);
	AnswerPushPair(state, "joiningValue", err->joining_value);
	AnswerPushPair(state, "recordedDateTime",
			 FormatDateTimeOffset(err->recorded_date_time));
	AnswerPushPair(state, "reportableIdentifier", err->reportable_identifier);
	return pushJsonbValue(state, WJB_END_OBJECT, NULL);
}

/* Set pair i of an object to "key": value (a string, or null). */
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
 * The error as a Graph JSON document: what AnswerPush builds, made
 * straight from its pairs, already in the order jsonb keeps keys (shorter
 * first, then bytewise) and without duplicates, so without the parse
 * state's sorting.  Every create, get and bulk element answers with one.
 */
Jsonb *
AnswerJsonb(const EdusyncError *err, bool with_id)
{
	JsonbPair	pairs[8];
	JsonbValue	object;
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

	object.type = jbvObject;
	object.val.object.nPairs = n;
	object.val.object.pairs = pairs;
	return JsonbValueToJsonb(&object);
}

/* Append a JSON string, or null, as jsonb's text form writes it. */
static void
AppendJsonText(StringInfo buf, const char *key, const char *value, bool first)
{
	if (!first)
		appendStringInfoString(buf, ", ");
	escape_json(buf, key);
	appendStringInfoString(buf, ": ");
	if (value == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, value);
}

/*
 * The body of a request to Graph: the answer without the read-only id, in
 * UTF-8 whatever the database encoding.  Written straight as text, the
 * bytes the jsonb of AnswerJsonb(err, false) prints (its keys in jsonb's
 * order: shorter first, then bytewise), without building that jsonb: the
 * worker writes one per delivery.
 */
char *
AnswerRequestBody(const EdusyncError *err)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	AppendJsonText(&buf, "entryType", err->entry_type, true);
	AppendJsonText(&buf, "errorCode", err->error_code, false);
	AppendJsonText(&buf, "@odata.type", ODATA_TYPE, false);
	AppendJsonText(&buf, "errorMessage", err->error_message, false);
	AppendJsonText(&buf, "joiningValue", err->joining_value, false);
	AppendJsonText(&buf, "recordedDateTime",
				   FormatDateTimeOffset(err->recorded_date_time), false);
	AppendJsonText(&buf, "reportableIdentifier", err->reportable_identifier,
				   false);
	appendStringInfoChar(&buf, '}');

	return pg_server_to_any(buf.data, buf.len, PG_UTF8);
}
