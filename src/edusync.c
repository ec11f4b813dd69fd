/*-------------------------------------------------------------------------
 *
 * edusync.c
 *	  Module entry: the edusync.* settings and the background worker's
 *	  registration.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "edusync.h"

PG_MODULE_MAGIC;

#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

int			edusync_forward = EDUSYNC_FORWARD_OFF;
char	   *edusync_graph_url = NULL;
char	   *edusync_errors_path = NULL;
char	   *edusync_bearer_token = NULL;
char	   *edusync_tenant_id = NULL;
char	   *edusync_client_id = NULL;
char	   *edusync_client_secret = NULL;
char	   *edusync_token_url = NULL;
int			edusync_timeout_ms = 10000;
int			edusync_max_attempts = 8;
int			edusync_batch_size = 1;
char	   *edusync_database = NULL;
bool		edusync_preloaded = false;

static const struct config_enum_entry forward_options[] = {
	{"off", EDUSYNC_FORWARD_OFF, false},
	{"sync", EDUSYNC_FORWARD_SYNC, false},
	{"async", EDUSYNC_FORWARD_ASYNC, false},
	{NULL, 0, false}
};

void		_PG_init(void);

/* Define the settings; register the worker when loaded at server start. */
void
_PG_init(void)
{
	edusync_preloaded = process_shared_preload_libraries_in_progress;

	DefineCustomEnumVariable("edusync.forward",
							 "Sets whether new errors are forwarded to Graph: off, sync or async.",
							 "sync sends inside the call; async sends after commit from the background worker.",
							 &edusync_forward,
							 EDUSYNC_FORWARD_OFF,
							 forward_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("edusync.graph_url",
							   "Sets the base URL of the Graph endpoint errors are forwarded to.",
							   "Empty: forwarding is refused until it is set.  https only, or http to a loopback host.  Graph itself is https://graph.microsoft.com/beta.",
							   &edusync_graph_url,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("edusync.errors_path",
							   "Sets the path, below graph_url, of a profile's errors collection.",
							   "It must contain {profile_id}, which is replaced by the percent-encoded profile id.",
							   &edusync_errors_path,
							   "/education/synchronizationProfiles/{profile_id}/errors",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("edusync.bearer_token",
							   "Sets a static bearer token for Graph.",
							   "When set, it is used instead of the client-credentials flow.",
							   &edusync_bearer_token,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("edusync.tenant_id",
							   "Sets the Azure AD tenant of the client-credentials flow.",
							   NULL,
							   &edusync_tenant_id,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("edusync.client_id",
							   "Sets the application (client) id of the client-credentials flow.",
							   NULL,
							   &edusync_client_id,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("edusync.client_secret",
							   "Sets the client secret of the client-credentials flow.",
							   NULL,
							   &edusync_client_secret,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("edusync.token_url",
							   "Sets the OAuth2 token endpoint; {tenant} is replaced by tenant_id.",
							   NULL,
							   &edusync_token_url,
							   "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("edusync.timeout",
							"Sets the time limit of one HTTP request.",
							"In sync mode it also bounds the whole send, retries included.",
							&edusync_timeout_ms,
							10000,
							100,
							600000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("edusync.max_attempts",
							"Sets how many times one error is sent before it is given up.",
							NULL,
							&edusync_max_attempts,
							8,
							1,
							1000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("edusync.batch_size",
							"Sets how many errors the worker sends in one request; above 1 it uses $batch.",
							NULL,
							&edusync_batch_size,
							1,
							1,
							20,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	/* the worker's database can only be chosen at server start */
	if (edusync_preloaded)
		DefineCustomStringVariable("edusync.database",
								   "Sets the database the background worker delivers from.",
								   NULL,
								   &edusync_database,
								   "postgres",
								   PGC_POSTMASTER,
								   0,
								   NULL, NULL, NULL);

	MarkGUCPrefixReserved("edusync");

	if (edusync_preloaded)
		WorkerRegister();
}
