/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The SQL-callable functions: create_sync_error (both overloads, one
 *	  code path), get_sync_error, list_sync_errors, retry_failed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "edusync.h"
#include "graph_client.h"

/* Graph's own limit on $top. */
#define LIST_TOP_MAX	999

/* Graph's own base URL: links in answers use it when none is configured. */
#define GRAPH_DOCUMENTED_BASE	"https://graph.microsoft.com/beta"

/*
 * The base of the links in answers: edusync.graph_url (Graph's own when
 * empty), without trailing slashes.  Links are only text: building them
 * needs none of the checks a send needs.
 */
static char *
LinkBase(void)
{
	const char *base = (edusync_graph_url != NULL && edusync_graph_url[0] != '\0') ?
		edusync_graph_url : GRAPH_DOCUMENTED_BASE;
	size_t		n = strlen(base);

	while (n > 0 && base[n - 1] == '/')
		n--;
	return pnstrdup(base, n);
}

/* The link to a profile's errors collection (LinkBase + errors_path). */
static char *
CollectionLink(const char *profile_id)
{
	const char *path = edusync_errors_path ? edusync_errors_path : "";
	const char *slot = strstr(path, "{profile_id}");
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, LinkBase());
	if (slot != NULL)
	{
		appendBinaryStringInfo(&buf, path, slot - path);
		appendStringInfoString(&buf, GraphEscapeSegment(profile_id));
		appendStringInfoString(&buf, slot + strlen("{profile_id}"));
	}
	else
		appendStringInfoString(&buf, path);
	return buf.data;
}

/* The profile id argument, validated; 23502 when NULL. */
static char *
ProfileIdArg(FunctionCallInfo fcinfo)
{
	char	   *profile_id;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("profile id must not be null")));
	profile_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ValidateProfileId(profile_id);
	return profile_id;
}

/* An optional text argument as a C string, NULL for SQL NULL. */
static char *
TextArg(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL :
		text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/* A new random (version 4) id, from the server's gen_random_uuid(). */
static void
NewId(pg_uuid_t *id)
{
	LOCAL_FCINFO(fcinfo, 0);

	InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
	memcpy(id, DatumGetUUIDP(gen_random_uuid(fcinfo)), sizeof(pg_uuid_t));
}

/*
 * The one create path of both overloads: finish validation, store (or
 * replay), hand a new error to forwarding, answer the 201 body.
 */
static Datum
CreateError(EdusyncError *err)
{
	Jsonb	   *answer;

	ValidateFields(err);
	if (!err->recorded_given)
		err->recorded_date_time = GetCurrentTransactionStartTimestamp();
	if (!err->id_given)
		NewId(&err->id);

	ForwardError(err, !StoreError(err));

	answer = AnswerJsonb(err, true);
	PG_RETURN_JSONB_P(answer);
}

PG_FUNCTION_INFO_V1(create_sync_error_body);

/* create_sync_error(profile_id text, body jsonb) */
Datum
create_sync_error_body(PG_FUNCTION_ARGS)
{
	EdusyncError err;

	memset(&err, 0, sizeof(err));
	err.profile_id = ProfileIdArg(fcinfo);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("request body must be a JSON object, not null")));
	ValidateBody(PG_GETARG_JSONB_P(1), &err);
	return CreateError(&err);
}

PG_FUNCTION_INFO_V1(create_sync_error_args);

/*
 * create_sync_error(profile_id, entry_type, error_code, error_message,
 *					 joining_value, reportable_identifier, recorded_date_time, id)
 *
 * recorded_date_time defaults to now(); a value equal to now() is taken as
 * "not given", so that the replay of a known id ignores it as the JSON
 * overload ignores an absent recordedDateTime.
 */
