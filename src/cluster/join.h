/*
 * cluster/join — the node side of run-time membership: `shoal serve --join ROUTER_URL --token T`
 * announces this node (its URL and model names) to a router, then repeats the announcement as
 * a heartbeat every heartbeat_ms (the router says how often). A router that is down or refuses
 * is retried in the background; the node serves meanwhile. On drain the next heartbeat, sent at
 * once, says "draining" (the router stops sending new requests); joiner_free says "leave".
 */
#ifndef SHOAL_CLUSTER_JOIN_H
#define SHOAL_CLUSTER_JOIN_H

#include "core/err.h"

typedef struct joiner_params {
    const char *router_url;     /* "http://host:port" of the router */
    const char *token;          /* the router's join_token */
    const char *self_url;       /* how the router reaches this node, "http://host:port" */
    const char *name;           /* node name shown by the router, or NULL (host:port) */
    const char *api_key;        /* this node's API key, for the router's requests, or NULL */
    const char *const *models;  /* model names this node serves */
    int n_models;
} joiner_params;

typedef struct joiner joiner;

/* Copies p and starts the heartbeat thread (the first announcement is made before it returns;
 * its failure is reported on stderr, not fatal). NULL + err only for bad parameters. */
joiner *joiner_start(const joiner_params *p, sh_err *err);

/* Tells the router at once that this node is draining. */
void joiner_set_draining(joiner *j);

/* Says "leave" to the router, stops the thread and frees. NULL is fine. */
void joiner_free(joiner *j);

#endif
