# EdusyncTest.pm: what the TAP tests share: a cluster with edusync
# preloaded and pointed at the fake Graph, and queueing and waiting for
# async deliveries.
package EdusyncTest;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use List::Util qw(max);

our @EXPORT = qw(edusync_node credentials_conf queue_errors count_status settle
  worker_pid log_keeps_secrets indexes_agree);

# A started cluster named $name with edusync preloaded, edusync.graph_url
# at $graph, $conf appended to postgresql.conf, the extension created and
# the profiles p1 (and @extra_profiles) inserted.
sub edusync_node
{
	my ($name, $graph, $conf, @extra_profiles) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'edusync'
edusync.graph_url = '@{[ $graph->url ]}'
$conf
});
	$node->start;
	my $profiles = join(', ', map { "('$_', '$_')" } ('p1', @extra_profiles));
	$node->safe_psql('postgres', qq{
		CREATE EXTENSION edusync;
		INSERT INTO edusync.sync_profiles VALUES $profiles;
	});
	return $node;
}

# postgresql.conf lines for a static token and the client-credentials flow
# against the fake Graph (tenant contoso, client edusync-client).
sub credentials_conf
{
	my ($graph, $token, $secret) = @_;
	return qq{
edusync.bearer_token = '$token'
edusync.tenant_id = 'contoso'
edusync.client_id = 'edusync-client'
edusync.client_secret = '$secret'
edusync.token_url = '@{[ $graph->token_url ]}'
};
}

# Queue $n async errors of $profile (default p1), messages "$tag 1".."$tag $n",
# in one transaction; their ids.
sub queue_errors
{
	my ($node, $n, $tag, $profile) = @_;
	$profile //= 'p1';
	return split /\n/, $node->safe_psql('postgres', qq{
		SET edusync.forward = 'async';
		SELECT (edusync.create_sync_error('$profile', 'Student', 'UnsynchronizableChange',
			'$tag ' || g))->>'id'
		FROM generate_series(1, $n) g});
}

# How many deliveries of $tag have $status; undef while the server is down.
sub count_status
{
	my ($node, $tag, $status) = @_;
	my ($ret, $out) = $node->psql('postgres', qq{
		SELECT count(*) FROM edusync.deliveries d JOIN edusync.sync_errors e
		  ON e.profile_id = d.profile_id AND e.id = d.error_id
		WHERE e.error_message LIKE '$tag %' AND d.status = '$status'});
	return $ret == 0 ? $out : undef;
}

# Wait until no delivery of $tag is pending (poll_query_until, which also
# rides out a server that is down for a while); true if none is.  Time is
# only the bound: $secs, or PostgreSQL::Test::Utils::timeout_default when
# that is longer (a loaded machine may set PG_TEST_TIMEOUT_DEFAULT).
sub settle
{
	my ($node, $tag, $secs) = @_;
	local $PostgreSQL::Test::Utils::timeout_default =
	  max($secs // 0, $PostgreSQL::Test::Utils::timeout_default);
	return 1 if $node->poll_query_until('postgres', qq{
		SELECT count(*) = 0 FROM edusync.deliveries d JOIN edusync.sync_errors e
		  ON e.profile_id = d.profile_id AND e.id = d.error_id
		WHERE e.error_message LIKE '$tag %' AND d.status = 'pending'});
	diag("$tag: " . (count_status($node, $tag, 'pending') // 'unknown') . ' still pending');
	return 0;
}

# Do the indexes of sync_errors and deliveries hold every row they should
# (amcheck, heapallindexed), and do the partial indexes on deliveries'
# status hold no row they should not (a count through the index, whose
# predicate the planner then does not check again, equals a count of the
# table)?  Rows go into them without statements (row_insert.c).  $setup:
# SQL run first in the same transaction (rolled back after the checks), so
# that rows no worker may see yet can be checked too.
sub indexes_agree
{
	my ($node, $name, $setup) = @_;
	my $sql = "CREATE EXTENSION IF NOT EXISTS amcheck;\nBEGIN;\n" . ($setup // '') . "\n" .
	  q{SELECT 'amcheck ' || count(bt_index_check(i.indexrelid, true))
		FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
		WHERE c.relnamespace = 'edusync'::regnamespace
		  AND c.relname IN ('sync_errors', 'deliveries');} . "\n";
	for my $status ('pending', 'delivered', 'failed')
	{
		my $q = "SELECT '$status %s ' || count(*) FROM edusync.deliveries WHERE status = '$status';\n";
		$sql .= "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off;\n" .
		  "EXPLAIN (COSTS OFF) " . sprintf($q, 'plan') . sprintf($q, 'index') .
		  "SET LOCAL enable_seqscan = on; SET LOCAL enable_indexscan = off;\n" .
		  "SET LOCAL enable_indexonlyscan = off;\n" . sprintf($q, 'table') .
		  "RESET enable_seqscan; RESET enable_bitmapscan; RESET enable_indexscan;\n" .
		  "RESET enable_indexonlyscan;\n";
	}
	$sql .= "ROLLBACK;\n";
	my ($ret, $out, $err) = $node->psql('postgres', $sql, on_error_stop => 1);
	like($out, qr/^amcheck \d+$/m, "$name: every row is in the indexes it belongs in")
	  or diag($err);
	my @through = $out =~ /(Index (?:Only )?Scan using deliveries_\w+_idx)/g;
	is(scalar(@through), 3, "$name: each status is counted through a partial index");
	for my $status ('pending', 'delivered', 'failed')
	{
		my ($by_index) = $out =~ /^$status index (\d+)$/m;
		my ($by_table) = $out =~ /^$status table (\d+)$/m;
		ok(defined $by_index && defined $by_table && $by_index == $by_table,
			"$name: the partial index holds the $status rows, and only them ("
			  . ($by_index // '?') . ' vs ' . ($by_table // '?') . ')');
	}
	return $out;
}

# The delivery worker's pid, once it runs; undef if it does not come up.
sub worker_pid
{
	my ($node) = @_;
	my $q = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'edusync delivery worker' AND datname = 'postgres'";
	return undef unless $node->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($q) w");
	my ($ret, $pid) = $node->psql('postgres', $q);
	return ($ret == 0 && $pid =~ /^\d+$/) ? $pid : undef;
}

# Stop the node and check that its server log holds none of the named
# secrets, nor any token the fake Graph issued.
sub log_keeps_secrets
{
	my ($node, %secrets) = @_;
	$node->stop;
	my $log = slurp_file($node->logfile);
	unlike($log, qr/\Q$secrets{$_}\E/, "the $_ is not in the server log")
	  for sort keys %secrets;
	unlike($log, qr/fake-[0-9a-f]{8}/, 'no fetched token in the server log');
	return;
}

1;
