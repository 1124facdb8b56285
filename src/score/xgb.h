/*-------------------------------------------------------------------------
 *
 * xgb.h
 *	  The XGBoost C API, loaded lazily into a backend.
 *
 * anomstream does not link libxgboost: the library (and the libgomp it pulls in) is dlopen()ed
 * by the first backend function that needs it, so neither the postmaster nor _PG_init ever
 * initialises OpenMP (a process forked after OpenMP started its threads can hang), and
 * OMP_WAIT_POLICY=passive can still be set before libgomp reads its environment.
 *
 * Every XGBoost call goes through XGB(fn)(...). Calls that may start OpenMP threads are
 * bracketed by xgb_enter(nthread) / xgb_leave(), which block all signals while a larger thread
 * team than any before may be created, so PostgreSQL's signals always reach the main thread.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_SCORE_XGB_H
#define ANOMSTREAM_SCORE_XGB_H

#include <xgboost/c_api.h>

#define XGB_MEMBER(fn) __typeof__(fn) *fn

typedef struct XgbApi
{
	XGB_MEMBER(XGBoostVersion);
	XGB_MEMBER(XGBGetLastError);
	XGB_MEMBER(XGBSetGlobalConfig);
	XGB_MEMBER(XGBRegisterLogCallback);
	XGB_MEMBER(XGDMatrixCreateFromMat);
	XGB_MEMBER(XGDMatrixSetFloatInfo);
	XGB_MEMBER(XGDMatrixFree);
	XGB_MEMBER(XGProxyDMatrixCreate);
	XGB_MEMBER(XGBoosterCreate);
	XGB_MEMBER(XGBoosterFree);
	XGB_MEMBER(XGBoosterSetParam);
	XGB_MEMBER(XGBoosterUpdateOneIter);
	XGB_MEMBER(XGBoosterLoadModelFromBuffer);
	XGB_MEMBER(XGBoosterSaveModelToBuffer);
	XGB_MEMBER(XGBoosterSaveJsonConfig);
	XGB_MEMBER(XGBoosterGetNumFeature);
	XGB_MEMBER(XGBoosterBoostedRounds);
	XGB_MEMBER(XGBoosterGetAttr);
	XGB_MEMBER(XGBoosterSetAttr);
	XGB_MEMBER(XGBoosterGetStrFeatureInfo);
	XGB_MEMBER(XGBoosterPredictFromDense);
} XgbApi;

extern XgbApi *xgb_api;

/* Call an XGBoost function; xgb_load() must have run (the booster/DMatrix helpers do it). */
#define XGB(fn) (xgb_api->fn)

extern void xgb_load(void);
extern DMatrixHandle xgb_proxy(void);
extern void xgb_enter(int nthread);
extern void xgb_leave(void);
extern int	xgb_threads(void);
extern void xgb_check(int rc, int sqlerrcode, const char *message);
extern void xgb_flush_log(int elevel);

#endif							/* ANOMSTREAM_SCORE_XGB_H */
