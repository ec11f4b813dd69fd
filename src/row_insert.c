/*-------------------------------------------------------------------------
 *
 * row_insert.c
 *	  Insert one row into one of the extension's tables through the
 *	  executor's single-row insert, ExecSimpleRelationInsert (what logical
 *	  replication applies rows with), instead of an INSERT statement run by
 *	  SPI; and update rows found by TID the same way (RowUpdate).
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
 *	  refuse a read-only transaction, apply rules, row security, statement
 *	  triggers and transition tables, defaults and domain checks of the
 *	  columns, and route into a partitioned table's partitions.  RowInsert
 *	  takes this path only in a transaction that may write, for a table
 *	  that has none of these and has exactly the columns its caller fills,
 *	  and says so otherwise; the caller then runs its statement.  The
 *	  callers fill every column with what its default or domain would give.
 *
 *	  A foreign key's check of a new row locks the row it references
 *	  (FOR KEY SHARE) through a query of its own, so that no other
 *	  transaction deletes it before this one ends: half the cost of a
 *	  delivery row.  When the caller names the referenced row as one this
 *	  transaction inserted (RowReference), and it is there with the new
 *	  row's key, no other transaction can see it, let alone delete it, until
 *	  this one commits: the check is then known to pass and is not queued.
 *	  Deleting it later in this transaction cascades as ever (the action is
 *	  the referenced table's trigger).  The same holds for a row the caller
 *	  has just locked FOR KEY SHARE by the new row's key (a new error's
 *	  profile, store.c): the check's query would find it, as no other
 *	  transaction can delete it or change its key until this one ends, and
 *	  take the lock this transaction holds.
 *
 *	  That lock need not be a query either: RowLockKey finds the row by its
 *	  primary key's index and locks it FOR KEY SHARE with the table access
 *	  method's own call, where the query would have found and locked the
 *	  same row (READ COMMITTED, no concurrent update of it).  Anything else
 *	  it leaves to the query.
 *
 *	  A partial index's predicate is compiled by the executor for the
 *	  insert it serves: for one row, every time.  Where it is only "text
 *	  column = 'constant'" clauses, RowInsert reads it on the row instead
 *	  (SkipPartialIndexes).
 *
 *	  The worker's verdicts update rows it read by TID; RowUpdate does that
 *	  row by row as ExecSimpleRelationUpdate does, without the UPDATE
 *	  statement joined to arrays that cost a TID scan per row (see below).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "storage/bufmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

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
 * The OIDs RowTableOid found, kept until pg_class or pg_namespace changes
 * (a syscache invalidation, read at the latest when a transaction starts):
 * the lookups by name were 3,000 instructions of a single create.
 */
#define ROW_TABLES_MAX 8
static struct
{
	char		relname[NAMEDATALEN];
	Oid			relid;
}			row_tables[ROW_TABLES_MAX];
static int	n_row_tables = 0;
static bool row_tables_watched = false;

static void
RowTablesForget(Datum arg, int cacheid, uint32 hashvalue)
{
	n_row_tables = 0;
}

/* The OID of table edusync.relname; InvalidOid when there is none. */
Oid
RowTableOid(const char *relname)
{
	Oid			nsp;
	Oid			relid;

	for (int i = 0; i < n_row_tables; i++)
		if (strcmp(row_tables[i].relname, relname) == 0)
			return row_tables[i].relid;
	if (!row_tables_watched)
	{
		CacheRegisterSyscacheCallback(RELNAMENSP, RowTablesForget, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, RowTablesForget, (Datum) 0);
		row_tables_watched = true;
	}
	nsp = get_namespace_oid("edusync", true);
	relid = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;
	if (OidIsValid(relid) && n_row_tables < ROW_TABLES_MAX &&
		strlen(relname) < NAMEDATALEN)
	{
		strlcpy(row_tables[n_row_tables].relname, relname, NAMEDATALEN);
		row_tables[n_row_tables].relid = relid;
		n_row_tables++;
	}
	return relid;
}

/* May the current user read and update rel (relid)? */
static bool
RowMayUpdate(Oid relid)
{
	/* one privilege a call: several bits pass when any one is held */
	return pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) == ACLCHECK_OK &&
		pg_class_aclcheck(relid, GetUserId(), ACL_UPDATE) == ACLCHECK_OK;
}

