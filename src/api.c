/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The SQL-callable functions: create_sync_error (both overloads, one
 *	  code path), create_sync_errors (many bodies in one statement),
 *	  get_sync_error, list_sync_errors, retry_failed, version.
 *	  Each checks its arguments and hands the work to the module whose
 *	  concern it is.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
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
#include "recent.h"
#include "registry.h"
#include "settings.h"
#include "skiptoken.h"
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
extern PGDLLEXPORT Datum create_sync_errors(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum get_sync_error(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum list_sync_errors(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum retry_failed(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum edusync_version(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum worker_status(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum queue_errors(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum retry_delivery(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum cancel_delivery(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum delivered_last_hour(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum deliveries_removed(PG_FUNCTION_ARGS);

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

/*
 * Run work, the body of a SECURITY DEFINER entry point, with the search path
 * pinned (compat.h's PinSearchPath: pg_catalog only) and the SQL version
 * checked.  Every statement edusync runs qualifies its names as well; the
 * pin keeps anything else the call may look up by name from following the
 * caller's search_path, as the functions run as the extension's owner.
 */
static Datum
DefinerCall(Datum (*work) (FunctionCallInfo), FunctionCallInfo fcinfo)
{
	int			pin = PinSearchPath();
	Datum		result;

	RequireKnownSql();
	result = work(fcinfo);
	UnpinSearchPath(pin);
	return result;
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
	return pnstrdup(base, GraphBaseLength(base));
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
	Jsonb	   *volatile answer = NULL;

	ValidateFields(err);
	if (!err->recorded_given)
		err->recorded_date_time = GetCurrentTransactionStartTimestamp();
	if (!err->id_given)
		NewId(&err->id);

	/*
	 * A sync send of a new error may go on the wire before the row is
	 * stored, so that the endpoint answers while the INSERT runs and the
	 * answer is built (ForwardSyncEarly says when that is safe).
	 */
	(void) ForwardSyncEarly(err);
	PG_TRY();
	{
		bool		inserted = StoreError(err);	/* err: the stored row */

		answer = AnswerJsonb(err, true);
		ForwardError(err, !inserted);
	}
	PG_CATCH();
	{
		ForwardSyncAbandon();	/* what ForwardSyncEarly began, if anything */
		PG_RE_THROW();
	}
	PG_END_TRY();

	PG_RETURN_JSONB_P(answer);
}


/* create_sync_error(profile_id text, body jsonb) */
static Datum
CreateFromBody(FunctionCallInfo fcinfo)
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

PG_FUNCTION_INFO_V1(create_sync_error_body);

Datum
create_sync_error_body(PG_FUNCTION_ARGS)
{
	return DefinerCall(CreateFromBody, fcinfo);
}


/*
 * create_sync_error(profile_id, entry_type, error_code, error_message,
 *					 joining_value, reportable_identifier, recorded_date_time, id)
 *
 * recorded_date_time defaults to NULL, "not given": the time of the call,
 * and a replay of a known id ignores it, as the JSON overload ignores an
 * absent recordedDateTime.
 */
static Datum
CreateFromArgs(FunctionCallInfo fcinfo)
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
		err.recorded_given = true;
	}
	if (!PG_ARGISNULL(7))
	{
		memcpy(&err.id, PG_GETARG_UUID_P(7), sizeof(pg_uuid_t));
		err.id_given = true;
	}
	return CreateError(&err);
}

PG_FUNCTION_INFO_V1(create_sync_error_args);

Datum
create_sync_error_args(PG_FUNCTION_ARGS)
{
	return DefinerCall(CreateFromArgs, fcinfo);
}

/*
 * Read and validate every element of bodies into errs (n of them), as the
 * single create does, defaults included.  An error names its element:
 * "bodies[3]: property ..." (0-based), keeping its SQLSTATE, detail and hint.
 */
static void
ValidateBodies(Jsonb *bodies, const char *profile_id, EdusyncError *errs, int n)
{
	MemoryContext mcxt = CurrentMemoryContext;
	volatile int index = -1;

	PG_TRY();
	{
		JsonbIterator *it = JsonbIteratorInit(&bodies->root);
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			EdusyncError *err;

			if (tok != WJB_ELEM)
				continue;
			CHECK_FOR_INTERRUPTS();
			index++;
			Assert(index < n);
			err = &errs[index];
			memset(err, 0, sizeof(*err));
			err->profile_id = (char *) profile_id;
			if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg(v.type == jbvNull ?
								"request body must be a JSON object, not null" :
								"request body must be a JSON object")));
			ValidateBodyContainer(v.val.binary.data, err);
			ValidateFields(err);
			if (!err->recorded_given)
				err->recorded_date_time = GetCurrentTransactionStartTimestamp();
			if (!err->id_given)
				NewId(&err->id);
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int			category;

		MemoryContextSwitchTo(mcxt);
		edata = CopyErrorData();
		category = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
		/* a cancel, a shortage or a bug is not the element's fault */
		if (index < 0 ||
			category == ERRCODE_OPERATOR_INTERVENTION ||
			category == ERRCODE_INSUFFICIENT_RESOURCES ||
			category == ERRCODE_INTERNAL_ERROR)
			PG_RE_THROW();
		FlushErrorState();
		edata->message = psprintf("bodies[%d]: %s", index, edata->message);
		ReThrowError(edata);
	}
	PG_END_TRY();
}


/*
 * create_sync_errors(profile_id, bodies): a JSON array of request bodies,
 * all validated before any is stored, stored in one statement, then
 * forwarded as create_sync_error forwards each (sync: in $batch requests);
 * one 201 body per element, in the array's order.
 */
static Datum
CreateMany(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *profile_id;
	Jsonb	   *bodies;
	MemoryContext call_cxt;
	MemoryContext row_cxt;
	MemoryContext old;
	EdusyncError *errs;
	bool	   *inserted;
	int			n;

	profile_id = ProfileIdArg(fcinfo);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("bodies must be a JSON array, not null")));
	bodies = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_ARRAY(bodies) || JB_ROOT_IS_SCALAR(bodies))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("bodies must be a JSON array of request bodies")));
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	call_cxt = AllocSetContextCreate(CurrentMemoryContext,
									 "edusync create_sync_errors",
									 ALLOCSET_DEFAULT_SIZES);
	row_cxt = AllocSetContextCreate(call_cxt, "edusync create_sync_errors row",
									ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(call_cxt);

	n = JB_ROOT_COUNT(bodies);
	if (n == 0 && !StoreProfileExists(profile_id))
		StoreNoSuchProfile(profile_id);
	errs = palloc(sizeof(EdusyncError) * Max(n, 1));
	inserted = palloc(sizeof(bool) * Max(n, 1));
	ValidateBodies(bodies, profile_id, errs, n);
	StoreErrors(errs, n, inserted);
	ForwardErrors(errs, inserted, n);

	for (int i = 0; i < n; i++)
	{
		Datum		answer;
		bool		isnull = false;

		CHECK_FOR_INTERRUPTS();
		MemoryContextSwitchTo(row_cxt);
		answer = JsonbPGetDatum(AnswerJsonb(&errs[i], true));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &answer, &isnull);
		MemoryContextReset(row_cxt);
	}

	MemoryContextSwitchTo(old);
	MemoryContextDelete(call_cxt);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(create_sync_errors);

Datum
create_sync_errors(PG_FUNCTION_ARGS)
{
	return DefinerCall(CreateMany, fcinfo);
}


/* get_sync_error(profile_id, id): the stored error's answer, or NULL. */
static Datum
GetOne(FunctionCallInfo fcinfo)
{
	char	   *profile_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	EdusyncError err;

	if (!StoreFetchError(profile_id, PG_GETARG_UUID_P(1), &err))
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(AnswerJsonb(&err, true));
}

PG_FUNCTION_INFO_V1(get_sync_error);

Datum
get_sync_error(PG_FUNCTION_ARGS)
{
	return DefinerCall(GetOne, fcinfo);
}


/*
 * list_sync_errors(profile_id, top, skip, skiptoken): a Graph collection
 * page, newest first, after the row skiptoken names (from the start when
 * it is NULL), then skip rows further; with @odata.nextLink, carrying the
 * $skiptoken of the page's last row, when more remain.  NULL profile_id,
 * top or skip give NULL, as the function did when it was STRICT.
 */
static Datum
ListPage(FunctionCallInfo fcinfo)
{
	char	   *profile_id;
	int32		top;
	int32		skip;
	ListKey		after;
	bool		has_after = false;
	EdusyncError *errs;
	int			n;
	JsonbParseState *state = NULL;
	JsonbValue	key;
	JsonbValue *res;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	profile_id = ProfileIdArg(fcinfo);
	top = PG_GETARG_INT32(1);
	skip = PG_GETARG_INT32(2);

	if (top < 1 || top > LIST_TOP_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("top must be between 1 and %d", LIST_TOP_MAX)));
	if (skip < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("skip must not be negative")));
	if (!PG_ARGISNULL(3))
	{
		SkiptokenDecode(profile_id, text_to_cstring(PG_GETARG_TEXT_PP(3)), &after);
		has_after = true;
	}

	/* one more than asked tells whether a next page exists */
	n = StoreListErrors(profile_id, has_after ? &after : NULL,
						(int64) top + 1, skip, &errs);
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
		ListKey		last;

		last.recorded_date_time = errs[top - 1].recorded_date_time;
		last.id = errs[top - 1].id;
		/* base64url: nothing in a token needs percent-encoding */
		AnswerPushPair(&state, "@odata.nextLink",
				 psprintf("%s%c$top=%d&$skiptoken=%s", link,
						  strchr(link, '?') ? '&' : '?',
						  top, SkiptokenEncode(profile_id, &last)));
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);

	PG_RETURN_JSONB_P(JsonbValueToJsonb(res));
}

