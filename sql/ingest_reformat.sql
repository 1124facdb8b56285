-- anomstream.reformat / try_reformat: the unit conversion of DESIGN.md §3.
CREATE EXTENSION anomstream;

-- Every format seen in the raw atop memory data: K and M suffixes, decimals, bare numbers.
SELECT v, anomstream.reformat(v) AS value
FROM (VALUES ('132K'), ('224.2M'), ('9392K'), ('0K'), ('0'), ('0.0'), ('184.3'), ('5668.0')) t(v);

-- Units up to P, spaces anywhere (ASCII space only), signs, leading/trailing dots.
SELECT v, anomstream.reformat(v) AS value
FROM (VALUES ('1.5G'), ('2T'), ('3P'), ('12 M'), (' 4 2 K '), ('-1.5K'), ('+7'), ('.5M'),
			 ('5.M'), ('007'), ('0.000001K'), ('123456789012345678901234567890')) t(v);

-- The decimal is exact: 224.2M is 224200000, not 224.2 * 1e6 in floating point.
SELECT anomstream.reformat('224.2M') = 224200000::float8 AS exact,
	   anomstream.reformat('0.1K') = 100::float8 AS exact_small;

-- Garbage: NULL from try_reformat, 22P02 from reformat.
SELECT v, anomstream.try_reformat(v) AS value
FROM (VALUES (''), (' '), ('K'), ('1e5'), ('1E5'), ('inf'), ('nan'), ('1.2.3'), ('12k'),
			 ('12m'), ('12KB'), ('12KK'), ('--1'), ('+-1'), ('1,5'), (E'1\t2'), ('0x10'),
			 ('.'), ('-'), ('M1'), ('１２')) t(v);
SELECT anomstream.reformat('12Q');
SELECT anomstream.reformat('1e5');
\set VERBOSITY sqlstate
SELECT anomstream.reformat('');
\set VERBOSITY default

-- NULL in, NULL out (STRICT).
SELECT anomstream.reformat(NULL), anomstream.try_reformat(NULL);

DROP EXTENSION anomstream;