/*
 * An executor state for rel alone, as logical replication's apply makes
 * one, with rel's result relation info (its indexes open) in *rri.
 */
static EState *
RowExecutorBegin(Relation rel, ResultRelInfo **rri)
{
	EState	   *estate = CreateExecutorState();
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	EdusyncInitRangeTable(estate, rte);
	*rri = makeNode(ResultRelInfo);
	InitResultRelInfo(*rri, rel, 1, NULL, 0);
	estate->es_opened_result_relations =
		lappend(estate->es_opened_result_relations, *rri);
	estate->es_output_cid = GetCurrentCommandId(true);
	ExecOpenIndices(*rri, false);
	return estate;
}

/* Free what RowExecutorBegin made, and close rel (its lock is kept). */
static void
RowExecutorEnd(EState *estate, ResultRelInfo *rri)
{
	Relation	rel = rri->ri_RelationDesc;

	ExecCloseIndices(rri);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
}

/*
 * Is constraint conoid of rel a foreign key from rel's first nkeys columns
 * to the first nkeys columns of refid?
 */
static bool
KeyOfFirstColumns(Relation rel, Oid conoid, Oid refid, int nkeys)
{
	ListCell   *lc;

	foreach(lc, RelationGetFKeyList(rel))
	{
		ForeignKeyCacheInfo *fk = (ForeignKeyCacheInfo *) lfirst(lc);
		bool		first = fk->nkeys == nkeys && fk->confrelid == refid;

		if (fk->conoid != conoid)
			continue;
		for (int i = 0; first && i < nkeys; i++)
			first = fk->conkey[i] == i + 1 && fk->confkey[i] == i + 1;
		return first;
	}
	return false;
}

/*
 * Are the only triggers rel fires on insert checks of a foreign key to
 * refid, from and to the first nkeys columns (and is there one)?
 */
static bool
OnlyKeyChecks(Relation rel, Oid refid, int nkeys)
{
	TriggerDesc *trig = rel->trigdesc;
	int			nchecks = 0;

	for (int i = 0; trig != NULL && i < trig->numtriggers; i++)
	{
		Trigger    *t = &trig->triggers[i];

		if (!TRIGGER_FOR_INSERT(t->tgtype))
			continue;
		if (t->tgfoid != F_RI_FKEY_CHECK_INS || t->tgconstrrelid != refid ||
			!KeyOfFirstColumns(rel, t->tgconstraint, refid, nkeys))
			return false;
		nchecks++;
	}
	return nchecks > 0;
}

/*
 * Are the only triggers rel fires on insert checks of a foreign key to
 * edusync.refname, from and to the first nkeys columns?  Then all an
 * insert can be refused for by a trigger is a missing row of refname.
 */
bool
RowOnlyKeyChecks(Relation rel, const char *refname, int nkeys)
{
	Oid			refid = RowTableOid(refname);

	return OidIsValid(refid) && OnlyKeyChecks(rel, refid, nkeys);
}

/*
 * Are the only triggers rel fires on insert checks of a foreign key to ref
 * (from and to the first ref->nkeys columns), and is ref's row either
 * locked by the caller or one this transaction inserted, still there (to
 * this transaction), with the key that values holds?  Then those checks
 * would pass, and lock nothing this transaction does not hold already or
 * another transaction could contend for.
 */
static bool
ReferenceHeld(Relation rel, const RowReference *ref, Datum *values, bool *isnull)
{
	Oid			refid = RowTableOid(ref->relname);
	Relation	refrel;
	TupleTableSlot *slot;
	bool		held;

	if (!OidIsValid(refid) || (!ref->locked && !ItemPointerIsValid(&ref->tid)) ||
		!OnlyKeyChecks(rel, refid, ref->nkeys))
		return false;
	if (ref->locked)
		return true;			/* the caller's lock is the checks' lock */

	refrel = table_open(refid, AccessShareLock);
	slot = table_slot_create(refrel, NULL);
	held = table_tuple_fetch_row_version(refrel, (ItemPointer) &ref->tid,
										 SnapshotSelf, slot);
	if (held)
	{
		bool		should_free;
		HeapTuple	tup = ExecFetchSlotHeapTuple(slot, false, &should_free);

		held = TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(tup->t_data));
		if (should_free)
			heap_freetuple(tup);
	}
	for (int i = 0; held && i < ref->nkeys; i++)
	{
		Form_pg_attribute att = TupleDescAttr(RelationGetDescr(refrel), i);
		bool		refnull;
		Datum		refvalue = slot_getattr(slot, i + 1, &refnull);

		held = !refnull && !isnull[i] &&
			datum_image_eq(values[i], refvalue, att->attbyval, att->attlen);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_close(refrel, NoLock);
	return held;
}

