-- Scoring (DESIGN.md §4): the model registry, training, import/export, prediction.

-- Version numbers come from one sequence shared by every model name, so a staging row's
-- model_version alone identifies the model that scored it.
CREATE SEQUENCE anomstream.model_version_seq AS int;

CREATE TABLE anomstream.models (
	version			int PRIMARY KEY DEFAULT pg_catalog.nextval('anomstream.model_version_seq'),
	name			text NOT NULL CHECK (name OPERATOR(pg_catalog.<>) ''),
	stream			text CHECK (stream IN ('process', 'memory')),
	booster			bytea NOT NULL,
	format			text NOT NULL CHECK (format IN ('json', 'ubj')),
	features		text[] NOT NULL CHECK (pg_catalog.cardinality(features) OPERATOR(pg_catalog.>) 0),
	encoding		jsonb NOT NULL DEFAULT '{}'
					CHECK (pg_catalog.jsonb_typeof(encoding) OPERATOR(pg_catalog.=) 'object'),
	threshold		float8 NOT NULL DEFAULT 0.5
					CHECK (threshold OPERATOR(pg_catalog.>=) 0 AND threshold OPERATOR(pg_catalog.<=) 1),
	num_features	int NOT NULL,
	metrics			jsonb,
	params			jsonb,
	origin			text NOT NULL CHECK (origin IN ('train', 'import', 'default')),
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	created_by		name NOT NULL DEFAULT CURRENT_USER,
	UNIQUE (name, version)
);
COMMENT ON TABLE anomstream.models IS
	'XGBoost models: one row per immutable version (booster bytes, ordered features, text encodings, threshold, training metrics).';
COMMENT ON COLUMN anomstream.models.features IS
	'Ordered features: column names or SQL expressions over a row of the stream''s staging table.';
COMMENT ON COLUMN anomstream.models.encoding IS
	'Text features: {"feature": {"kind": "dictionary" | "onehot", "values": [...]}}; features not listed are numeric.';
COMMENT ON COLUMN anomstream.models.num_features IS
	'Input columns the booster expects (one per numeric or dictionary feature, one per value of a one-hot feature).';

-- Which version scores each stream. No row: the stream's newest default model; a row with
-- NULL version: the stream is not scored.
CREATE TABLE anomstream.active_models (
	stream			text PRIMARY KEY CHECK (stream IN ('process', 'memory')),
	version			int REFERENCES anomstream.models (version),
	activated_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	activated_by	name NOT NULL DEFAULT CURRENT_USER
);
COMMENT ON TABLE anomstream.active_models IS
	'The model version each stream uses (no row: the default model; NULL version: no scoring). Change it with anomstream.activate() and anomstream.deactivate().';

CREATE VIEW anomstream.active_model AS
SELECT s.stream,
	   CASE WHEN a.stream IS NOT NULL THEN a.version ELSE d.version END AS version,
	   m.name,
	   CASE WHEN a.stream IS NULL THEN 'default'
			WHEN a.version IS NULL THEN 'none' ELSE 'activated' END AS source,
	   a.activated_at
FROM (VALUES ('process'), ('memory')) AS s(stream)
LEFT JOIN anomstream.active_models a ON a.stream OPERATOR(pg_catalog.=) s.stream
LEFT JOIN LATERAL (SELECT pg_catalog.max(x.version) AS version FROM anomstream.models x
				   WHERE x.stream OPERATOR(pg_catalog.=) s.stream
					 AND x.origin OPERATOR(pg_catalog.=) 'default') d ON true
LEFT JOIN anomstream.models m
	ON m.version OPERATOR(pg_catalog.=) CASE WHEN a.stream IS NOT NULL THEN a.version ELSE d.version END;
COMMENT ON VIEW anomstream.active_model IS
	'The model version that scores each stream, and why (activated, default, none).';

-- Model versions are immutable: what scoring reads cannot change under a version number.
CREATE FUNCTION anomstream.models_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
	IF (NEW.version, NEW.name, NEW.stream, NEW.booster, NEW.format, NEW.features, NEW.encoding,
		NEW.threshold, NEW.num_features, NEW.origin, NEW.created_at)
	   IS DISTINCT FROM
	   (OLD.version, OLD.name, OLD.stream, OLD.booster, OLD.format, OLD.features, OLD.encoding,
		OLD.threshold, OLD.num_features, OLD.origin, OLD.created_at) THEN
		RAISE EXCEPTION 'model versions are immutable'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Only metrics and params of model "%s" version %s can be updated.', OLD.name, OLD.version),
				  HINT = 'Import or train a new version (anomstream.import_model(name, anomstream.export_model(name), threshold => ...) copies one).';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION anomstream.models_immutable() IS
	'Trigger: forbids changing a model version''s booster, features, encoding, threshold or identity.';

