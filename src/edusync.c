/*-------------------------------------------------------------------------
 *
 * edusync.c
 *	  Module entry: the edusync.* settings, each checked when set, and, when
 *	  the library is preloaded, the shared registry and the launcher.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "compat.h"
#include "graph_url.h"
#include "launcher.h"
#include "registry.h"
#include "settings.h"

PG_MODULE_MAGIC;

#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

int			edusync_forward = EDUSYNC_FORWARD_OFF;
char	   *edusync_graph_url = NULL;
char	   *edusync_errors_path = NULL;
char	   *edusync_bearer_token = NULL;
char	   *edusync_bearer_token_file = NULL;
char	   *edusync_tenant_id = NULL;
char	   *edusync_client_id = NULL;
char	   *edusync_client_secret = NULL;
char	   *edusync_client_secret_file = NULL;
char	   *edusync_token_url = NULL;
char	   *edusync_token_scope = NULL;
int			edusync_timeout_ms = 10000;
int			edusync_max_attempts = 8;
int			edusync_batch_size = 1;
int			edusync_delivered_retention_s = 0;
int			edusync_max_in_flight = 8;
char	   *edusync_databases = NULL;
bool		edusync_preloaded = false;

static const struct config_enum_entry forward_options[] = {
	{"off", EDUSYNC_FORWARD_OFF, false},
	{"sync", EDUSYNC_FORWARD_SYNC, false},
	{"async", EDUSYNC_FORWARD_ASYNC, false},
	{NULL, 0, false}
};

PGDLLEXPORT void _PG_init(void);

/* Refuse a URL setting's value in a check hook, saying why. */
static bool
RefuseUrl(const char *problem)
{
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errdetail("%s", problem);
	return false;
}

/* edusync.graph_url: empty (not configured), or a URL safe to send to. */
static bool
CheckGraphUrl(char **newval, void **extra, GucSource source)
{
	const char *problem;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	problem = GraphUrlProblem(*newval, false, NULL);
	return problem ? RefuseUrl(problem) : true;
}

/*
 * edusync.errors_path: starts with "/", holds {profile_id} exactly once,
 * and makes a safe URL below a base.  (That it keeps graph_url's host is
 * checked when a URL is built from both.)
 */
static bool
CheckErrorsPath(char **newval, void **extra, GucSource source)
{
	const char *path = *newval;
	const char *slot = NULL;
	const char *problem = GraphErrorsPathProblem(path, &slot);

	if (problem != NULL)
		return RefuseUrl(problem);
	problem = GraphUrlProblem(psprintf("https://graph.invalid%.*sp%s",
									   (int) (slot - path), path,
									   slot + strlen("{profile_id}")),
							  true, NULL);
	return problem ? RefuseUrl(problem) : true;
}

/* edusync.token_url: a URL safe to send to once {tenant} is filled in. */
static bool
CheckTokenUrl(char **newval, void **extra, GucSource source)
{
	StringInfoData url;
	const char *p = *newval;
	const char *slot;
	const char *problem;

	if (p == NULL || p[0] == '\0')
		return RefuseUrl("The URL is empty.");
	initStringInfo(&url);
	while ((slot = strstr(p, "{tenant}")) != NULL)
	{
		appendBinaryStringInfo(&url, p, slot - p);
		appendStringInfoString(&url, "tenant");
		p = slot + strlen("{tenant}");
	}
	appendStringInfoString(&url, p);
	problem = GraphUrlProblem(url.data, true, NULL);
	return problem ? RefuseUrl(problem) : true;
}

/* edusync.databases: empty, or a list of database names. */
static bool
CheckDatabases(char **newval, void **extra, GucSource source)
{
	char	   *copy;
	List	   *names;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	copy = pstrdup(*newval);
	if (!SplitIdentifierString(copy, ',', &names))
	{
		GUC_check_errdetail("List syntax is invalid.");
		return false;
	}
	return true;
}

/* A secret's file: empty, or an absolute path. */
static bool
CheckSecretFile(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0' || is_absolute_path(*newval))
		return true;
	GUC_check_errdetail("The path must be absolute.");
	return false;
}

/*
 * Define the settings; when loaded at server start, reserve the registry
 * and register the launcher.  Nothing during pg_upgrade.
 */
void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	edusync_preloaded = process_shared_preload_libraries_in_progress;

	DefineCustomEnumVariable("edusync.forward",
							 "Sets whether new errors are forwarded to Graph: off, sync or async.",
							 "sync sends inside the call; async sends after commit from the delivery worker.",
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
							   CheckGraphUrl, NULL, NULL);

	DefineCustomStringVariable("edusync.errors_path",
							   "Sets the path, below graph_url, of a profile's errors collection.",
							   "It must contain {profile_id}, which is replaced by the percent-encoded profile id.",
							   &edusync_errors_path,
							   "/education/synchronizationProfiles/{profile_id}/errors",
							   PGC_SUSET,
							   0,
							   CheckErrorsPath, NULL, NULL);

	DefineCustomStringVariable("edusync.bearer_token",
							   "Sets a static bearer token for Graph.",
							   "Prefer edusync.bearer_token_file: a value here can reach the server log when it changes.",
							   &edusync_bearer_token,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("edusync.bearer_token_file",
							   "Sets the file that holds a static bearer token for Graph.",
							   "Owned by the server's user, without group or other access; read again when it changes.",
							   &edusync_bearer_token_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   CheckSecretFile, NULL, NULL);

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
							   "Prefer edusync.client_secret_file: a value here can reach the server log when it changes.",
							   &edusync_client_secret,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("edusync.client_secret_file",
							   "Sets the file that holds the client secret of the client-credentials flow.",
							   "Owned by the server's user, without group or other access; read again when it changes.",
							   &edusync_client_secret_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   CheckSecretFile, NULL, NULL);

	DefineCustomStringVariable("edusync.token_url",
							   "Sets the OAuth2 token endpoint; {tenant} is replaced by tenant_id.",
							   NULL,
							   &edusync_token_url,
							   "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
							   PGC_SUSET,
							   0,
							   CheckTokenUrl, NULL, NULL);

	DefineCustomStringVariable("edusync.token_scope",
							   "Sets the scope asked for in the client-credentials flow.",
							   "Graph's own is https://graph.microsoft.com/.default; national clouds have theirs.",
							   &edusync_token_scope,
							   "https://graph.microsoft.com/.default",
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

	DefineCustomIntVariable("edusync.delivered_retention",
							"Sets how long delivered rows stay in edusync.deliveries; 0 keeps them.",
							"The delivery workers delete older ones in small batches.  A replay of an error whose delivered row is gone is forwarded again.",
							&edusync_delivered_retention_s,
							0,
							0,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("edusync.max_in_flight",
							"Sets how many requests the delivery worker keeps in flight at once.",
							"Also the most connections it opens to one host; over HTTP/2 the requests share one connection.",
							&edusync_max_in_flight,
							8,
							1,
							64,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("edusync.databases",
							   "Sets the databases that get a delivery worker; empty: every database where edusync is installed.",
							   "A comma-separated list of database names.",
							   &edusync_databases,
							   "",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   CheckDatabases, NULL, NULL);

	MarkGUCPrefixReserved("edusync");

	if (edusync_preloaded)
	{
		RegistryInit();
		LauncherRegister();
	}
}
