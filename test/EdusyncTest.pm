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
  worker_pid log_keeps_secrets);

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
