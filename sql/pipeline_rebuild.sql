-- anomstream.rebuild(from): argument checks, privileges, one request at a time, and
-- rebuild_wait(). (The worker's side is in test/t/404 and 405; this instance's worker has
-- no brokers, so a request stays 'requested'.)
CREATE EXTENSION anomstream;

-- Control function: SECURITY DEFINER, fixed search_path, admin only.
SELECT p.oid::regprocedure, p.prosecdef, p.proconfig,
	   has_function_privilege('anomstream_admin', p.oid, 'EXECUTE') AS admin,
	   has_function_privilege('anomstream_reader', p.oid, 'EXECUTE') AS reader,
	   has_function_privilege('public', p.oid, 'EXECUTE') AS public
  FROM pg_proc p
 WHERE p.pronamespace = 'anomstream'::regnamespace
   AND p.proname IN ('rebuild', 'rebuild_wait')
 ORDER BY 1;

-- Arguments
SELECT anomstream.rebuild(NULL);
SELECT anomstream.rebuild('infinity');
SELECT anomstream.rebuild('-infinity');

-- Privileges: a reader may not, a member of anomstream_admin may.
CREATE ROLE regress_rebuild_user IN ROLE anomstream_reader;
CREATE ROLE regress_rebuild_admin IN ROLE anomstream_admin;
SET ROLE regress_rebuild_user;
SELECT anomstream.rebuild('2020-11-01 12:00:00+00');
SET ROLE regress_rebuild_admin;
-- (the worker has no brokers: a NOTICE says the request waits; its detail, the worker's
-- state, depends on timing)
\set VERBOSITY terse
SELECT anomstream.rebuild('2020-11-01 12:00:00+00') AS id \gset
\set VERBOSITY default
SELECT id = :id AS same, from_time, status, requested_by
  FROM anomstream.rebuild_requests;
-- One at a time
SELECT anomstream.rebuild('2020-11-01 13:00:00+00');
-- Waiting runs into the timeout: the status so far
SELECT anomstream.rebuild_wait(:id, '0 s');
SELECT anomstream.rebuild_wait(:id + 100, '0 s');
RESET ROLE;

-- A refused request: rebuild_wait raises the reason.
UPDATE anomstream.rebuild_requests SET status = 'refused', message = 'Kafka no longer has the data (test)'
 WHERE id = :id;
SELECT anomstream.rebuild_wait(:id);
-- Waiting in the transaction that made the request cannot work: the worker does not see it.
BEGIN;
SET LOCAL client_min_messages = warning;
SELECT anomstream.rebuild('2020-11-01 13:00:00+00') AS id2 \gset
SELECT anomstream.rebuild_wait(:id2, '5 s');
ROLLBACK;
-- An aborted request leaves nothing behind.
SELECT count(*) FROM anomstream.rebuild_requests WHERE status = 'requested';

-- The SQLSTATEs
\set VERBOSITY sqlstate
SELECT anomstream.rebuild(NULL);
SELECT anomstream.rebuild('infinity');
SET client_min_messages = warning;
SELECT anomstream.rebuild('2020-11-01 13:00:00+00') IS NOT NULL AS requested;
RESET client_min_messages;
SELECT anomstream.rebuild('2020-11-01 14:00:00+00');
SET ROLE regress_rebuild_user;
SELECT anomstream.rebuild('2020-11-01 13:00:00+00');
RESET ROLE;
\set VERBOSITY default

DROP EXTENSION anomstream;
DROP ROLE regress_rebuild_user, regress_rebuild_admin;
