/*-------------------------------------------------------------------------
 *
 * token.h
 *	  The bearer token edusync sends to Graph: a static one, or one from
 *	  the OAuth2 client-credentials flow, cached per process.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_TOKEN_H
#define EDUSYNC_TOKEN_H

typedef enum TokenStatus
{
	TOKEN_OK,					/* *token set (NULL: no auth configured) */
	TOKEN_UNREACHABLE,			/* token endpoint unreachable: YG002 */
	TOKEN_REJECTED				/* token endpoint answered an error: YG003 */
} TokenStatus;

/*
 * The token to send: edusync.bearer_token when set, else one obtained by
 * the client-credentials flow and cached (per process) until shortly
 * before it expires; force_refresh drops the cached one first (after a
 * 401).  On failure, *detail says why without any secret.
 */
extern TokenStatus TokenGet(bool force_refresh, long timeout_ms,
							const char **token, char **detail);

extern bool TokenIsStatic(void);

#endif							/* EDUSYNC_TOKEN_H */
