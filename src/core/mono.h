/*
 * core/mono — condition variables timed on the monotonic clock, so a wall-clock jump (NTP,
 * an operator's `date`) never stretches or cuts short a keep-alive, a health-check interval
 * or a heartbeat.
 */
#ifndef SHOAL_CORE_MONO_H
#define SHOAL_CORE_MONO_H

#include <pthread.h>
#include <time.h>

/* Initialises cv to time its waits on CLOCK_MONOTONIC (pair with mono_deadline). */
void mono_cond_init(pthread_cond_t *cv);

/* The CLOCK_MONOTONIC instant ms milliseconds from now, for pthread_cond_timedwait. */
struct timespec mono_deadline(double ms);

#endif
