/*-------------------------------------------------------------------------
 *
 * graph_url.h
 *	  URL safety: building and checking every URL edusync sends to.  Each
 *	  builder raises 22023 (before any traffic) for a malformed URL, a
 *	  scheme other than https, http to a host that is not loopback
 *	  (127.0.0.0/8, ::1, localhost), user information, a fragment, or an
 *	  errors_path without {profile_id}.  Results are palloc'd.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_GRAPH_URL_H
#define EDUSYNC_GRAPH_URL_H

extern const char *GraphUrlProblem(const char *url, bool allow_query,
								   char **host);
extern void GraphCheckSendUrl(const char *url);
extern size_t GraphBaseLength(const char *base);
extern const char *GraphErrorsPathProblem(const char *path, const char **slot);
extern char *GraphErrorsUrl(const char *profile_id);	/* graph_url +
														 * errors_path */
extern char *GraphBatchUrl(void);	/* graph_url + "/$batch" */
extern char *GraphTokenUrl(void);	/* token_url with {tenant} escaped */
extern char *GraphEscape(const char *s);	/* percent-encode one form
											 * value */
extern char *GraphEscapeSegment(const char *s); /* one path segment, dot
												 * segments included */

#endif							/* EDUSYNC_GRAPH_URL_H */
