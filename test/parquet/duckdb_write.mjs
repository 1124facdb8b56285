// Write reference Parquet files with DuckDB (an independent writer) for COPY FROM tests.
//
//   node duckdb_write.mjs OUTDIR
//
// Writes OUTDIR/duck_<codec>_<v1|v2>.parquet for codecs uncompressed, snappy, gzip and zstd and
// data page versions 1 and 2 (DuckDB's v2 files use DELTA_BINARY_PACKED, BYTE_STREAM_SPLIT and
// dictionary pages), each with 3000 rows in three row groups, NULLs, lists, a REQUIRED column;
// and OUTDIR/duck.csv with the same rows in PostgreSQL's text forms, loaded by core COPY as the
// expected rows. Prints the PostgreSQL table definition that matches.
import { DuckDBInstance } from '@duckdb/node-api';

const out = process.argv[2];
const db = await DuckDBInstance.create(':memory:');
const c = await db.connect();
await c.run(`SET TimeZone = 'UTC'`);
await c.run(`CREATE TABLE src (
  id INTEGER, b BIGINT, s SMALLINT, d DOUBLE, f FLOAT, t VARCHAR, u VARCHAR, flag BOOLEAN,
  dt DATE, ts TIMESTAMP, tz TIMESTAMPTZ, dec DECIMAL(12,3), l INTEGER[], uid UUID, bl BLOB,
  req INTEGER NOT NULL)`);
await c.run(`INSERT INTO src SELECT
  i,
  CASE WHEN i % 7 = 1 THEN NULL ELSE i * 1000000007 END,
  CASE WHEN i % 7 = 2 THEN NULL ELSE (i % 30000) - 15000 END,
  CASE WHEN i % 7 = 3 THEN NULL ELSE i / 7.0 END,
  CASE WHEN i % 7 = 4 THEN NULL ELSE i * 0.25 END,
  CASE WHEN i % 7 = 5 THEN NULL ELSE 'cat' || (i % 5) END,
  CASE WHEN i % 7 = 6 THEN NULL ELSE 'ü' || i || repeat('x', i % 50) END,
  CASE WHEN i % 7 = 0 THEN NULL ELSE i % 3 = 0 END,
  DATE '2020-01-01' + i::INTEGER,
  TIMESTAMP '2020-01-01 00:00:00' + to_microseconds(i * 1234567),
  TIMESTAMPTZ '2020-01-01 00:00:00+00' + to_seconds(i),
  CASE WHEN i % 7 = 1 THEN NULL ELSE (i * 1.001)::DECIMAL(12,3) END,
  CASE WHEN i % 11 = 0 THEN NULL WHEN i % 11 = 1 THEN [] ELSE [i::INTEGER, NULL, (i + 1)::INTEGER] END,
  CASE WHEN i % 13 = 0 THEN NULL ELSE md5(i::VARCHAR)::UUID END,
  CASE WHEN i % 7 = 2 THEN NULL ELSE encode('b' || i) END,
  i * 2
FROM range(3000) r(i)`);
for (const codec of ['uncompressed', 'snappy', 'gzip', 'zstd']) {
  for (const v of ['v1', 'v2']) {
    await c.run(`COPY src TO '${out}/duck_${codec}_${v}.parquet'
      (FORMAT parquet, COMPRESSION ${codec}, ROW_GROUP_SIZE 1000, PARQUET_VERSION ${v.toUpperCase()})`);
  }
}
await c.run(`COPY (SELECT id, b, s, d, f, t, u, flag, dt, ts, tz, dec,
    CASE WHEN l IS NULL THEN NULL ELSE '{' || array_to_string(list_transform(l, x -> coalesce(x::VARCHAR, 'NULL')), ',') || '}' END AS l,
    uid, CASE WHEN bl IS NULL THEN NULL ELSE '\\x' || hex(bl) END AS bl, req
  FROM src ORDER BY id) TO '${out}/duck.csv' (FORMAT csv, HEADER)`);
console.log(`id int, b bigint, s smallint, d float8, f float4, t text, u text, flag bool, dt date, ts timestamp, tz timestamptz, dec numeric(12,3), l int[], uid uuid, bl bytea, req int NOT NULL`);
