// Check a Parquet file written by anomstream against the source rows, with three
// independent readers: hyparquet (pure JS), parquet-wasm (arrow-rs) and DuckDB.
//
//   node check.mjs FILE EXPECTED.json [--rows N] [--row-groups N] [--codec NAME] [--stats]
//
// EXPECTED.json is {"columns": [{"name", "type", "elem"}], "rows": [[...], ...]} as written by
// psql (see test/t/500_parquet_copy.pl): each value is the canonical text of the PostgreSQL value
// or null, an array column a JSON array of canonical texts. Canonical texts: booleans true/false,
// numbers as PostgreSQL prints them, bytea as hex, dates YYYY-MM-DD, timestamps as microseconds
// since 1970-01-01 (UTC), intervals in ISO 8601, everything else as PostgreSQL prints it.
//
// Every reader's value is brought to the same canonical form and compared, NULL positions
// included. Each reader misses different defects (some read a broken file silently), so all
// three must agree with the source. With --rows / --row-groups / --codec the file's metadata is
// checked through DuckDB's parquet_file_metadata and parquet_metadata; with --stats each column
// chunk's null count, and for integer, date and text columns its min and max, are checked against
// the rows of its row group. Exit status 0 only if everything matched.
import fs from 'node:fs';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { readParquet } from 'parquet-wasm';
import { tableFromIPC } from 'apache-arrow';
import { bigNumToString } from 'apache-arrow/util/bn';
import { DuckDBInstance } from '@duckdb/node-api';

// Many files in one run (one process, one DuckDB instance; the continuous sinks' test):
//
//   node check.mjs --list LIST     LIST: one "FILE<TAB>EXPECTED.json[<TAB>option ...]" per line
//
// Each file is checked as above; exit status 0 only if every file matched.
const args = process.argv.slice(2);
let file;
let expected;
let opt;

function parseOptions(list) {
  const o = {};
  for (let i = 0; i < list.length; i++) {
    const k = list[i].replace(/^--/, '');
    if (k === 'stats') o.stats = true;
    else o[k] = list[++i];
  }
  return o;
}

const jobs = args[0] === '--list'
  ? fs.readFileSync(args[1], 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => l.split('\t'))
  : [args];

let failures = [];
function fail(msg) {
  failures.push(msg);
}

const hex = (u8) => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('hex');

// Insert a decimal point `scale` digits from the right of an unscaled integer string.
function scaled(unscaled, scale) {
  if (!scale) return unscaled;
  const neg = unscaled.startsWith('-');
  let d = neg ? unscaled.slice(1) : unscaled;
  d = d.padStart(scale + 1, '0');
  return (neg ? '-' : '') + d.slice(0, d.length - scale) + '.' + d.slice(d.length - scale);
}

function isoDate(ms) {
  return new Date(ms).toISOString().slice(0, 10).replace(/^\+0*/, '');
}

// Canonical text of one scalar value as a reader returned it.
function canon(type, v, reader, field) {
  if (v === null || v === undefined) return null;
  switch (type) {
    case 'boolean':
      return String(v);
    case 'smallint': case 'integer': case 'bigint':
      return String(v);
    case 'real': case 'double precision':
      return typeof v === 'number' ? v : Number(v);
    case 'numeric':
      if (reader === 'arrow' && typeof v === 'object') return scaled(bigNumToString(v), field.type.scale);
      if (reader === 'hyparquet' && typeof v === 'number') return v; // hyparquet converts DECIMAL to a JS number
      return String(v);
    case 'bytea':
      if (reader === 'duckdb') return hex(v.bytes);
      return hex(v);
    case 'date':
      if (reader === 'arrow') return isoDate(v);
      if (reader === 'hyparquet') return isoDate(Number(v) * 86400000);
      return String(v);
    case 'timestamp without time zone': case 'timestamp with time zone':
      if (reader === 'arrow') return typeof v === 'object' ? String(v.micros) : String(Math.round(v * 1000));
      if (reader === 'duckdb') return String(v.micros);
      return String(v);
    case 'uuid':
      if (reader === 'arrow') {
        const h = hex(v);
        return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
      }
      return String(v);
    default:
      return String(v);
  }
}