/*
 * Does the row in slot satisfy a partial index's predicate (an implicit AND
 * of clauses), read without compiling it?  1: yes; 0: no; -1: the predicate
 * is not made only of clauses "column = 'constant'" on text (a domain over
 * text included) under a deterministic collation, and the executor decides.
 */
static int
PredicateHolds(List *predicate, TupleTableSlot *slot)
{
	ListCell   *lc;
	int			holds = 1;

	foreach(lc, predicate)
	{
		OpExpr	   *op = (OpExpr *) lfirst(lc);
		Node	   *left;
		Const	   *right;
		AttrNumber	attno;
		bool		isnull;
		Datum		value;

		if (!IsA(op, OpExpr) || op->opno != TextEqualOperator ||
			list_length(op->args) != 2 ||
			(op->inputcollid != DEFAULT_COLLATION_OID &&
			 op->inputcollid != C_COLLATION_OID))
			return -1;
		left = linitial(op->args);
		while (IsA(left, RelabelType))
			left = (Node *) ((RelabelType *) left)->arg;
		right = (Const *) lsecond(op->args);
		if (!IsA(left, Var) || !IsA(right, Const) || right->constisnull)
			return -1;
		attno = ((Var *) left)->varattno;
		if (attno <= 0 || attno > slot->tts_tupleDescriptor->natts)
			return -1;
		/* text equality is byte equality under a deterministic collation */
		value = slot_getattr(slot, attno, &isnull);
		if (isnull || !datum_image_eq(value, right->constvalue, false, -1))
			holds = 0;
	}
	return holds;
}

/*
 * Leave out of rri's open indexes the partial ones the row in slot does not
 * go into, and drop the predicate of those it does go into, where
 * PredicateHolds can tell: ExecInsertIndexTuples would otherwise compile
 * each predicate for this one row (the four of deliveries: 15,000
 * instructions a delivery row).  Others stay for the executor to decide.
 */
static void
SkipPartialIndexes(ResultRelInfo *rri, TupleTableSlot *slot)
{
	int			kept = 0;

	for (int i = 0; i < rri->ri_NumIndices; i++)
	{
		IndexInfo  *info = rri->ri_IndexRelationInfo[i];
		int			holds = info->ii_Predicate == NIL ? -1 :
			PredicateHolds(info->ii_Predicate, slot);

		if (holds == 0)
		{
			/* as ExecCloseIndices would close it */
			index_close(rri->ri_IndexRelationDescs[i], RowExclusiveLock);
			continue;
		}
		if (holds == 1)
			info->ii_Predicate = NIL;
		rri->ri_IndexRelationDescs[kept] = rri->ri_IndexRelationDescs[i];
		rri->ri_IndexRelationInfo[kept] = info;
		kept++;
	}
	rri->ri_NumIndices = kept;
}

/*
 * Lock the row of table edusync.relname whose primary key, its first column
 * (a text), is key, FOR KEY SHARE: what "SELECT 1 FROM edusync.relname
 * WHERE <key column> = key FOR KEY SHARE" does, at a fraction of its cost.
 * True when it locked that row; false, having decided nothing, when there
 * is no such row or the answer is not that simple: a transaction that is
 * read-only or not READ COMMITTED, a table or key unlike the extension's,
 * row security, missing privileges, or a row that another transaction
 * changed since this one's snapshot.  The caller then runs its query (or
 * leaves the check to the foreign key), which decides, and raises, as ever.
 */