PG_FUNCTION_INFO_V1(list_sync_errors);

Datum
list_sync_errors(PG_FUNCTION_ARGS)
{
	return DefinerCall(ListPage, fcinfo);
}


/*
 * retry_failed(profile_id DEFAULT NULL): queue failed deliveries (of one
 * profile, or of all) again with a fresh count of attempts; returns how
 * many.  An unknown profile is refused as list_sync_errors refuses it.
 */
static Datum
RetryFailed(FunctionCallInfo fcinfo)
{
	char	   *profile_id = NULL;
	uint64		n;

	if (!PG_ARGISNULL(0))
	{
		profile_id = ProfileIdArg(fcinfo);
		if (!StoreProfileExists(profile_id))
			StoreNoSuchProfile(profile_id);
	}
	n = OutboxRetryFailed(profile_id);
	PG_RETURN_INT64((int64) n);
}

PG_FUNCTION_INFO_V1(retry_failed);

Datum
retry_failed(PG_FUNCTION_ARGS)
{
	return DefinerCall(RetryFailed, fcinfo);
}

PG_FUNCTION_INFO_V1(edusync_version);

/* version(): the library's version (the Makefile's EXTVERSION). */
Datum
edusync_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(EDUSYNC_VERSION));
}


/*
 * worker_status(): per database the launcher looks after, its delivery
 * worker's state, what it is doing and why, and its counters since start.
 */
