/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The SQL-callable functions: create_sync_error (both overloads, one
 *	  code path), get_sync_error, list_sync_errors, retry_failed, version.
 *	  Each checks its arguments and hands the work to the module whose
 *	  concern it is.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "answer.h"
#include "forward.h"
#include "graph_url.h"
#include "outbox.h"
#include "registry.h"
#include "settings.h"
#include "store.h"
#include "validate.h"

/* Graph's own limit on $top. */
#define LIST_TOP_MAX	999

/*
 * The SQL-callable functions, exported (PG_FUNCTION_INFO_V1 marks only its
 * info function before PostgreSQL 16, and the library hides the rest).
 */
extern PGDLLEXPORT Datum create_sync_error_body(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum create_sync_error_args(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum get_sync_error(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum list_sync_errors(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum retry_failed(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum edusync_version(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum worker_status(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum queue_errors(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum retry_delivery(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum cancel_delivery(PG_FUNCTION_ARGS);

/*
 * Refuse to run against SQL objects of another version than the library's
 * (a library updated, the extension not): checked once per session.
 */
static void
RequireKnownSql(void)
{
	static bool checked = false;
	char	   *installed = NULL;

	if (checked)
		return;
	SPI_connect();
	if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension "
					"WHERE extname OPERATOR(pg_catalog.=) 'edusync'", true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
		installed = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (installed != NULL && strcmp(installed, EDUSYNC_VERSION) != 0)
	{
		char	   *copy = pstrdup(installed);

		SPI_finish();
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("edusync library %s does not run the SQL objects of edusync %s",
						EDUSYNC_VERSION, copy),
				 errhint("Run ALTER EXTENSION edusync UPDATE.")));
	}
	SPI_finish();
	checked = true;
}

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

	RequireKnownSql();
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
 * recorded_date_time defaults to NULL, "not given": the time of the call,
 * and a replay of a known id ignores it, as the JSON overload ignores an
 * absent recordedDateTime.
 */
Datum
create_sync_error_args(PG_FUNCTION_ARGS)
{
	EdusyncError err;

	RequireKnownSql();
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
		err.recorded_given = true;
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

	RequireKnownSql();
	if (!StoreFetchError(profile_id, PG_GETARG_UUID_P(1), &err))
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

	RequireKnownSql();
	if (top < 1 || top > LIST_TOP_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("top must be between 1 and %d", LIST_TOP_MAX)));
	if (skip < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("skip must not be negative")));

	/* one more than asked tells whether a next page exists */
	n = StoreListErrors(profile_id, (int64) top + 1, skip, &errs);
	if (n == 0 && !StoreProfileExists(profile_id))
		StoreNoSuchProfile(profile_id);

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	AnswerPushPair(&state, "@odata.context",
			 psprintf("%s/$metadata#education/synchronizationProfiles('%s')/errors",
					  LinkBase(), GraphEscape(profile_id)));
	key.type = jbvString;
	key.val.string.val = "value";
	key.val.string.len = strlen("value");
	pushJsonbValue(&state, WJB_KEY, &key);
	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < Min(n, top); i++)
		AnswerPush(&state, &errs[i], true);
	pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	if (n > top)
	{
		char	   *link = CollectionLink(profile_id);

		AnswerPushPair(&state, "@odata.nextLink",
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
 * many.  An unknown profile is refused as list_sync_errors refuses it.
 */
Datum
retry_failed(PG_FUNCTION_ARGS)
{
	char	   *profile_id = NULL;
	uint64		n;

	RequireKnownSql();
	if (!PG_ARGISNULL(0))
	{
		profile_id = ProfileIdArg(fcinfo);
		if (!StoreProfileExists(profile_id))
			StoreNoSuchProfile(profile_id);
	}
	n = OutboxRetryFailed(profile_id);
	PG_RETURN_INT64((int64) n);
}

PG_FUNCTION_INFO_V1(edusync_version);

/* version(): the library's version (the Makefile's EXTVERSION). */
Datum
edusync_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(EDUSYNC_VERSION));
}

PG_FUNCTION_INFO_V1(worker_status);

/*
 * worker_status(): per database the launcher looks after, its delivery
 * worker's state, what it is doing and why, and its counters since start.
 */
Datum
worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SlotStatus *slots = palloc(sizeof(SlotStatus) * REGISTRY_MAX_DATABASES);
	int			n;

	RequireKnownSql();
	InitMaterializedSRF(fcinfo, 0);
	n = RegistrySnapshot(slots, REGISTRY_MAX_DATABASES);
	for (int i = 0; i < n; i++)
	{
		SlotStatus *st = &slots[i];
		Datum		values[13];
		bool		nulls[13];
		char	   *dbname = get_database_name(st->dbid);

		memset(nulls, 0, sizeof(nulls));
		if (dbname == NULL)
			continue;
		values[0] = CStringGetTextDatum(dbname);
		values[1] = CStringGetTextDatum(RegistryStateName(st->state));
		values[2] = Int32GetDatum(st->pid);
		nulls[2] = (st->pid == 0);
		values[3] = TimestampTzGetDatum(st->since);
		nulls[3] = (st->since == 0);
		values[4] = CStringGetTextDatum(st->activity);
		nulls[4] = (st->activity[0] == '\0');
		values[5] = CStringGetTextDatum(st->detail);
		nulls[5] = (st->detail[0] == '\0');
		values[6] = TimestampTzGetDatum(st->last_success);
		nulls[6] = (st->last_success == 0);
		values[7] = Int64GetDatum(st->sent);
		values[8] = Int64GetDatum(st->delivered);
		values[9] = Int64GetDatum(st->retried);
		values[10] = Int64GetDatum(st->failed);
		values[11] = Int64GetDatum(st->throttled);
		values[12] = Int64GetDatum(st->batches);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* The profile argument of an operator's function: validated and known. */
static char *
KnownProfileArg(FunctionCallInfo fcinfo)
{
	char	   *profile_id = ProfileIdArg(fcinfo);

	if (!StoreProfileExists(profile_id))
		StoreNoSuchProfile(profile_id);
	return profile_id;
}

PG_FUNCTION_INFO_V1(queue_errors);

/*
 * queue_errors(profile_id, ids uuid[] DEFAULT NULL): queue for the delivery
 * worker the errors of a profile (all, or those in ids) that were never
 * forwarded, e.g. created while forwarding was off; returns how many.
 */
Datum
queue_errors(PG_FUNCTION_ARGS)
{
	char	   *profile_id;
	uint64		n;

	RequireKnownSql();
	profile_id = KnownProfileArg(fcinfo);
	ForwardRequireAsync();
	n = OutboxQueueUnsent(profile_id, PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1),
						  PG_ARGISNULL(1));
	PG_RETURN_INT64((int64) n);
}

/* The error id argument (argument 1), not null. */
static pg_uuid_t *
ErrorIdArg(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("error id must not be null")));
	return PG_GETARG_UUID_P(1);
}

PG_FUNCTION_INFO_V1(retry_delivery);

/* retry_delivery(profile_id, error_id): queue one failed delivery again. */
Datum
retry_delivery(PG_FUNCTION_ARGS)
{
	char	   *profile_id;

	RequireKnownSql();
	profile_id = KnownProfileArg(fcinfo);
	PG_RETURN_BOOL(OutboxSetOne(profile_id, ErrorIdArg(fcinfo), "failed", NULL));
}

PG_FUNCTION_INFO_V1(cancel_delivery);

/*
 * cancel_delivery(profile_id, error_id): a pending delivery becomes failed,
 * "cancelled by" the session user; one already in flight may still arrive.
 */
Datum
cancel_delivery(PG_FUNCTION_ARGS)
{
	char	   *profile_id;

	RequireKnownSql();
	profile_id = KnownProfileArg(fcinfo);
	PG_RETURN_BOOL(OutboxSetOne(profile_id, ErrorIdArg(fcinfo), "pending",
								psprintf("cancelled by %s",
										 GetUserNameFromId(GetSessionUserId(), false))));
}
