/*-------------------------------------------------------------------------
 *
 * edusync.h
 *	  Shared declarations of the edusync extension: settings, the error
 *	  record, and the entry points each source file offers the others.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_H
#define EDUSYNC_H

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

/* Bounds of the contract, in characters. */
#define EDUSYNC_PROFILE_ID_MAX		256
#define EDUSYNC_STRING_MAX			1024
#define EDUSYNC_MESSAGE_MAX			8192

/* Values of edusync.forward. */
typedef enum EdusyncForwardMode
{
	EDUSYNC_FORWARD_OFF,
	EDUSYNC_FORWARD_SYNC,
	EDUSYNC_FORWARD_ASYNC
} EdusyncForwardMode;

/* Settings (defined in edusync.c). */
extern int	edusync_forward;
extern char *edusync_graph_url;
extern char *edusync_errors_path;
extern char *edusync_bearer_token;
extern char *edusync_tenant_id;
extern char *edusync_client_id;
extern char *edusync_client_secret;
extern char *edusync_token_url;
extern int	edusync_timeout_ms;
extern int	edusync_max_attempts;
extern int	edusync_batch_size;
extern char *edusync_database;

/* True when the library was loaded through shared_preload_libraries. */
extern bool edusync_preloaded;

/*
 * One educationSynchronizationError, validated.  Optional strings are NULL
 * when absent; the required ones never are.
 */
typedef struct EdusyncError
{
	char	   *profile_id;
	pg_uuid_t	id;
	bool		id_given;		/* false: the id was generated */
	char	   *entry_type;
	char	   *error_code;
	char	   *error_message;
	char	   *joining_value;
	char	   *reportable_identifier;
	TimestampTz recorded_date_time;
	bool		recorded_given; /* false: the time of the call */
} EdusyncError;

/* validate.c */
extern void ValidateProfileId(const char *profile_id);
extern void ValidateBody(Jsonb *body, EdusyncError *err);
extern void ValidateFields(EdusyncError *err);

/* answer.c */
extern void PushPair(JsonbParseState **state, const char *key,
					 const char *value);
extern JsonbValue *PushAnswer(JsonbParseState **state,
							  const EdusyncError *err, bool with_id);
extern Jsonb *AnswerJsonb(const EdusyncError *err, bool with_id);
extern char *RequestBody(const EdusyncError *err);
extern char *FormatDateTimeOffset(TimestampTz ts);
extern char *FormatGuid(const pg_uuid_t *id);

/* store.c */
extern int	RunPlan(SPIPlanPtr *plan, const char *sql, int nargs,
					const Oid *types, Datum *values, const char *nulls,
					bool read_only, long count);
extern bool ProfileExists(const char *profile_id);
extern void NoSuchProfile(const char *profile_id);
extern bool StoreError(EdusyncError *err);
extern bool FetchError(const char *profile_id, const pg_uuid_t *id,
					   EdusyncError *err);
extern int	ListErrors(const char *profile_id, int64 limit, int64 skip,
					   EdusyncError **errs);

/* What one answer from Graph means, for sync mode and the worker alike. */
typedef enum OutcomeKind
{
	OUTCOME_DELIVERED,			/* 2xx: remote_id set when Graph gave one */
	OUTCOME_RETRY,				/* transport error, 408, 429, 5xx: try again */
	OUTCOME_REJECTED,			/* any other 4xx: permanent */
	OUTCOME_AUTH				/* 401 or 403 */
} OutcomeKind;

typedef struct Outcome
{
	OutcomeKind kind;
	long		status;			/* HTTP status, 0 when no answer came */
	double		retry_after;	/* seconds, -1 when not given */
	char	   *remote_id;
	char	   *reason;			/* "code: message" of Graph, or why no answer */
} Outcome;

/* forward.c */
extern void ForwardError(const EdusyncError *err, bool replay);
extern void WakeWorkerAtCommit(void);
struct RemoteAnswer;
extern void ClassifyResponse(long status, const char *body, size_t body_len,
							 double retry_after, const char *transport_error,
							 Outcome *out);
extern void ClassifyAnswer(long status, const struct RemoteAnswer *ans,
						   double retry_after, const char *transport_error,
						   Outcome *out);
extern char *Sentence(const char *text);

/* worker.c */
extern void WorkerRegister(void);
extern void WorkerWake(void);
extern bool WorkerServesDatabase(Oid dbid);

#endif							/* EDUSYNC_H */
