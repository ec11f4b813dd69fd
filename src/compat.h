/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  What differs between the PostgreSQL versions edusync compiles
 *	  against, in one place.  Include it after "postgres.h".
 *
 *	  Built and tested: 15.  Compiled (objects only) against configured
 *	  16, 17 and 18 source trees by test/compile-versions.sh.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_COMPAT_H
#define EDUSYNC_COMPAT_H

/*
 * A JSON lexer over json[0..len) that keeps de-escaped strings.  17 added a
 * JsonLexContext * first argument (NULL: allocate one) and made len a size_t
 * and json const; 15 and 16 take a char * and an int.
 */
#if PG_VERSION_NUM >= 170000
#define EdusyncJsonLexer(json, len, encoding) \
	makeJsonLexContextCstringLen(NULL, (json), (len), (encoding), true)
#else
#define EdusyncJsonLexer(json, len, encoding) \
	makeJsonLexContextCstringLen((char *) (json), (int) (len), (encoding), true)
#endif

/*
 * The return type of a JSON semantic action and how one returns: 16 made
 * the actions return a JsonParseErrorType; before 16 they return void.
 */
#if PG_VERSION_NUM >= 160000
#define EDUSYNC_JSON_ACTION		JsonParseErrorType
#define EDUSYNC_JSON_DONE		return JSON_SUCCESS
#else
#define EDUSYNC_JSON_ACTION		void
#define EDUSYNC_JSON_DONE		return
#endif

/*
 * This backend's number in the PGPROC array (for GetPGProcByNumber).  17
 * removed PGPROC.pgprocno; MyProcNumber (storage/procnumber.h, included by
 * storage/proc.h) holds it instead.
 */
#if PG_VERSION_NUM >= 170000
#define EDUSYNC_MY_PROCNO		((int) MyProcNumber)
#else
#define EDUSYNC_MY_PROCNO		(MyProc->pgprocno)
#endif

/*
 * A function that never returns.  18 replaced the trailing
 * pg_attribute_noreturn() with pg_noreturn, written before the declaration;
 * before 18, pg_attribute_noreturn() is an attribute that may stand there too.
 */
#ifndef pg_noreturn
#define pg_noreturn pg_attribute_noreturn()
#endif

/*
 * Symbols the server looks up (entry points, the magic block) are exported
 * and nothing else: the library is built with -fvisibility=hidden.  16 and
 * later mark PGDLLEXPORT so themselves; before 16 it is empty on ELF.
 */
#if PG_VERSION_NUM < 160000 && defined(__GNUC__)
#undef PGDLLEXPORT
#define PGDLLEXPORT __attribute__((visibility("default")))
#endif

#endif							/* EDUSYNC_COMPAT_H */
