-- The derivative of the updateStateByKey write-up as a PL/pgSQL updater (new_values jsonb,
-- old_state jsonb) -> jsonb, with the built-in's rules (DESIGN.md §9): x = lv.x replaces lv,
-- x < lv.x is skipped, the last 10 derivatives are kept (the write-up's trimming line is
-- buggy and not copied). Created in the first schema of search_path. Used by
-- test/t/600_keyed_vectors.pl and bench/keyed.sh as the user-written counterpart of the C
-- built-in.
CREATE FUNCTION deriv(vs jsonb, s jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	d jsonb := coalesce(s -> 'd', '[]');
	lv jsonb := s -> 'lv';
	p jsonb;
BEGIN
	FOR p IN SELECT e FROM jsonb_array_elements(vs) e LOOP
		IF lv IS NULL OR (p ->> 'x')::numeric = (lv ->> 'x')::numeric THEN
			lv := p;
		ELSIF (p ->> 'x')::numeric > (lv ->> 'x')::numeric THEN
			d := d || to_jsonb(((p ->> 'y')::float8 - (lv ->> 'y')::float8)
							   / ((p ->> 'x')::float8 - (lv ->> 'x')::float8));
			lv := p;
		END IF;
	END LOOP;
	IF jsonb_array_length(d) > 10 THEN
		d := (SELECT jsonb_agg(e ORDER BY i) FROM jsonb_array_elements(d) WITH ORDINALITY a(e, i)
			  WHERE i > jsonb_array_length(d) - 10);
	END IF;
	RETURN jsonb_build_object('d', d, 'lv', lv);
END
$$;