bool
RowLockKey(const char *relname, const char *key)
{
	Oid			relid = RowTableOid(relname);
	Relation	rel;
	Relation	idxrel = NULL;
	Oid			idxid;
	bool		locked = false;

	if (!OidIsValid(relid) || XactReadOnly || IsolationUsesXactSnapshot())
		return false;
	rel = table_open(relid, RowShareLock);
	idxid = EdusyncPrimaryKeyIndex(rel);
	if (rel->rd_rel->relkind == RELKIND_RELATION &&
		!rel->rd_rel->relrowsecurity && OidIsValid(idxid) &&
		TupleDescAttr(RelationGetDescr(rel), 0)->atttypid == TEXTOID &&
		RowMayUpdate(relid))
		idxrel = index_open(idxid, AccessShareLock);
	/* a btree on the first column alone, whose equality is text's */
	if (idxrel != NULL && idxrel->rd_rel->relam == BTREE_AM_OID &&
		IndexRelationGetNumberOfKeyAttributes(idxrel) == 1 &&
		idxrel->rd_index->indkey.values[0] == 1 &&
		idxrel->rd_opcintype[0] == TEXTOID &&
		get_opfamily_member(idxrel->rd_opfamily[0], TEXTOID, TEXTOID,
							BTEqualStrategyNumber) == TextEqualOperator)
	{
		Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
		TupleTableSlot *slot = table_slot_create(rel, NULL);
		IndexScanDesc scan;
		ScanKeyData skey;

		ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_TEXTEQ,
					CStringGetTextDatum(key));
		skey.sk_collation = idxrel->rd_indcollation[0];
		scan = EdusyncIndexBeginscan(rel, idxrel, snapshot, 1);
		index_rescan(scan, &skey, 1, NULL, 0);
		if (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			TM_FailureData tmfd;

			/* no other version is followed: that is the query's to do */
			locked = table_tuple_lock(rel, &slot->tts_tid, snapshot, slot,
									  GetCurrentCommandId(false),
									  LockTupleKeyShare, LockWaitBlock, 0,
									  &tmfd) == TM_Ok;
		}
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
		UnregisterSnapshot(snapshot);
	}
	if (idxrel != NULL)
		index_close(idxrel, NoLock);
	table_close(rel, NoLock);
	return locked;
}

/*
 * Insert one row, values and isnull in the order of columns, into table
 * edusync.relname, whose columns they must be all of.  Returns false,
 * having inserted nothing, when the table is not one RowInsert can take a
 * row into as an INSERT statement would (see the file's header); the
 * caller then runs its INSERT.  Errors are the ones that INSERT raises.
 * ref: NULL, or the row the new row's foreign key references, inserted by
 * this transaction.  *inserted_at: where the row went; invalid when a
 * BEFORE trigger kept it out (an INSERT statement's zero rows).
 */
bool
RowInsert(const char *relname, const RowColumn *columns, int ncolumns,
		  Datum *values, bool *isnull, const RowReference *ref,
		  ItemPointer inserted_at)
{
	Oid			relid = RowTableOid(relname);
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	bool		check_held;

	/* a read-only transaction (or a standby): the statement refuses it */
	if (!OidIsValid(relid) || XactReadOnly)
		return false;
	rel = table_open(relid, RowExclusiveLock);
	if (!RowInsertable(rel, columns, ncolumns))
	{
		table_close(rel, NoLock);
		return false;
	}

	estate = RowExecutorBegin(rel, &rri);
	check_held = ref != NULL && ReferenceHeld(rel, ref, values, isnull);
	if (check_held)
		rri->ri_TrigDesc = NULL;	/* its triggers, the checks, would pass */

	slot = ExecInitExtraTupleSlot(estate, RelationGetDescr(rel), &TTSOpsVirtual);
	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, ncolumns * sizeof(Datum));
	memcpy(slot->tts_isnull, isnull, ncolumns * sizeof(bool));
	ExecStoreVirtualTuple(slot);
	/* (a BEFORE trigger could change the row the predicates were read on) */
	if (rri->ri_TrigDesc == NULL || !rri->ri_TrigDesc->trig_insert_before_row)
		SkipPartialIndexes(rri, slot);

	ItemPointerSetInvalid(&slot->tts_tid);

	AfterTriggerBeginQuery();
	ExecSimpleRelationInsert(rri, estate, slot);
	AfterTriggerEndQuery(estate);
	ItemPointerCopy(&slot->tts_tid, inserted_at);
	RowExecutorEnd(estate, rri);

	/* what follows sees the row, as after a statement run by SPI */
	CommandCounterIncrement();
	elog(DEBUG2, "inserted a row into edusync.%s without a statement%s", relname,
		 !check_held ? "" : ref->locked ?
		 ", its foreign key held by this call's lock on the row it references" :
		 ", its foreign key held by this transaction's own row");
	return true;
}

