/* placeholder, replaced by the ingestion commit */
#include "postgres.h"
#include "ingest/worker.h"
void anomstream_worker_register(void) {}
void anomstream_worker_main(Datum arg) {}
