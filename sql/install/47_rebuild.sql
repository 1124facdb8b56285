-- Rebuild (DESIGN.md §7, §11): anomstream.rebuild(from) recomputes the results from a point
-- in event time, with the semantic settings now in effect. It is the one way to rewind and
-- replay, to apply changed semantic settings ("config pending") and to move partitions
-- between servers.
--
-- The SQL call only records a request (a row in rebuild_requests, logged) and wakes the
-- worker at commit; the worker carries it out in its own transactions (src/pipeline/
-- rebuild.c): one transaction deletes the results from `from` on, clears the pipeline's
-- operator state, stores the new settings and records per partition where the replay
-- starts (rebuild_positions); then ordinary micro-batches replay Kafka from there, each
-- moving its partitions' replay position in the same transaction, until every partition
-- has passed the durable position it had when the rebuild started.
--
-- Invariants: at most one request is requested or replaying at a time (a partial unique
-- index); rebuild_positions has rows only while a request is replaying; both tables change
-- only in the transaction of the SQL call or of the worker, so a crash at any point leaves
-- them consistent with the results and the durable positions.

CREATE TABLE anomstream.rebuild_requests (
	id					bigserial PRIMARY KEY,
	from_time			timestamptz NOT NULL,		-- results from here on are recomputed
	status				text NOT NULL DEFAULT 'requested'
						CHECK (status IN ('requested', 'replaying', 'done', 'refused')),
	requested_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	requested_by		name NOT NULL,
	started_at			timestamptz,				-- the worker's rebuild transaction
	finished_at			timestamptz,				-- replay passed every old durable position, or refused
	windows_from		timestamptz,				-- potential_attacks rows from this window_start on were recomputed
	horizon				timestamptz,				-- rows from this event time on were replayed exactly
	kafka_time			timestamptz,				-- Kafka was sought to the first message at or after this Kafka timestamp
	old_settings		jsonb,						-- pipeline_config before
	new_settings		jsonb,						-- pipeline_config after
	deleted_windows		bigint,
	deleted_pairs		bigint,
	deleted_late_rows	bigint,
	replayed_messages	bigint,						-- messages between the seek positions and the old durable positions
	message				text						-- why it was refused
);
CREATE UNIQUE INDEX rebuild_requests_one_active ON anomstream.rebuild_requests ((true))
	WHERE status IN ('requested', 'replaying');
COMMENT ON TABLE anomstream.rebuild_requests IS
	'Requests of anomstream.rebuild(from) and their progress: requested, replaying (the worker rebuilt state and replays Kafka), done or refused (message says why).';

CREATE TABLE anomstream.rebuild_positions (
	request_id			bigint NOT NULL REFERENCES anomstream.rebuild_requests (id),
	topic				text NOT NULL,
	kafka_partition		int NOT NULL,
	replay_from			bigint NOT NULL,			-- the pipeline takes over rows from this offset on
	replay_until		bigint NOT NULL,			-- the durable position when the rebuild started
	old_max_event_time	timestamptz,				-- pipeline_partitions.max_event_time then
	PRIMARY KEY (topic, kafka_partition)
);
COMMENT ON TABLE anomstream.rebuild_positions IS
	'While a rebuild replays: per topic/partition, the offset from which the pipeline takes over rows again (moved by every micro-batch) and the durable position it replays up to.';

SELECT pg_catalog.pg_extension_config_dump('anomstream.rebuild_requests', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.rebuild_requests_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.rebuild_positions', '');

CREATE FUNCTION anomstream.rebuild("from" timestamptz) RETURNS bigint
	AS 'MODULE_PATHNAME', 'anomstream_rebuild'
	LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION anomstream.rebuild(timestamptz) IS
	'Recompute potential_attacks, detected_attacks and late_rows from the given event time on with the semantic settings now in effect (rewind/replay, applying changed settings, moving partitions). Records a request and returns its id; the worker carries it out after commit (status ''rebuilding''); anomstream.rebuild_wait(id) waits for it.';

CREATE FUNCTION anomstream.rebuild_wait(request_id bigint, timeout interval DEFAULT '10 min')
	RETURNS text
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	r anomstream.rebuild_requests;
	deadline timestamptz := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) timeout;
BEGIN
	LOOP
		SELECT * INTO r FROM anomstream.rebuild_requests q WHERE q.id OPERATOR(pg_catalog.=) request_id;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'rebuild request % does not exist', request_id
				USING ERRCODE = 'undefined_object';
		END IF;
		IF r.status OPERATOR(pg_catalog.=) 'refused' THEN
			RAISE EXCEPTION 'rebuild request % was refused', request_id
				USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = r.message;
		END IF;
		IF r.status OPERATOR(pg_catalog.=) 'done' THEN
			RETURN r.status;
		END IF;
		IF pg_catalog.pg_current_xact_id_if_assigned() IS NOT NULL
		   AND r.xmin OPERATOR(pg_catalog.=) pg_catalog.xid(pg_catalog.pg_current_xact_id_if_assigned()) THEN
			RAISE EXCEPTION 'rebuild request % is not committed yet', request_id
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  HINT = 'The worker sees the request once the transaction that called anomstream.rebuild() commits; call rebuild_wait() after that.';
		END IF;
		IF pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>) deadline THEN
			RETURN r.status;
		END IF;
		PERFORM pg_catalog.pg_sleep(0.2);
	END LOOP;
END
$fn$;
COMMENT ON FUNCTION anomstream.rebuild_wait(bigint, interval) IS
	'Wait until the rebuild request is done (returns ''done''), refused (raises the reason) or the timeout passed (returns its status, ''requested'' or ''replaying'').';

REVOKE ALL ON FUNCTION anomstream.rebuild(timestamptz), anomstream.rebuild_wait(bigint, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION anomstream.rebuild(timestamptz), anomstream.rebuild_wait(bigint, interval)
	TO anomstream_admin;
GRANT SELECT ON anomstream.rebuild_requests, anomstream.rebuild_positions TO anomstream_admin;
