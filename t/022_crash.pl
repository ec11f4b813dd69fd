# t/022_crash.pl: at-least-once through crashes.  The worker is killed
# with SIGKILL (the postmaster then restarts every process), the server is
# stopped in immediate mode and started again, and the worker is
# terminated, each in the middle of a run: every error still ends
# 'delivered' and reached Graph at least once, with the same
# client-request-id on every send.  A row whose outcome cannot be recorded
# neither stops the others nor makes the worker spin.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../test";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use List::Util ();
use Time::HiRes qw(time sleep);
use FakeGraph;
use EdusyncTest;

my $TOKEN = 'crash-token';
my $N = 1500;

my $graph = FakeGraph->start(tokens => [$TOKEN]);
my $node = edusync_node('crash', $graph, qq{
edusync.bearer_token = '$TOKEN'
edusync.timeout = '2s'
restart_after_crash = on
});

# Wait until $want deliveries of $tag are delivered, at most $secs.
sub wait_delivered
{
	my ($tag, $want, $secs) = @_;
	local $PostgreSQL::Test::Utils::timeout_default =
	  List::Util::max($secs // 0, $PostgreSQL::Test::Utils::timeout_default);
	return 1 if $node->poll_query_until('postgres', qq{
		SELECT count(*) >= $want FROM edusync.deliveries d JOIN edusync.sync_errors e
		  ON e.profile_id = d.profile_id AND e.id = d.error_id
		WHERE e.error_message LIKE '$tag %' AND d.status = 'delivered'});
	diag("$tag: " . (count_status($node, $tag, 'delivered') // 'unknown') . " of $want delivered");
	return 0;
}

# Which of @ids never reached Graph (no 201 for its client-request-id).
sub missing
{
	my @ids = @_;
	my %arrived;
	for my $r ($graph->requests(kind => 'errors'))
	{
		$arrived{ $r->{headers}{'client-request-id'} }++
		  if defined $r->{status} && $r->{status} == 201;
	}
	my @missing = grep { !$arrived{$_} } @ids;
	my $dups = grep { $_ > 1 } values %arrived;
	return (scalar @missing, $dups);
}

# Run $N errors through a crash made by $crash once $at of them are delivered.
sub crash_case
{
	my ($name, $tag, $at, $crash) = @_;
	$graph->reset;
	# slow every answer a little, so that the crash lands mid-run
	$graph->script('errors', { delay => 0.01, status => 201, repeat => 100000 });
	my @ids = queue_errors($node, $N, $tag);
	ok(wait_delivered($tag, $at, 30), "$name: the run started");
	my $before = count_status($node, $tag, 'delivered');
	my $old_pid = worker_pid($node);
	$crash->($old_pid);
	ok(wait_delivered($tag, $N, 60), "$name: all $N delivered in the end");
	is(count_status($node, $tag, 'pending') // -1, 0, "$name: none pending");
	my $new_pid = worker_pid($node);
	ok(defined $new_pid && $new_pid != $old_pid, "$name: a new worker runs");
	my ($lost, $dups) = missing(@ids);
	is($lost, 0, "$name: each error reached Graph at least once");
	note("$name: crash after $before delivered; $dups errors received twice or more");
	return;
}

crash_case('SIGKILL of the worker', 'kill9', 300, sub {
	my ($pid) = @_;
	kill 'KILL', $pid;
});
like(slurp_file($node->logfile),
	qr/background worker "edusync delivery worker" \(PID \d+\) was terminated by signal 9/,
	'the postmaster saw the worker die');

crash_case('immediate stop and start', 'immediate', 300, sub {
	$node->stop('immediate');
	$node->start;
});

crash_case('the worker terminated', 'terminate', 300, sub {
	my ($pid) = @_;
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
});

# --- a row whose outcome cannot be recorded: the others go on, no spin
# (the worker runs with search_path = pg_catalog, pg_temp: a trigger on
# its tables qualifies its names, as every trigger should)
$graph->reset;
$node->safe_psql('postgres', q{
	CREATE TABLE poison (error_id uuid);
	CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF EXISTS (SELECT 1 FROM public.poison WHERE error_id = NEW.error_id) THEN
			RAISE EXCEPTION 'refusing to record %', NEW.error_id;
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER refuse BEFORE UPDATE ON edusync.deliveries
		FOR EACH ROW EXECUTE FUNCTION refuse();
});
my $bad = $node->safe_psql('postgres', q{
	SET edusync.forward = 'async';
	BEGIN;
	SELECT edusync.create_sync_error('p1', 'Student', 'X', 'poison 0')->>'id' AS id \gset
	INSERT INTO poison VALUES (:'id');
	COMMIT;
	SELECT :'id';
});
my @good = queue_errors($node, 50, 'poison');
ok(wait_delivered('poison', 50, 20), 'the other deliveries are recorded');
# the worker holds an unrecordable one back 1 s, then 2 s, 4 s...: wait for
# three sends of it (time only as the bound) and check the gaps the fake saw
my @bad_sends;
ok($graph->wait_for(sub {
			@bad_sends = sort { $a->{time} <=> $b->{time} }
			  grep { $_->{headers}{'client-request-id'} eq $bad } $graph->requests(kind => 'errors');
			@bad_sends >= 3;
		}, 60),
	'the unrecordable one is sent again (' . scalar(@bad_sends) . ' sends)');
my @gaps = map { $bad_sends[$_]{time} - $bad_sends[ $_ - 1 ]{time} } 1 .. $#bad_sends;
cmp_ok($gaps[0] // 0, '>=', 1, sprintf('held back at least 1 s before the second send (%.2f s)', $gaps[0] // 0));
cmp_ok($gaps[1] // 0, '>=', 2, sprintf('and at least 2 s before the third: growing holds, not a loop (%.2f s)', $gaps[1] // 0));
is($node->safe_psql('postgres', "SELECT status FROM edusync.deliveries WHERE error_id = '$bad'"),
	'pending', 'and stays pending');
like(slurp_file($node->logfile),
	qr/WARNING:  edusync delivery worker could not record what Graph answered for error $bad/,
	'the worker says which delivery it could not record');
$node->safe_psql('postgres', 'DELETE FROM poison');
ok(wait_delivered('poison', 51, 30), 'recorded once the trigger lets it');

$node->stop;
$graph->stop;
done_testing();