-- A version that retained rows refer to cannot be deleted.
CREATE FUNCTION anomstream.models_referenced() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
	t text;
	used bool;
BEGIN
	FOREACH t IN ARRAY ARRAY['anomstream.process_events', 'anomstream.memory_events'] LOOP
		EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE model_version = $1)', t)
			INTO used USING OLD.version;
		IF used THEN
			RAISE EXCEPTION 'model "%" version % is referenced by rows of %', OLD.name, OLD.version, t
				USING ERRCODE = 'dependent_objects_still_exist',
					  HINT = 'Wait until staging_retention has expired those rows.';
		END IF;
	END LOOP;
	IF to_regclass('anomstream.detected_attacks') IS NOT NULL THEN
		EXECUTE 'SELECT EXISTS (SELECT 1 FROM anomstream.detected_attacks
				 WHERE p_model_version = $1 OR m_model_version = $1)'
			INTO used USING OLD.version;
		IF used THEN
			RAISE EXCEPTION 'model "%" version % is referenced by rows of anomstream.detected_attacks',
				OLD.name, OLD.version
				USING ERRCODE = 'dependent_objects_still_exist';
		END IF;
	END IF;
	RETURN OLD;
END
$$;
COMMENT ON FUNCTION anomstream.models_referenced() IS
	'Trigger: refuses to delete a model version that staging or result rows refer to.';

CREATE FUNCTION anomstream.models_no_truncate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
	RAISE EXCEPTION 'cannot truncate anomstream.models'
		USING ERRCODE = 'feature_not_supported',
			  HINT = 'Delete versions with DELETE, which checks that no retained rows refer to them.';
END
$$;
COMMENT ON FUNCTION anomstream.models_no_truncate() IS
	'Trigger: TRUNCATE would skip the check that no retained rows refer to a version.';

-- An activated version must be a model of that stream.
CREATE FUNCTION anomstream.active_models_check() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
	s text;
BEGIN
	IF NEW.version IS NOT NULL THEN
		SELECT m.stream INTO s FROM anomstream.models m WHERE m.version = NEW.version;
		IF s IS DISTINCT FROM NEW.stream THEN
			RAISE EXCEPTION 'model version % is not a model of stream "%"', NEW.version, NEW.stream
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Train or import the model with stream => ''process'' or ''memory''.';
		END IF;
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION anomstream.active_models_check() IS
	'Trigger: an activated version must belong to the stream it scores.';

CREATE FUNCTION anomstream.models_changed() RETURNS trigger
	AS 'MODULE_PATHNAME', 'anomstream_models_changed'
	LANGUAGE C;
COMMENT ON FUNCTION anomstream.models_changed() IS
	'Trigger: invalidates every backend''s model cache when the registry changes (effective at commit).';

CREATE TRIGGER models_immutable BEFORE UPDATE ON anomstream.models
	FOR EACH ROW EXECUTE FUNCTION anomstream.models_immutable();
CREATE TRIGGER models_referenced BEFORE DELETE ON anomstream.models
	FOR EACH ROW EXECUTE FUNCTION anomstream.models_referenced();
CREATE TRIGGER models_no_truncate BEFORE TRUNCATE ON anomstream.models
	FOR EACH STATEMENT EXECUTE FUNCTION anomstream.models_no_truncate();
CREATE TRIGGER models_changed AFTER INSERT OR UPDATE OR DELETE ON anomstream.models
	FOR EACH STATEMENT EXECUTE FUNCTION anomstream.models_changed();
CREATE TRIGGER active_models_check BEFORE INSERT OR UPDATE ON anomstream.active_models
	FOR EACH ROW EXECUTE FUNCTION anomstream.active_models_check();
CREATE TRIGGER active_models_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON anomstream.active_models
	FOR EACH STATEMENT EXECUTE FUNCTION anomstream.models_changed();

-- Default models are recreated by CREATE EXTENSION; dump only the user's.
SELECT pg_catalog.pg_extension_config_dump('anomstream.models',
	'WHERE origin OPERATOR(pg_catalog.<>) ''default''');
