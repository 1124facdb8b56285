-- pq_expected(query): the rows of query as test/parquet/check.mjs expects them: columns with
-- their types, and each value in its canonical text (see check.mjs). Test helper, created in
-- the test database only.
CREATE FUNCTION pg_temp.pq_canon(expr text, typ text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE
		WHEN typ = 'bytea' THEN format('encode(%s, ''hex'')', expr)
		WHEN typ = 'date' THEN format('to_char(%s, ''YYYY-MM-DD'')', expr)
		WHEN typ LIKE 'timestamp%' THEN format('((extract(epoch from %s) * 1000000)::bigint)::text', expr)
		WHEN typ = 'character' THEN format('to_json(%s) #>> ''{}''', expr)
		ELSE format('(%s)::text', expr)
	END
$$;

CREATE FUNCTION pg_temp.pq_expected(q text) RETURNS json
LANGUAGE plpgsql SET intervalstyle = 'iso_8601' SET extra_float_digits = 1 AS $$
DECLARE
	cols json;
	exprs text[] := '{}';
	r record;
	res json;
BEGIN
	EXECUTE format('CREATE TEMP VIEW pq_v AS %s', q);
	FOR r IN
		SELECT a.attname, format_type(a.atttypid, NULL) AS t,
			   CASE WHEN t.typcategory = 'A' THEN format_type(t.typelem, NULL) END AS elem
		FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		WHERE a.attrelid = 'pq_v'::regclass AND a.attnum > 0 ORDER BY a.attnum
	LOOP
		IF r.elem IS NULL THEN
			exprs := exprs || pg_temp.pq_canon(quote_ident(r.attname), r.t);
		ELSE
			exprs := exprs || format('CASE WHEN %1$I IS NULL THEN NULL ELSE (SELECT coalesce(json_agg(%2$s ORDER BY o), ''[]'') FROM unnest(%1$I) WITH ORDINALITY u(e, o)) END',
									 r.attname, pg_temp.pq_canon('e', r.elem));
		END IF;
	END LOOP;
	SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, NULL),
			'elem', CASE WHEN t.typcategory = 'A' THEN format_type(t.typelem, NULL) END) ORDER BY a.attnum)
	INTO cols
	FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
	WHERE a.attrelid = 'pq_v'::regclass AND a.attnum > 0;
	EXECUTE format('SELECT coalesce(json_agg(json_build_array(%s)), ''[]'') FROM (SELECT * FROM pq_v) s',
				   array_to_string(exprs, ', ')) INTO res;
	DROP VIEW pq_v;
	RETURN json_build_object('columns', cols, 'rows', res);
END
$$;