static Datum
WorkerStatus(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SlotStatus *slots = palloc(sizeof(SlotStatus) * REGISTRY_MAX_DATABASES);
	int			n;

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

PG_FUNCTION_INFO_V1(worker_status);

Datum
worker_status(PG_FUNCTION_ARGS)
{
	return DefinerCall(WorkerStatus, fcinfo);
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


/*
 * queue_errors(profile_id, ids uuid[] DEFAULT NULL): queue for the delivery
 * worker the errors of a profile (all, or those in ids) that were never
 * forwarded, e.g. created while forwarding was off; returns how many.
 */
static Datum
QueueErrors(FunctionCallInfo fcinfo)
{
	char	   *profile_id;
	uint64		n;

	profile_id = KnownProfileArg(fcinfo);
	ForwardRequireAsync();
	n = OutboxQueueUnsent(profile_id, PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1),
						  PG_ARGISNULL(1));
	PG_RETURN_INT64((int64) n);
}

PG_FUNCTION_INFO_V1(queue_errors);

Datum
queue_errors(PG_FUNCTION_ARGS)
{
	return DefinerCall(QueueErrors, fcinfo);
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


/* retry_delivery(profile_id, error_id): queue one failed delivery again. */
static Datum
RetryDelivery(FunctionCallInfo fcinfo)
{
	char	   *profile_id;

	profile_id = KnownProfileArg(fcinfo);
	PG_RETURN_BOOL(OutboxSetOne(profile_id, ErrorIdArg(fcinfo), "failed", NULL));
}

PG_FUNCTION_INFO_V1(retry_delivery);

Datum
retry_delivery(PG_FUNCTION_ARGS)
{
	return DefinerCall(RetryDelivery, fcinfo);
}


/*
 * cancel_delivery(profile_id, error_id): a pending delivery becomes failed,
 * "cancelled by" the session user; one already in flight may still arrive.
 */
static Datum
CancelDelivery(FunctionCallInfo fcinfo)
{
	char	   *profile_id;

	profile_id = KnownProfileArg(fcinfo);
	PG_RETURN_BOOL(OutboxSetOne(profile_id, ErrorIdArg(fcinfo), "pending",
								psprintf("cancelled by %s",
										 GetUserNameFromId(GetSessionUserId(), false))));
}

PG_FUNCTION_INFO_V1(cancel_delivery);

Datum
cancel_delivery(PG_FUNCTION_ARGS)
{
	return DefinerCall(CancelDelivery, fcinfo);
}


/* delivered_last_hour(): what delivery_queue shows as delivered_last_hour */
static Datum
DeliveredLastHour(FunctionCallInfo fcinfo)
{
	PG_RETURN_INT64(RecentDeliveredLastHour());
}

PG_FUNCTION_INFO_V1(delivered_last_hour);

Datum
delivered_last_hour(PG_FUNCTION_ARGS)
{
	return DefinerCall(DeliveredLastHour, fcinfo);
}

/*
 * Trigger deliveries_removed (AFTER DELETE OR TRUNCATE on deliveries, per
 * statement): delivered_last_hour's ring may count rows that are gone.
 */
PG_FUNCTION_INFO_V1(deliveries_removed);

Datum
deliveries_removed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("deliveries_removed must be called as a trigger")));
	RecentRowsRemoved(TRIGGER_FIRED_BY_TRUNCATE(((TriggerData *) fcinfo->context)->tg_event));
	return PointerGetDatum(NULL);
}
