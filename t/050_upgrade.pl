# t/050_upgrade.pl: from the released 0.1.0 to 0.2.0 with ALTER EXTENSION
# edusync UPDATE.  The 0.2.0 library refuses to run 0.1.0's functions (55000,
# hint: ALTER EXTENSION edusync UPDATE); data stored under 0.1.0 (written
# here with plain INSERTs, since its functions refuse) survives the update;
# and the updated database's objects are exactly those of a fresh 0.2.0
# install: pg_dump --schema-only, and pg_dump --binary-upgrade (which, unlike
# a plain dump, lists every member of the extension with its definition,
# grants and comment) with the OIDs and transaction ids left out.
#
# Whoever adds an object to 0.2.0 must add it to the upgrade script too:
# this test fails until they do.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE old_db');
$node->safe_psql('postgres', 'CREATE DATABASE fresh_db');

$node->safe_psql('old_db', q{CREATE EXTENSION edusync VERSION '0.1.0'});
is($node->safe_psql('old_db',
		q{SELECT extversion FROM pg_extension WHERE extname = 'edusync'}),
	'0.1.0', '0.1.0 installs');

# --- the 0.2.0 library refuses the SQL objects of 0.1.0
$node->safe_psql('old_db', q{INSERT INTO edusync.sync_profiles (id, display_name) VALUES ('p1', 'Profile 1')});
for my $call (
	q{SELECT edusync.create_sync_error('p1', 'Student', 'X', 'refused')},
	q{SELECT edusync.create_sync_error('p1', '{"entryType": "Student", "errorCode": "X", "errorMessage": "m"}'::jsonb)},
	q{SELECT edusync.get_sync_error('p1', '00000000-0000-0000-0000-000000000001')},
	q{SELECT edusync.list_sync_errors('p1')},
	q{SELECT edusync.retry_failed()})
{
	my ($ret, $out, $err) = $node->psql('old_db', "\\set VERBOSITY verbose\n$call");
	isnt($ret, 0, "refused under 0.1.0: $call");
	like($err, qr/ERROR:  55000: edusync library 0\.2\.0 does not run the SQL objects of edusync 0\.1\.0/,
		'55000, naming both versions');
	like($err, qr/HINT:  Run ALTER EXTENSION edusync UPDATE\./, 'with the hint to update');
}

# --- data stored under 0.1.0, by hand
$node->safe_psql('old_db', q{
	INSERT INTO edusync.sync_profiles (id, display_name, created_at)
	VALUES ('p2', 'Profile 2', '2024-01-02 03:04:05+00');
	INSERT INTO edusync.sync_errors (profile_id, id, entry_type, error_code, error_message,
		joining_value, recorded_date_time, reportable_identifier, created_at)
	VALUES
	  ('p1', '11111111-1111-4111-8111-111111111111', 'Student', 'UnsynchronizableChange',
	   'delivered one', 'j1@school.edu', '2017-07-05 00:52:45+00', 'r1', '2024-01-01 00:00:01+00'),
	  ('p1', '22222222-2222-4222-8222-222222222222', 'Teacher', 'E2',
	   'pending one', NULL, '2017-07-05 00:52:46.5+00', NULL, '2024-01-01 00:00:02+00'),
	  ('p2', '33333333-3333-4333-8333-333333333333', 'Section', 'E3',
	   'failed one', 'j3', '2017-07-05 00:52:47+00', 'r3', '2024-01-01 00:00:03+00');
	INSERT INTO edusync.deliveries (profile_id, error_id, status, attempts, next_attempt_at,
		last_status, last_error, remote_id, delivered_at, created_at)
	VALUES
	  ('p1', '11111111-1111-4111-8111-111111111111', 'delivered', 1, NULL, 201, NULL,
	   'remote-1', '2024-01-01 00:00:05+00', '2024-01-01 00:00:01+00'),
	  ('p1', '22222222-2222-4222-8222-222222222222', 'pending', 3, '2024-01-01 00:10:00+00', 503,
	   'HTTP 503', NULL, NULL, '2024-01-01 00:00:02+00'),
	  ('p2', '33333333-3333-4333-8333-333333333333', 'failed', 1, NULL, 400,
	   'BadRequest: no', NULL, NULL, '2024-01-01 00:00:03+00');
});

my $dump_data = q{
	SET TimeZone = 'UTC';
	SELECT 'profile|' || p::text FROM edusync.sync_profiles p
	UNION ALL SELECT 'error|' || e::text FROM edusync.sync_errors e
	UNION ALL SELECT 'delivery|' || (d.profile_id, d.error_id, d.status, d.attempts,
		d.next_attempt_at, d.last_status, d.last_error, d.remote_id, d.delivered_at,
		d.created_at)::text FROM edusync.deliveries d
	ORDER BY 1};
