/*-------------------------------------------------------------------------
 *
 * row_insert.h
 *	  Insert one row into one of the extension's tables through the
 *	  executor's single-row insert, without a statement.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_ROW_INSERT_H
#define EDUSYNC_ROW_INSERT_H

/* A column RowInsert fills: its name and its type (or its domain's base) */
typedef struct RowColumn
{
	const char *name;
	Oid			type;
} RowColumn;

extern bool RowInsert(const char *relname, const RowColumn *columns,
					  int ncolumns, Datum *values, bool *isnull);

#endif							/* EDUSYNC_ROW_INSERT_H */
