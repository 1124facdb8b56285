/*-------------------------------------------------------------------------
 *
 * decode_thread.c
 *	  One decoding thread beside the worker's main thread (DESIGN.md §13).
 *
 * The worker polls the messages of batch N+1, hands them here, and inserts and commits batch
 * N while this thread decodes N+1, so decoding and inserting use both cores.
 *
 * Invariants:
 *	- The thread runs decode.c only: plain C, its own arena, no PostgreSQL call, no palloc,
 *	  no ereport, no signals (all are blocked in it from birth).
 *	- At most one job is in flight. The main thread owns a job's inputs and outputs again
 *	  only after decode_thread_wait() returned; it must call that before freeing them, also
 *	  on its error path.
 *	- If the thread cannot be created, jobs are decoded on the calling thread instead.
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "ingest/decode_thread.h"

static pthread_t thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static DecodeJob *pending = NULL;	/* submitted, not finished */
static bool running = false;

/*
 * Decode every message of a job.
 */
static void
run_job(DecodeJob *job)
{
	for (int i = 0; i < job->nmsgs; i++)
		if (!decode_message(job->arena, job->streams[i], job->bufs[i], job->lens[i],
							job->kafka_ts_usec[i], job->max_future_usec, &job->out[i]))
		{
			job->oom = true;
			break;
		}
}

/*
 * Thread body: wait for a job, decode it, signal completion.
 */
static void *
thread_main(void *arg)
{
	for (;;)
	{
		DecodeJob  *job;

		pthread_mutex_lock(&lock);
		while (pending == NULL)
			pthread_cond_wait(&cond, &lock);
		job = pending;
		pthread_mutex_unlock(&lock);

		run_job(job);

		pthread_mutex_lock(&lock);
		pending = NULL;
		pthread_cond_broadcast(&cond);
		pthread_mutex_unlock(&lock);
	}
	return NULL;
}

/*
 * Start the thread with every signal blocked; false if it could not be created.
 */
bool
decode_thread_start(void)
{
	sigset_t	all,
				old;
	int			rc;

	if (running)
		return true;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&thread, NULL, thread_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return false;
	pthread_detach(thread);
	running = true;
	return true;
}

/*
 * Start decoding job (asynchronously when the thread runs).
 */
void
decode_thread_submit(DecodeJob *job)
{
	job->oom = false;
	if (!running)
	{
		run_job(job);
		return;
	}
	pthread_mutex_lock(&lock);
	while (pending != NULL)
		pthread_cond_wait(&cond, &lock);
	pending = job;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

/*
 * Wait until no job is in flight.
 */
void
decode_thread_wait(void)
{
	if (!running)
		return;
	pthread_mutex_lock(&lock);
	while (pending != NULL)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
}