SELECT pg_catalog.pg_extension_config_dump('anomstream.active_models', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.model_version_seq', '');

CREATE TYPE anomstream.prediction AS (
	probability		float8,
	prediction		int,
	model_version	int
);
COMMENT ON TYPE anomstream.prediction IS
	'A score: XGBoost''s probability, prediction = (probability >= threshold), and the model version.';

CREATE FUNCTION anomstream.train(name text, query text, label text, features text[],
								 params jsonb DEFAULT '{}', stream text DEFAULT NULL,
								 encoding jsonb DEFAULT '{}', test_fraction float8 DEFAULT 0.2,
								 threshold float8 DEFAULT 0.5, activate boolean DEFAULT false,
								 OUT version int, OUT metrics jsonb)
	RETURNS record
	AS 'MODULE_PATHNAME', 'anomstream_train'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION anomstream.train(text, text, text, text[], jsonb, text, jsonb, float8, float8, boolean) IS
	'Train a binary XGBoost classifier (hist) on the rows of query, label 0/1, holding out test_fraction of them for the stored metrics; returns the new version.';

CREATE FUNCTION anomstream.import_model(name text, model bytea, features text[] DEFAULT NULL,
										stream text DEFAULT NULL, encoding jsonb DEFAULT NULL,
										threshold float8 DEFAULT NULL, metrics jsonb DEFAULT NULL,
										activate boolean DEFAULT false)
	RETURNS int
	AS 'MODULE_PATHNAME', 'anomstream_import_model'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION anomstream.import_model(text, bytea, text[], text, jsonb, float8, jsonb, boolean) IS
	'Store XGBoost JSON or UBJSON model bytes (from Python, R, the CLI or anomstream) as a new version; returns the version.';

CREATE FUNCTION anomstream.import_model(name text, path text, features text[] DEFAULT NULL,
										stream text DEFAULT NULL, encoding jsonb DEFAULT NULL,
										threshold float8 DEFAULT NULL, metrics jsonb DEFAULT NULL,
										activate boolean DEFAULT false)
	RETURNS int
	AS 'MODULE_PATHNAME', 'anomstream_import_model_file'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION anomstream.import_model(text, text, text[], text, jsonb, float8, jsonb, boolean) IS
	'Like import_model(name, bytea, ...), reading the model from a server file (absolute path; needs pg_read_server_files).';

CREATE FUNCTION anomstream.load_default_model(stream text) RETURNS int
	AS 'MODULE_PATHNAME', 'anomstream_load_default_model'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION anomstream.load_default_model(text) IS
	'Load the demo model shipped for a stream (share/extension/anomstream_<stream>_default.json) as a new default version.';
REVOKE ALL ON FUNCTION anomstream.load_default_model(text) FROM PUBLIC;

CREATE FUNCTION anomstream.convert_model(model bytea, format text) RETURNS bytea
	AS 'MODULE_PATHNAME', 'anomstream_convert_model'
	LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION anomstream.convert_model(bytea, text) IS
	'Re-serialise XGBoost model bytes as ''json'' or ''ubj'' (UBJSON) with XGBoost itself.';

CREATE FUNCTION anomstream.model_version(name text, version int DEFAULT NULL) RETURNS int
LANGUAGE plpgsql STABLE SET search_path = pg_catalog AS $$
DECLARE
	v int;
BEGIN
	SELECT m.version INTO v FROM anomstream.models m
	WHERE m.name = model_version.name
	  AND m.version = COALESCE(model_version.version,
							   (SELECT max(x.version) FROM anomstream.models x WHERE x.name = model_version.name));
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model "%"% does not exist', name,
			CASE WHEN version IS NULL THEN '' ELSE ' version ' || version END
			USING ERRCODE = 'undefined_object';
	END IF;
	RETURN v;
END
$$;
COMMENT ON FUNCTION anomstream.model_version(text, int) IS
	'The version a model name refers to (the newest unless version is given); an error if there is none.';

CREATE FUNCTION anomstream.export_model(name text, version int DEFAULT NULL, format text DEFAULT NULL)
	RETURNS bytea
LANGUAGE plpgsql STABLE SET search_path = pg_catalog AS $$
DECLARE
	b bytea;
	f text;
BEGIN
	SELECT m.booster, m.format INTO b, f FROM anomstream.models m
	WHERE m.version = anomstream.model_version(export_model.name, export_model.version);
	IF format IS NULL OR format = f THEN
		RETURN b;
	END IF;
	RETURN anomstream.convert_model(b, format);
END
$$;
COMMENT ON FUNCTION anomstream.export_model(text, int, text) IS
	'The stored XGBoost bytes of a model (newest version unless given), loadable by any XGBoost; with format ''json'' or ''ubj'', converted by XGBoost if stored otherwise.';

CREATE FUNCTION anomstream.activate(name text, version int DEFAULT NULL) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
	v int := anomstream.model_version(name, version);
	s text;
BEGIN
	SELECT m.stream INTO s FROM anomstream.models m WHERE m.version = v;
	IF s IS NULL THEN
		RAISE EXCEPTION 'model "%" has no stream', name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Train or import the model with stream => ''process'' or ''memory''.';
	END IF;
	INSERT INTO anomstream.active_models AS a (stream, version) VALUES (s, v)
	ON CONFLICT (stream) DO UPDATE SET version = EXCLUDED.version,
		activated_at = pg_catalog.now(), activated_by = CURRENT_USER;
	RETURN v;
END
$$;
COMMENT ON FUNCTION anomstream.activate(text, int) IS
	'Make a model version (the newest unless given) score its stream from the next micro-batch on; returns the version.';

CREATE FUNCTION anomstream.deactivate(stream text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
	IF stream NOT IN ('process', 'memory') THEN
		RAISE EXCEPTION 'unknown stream "%"', stream
			USING ERRCODE = 'invalid_parameter_value', HINT = 'The streams are "process" and "memory".';
	END IF;
	INSERT INTO anomstream.active_models AS a (stream, version) VALUES (deactivate.stream, NULL)
	ON CONFLICT ON CONSTRAINT active_models_pkey DO UPDATE SET version = NULL,
		activated_at = pg_catalog.now(), activated_by = CURRENT_USER;
END
$$;
COMMENT ON FUNCTION anomstream.deactivate(text) IS
	'Stop scoring a stream (its rows get NULL prediction) until a model is activated; deleting its active_models row returns to the default model.';

CREATE FUNCTION anomstream.predict(model text, "row" record, version int DEFAULT NULL)
	RETURNS anomstream.prediction
	AS 'MODULE_PATHNAME', 'anomstream_predict_row'
	LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION anomstream.predict(text, record, int) IS
	'Score one row (e.g. of a staging table) with a model''s features (newest version unless given).';

CREATE FUNCTION anomstream.predict(model text, features float8[], version int DEFAULT NULL)
	RETURNS anomstream.prediction
	AS 'MODULE_PATHNAME', 'anomstream_predict_vector'
	LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION anomstream.predict(text, float8[], int) IS
	'Score one already encoded feature vector (as anomstream.encode_features returns it); NULL elements are missing.';

CREATE FUNCTION anomstream.predict(model text, "rows" anyarray, version int DEFAULT NULL)
	RETURNS SETOF anomstream.prediction
	AS 'MODULE_PATHNAME', 'anomstream_predict_rows'
	LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION anomstream.predict(text, anyarray, int) IS
	'Score an array of rows in one XGBoost call; one result per element, in order (NULL elements give NULL).';

CREATE FUNCTION anomstream.encode_features(model text, "row" record, version int DEFAULT NULL)
	RETURNS float4[]
	AS 'MODULE_PATHNAME', 'anomstream_encode_features'
	LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION anomstream.encode_features(text, record, int) IS
	'The feature vector XGBoost receives for a row (NULL = missing), for debugging and external checks.';

CREATE FUNCTION anomstream.score_rows(stream text, query text, batch_size int DEFAULT 10000,
									  report_timing boolean DEFAULT false, OUT ord bigint, OUT prediction int, OUT probability float8,
									  OUT model_version int)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'anomstream_score_rows'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION anomstream.score_rows(text, text, int, boolean) IS
	'Score the rows of query (rows of the stream''s staging table) exactly as the pipeline does, batch_size rows per XGBoost call; ord numbers the rows from 1. Nothing is written. report_timing: a NOTICE with the time spent in the scoring hook.';

GRANT SELECT ON anomstream.active_model TO anomstream_reader, anomstream_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON anomstream.models, anomstream.active_models TO anomstream_admin;
GRANT USAGE ON SEQUENCE anomstream.model_version_seq TO anomstream_admin;

-- The demo models (models/*.json in the source tree, installed as DATA files).
SELECT anomstream.load_default_model('process');
SELECT anomstream.load_default_model('memory');
