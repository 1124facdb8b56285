/*-------------------------------------------------------------------------
 *
 * xgb.c
 *	  Lazy loading of libxgboost, signal masking around thread creation, errors and log.
 *
 * Invariants: libxgboost is loaded at most once per process, only from a backend function
 * (never the postmaster or _PG_init); before loading, OMP_WAIT_POLICY defaults to passive so
 * idle OpenMP workers sleep instead of spinning on a shared machine. XGBoost's log callback can
 * run on an OpenMP worker thread: it only copies text into a mutex-protected buffer, which the
 * main thread turns into log messages with xgb_flush_log(). XGBGetLastError() is read at once
 * after a failed call, on the calling thread, and only its first line reaches errdetail.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "guc.h"
#include "score/xgb.h"

XgbApi	   *xgb_api = NULL;

static XgbApi xgb_table;
static DMatrixHandle proxy_handle = NULL;

/* Largest OpenMP team size any call in this process has been allowed so far. */
static int	threads_started = 1;
static sigset_t saved_mask;
static bool mask_saved = false;

/* XGBoost log lines, filled by xgb_log_callback (any thread), emptied by xgb_flush_log. */
#define XGB_LOG_SIZE 4096
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[XGB_LOG_SIZE];
static size_t log_len = 0;

/*
 * XGBoost log callback: append one line to the buffer (may run off the main thread, so no
 * palloc or ereport here).
 */
static void
xgb_log_callback(const char *msg)
{
	size_t		n = strlen(msg);

	pthread_mutex_lock(&log_lock);
	if (log_len + n + 2 < XGB_LOG_SIZE)
	{
		memcpy(log_buf + log_len, msg, n);
		log_len += n;
		log_buf[log_len++] = '\n';
		log_buf[log_len] = '\0';
	}
	pthread_mutex_unlock(&log_lock);
}

/*
 * Emit what XGBoost logged since the last flush, one message per line.
 */
void
xgb_flush_log(int elevel)
{
	char		copy[XGB_LOG_SIZE];
	char	   *line;
	char	   *save;

	pthread_mutex_lock(&log_lock);
	memcpy(copy, log_buf, log_len + 1);
	log_len = 0;
	log_buf[0] = '\0';
	pthread_mutex_unlock(&log_lock);

	for (line = strtok_r(copy, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
		ereport(elevel, (errmsg("XGBoost: %s", line)));
}

/*
 * Resolve one symbol of the library, or fail with the dlerror text.
 */
static void *
xgb_symbol(void *lib, const char *name)
{
	void	   *p = dlsym(lib, name);

	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("could not find function \"%s\" in the XGBoost library", name),
				 errdetail("%s", dlerror()),
				 errhint("Install XGBoost 1.7 (Debian package libxgboost0).")));
	return p;
}

/*
 * Load libxgboost into this backend (once) and fill the function table.
 */
void
xgb_load(void)
{
	void	   *lib;
	int			major,
				minor,
				patch;

	if (xgb_api != NULL)
		return;

	/* libgomp reads its environment when it is loaded, i.e. by the dlopen below. */
	setenv("OMP_WAIT_POLICY", "passive", 0);

	lib = dlopen("libxgboost.so.0", RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL)
		lib = dlopen("libxgboost.so", RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("could not load the XGBoost library"),
				 errdetail("%s", dlerror()),
				 errhint("Install XGBoost 1.7 (Debian package libxgboost0).")));

#define XGB_RESOLVE(fn) xgb_table.fn = (__typeof__(fn) *) xgb_symbol(lib, #fn)
	XGB_RESOLVE(XGBoostVersion);
	XGB_RESOLVE(XGBGetLastError);
	XGB_RESOLVE(XGBSetGlobalConfig);
	XGB_RESOLVE(XGBRegisterLogCallback);
	XGB_RESOLVE(XGDMatrixCreateFromMat);
	XGB_RESOLVE(XGDMatrixSetFloatInfo);
	XGB_RESOLVE(XGDMatrixFree);
	XGB_RESOLVE(XGProxyDMatrixCreate);
	XGB_RESOLVE(XGBoosterCreate);
	XGB_RESOLVE(XGBoosterFree);
	XGB_RESOLVE(XGBoosterSetParam);
	XGB_RESOLVE(XGBoosterUpdateOneIter);
	XGB_RESOLVE(XGBoosterLoadModelFromBuffer);
	XGB_RESOLVE(XGBoosterSaveModelToBuffer);
	XGB_RESOLVE(XGBoosterSaveJsonConfig);
	XGB_RESOLVE(XGBoosterGetNumFeature);
	XGB_RESOLVE(XGBoosterBoostedRounds);
	XGB_RESOLVE(XGBoosterGetAttr);
	XGB_RESOLVE(XGBoosterSetAttr);
	XGB_RESOLVE(XGBoosterGetStrFeatureInfo);
	XGB_RESOLVE(XGBoosterPredictFromDense);
#undef XGB_RESOLVE

	xgb_table.XGBoostVersion(&major, &minor, &patch);
	if (major < 1 || (major == 1 && minor < 7))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("XGBoost %d.%d.%d is too old", major, minor, patch),
				 errhint("Install XGBoost 1.7 or later.")));

	xgb_table.XGBRegisterLogCallback(xgb_log_callback);
	xgb_table.XGBSetGlobalConfig("{\"verbosity\":1}");
	xgb_api = &xgb_table;
}

/*
 * The backend's proxy DMatrix for in-place prediction: reusing it saves XGBoost from building
 * a new one per call (half the cost of a one-row prediction).
 */
DMatrixHandle
xgb_proxy(void)
{
	xgb_load();
	if (proxy_handle == NULL)
		xgb_check(XGB(XGProxyDMatrixCreate) (&proxy_handle),
				  ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
				  "could not create an XGBoost proxy matrix");
	return proxy_handle;
}

/*
 * Threads XGBoost may use in this backend (anomstream.xgboost_threads).
 */
int
xgb_threads(void)
{
	return anomstream_xgboost_threads;
}

/*
 * Before an XGBoost call that may run with nthread threads: if that is more than any call so
 * far, OpenMP may create threads, which inherit the signal mask, so block every signal.
 */
void
xgb_enter(int nthread)
{
	sigset_t	all;

	if (nthread <= threads_started)
		return;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved_mask);
	mask_saved = true;
	threads_started = nthread;
}

/*
 * After the call: restore the signal mask xgb_enter() replaced.
 */
void
xgb_leave(void)
{
	if (!mask_saved)
		return;
	pthread_sigmask(SIG_SETMASK, &saved_mask, NULL);
	mask_saved = false;
}

/*
 * Raise an ERROR for a failed XGBoost call, with XGBoost's message (first line) in errdetail.
 */
void
xgb_check(int rc, int sqlerrcode, const char *message)
{
	const char *last;
	char	   *detail;
	char	   *nl;

	if (rc == 0)
		return;
	last = XGB(XGBGetLastError) ();
	detail = pstrdup(last ? last : "no message");
	nl = strchr(detail, '\n');
	if (nl)
		*nl = '\0';
	/* drop the "[hh:mm:ss] " prefix XGBoost puts on its messages */
	if (detail[0] == '[' && (nl = strstr(detail, "] ")) != NULL && nl - detail <= 12)
		detail = nl + 2;
	ereport(ERROR,
			(errcode(sqlerrcode),
			 errmsg("%s", message),
			 errdetail("XGBoost reported: %s", detail)));
}
