/*-------------------------------------------------------------------------
 *
 * decode_thread.c
 *	  One decoding thread beside the worker's main thread (DESIGN.md §13).
 *
 * The worker hands over the messages of batch N+1 in runs as it polls them, and inserts and
 * commits batch N while this thread decodes, so decoding and inserting use both cores.
 *
 * Invariants:
 *	- The thread runs decode.c only: plain C, no PostgreSQL call, no palloc, no ereport, no
 *	  signals (all are blocked in it from birth).
 *	- Jobs are decoded one at a time in submission order, so the jobs of one batch may share
 *	  an arena. The main thread owns a job's inputs, outputs and arena again only after
 *	  decode_thread_wait() returned; it must call that before freeing them, also on its
 *	  error path.
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
static DecodeJob *head = NULL;	/* first job not finished (being decoded, or next) */
static DecodeJob *tail = NULL;
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
 * Thread body: decode queued jobs in order; signal whenever one is finished.
 */
static void *
thread_main(void *arg)
{
	for (;;)
	{
		DecodeJob  *job;

		pthread_mutex_lock(&lock);
		while (head == NULL)
			pthread_cond_wait(&cond, &lock);
		job = head;
		pthread_mutex_unlock(&lock);

		run_job(job);

		pthread_mutex_lock(&lock);
		head = job->next;
		if (head == NULL)
			tail = NULL;
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
 * Queue job for decoding (decoded at once, here, when there is no thread).
 */
void
decode_thread_submit(DecodeJob *job)
{
	job->oom = false;
	job->next = NULL;
	if (!running)
	{
		run_job(job);
		return;
	}
	pthread_mutex_lock(&lock);
	if (tail)
		tail->next = job;
	else
		head = job;
	tail = job;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

/*
 * Wait until every queued job is decoded.
 */
void
decode_thread_wait(void)
{
	if (!running)
		return;
	pthread_mutex_lock(&lock);
	while (head != NULL)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
}
