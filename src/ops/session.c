/*-------------------------------------------------------------------------
 *
 * session.c
 *	  The pipeline worker's session settings that make its SQL independent of the database's
 *	  search_path.
 *
 * Invariant: after ops_harden_session() the worker resolves every unqualified function,
 * operator and type in pg_catalog only (pg_temp last, for its own temporary tables), so no
 * schema a user can create objects in (public, "$user", one set by ALTER ROLE/DATABASE ...
 * SET search_path) can put a look-alike in front of the built-ins it uses. The setting has
 * override priority: a reload of postgresql.conf or a per-role setting cannot change it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "ops/ops.h"

/*
 * Pin the worker's search_path to pg_catalog, pg_temp.
 */
void
ops_harden_session(void)
{
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
}
