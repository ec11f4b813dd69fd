/*-------------------------------------------------------------------------
 *
 * settings.h
 *	  The edusync.* settings (defined in edusync.c) and the library's
 *	  version.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_SETTINGS_H
#define EDUSYNC_SETTINGS_H

/* The library's version: the Makefile's EXTVERSION. */
#ifndef EDUSYNC_VERSION
#error "EDUSYNC_VERSION must be defined by the Makefile"
#endif

/* Values of edusync.forward. */
typedef enum EdusyncForwardMode
{
	EDUSYNC_FORWARD_OFF,
	EDUSYNC_FORWARD_SYNC,
	EDUSYNC_FORWARD_ASYNC
} EdusyncForwardMode;

extern int	edusync_forward;
extern char *edusync_graph_url;
extern char *edusync_errors_path;
extern char *edusync_bearer_token;
extern char *edusync_bearer_token_file;
extern char *edusync_tenant_id;
extern char *edusync_client_id;
extern char *edusync_client_secret;
extern char *edusync_client_secret_file;
extern char *edusync_token_url;
extern char *edusync_token_scope;
extern int	edusync_timeout_ms;
extern int	edusync_max_attempts;
extern int	edusync_batch_size;
extern int	edusync_delivered_retention_s;
extern int	edusync_max_in_flight;
extern char *edusync_databases;

/* True when the library was loaded through shared_preload_libraries. */
extern bool edusync_preloaded;

#endif							/* EDUSYNC_SETTINGS_H */
