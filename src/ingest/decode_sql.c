/* placeholder, replaced by the ingestion commit */
#include "postgres.h"
#include "fmgr.h"
PG_FUNCTION_INFO_V1(anomstream_decode);
Datum anomstream_decode(PG_FUNCTION_ARGS) { elog(ERROR, "not yet"); }
