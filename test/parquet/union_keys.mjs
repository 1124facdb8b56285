// Export the given columns of every Parquet file matching a glob, read together by DuckDB,
// to a tab-separated file (no header) that PostgreSQL's COPY reads: the union of a sink's
// part files, for the continuous sinks' exactly-once check (test/t/510_parquet_sink_stream.pl).
//
//   node union_keys.mjs GLOB COLUMNS OUT.tsv      e.g. '/d/process-*.parquet' 'a, b' /tmp/k.tsv
import { DuckDBInstance } from '@duckdb/node-api';

const [glob, columns, out] = process.argv.slice(2);
const q = (s) => s.replace(/'/g, "''");
const instance = await DuckDBInstance.create(':memory:');
const conn = await instance.connect();
await conn.run(`COPY (SELECT ${columns} FROM read_parquet('${q(glob)}')) TO '${q(out)}' (FORMAT csv, DELIMITER '\t', HEADER false)`);