function sameFloat(type, exp, got) {
  const e = Number(exp);
  if (typeof got !== 'number') return false;
  if (Number.isNaN(e)) return Number.isNaN(got);
  if (type === 'real') return Object.is(Math.fround(e), Math.fround(got));
  return Object.is(e, got);
}

function sameScalar(col, exp, got, reader) {
  if (exp === null || got === null) return exp === got;
  const t = col.elem || col.type;
  if (t === 'real' || t === 'double precision') return sameFloat(t, exp, got);
  if (t === 'numeric' && typeof got === 'number') {
    const e = Number(exp);
    if (Number.isNaN(e)) return Number.isNaN(got);
    return Math.abs(e - got) <= Math.abs(e) * 1e-12;
  }
  if (t === 'jsonb' || t === 'json') return JSON.stringify(JSON.parse(exp)) === JSON.stringify(JSON.parse(got));
  return exp === got;
}

function compare(reader, rows, fields) {
  const cols = expected.columns;
  if (rows.length !== expected.rows.length) {
    fail(`${reader}: ${rows.length} rows, expected ${expected.rows.length}`);
    return;
  }
  let bad = 0;
  for (let r = 0; r < rows.length && bad < 10; r++) {
    for (let c = 0; c < cols.length && bad < 10; c++) {
      const col = cols[c];
      const exp = expected.rows[r][c];
      const raw = rows[r][c];
      let ok;
      let got;
      if (col.elem) {
        const items = raw === null || raw === undefined ? null
          : reader === 'duckdb' ? raw.items : [...raw];
        got = items === null ? null : items.map((x) => canon(col.elem, x, reader, fields?.[c]?.type?.children?.[0]));
        ok = (exp === null && got === null) || (exp !== null && got !== null && exp.length === got.length &&
          exp.every((e, i) => sameScalar(col, e, got[i], reader)));
      } else {
        got = canon(col.type, raw, reader, fields?.[c]);
        ok = sameScalar(col, exp, got, reader);
      }
      if (!ok) {
        bad++;
        fail(`${reader}: row ${r} column ${col.name}: got ${JSON.stringify(got, (k, v) => typeof v === 'bigint' ? String(v) : v)}, expected ${JSON.stringify(exp)}`);
      }
    }
  }
}

async function viaHyparquet() {
  const buf = await asyncBufferFromFile(file);
  const md = await parquetMetadataAsync(buf);
  if (Number(md.num_rows) !== expected.rows.length) fail(`hyparquet: metadata num_rows ${md.num_rows}, expected ${expected.rows.length}`);
  const objs = await parquetReadObjects({
    file: buf,
    compressors,
    utf8: false,
    parsers: {
      timestampFromMicroseconds: (v) => BigInt(v),
      timestampFromMilliseconds: (v) => BigInt(v) * 1000n,
      dateFromDays: (d) => d,
      jsonFromBytes: (b) => b && new TextDecoder().decode(b),
    },
  });
  compare('hyparquet', objs.map((o) => expected.columns.map((c) => o[c.name])));
}

function viaArrow() {
  const t = tableFromIPC(readParquet(new Uint8Array(fs.readFileSync(file))).intoIPCStream());
  const cols = expected.columns.map((c) => t.getChild(c.name));
  const fields = expected.columns.map((c) => t.schema.fields.find((f) => f.name === c.name));
  if (cols.some((c) => !c)) {
    fail(`arrow: columns ${t.schema.fields.map((f) => f.name)} differ from ${expected.columns.map((c) => c.name)}`);
    return;
  }
  // timestamps: the raw 64-bit microseconds (arrow's JS getter returns float milliseconds,
  // which cannot hold every microsecond of year 9999)
  const vals = cols.map((c) => {
    if (!String(c.type).startsWith('Timestamp')) return [...c];
    const out = [];
    for (const d of c.data) {
      for (let i = 0; i < d.length; i++) out.push(d.getValid(i) ? { micros: d.values[d.offset + i] } : null);
    }
    return out;
  });
  const rows = [];
  for (let r = 0; r < t.numRows; r++) rows.push(vals.map((v) => v[r]));
  compare('arrow', rows, fields);
}