my $before = $node->safe_psql('old_db', $dump_data);
is(scalar(() = $before =~ /\n/g), 7, 'eight rows stored under 0.1.0');

# --- the update
$node->safe_psql('old_db', 'ALTER EXTENSION edusync UPDATE');
is($node->safe_psql('old_db',
		q{SELECT extversion FROM pg_extension WHERE extname = 'edusync'}),
	'0.2.0', 'ALTER EXTENSION edusync UPDATE reaches 0.2.0');
is($node->safe_psql('old_db', $dump_data), $before, 'every row survives the update');
is($node->safe_psql('old_db',
		'SELECT count(*) FROM edusync.deliveries WHERE last_attempt_at IS NULL'), '3',
	'the new column last_attempt_at is NULL for rows from 0.1.0');
is($node->safe_psql('old_db', 'SELECT edusync.version()'), '0.2.0', 'version() answers');
is($node->safe_psql('old_db',
		q{SELECT edusync.get_sync_error('p1', '11111111-1111-4111-8111-111111111111')->>'recordedDateTime'}),
	'2017-07-05T00:52:45Z', 'a row stored under 0.1.0 reads as Graph JSON');
like($node->safe_psql('old_db',
		q{SELECT edusync.create_sync_error('p1', 'Student', 'X', 'after the update')->>'id'}),
	qr/^[0-9a-f-]{36}$/, 'the library runs the updated functions');
is($node->safe_psql('old_db', 'SELECT edusync.retry_failed()'), '1',
	'the failed delivery of 0.1.0 is queued again');

# --- the same objects as a fresh 0.2.0 install
$node->safe_psql('fresh_db', 'CREATE EXTENSION edusync');

# pg_dump of one database, with what differs between any two databases
# (OIDs, transaction ids, the database's name) taken out.
sub schema_dump
{
	my ($db, @opts) = @_;
	my $out = $node->safe_psql('postgres', 'SELECT 1');    # keep the node warm
	my ($stdout, $stderr);
	my $ok = IPC::Run::run(
		[ 'pg_dump', '--schema-only', '--no-sync', @opts,
		  '-h', $node->host, '-p', $node->port, '-d', $db ],
		'>', \$stdout, '2>', \$stderr);
	die "pg_dump $db failed: $stderr" unless $ok;
	my @keep;
	for my $line (split /\n/, $stdout)
	{
		next if $line =~ /binary_upgrade_set_(next|pg_class|record_init)/;
		next if $line =~ /^-- For binary upgrade, (must preserve|set heap)/;
		next if $line =~ /SET relfrozenxid|SET relminmxid|relfrozenxid = |^WHERE oid = '\d+';$/;
		next if $line =~ /^\\(un)?restrict /;    # random keys (newer pg_dump)
		# the extension's config tables, as OIDs: compared apart, below
		$line =~ s/^(SELECT pg_catalog\.binary_upgrade_create_empty_extension\(.*?)'\{[0-9,]*\}'/$1'{OIDS}'/;
		push @keep, $line;
	}
	return join("\n", @keep) . "\n";
}

my $plain_old = schema_dump('old_db');
my $plain_fresh = schema_dump('fresh_db');
like($plain_fresh, qr/CREATE EXTENSION IF NOT EXISTS edusync WITH SCHEMA edusync/,
	'the plain dump names the extension');
is($plain_old, $plain_fresh, 'pg_dump --schema-only: the updated database equals a fresh 0.2.0');

my $full_old = schema_dump('old_db', '--binary-upgrade');
my $full_fresh = schema_dump('fresh_db', '--binary-upgrade');
like($full_fresh, qr/CREATE FUNCTION edusync\.worker_status/,
	'the binary-upgrade dump lists the extension\'s members');
like($full_fresh, qr/ALTER EXTENSION edusync ADD FUNCTION edusync\.version\(\)/,
	'as members');
if ($full_old ne $full_fresh)
{
	my $dir = PostgreSQL::Test::Utils::tempdir;
	open(my $a, '>', "$dir/updated.sql") or die;
	print $a $full_old;
	close $a;
	open(my $b, '>', "$dir/fresh.sql") or die;
	print $b $full_fresh;
	close $b;
	diag(scalar `diff -u $dir/fresh.sql $dir/updated.sql`);
}
ok($full_old eq $full_fresh,
	'pg_dump --binary-upgrade: every object of the updated extension equals a fresh 0.2.0 one');

my $config = q{SELECT array_agg(c::regclass::text ORDER BY c::regclass::text), extcondition
	FROM pg_extension, unnest(extconfig) c WHERE extname = 'edusync' GROUP BY extcondition};
is($node->safe_psql('old_db', $config), $node->safe_psql('fresh_db', $config),
	'the same tables are dumped as configuration');

$node->stop;
done_testing();