/*
 * Updates of rows found where a caller read them (RowUpdateBegin, then
 * RowUpdateFetch and RowUpdateStore for each row, RowUpdateEnd), through
 * the table access method's update and the executor's index insertion, as
 * ExecSimpleRelationUpdate does, instead of an UPDATE statement joined to
 * arrays of values.
 *
 * An UPDATE ... FROM ROWS FROM (unnest(...)) WHERE ctid = ... pays, for
 * each row, for a tuplestore of its values, a nested loop, a TID scan
 * started again (the relation's size read from the kernel each time),
 * and its qualifications and projection.  What the row itself costs (the
 * new version, its index entries, its foreign key's trigger) is the same
 * either way.
 *
 * RowUpdateStore does not follow a row to a newer version: a row updated
 * or deleted by another transaction since it was fetched (the update
 * waits for that transaction to end first) is left alone, as the
 * statement's recheck of "ctid = its TID" on the newer version left it.
 */
struct RowUpdate
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *oldslot;
	TupleTableSlot *newslot;
	Snapshot	snapshot;
	BlockNumber nblocks;		/* of rel, when the updates began */
	int			ncolumns;
	AttrNumber	attnums[ROW_UPDATE_MAX_COLUMNS];
	ItemPointerData tid;		/* of the row fetched last */
	bool		fetched;
	int			updated;
};

/*
 * Does rel take an update of columns as an UPDATE statement setting them
 * would take it, and are they all there?  (Sets attnums.)  No rules, row
 * security, generated columns, statement triggers, transition tables or
 * row triggers on update but foreign keys' checks, which RowUpdateStore
 * queues as the statement does.
 */
static bool
RowUpdatable(Relation rel, const RowColumn *columns, int ncolumns,
			 AttrNumber *attnums)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TriggerDesc *trig = rel->trigdesc;

	if (rel->rd_rel->relkind != RELKIND_RELATION ||
		rel->rd_rules != NULL || rel->rd_rel->relrowsecurity ||
		ncolumns > ROW_UPDATE_MAX_COLUMNS ||
		(desc->constr != NULL && desc->constr->has_generated_stored))
		return false;
	for (int i = 0; trig != NULL && i < trig->numtriggers; i++)
	{
		Trigger    *t = &trig->triggers[i];

		if (TRIGGER_FOR_UPDATE(t->tgtype) &&
			(!TRIGGER_FOR_ROW(t->tgtype) || !TRIGGER_FOR_AFTER(t->tgtype) ||
			 t->tgfoid != F_RI_FKEY_CHECK_UPD))
			return false;
	}
	for (int i = 0; i < ncolumns; i++)
	{
		AttrNumber	attnum = attnameAttNum(rel, columns[i].name, false);
		Oid			type;

		if (attnum <= 0)
			return false;
		type = TupleDescAttr(desc, attnum - 1)->atttypid;
		if (type != columns[i].type && getBaseType(type) != columns[i].type)
			return false;
		attnums[i] = attnum;
	}
	return RowMayUpdate(RelationGetRelid(rel));
}

/*
 * Begin updating rows of edusync.relname, columns (a subset of its own)
 * read and written in that order; NULL when an UPDATE statement must do it
 * (see RowUpdatable; a read-only transaction).  The updates see what was
 * committed before they began, as a statement started now would.
 */
RowUpdate *
RowUpdateBegin(const char *relname, const RowColumn *columns, int ncolumns)
{
	Oid			relid = RowTableOid(relname);
	Relation	rel;
	RowUpdate  *u;

	if (!OidIsValid(relid) || XactReadOnly)
		return NULL;
	rel = table_open(relid, RowExclusiveLock);
	u = palloc0(sizeof(RowUpdate));
	if (!RowUpdatable(rel, columns, ncolumns, u->attnums))
	{
		table_close(rel, NoLock);
		pfree(u);
		return NULL;
	}
	u->rel = rel;
	u->ncolumns = ncolumns;

	/* a snapshot of its own, as a statement run by SPI would take */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	u->snapshot = GetActiveSnapshot();
	u->nblocks = RelationGetNumberOfBlocks(rel);

	u->estate = RowExecutorBegin(rel, &u->rri);
	u->estate->es_snapshot = u->snapshot;
	u->oldslot = table_slot_create(rel, &u->estate->es_tupleTable);
	u->newslot = ExecInitExtraTupleSlot(u->estate, RelationGetDescr(rel),
										&TTSOpsVirtual);
	AfterTriggerBeginQuery();
	return u;
}