async function viaDuckDB(conn) {
  const res = await conn.runAndReadAll(`SELECT * FROM read_parquet('${file.replace(/'/g, "''")}')`);
  const names = res.columnNames();
  const want = expected.columns.map((c) => c.name);
  if (JSON.stringify(names) !== JSON.stringify(want)) fail(`duckdb: columns ${names} differ from ${want}`);
  compare('duckdb', res.getRows());
}

async function checkMetadata(conn) {
  const q = async (sql) => (await conn.runAndReadAll(sql)).getRowObjectsJson();
  const f = file.replace(/'/g, "''");
  const fm = (await q(`SELECT num_rows, num_row_groups FROM parquet_file_metadata('${f}')`))[0];
  if (opt.rows !== undefined && String(fm.num_rows) !== String(opt.rows)) fail(`metadata: num_rows ${fm.num_rows}, expected ${opt.rows}`);
  if (opt['row-groups'] !== undefined && String(fm.num_row_groups) !== String(opt['row-groups'])) fail(`metadata: num_row_groups ${fm.num_row_groups}, expected ${opt['row-groups']}`);
  const chunks = await q(`SELECT row_group_id, row_group_num_rows, column_id, path_in_schema, compression, num_values, stats_min_value, stats_max_value, stats_null_count FROM parquet_metadata('${f}') ORDER BY row_group_id, column_id`);
  if (opt.codec !== undefined) {
    for (const ch of chunks) {
      if (ch.compression !== opt.codec.toUpperCase()) fail(`metadata: chunk ${ch.row_group_id}/${ch.path_in_schema} compression ${ch.compression}, expected ${opt.codec}`);
    }
  }
  if (opt.stats) {
    const cols = expected.columns;
    let first = 0;
    let rg = -1;
    let rgRows = [];
    for (const ch of chunks) {
      if (Number(ch.row_group_id) !== rg) {
        if (rg >= 0) first += rgRows.length;
        rg = Number(ch.row_group_id);
        rgRows = expected.rows.slice(first, first + Number(ch.row_group_num_rows));
      }
      const c = Number(ch.column_id);
      const col = cols[c];
      if (!col || col.elem) continue;
      const vals = rgRows.map((r) => r[c]);
      const nulls = vals.filter((v) => v === null).length;
      if (Number(ch.stats_null_count) !== nulls) fail(`stats: row group ${rg} column ${col.name}: null_count ${ch.stats_null_count}, expected ${nulls}`);
      const present = vals.filter((v) => v !== null);
      let min;
      let max;
      if (['smallint', 'integer', 'bigint'].includes(col.type)) {
        const b = present.map(BigInt);
        if (b.length) {
          min = String(b.reduce((a, x) => (x < a ? x : a)));
          max = String(b.reduce((a, x) => (x > a ? x : a)));
        }
      } else if (col.type === 'text' && present.every((v) => Buffer.byteLength(v) <= 64)) {
        const s = [...present].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
        min = s[0];
        max = s[s.length - 1];
      } else if (col.type === 'date') {
        const s = [...present].sort();
        min = s[0];
        max = s[s.length - 1];
      } else continue;
      if (String(ch.stats_min_value ?? undefined) !== String(min) || String(ch.stats_max_value ?? undefined) !== String(max)) {
        fail(`stats: row group ${rg} column ${col.name}: min/max ${ch.stats_min_value}/${ch.stats_max_value}, expected ${min}/${max}`);
      }
    }
  }
}

const instance = await DuckDBInstance.create(':memory:');
const conn = await instance.connect();
let failed = 0;
for (const job of jobs) {
  file = job[0];
  expected = JSON.parse(fs.readFileSync(job[1], 'utf8'));
  opt = parseOptions(job.slice(2));
  failures = [];
  for (const [name, fn] of [['hyparquet', viaHyparquet], ['arrow', viaArrow], ['duckdb', () => viaDuckDB(conn)], ['metadata', () => checkMetadata(conn)]]) {
    try {
      await fn();
    } catch (e) {
      fail(`${name}: ${e.message}`);
    }
  }
  if (failures.length) {
    for (const f of failures.slice(0, 40)) console.log(f);
    console.log(`FAIL ${file}: ${failures.length} problem(s)`);
    failed++;
  } else {
    console.log(`ok ${file}: ${expected.rows.length} rows, ${expected.columns.length} columns match in hyparquet, parquet-wasm and duckdb`);
  }
}
process.exit(failed ? 1 : 0);
