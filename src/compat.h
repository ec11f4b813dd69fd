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

#include "catalog/namespace.h"
#include "utils/guc.h"

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
 * Give an executor state a range table of one relation (row_insert.c), as
 * logical replication's apply does.  16 added the permission infos
 * (addRTEPermissionInfo), 18 the set of relations left after pruning.
 */
#if PG_VERSION_NUM >= 180000
#define EdusyncInitRangeTable(estate, rte) \
	do { \
		List	   *perminfos_ = NIL; \
		addRTEPermissionInfo(&perminfos_, (rte)); \
		ExecInitRangeTable((estate), list_make1(rte), perminfos_, \
						   bms_make_singleton(1)); \
	} while (0)
#elif PG_VERSION_NUM >= 160000
#define EdusyncInitRangeTable(estate, rte) \
	do { \
		List	   *perminfos_ = NIL; \
		addRTEPermissionInfo(&perminfos_, (rte)); \
		ExecInitRangeTable((estate), list_make1(rte), perminfos_); \
	} while (0)
#else
#define EdusyncInitRangeTable(estate, rte) \
	ExecInitRangeTable((estate), list_make1(rte))
#endif

/*
 * Index entries for a row's new version after table_tuple_update
 * (row_insert.c): 16 tells which indexes need them (TU_UpdateIndexes:
 * none, all, or only the summarizing ones), 15 whether all do.
 */
#if PG_VERSION_NUM >= 160000
#define EdusyncUpdateIndexes TU_UpdateIndexes
#define EdusyncUpdateIndexTuples(rri, slot, estate, how) \
	((how) == TU_None ? NIL : \
	 ExecInsertIndexTuples((rri), (slot), (estate), true, false, NULL, NIL, \
						   (how) == TU_Summarizing))
#else
#define EdusyncUpdateIndexes bool
#define EdusyncUpdateIndexTuples(rri, slot, estate, how) \
	(!(how) ? NIL : \
	 ExecInsertIndexTuples((rri), (slot), (estate), true, false, NULL, NIL))
#endif

/* index_beginscan takes instrumentation, and the primary key a flag, in 18 */
#if PG_VERSION_NUM >= 180000
#define EdusyncIndexBeginscan(heap, index, snapshot, nkeys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), 0)
#define EdusyncPrimaryKeyIndex(rel)	RelationGetPrimaryKeyIndex((rel), false)
#else
#define EdusyncIndexBeginscan(heap, index, snapshot, nkeys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), 0)
#define EdusyncPrimaryKeyIndex(rel)	RelationGetPrimaryKeyIndex(rel)
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

/*
 * Pin the search path to pg_catalog for the work of one call of a SECURITY
 * DEFINER entry point (api.c), and put the caller's back afterwards.  An
 * error needs no unpinning: the (sub)transaction's abort undoes the pin.
 *
 * This is what "SET search_path = pg_catalog, pg_temp" on the function
 * would do, at a fraction of the cost on 15 and 16: the SET clause runs the
 * GUC machinery twice a call (parse, check, assign, and a recomputed
 * namespace path after each), where an override search path is one list
 * pushed and popped; pg_temp is not searched at all.  17 removed override
 * search paths and made SET search_path cheap (a cache of computed paths),
 * so there the pin is RestrictSearchPath() in a GUC nest level of its own.
 */
#if PG_VERSION_NUM >= 170000
static inline int
PinSearchPath(void)
{
	int			level = NewGUCNestLevel();

	RestrictSearchPath();
	return level;
}

static inline void
UnpinSearchPath(int level)
{
	AtEOXact_GUC(true, level);
}
#else
static inline int
PinSearchPath(void)
{
	OverrideSearchPath path;

	memset(&path, 0, sizeof(path));
	path.schemas = NIL;
	path.addCatalog = true;
	path.addTemp = false;
	PushOverrideSearchPath(&path);
	return 0;
}

static inline void
UnpinSearchPath(int level)
{
	(void) level;
	PopOverrideSearchPath();
}
#endif

#endif							/* EDUSYNC_COMPAT_H */
