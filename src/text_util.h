/*-------------------------------------------------------------------------
 *
 * text_util.h
 *	  Small string helpers shared by several modules.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_TEXT_UTIL_H
#define EDUSYNC_TEXT_UTIL_H

/* Are two optional strings equal (NULL equals NULL)? */
static inline bool
SameString(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

#endif							/* EDUSYNC_TEXT_UTIL_H */