/*
 * Fetch the row at tid, if it is there to this update's snapshot, into
 * values/isnull (the columns RowUpdateBegin was given, in that order);
 * false when it is not (deleted, updated, or never there).
 */
bool
RowUpdateFetch(RowUpdate *u, ItemPointer tid, Datum *values, bool *isnull)
{
	u->fetched = false;
	ExecClearTuple(u->oldslot);
	/* a TID past the end (a TRUNCATE, a VACUUM FULL since): no row */
	if (!ItemPointerIsValid(tid) ||
		ItemPointerGetBlockNumberNoCheck(tid) >= u->nblocks ||
		!table_tuple_fetch_row_version(u->rel, tid, u->snapshot, u->oldslot))
		return false;
	slot_getallattrs(u->oldslot);
	for (int i = 0; i < u->ncolumns; i++)
	{
		values[i] = u->oldslot->tts_values[u->attnums[i] - 1];
		isnull[i] = u->oldslot->tts_isnull[u->attnums[i] - 1];
	}
	ItemPointerCopy(tid, &u->tid);
	u->fetched = true;
	return true;
}

/*
 * Replace the row RowUpdateFetch fetched with one holding values/isnull in
 * its columns (the others as they were): its constraints checked, its
 * index entries inserted where the new version needs them, its foreign
 * key's trigger queued.  False when another transaction updated or
 * deleted the row since it was fetched: nothing is changed then.
 */
bool
RowUpdateStore(RowUpdate *u, const Datum *values, const bool *isnull)
{
	TupleTableSlot *slot = u->newslot;
	int			natts = RelationGetDescr(u->rel)->natts;
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	EdusyncUpdateIndexes update_indexes;
	TM_Result	result;
	List	   *recheck;

	Assert(u->fetched);
	u->fetched = false;
	ResetPerTupleExprContext(u->estate);
	ExecClearTuple(slot);
	memcpy(slot->tts_values, u->oldslot->tts_values, natts * sizeof(Datum));
	memcpy(slot->tts_isnull, u->oldslot->tts_isnull, natts * sizeof(bool));
	for (int i = 0; i < u->ncolumns; i++)
	{
		slot->tts_values[u->attnums[i] - 1] = values[i];
		slot->tts_isnull[u->attnums[i] - 1] = isnull[i];
	}
	ExecStoreVirtualTuple(slot);
	if (u->rel->rd_att->constr != NULL)
		ExecConstraints(u->rri, slot, u->estate);

	result = table_tuple_update(u->rel, &u->tid, slot,
								u->estate->es_output_cid, u->snapshot,
								InvalidSnapshot, true, &tmfd, &lockmode,
								&update_indexes);
	switch (result)
	{
		case TM_Ok:
			break;
		case TM_Updated:
		case TM_Deleted:
		case TM_SelfModified:
			return false;
		default:
			elog(ERROR, "unexpected table_tuple_update status: %u", result);
	}
	recheck = EdusyncUpdateIndexTuples(u->rri, slot, u->estate, update_indexes);
	if (u->rri->ri_TrigDesc != NULL && u->rri->ri_TrigDesc->trig_update_after_row)
		ExecARUpdateTriggers(u->estate, u->rri, NULL, NULL, &u->tid, NULL,
							 slot, recheck, NULL, false);
	list_free(recheck);
	u->updated++;
	return true;
}

/* End what RowUpdateBegin began: the foreign keys' checks run now. */
void
RowUpdateEnd(RowUpdate *u)
{
	AfterTriggerEndQuery(u->estate);
	elog(DEBUG2, "updated %d row%s of edusync.%s without a statement",
		 u->updated, u->updated == 1 ? "" : "s",
		 RelationGetRelationName(u->rel));
	RowExecutorEnd(u->estate, u->rri);
	PopActiveSnapshot();
	/* what follows sees the rows, as after a statement run by SPI */
	CommandCounterIncrement();
	pfree(u);
}
