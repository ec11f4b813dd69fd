/*-------------------------------------------------------------------------
 *
 * saved_plan.h
 *	  SPI with statements prepared once per process: what store.c and
 *	  outbox.c, the two homes of edusync's SQL, share.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_SAVED_PLAN_H
#define EDUSYNC_SAVED_PLAN_H

#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

/*
 * Prepare a statement once and keep its plan for the process; a plan
 * already there is kept.  cursor_options: e.g. CURSOR_OPT_GENERIC_PLAN for
 * a plan that must not be planned again for each run's values.
 */
static inline void
PrepareSavedPlan(SPIPlanPtr *plan, const char *sql, int nargs,
				 const Oid *types, int cursor_options)
{
	SPIPlanPtr	p;

	if (*plan != NULL)
		return;
	p = SPI_prepare_cursor(sql, nargs, (Oid *) types, cursor_options);
	if (p == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(p);
	*plan = p;
}

/*
 * Run a statement from a plan prepared on first use and kept for the
 * process.  The caller is connected to SPI.
 */
static inline int
RunSavedPlan(SPIPlanPtr *plan, const char *sql, int nargs, const Oid *types,
			 Datum *values, const char *nulls, bool read_only, long count)
{
	int			ret;

	PrepareSavedPlan(plan, sql, nargs, types, 0);
	ret = SPI_execute_plan(*plan, values, nulls, read_only, count);
	if (ret < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
	return ret;
}

/*
 * Run one statement from a saved plan in its own SPI connection; returns
 * how many rows it processed.
 */
static inline uint64
RunSavedStatement(SPIPlanPtr *plan, const char *sql, int nargs,
				  const Oid *types, Datum *values, const char *nulls,
				  bool read_only, long count)
{
	uint64		n;

	SPI_connect();
	RunSavedPlan(plan, sql, nargs, types, values, nulls, read_only, count);
	n = SPI_processed;
	SPI_finish();
	return n;
}

/* A text column's value for RowInsert, or a null flag for NULL. */
static inline Datum
TextValue(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* A text parameter, or a null flag for NULL. */
static inline Datum
TextParam(const char *s, char *null)
{
	*null = (s == NULL) ? 'n' : ' ';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/*
 * A one-dimensional array parameter of n values of type typid; nulls[i]
 * marks a NULL element (nulls may be NULL: none).
 */
static inline Datum
ArrayParam(Datum *elems, bool *nulls, int n, Oid typid)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1];
	int			lbs[1] = {1};

	dims[0] = n;
	get_typlenbyvalalign(typid, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, typid,
											  typlen, typbyval, typalign));
}

/* A text column as a C string in mcxt; NULL for SQL NULL. */
static inline char *
TextColumn(HeapTuple tup, TupleDesc desc, int col, MemoryContext mcxt)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	if (isnull)
		return NULL;
	return MemoryContextStrdup(mcxt, TextDatumGetCString(d));
}

#endif							/* EDUSYNC_SAVED_PLAN_H */