Datum
create_sync_error_args(PG_FUNCTION_ARGS)
{
	EdusyncError err;

	memset(&err, 0, sizeof(err));
	err.profile_id = ProfileIdArg(fcinfo);
	err.entry_type = TextArg(fcinfo, 1);
	err.error_code = TextArg(fcinfo, 2);
	err.error_message = TextArg(fcinfo, 3);
	err.joining_value = TextArg(fcinfo, 4);
	err.reportable_identifier = TextArg(fcinfo, 5);
	if (!PG_ARGISNULL(6))
	{
		err.recorded_date_time = PG_GETARG_TIMESTAMPTZ(6);
		err.recorded_given =
			(err.recorded_date_time != GetCurrentTransactionStartTimestamp());
	}
	if (!PG_ARGISNULL(7))
	{
		memcpy(&err.id, PG_GETARG_UUID_P(7), sizeof(pg_uuid_t));
		err.id_given = true;
	}
	return CreateError(&err);
}

PG_FUNCTION_INFO_V1(get_sync_error);

/* get_sync_error(profile_id, id): the stored error's answer, or NULL. */
Datum
get_sync_error(PG_FUNCTION_ARGS)
{
	char	   *profile_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	EdusyncError err;

	if (!FetchError(profile_id, PG_GETARG_UUID_P(1), &err))
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(AnswerJsonb(&err, true));
}

PG_FUNCTION_INFO_V1(list_sync_errors);

/*
 * list_sync_errors(profile_id, top, skip): a Graph collection page,
 * newest first, with @odata.nextLink when more remain.
 */
Datum
list_sync_errors(PG_FUNCTION_ARGS)
{
	char	   *profile_id = ProfileIdArg(fcinfo);
	int32		top = PG_GETARG_INT32(1);
	int32		skip = PG_GETARG_INT32(2);
	EdusyncError *errs;
	int			n;
	JsonbParseState *state = NULL;
	JsonbValue	key;
	JsonbValue *res;

	if (top < 1 || top > LIST_TOP_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("top must be between 1 and %d", LIST_TOP_MAX)));
	if (skip < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("skip must not be negative")));

	/* one more than asked tells whether a next page exists */
	n = ListErrors(profile_id, (int64) top + 1, skip, &errs);
	if (n == 0 && !ProfileExists(profile_id))
		NoSuchProfile(profile_id);

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	PushPair(&state, "@odata.context",
			 psprintf("%s/$metadata#education/synchronizationProfiles('%s')/errors",
					  LinkBase(), GraphEscape(profile_id)));
	key.type = jbvString;
	key.val.string.val = "value";
	key.val.string.len = strlen("value");
	pushJsonbValue(&state, WJB_KEY, &key);
	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < Min(n, top); i++)
		PushAnswer(&state, &errs[i], true);
	pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	if (n > top)
	{
		char	   *link = CollectionLink(profile_id);

		PushPair(&state, "@odata.nextLink",
				 psprintf("%s%c$top=%d&$skip=%lld", link,
						  strchr(link, '?') ? '&' : '?',
						  top, (long long) skip + top));
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);

	PG_RETURN_JSONB_P(JsonbValueToJsonb(res));
}

PG_FUNCTION_INFO_V1(retry_failed);

/*
 * retry_failed(profile_id DEFAULT NULL): queue failed deliveries (of one
 * profile, or of all) again with a fresh count of attempts; returns how
 * many.  The worker is woken when the transaction commits.
 */
Datum
retry_failed(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[] = {TEXTOID};
	Datum		values[1];
	char		nulls[1];
	uint64		n;

	nulls[0] = PG_ARGISNULL(0) ? 'n' : ' ';
	values[0] = PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0);

	SPI_connect();
	RunPlan(&plan,
			"UPDATE edusync.deliveries "
			"SET status = 'pending', attempts = 0, next_attempt_at = pg_catalog.now() "
			"WHERE status OPERATOR(pg_catalog.=) 'failed' "
			"AND ($1 IS NULL OR profile_id OPERATOR(pg_catalog.=) $1)",
			1, types, values, nulls, false, 0);
	n = SPI_processed;
	SPI_finish();

	if (n > 0)
		WakeWorkerAtCommit();
	PG_RETURN_INT64((int64) n);
}
