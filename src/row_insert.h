/*-------------------------------------------------------------------------
 *
 * row_insert.h
 *	  Insert one row into one of the extension's tables through the
 *	  executor's single-row insert, and update rows found by TID, without
 *	  a statement.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_ROW_INSERT_H
#define EDUSYNC_ROW_INSERT_H

#include "storage/itemptr.h"
#include "utils/relcache.h"

/* A column RowInsert fills: its name and its type (or its domain's base) */
typedef struct RowColumn
{
	const char *name;
	Oid			type;
} RowColumn;

/*
 * The row a new row's foreign key references, whose first nkeys columns
 * are the key the new row's first nkeys columns hold: either where this
 * transaction inserted it (RowInsert's *inserted_at), or, locked, a row
 * the caller locked FOR KEY SHARE in this transaction by that key.
 */
typedef struct RowReference
{
	const char *relname;		/* in schema edusync */
	ItemPointerData tid;		/* unless locked */
	bool		locked;
	int			nkeys;
} RowReference;

extern Oid	RowTableOid(const char *relname);
extern bool RowOnlyKeyChecks(Relation rel, const char *refname, int nkeys);
extern bool RowLockKey(const char *relname, const char *key);
extern bool RowInsert(const char *relname, const RowColumn *columns,
					  int ncolumns, Datum *values, bool *isnull,
					  const RowReference *ref, ItemPointer inserted_at);

/* Updates of rows by TID, without a statement (RowUpdateBegin) */
#define ROW_UPDATE_MAX_COLUMNS	16
typedef struct RowUpdate RowUpdate;

extern RowUpdate *RowUpdateBegin(const char *relname,
								 const RowColumn *columns, int ncolumns);
extern bool RowUpdateFetch(RowUpdate *u, ItemPointer tid, Datum *values,
						   bool *isnull);
extern bool RowUpdateStore(RowUpdate *u, const Datum *values,
						   const bool *isnull);
extern void RowUpdateEnd(RowUpdate *u);

#endif							/* EDUSYNC_ROW_INSERT_H */
