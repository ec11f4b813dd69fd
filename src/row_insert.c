/*-------------------------------------------------------------------------
 *
 * row_insert.c
 *	  Insert one row into one of the extension's tables through the
 *	  executor's single-row insert, ExecSimpleRelationInsert (what logical
 *	  replication applies rows with), instead of an INSERT statement run by
 *	  SPI.
 *
 *	  A one-row INSERT from a saved plan pays, every run, for what a plan
 *	  is: SPI's snapshot and command bookkeeping, and an executor started
 *	  for it (a ModifyTable and a Result node, whose projection of the
 *	  VALUES list is compiled again).  That is a third of the single create
 *	  (callgrind).  The row itself costs the same either way:
 *	  ExecSimpleRelationInsert checks its constraints, stores it, inserts
 *	  its index entries (unique checks included) and queues its row
 *	  triggers, of which the foreign keys' checks run when the insert ends,
 *	  as at the end of a statement.
 *
 *	  What ExecSimpleRelationInsert does not do, an INSERT statement would:
 *	  rules, row security, statement triggers and transition tables,
 *	  defaults and domain checks of the columns, and a partitioned table's
 *	  routing.  RowInsert takes this path only for a table that has none of
 *	  these and has exactly the columns its caller fills, and says so
 *	  otherwise; the caller then runs its statement.  The callers fill every
 *	  column with what its default or domain would give.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "compat.h"
#include "row_insert.h"

/*
 * Does rel take a row through ExecSimpleRelationInsert as an INSERT
 * statement of all of columns would take it?
 */
static bool
RowInsertable(Relation rel, const RowColumn *columns, int ncolumns)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TriggerDesc *trig = rel->trigdesc;

	if (rel->rd_rel->relkind != RELKIND_RELATION ||
		rel->rd_rules != NULL || rel->rd_rel->relrowsecurity ||
		desc->natts != ncolumns)
		return false;
	if (trig != NULL &&
		(trig->trig_insert_before_statement ||
		 trig->trig_insert_after_statement ||
		 trig->trig_insert_new_table))
		return false;
	for (int i = 0; i < ncolumns; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->attgenerated != '\0' ||
			strcmp(NameStr(att->attname), columns[i].name) != 0 ||
			(att->atttypid != columns[i].type &&
			 getBaseType(att->atttypid) != columns[i].type))
			return false;
	}
	return pg_class_aclcheck(RelationGetRelid(rel), GetUserId(),
							 ACL_INSERT) == ACLCHECK_OK;
}

/*
 * Insert one row, values and isnull in the order of columns, into table
 * edusync.relname, whose columns they must be all of.  Returns false,
 * having inserted nothing, when the table is not one RowInsert can take a
 * row into as an INSERT statement would (see the file's header); the
 * caller then runs its INSERT.  Errors are the ones that INSERT raises.
 */
bool
RowInsert(const char *relname, const RowColumn *columns, int ncolumns,
		  Datum *values, bool *isnull)
{
	Oid			nsp = get_namespace_oid("edusync", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;
	Relation	rel;
	EState	   *estate;
	RangeTblEntry *rte;
	ResultRelInfo *rri;
	TupleTableSlot *slot;

	if (!OidIsValid(relid))
		return false;
	rel = table_open(relid, RowExclusiveLock);
	if (!RowInsertable(rel, columns, ncolumns))
	{
		table_close(rel, NoLock);
		return false;
	}

	/* an executor state for this one table, as logical replication's */
	estate = CreateExecutorState();
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	EdusyncInitRangeTable(estate, rte);
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	estate->es_opened_result_relations =
		lappend(estate->es_opened_result_relations, rri);
	estate->es_output_cid = GetCurrentCommandId(true);
	ExecOpenIndices(rri, false);

	slot = ExecInitExtraTupleSlot(estate, RelationGetDescr(rel), &TTSOpsVirtual);
	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, ncolumns * sizeof(Datum));
	memcpy(slot->tts_isnull, isnull, ncolumns * sizeof(bool));
	ExecStoreVirtualTuple(slot);

	AfterTriggerBeginQuery();
	ExecSimpleRelationInsert(rri, estate, slot);
	AfterTriggerEndQuery(estate);

	ExecCloseIndices(rri);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	table_close(rel, NoLock);

	/* what follows sees the row, as after a statement run by SPI */
	CommandCounterIncrement();
	elog(DEBUG2, "inserted a row into edusync.%s without a statement", relname);
	return true;
}
