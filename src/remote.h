/*-------------------------------------------------------------------------
 *
 * remote.h
 *	  What an endpoint answers is untrusted: the one JSON reader for remote
 *	  answers (it never raises), and the cleaning every remote text goes
 *	  through before it reaches a message, a log line or a table.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_REMOTE_H
#define EDUSYNC_REMOTE_H

/* Longest remote id kept, and longest remote message, in characters. */
#define REMOTE_ID_MAX		256
#define REMOTE_TEXT_MAX		512

/*
 * Called for each scalar of a JSON answer: its path from the root, keys
 * and array positions joined by '/' ("error/code", "responses/0/status"),
 * whether it is a string, and its text (strings unescaped; raw UTF-8, not
 * yet cleaned).
 */
typedef void (*RemoteJsonVisit) (void *arg, const char *path, bool is_string,
								 const char *value);

/*
 * Walk a JSON answer with the server's parser, never raising: invalid
 * UTF-8, odd numbers, escapes the database cannot hold and hostile nesting
 * are all survived.  False when the body is not JSON.
 */
extern bool RemoteJsonWalk(const char *body, size_t len, RemoteJsonVisit visit,
						   void *arg);

/*
 * Remote text made safe: every secret edusync sends (raw or
 * percent-encoded) replaced by "[redacted]", control characters by spaces,
 * cut to max_chars characters, converted to the server encoding with
 * unconvertible characters replaced by '?'.
 */
extern char *RemoteText(const char *text, size_t len, int max_chars);

/* The secrets redacted from remote text: set by token.c as it uses them. */
#define REMOTE_SECRET_STATIC	0	/* the static bearer token */
#define REMOTE_SECRET_CLIENT	1	/* the client secret */
#define REMOTE_SECRET_FETCHED	2	/* the token the flow fetched */
#define REMOTE_SECRETS			3
extern void RemoteSetSecret(int which, const char *secret);

/* What edusync reads of a Graph answer body, each cleaned; NULL if absent. */
typedef struct RemoteAnswer
{
	char	   *id;				/* the created resource's id */
	char	   *code;			/* error.code */
	char	   *message;		/* error.message */
	char	   *request_id;		/* error.innerError.request-id */
} RemoteAnswer;

/* Read a Graph answer body (never raises; all fields NULL if unreadable). */
extern void RemoteReadAnswer(const char *body, size_t len, RemoteAnswer *ans);

/* Feed one scalar at path (relative to an answer body) into ans. */
extern void RemoteAnswerVisit(RemoteAnswer *ans, const char *path,
							  bool is_string, const char *value);

#endif							/* EDUSYNC_REMOTE_H */
