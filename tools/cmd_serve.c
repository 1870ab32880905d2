/* cmd_serve.c: `dsv4 serve`, the OpenAI- and Anthropic-compatible HTTP server.
 *
 * Opens the model and DIR/tokenizer.json, the prefix cache (RAM, optionally disk), the batching
 * scheduler and the HTTP daemon, prints where it listens, and runs until SIGINT or SIGTERM.
 * Everything is in src/serve; this file is flags and lifetime. docs/server.md is the manual. */
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "model/config.h"
#include "serve/server.h"

static const char *usage =
    "usage: dsv4 serve [-m DIR] [--host 127.0.0.1] [--port 8000] [--api-key KEY]\n"
    "                  [--parallel N] [--ctx N] [--queue N] [--step-tokens N]\n"
    "                  [--cache-mb M] [--kv-disk DIR --kv-disk-mb M] [--snapshot-every N]\n"
    "                  [--max-body-mb M] [--keepalive S] [--tokenizer FILE] [--threads N]\n"
    "  -m DIR            model directory (config.json, safetensors, tokenizer.json)\n"
    "  --host ADDR       address to listen on (default 127.0.0.1: this machine only)\n"
    "  --port N          TCP port (default 8000; 0 picks a free one)\n"
    "  --api-key KEY     require \"Authorization: Bearer KEY\" or \"x-api-key: KEY\" (or env DSV4_API_KEY)\n"
    "  --parallel N      sequences decoded together in one batched step (default 4)\n"
    "  --ctx N           tokens per sequence, prompt and output (default: the model's limit, at most 65536)\n"
    "  --queue N         requests that may wait for a free sequence; beyond it 503 (default 64)\n"
    "  --step-tokens N   tokens per forward step, so long prompts are read in chunks (default 256)\n"
    "  --cache-mb M      RAM for cached prefix states (default 2048; 0 turns context caching off)\n"
    "  --kv-disk DIR     also keep cached prefixes on disk, across restarts\n"
    "  --kv-disk-mb M    disk budget of --kv-disk (default 10240)\n"
    "  --snapshot-every N  also cache every N prompt tokens (default 2048; 0: off)\n"
    "  --max-body-mb M   request body limit (default 32)\n"
    "  --keepalive S     seconds of silence before a stream sends a keep-alive (default 10)\n"
    "  --test-script F   testing only: scripted replies instead of sampling (see docs/server.md)\n";

static int num(const char *cmd, int argc, char **argv, int *i, long long lo, long long hi, long long *out) {
    const char *flag = argv[*i], *v = cli_value(argc, argv, i);
    if (!cli_int(v, lo, hi, out)) return cli_fail(cmd, "%s needs an integer in [%lld, %lld]", flag, lo, hi), 0;
    return 1;
}

int cmd_serve(int argc, char **argv) {
    const char *cmd = "serve", *dir = NULL, *tokenizer = NULL, *disk = NULL;
    dsv4_server_opts so = {.host = "127.0.0.1",
                           .port = 8000,
                           .api_key = getenv("DSV4_API_KEY"),
                           .max_body = 32u << 20,
                           .max_connections = 512,
                           .keepalive_s = 10};
    long long parallel = 4, ctx = 0, queue = 64, step = 256, cache_mb = 2048, disk_mb = 10240, every = 2048,
              body_mb = 32, keepalive = 10, port = 8000;
    dsv4_open_opts oo = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int used = cli_model_flag(cmd, argc, argv, &i, &oo);
        if (used < 0) return 2;
        if (used) continue;
        bool ok = true;
        if (cli_is(a, "-h", "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (cli_is(a, "-m", "--model"))
            ok = (dir = cli_value(argc, argv, &i)) != NULL;
        else if (cli_is(a, NULL, "--tokenizer"))
            ok = (tokenizer = cli_value(argc, argv, &i)) != NULL;
        else if (cli_is(a, NULL, "--host"))
            ok = (so.host = cli_value(argc, argv, &i)) != NULL;
        else if (cli_is(a, NULL, "--api-key"))
            ok = (so.api_key = cli_value(argc, argv, &i)) != NULL;
        else if (cli_is(a, NULL, "--kv-disk"))
            ok = (disk = cli_value(argc, argv, &i)) != NULL;
        else if (cli_is(a, NULL, "--test-script"))
            ok = (so.script = cli_value(argc, argv, &i)) != NULL;
        else if (cli_is(a, "-p", "--port"))
            ok = num(cmd, argc, argv, &i, 0, 65535, &port);
        else if (cli_is(a, NULL, "--parallel"))
            ok = num(cmd, argc, argv, &i, 1, 256, &parallel);
        else if (cli_is(a, NULL, "--ctx"))
            ok = num(cmd, argc, argv, &i, 2, 1 << 30, &ctx);
        else if (cli_is(a, NULL, "--queue"))
            ok = num(cmd, argc, argv, &i, 0, 1 << 20, &queue);
        else if (cli_is(a, NULL, "--step-tokens"))
            ok = num(cmd, argc, argv, &i, 2, 1 << 20, &step);
        else if (cli_is(a, NULL, "--cache-mb"))
            ok = num(cmd, argc, argv, &i, 0, 1LL << 30, &cache_mb);
        else if (cli_is(a, NULL, "--kv-disk-mb"))
            ok = num(cmd, argc, argv, &i, 1, 1LL << 40, &disk_mb);
        else if (cli_is(a, NULL, "--snapshot-every"))
            ok = num(cmd, argc, argv, &i, 0, 1 << 30, &every);
        else if (cli_is(a, NULL, "--max-body-mb"))
            ok = num(cmd, argc, argv, &i, 1, 4096, &body_mb);
        else if (cli_is(a, NULL, "--keepalive"))
            ok = num(cmd, argc, argv, &i, 1, 3600, &keepalive);
        else {
            fputs(usage, stderr);
            return cli_fail(cmd, "unknown option %s", a), 2;
        }
        if (!ok) return cli_fail(cmd, "%s needs a value", a), 2;
    }
    if (!dir) dir = cli_default_model();
    if (step <= parallel) step = parallel + 1;
    so.port = (int)port;
    so.max_body = (size_t)body_mb << 20;
    so.keepalive_s = (double)keepalive;
    if (so.api_key && !*so.api_key) so.api_key = NULL;

    /* Block the stop signals before any thread starts, so that only sigwait sees them. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    dsv4_server srv = {.o = so};
    dsv4_model *m = NULL;
    dsv4_tokenizer *tok = NULL;
    int rc = 1;
    char tpath[PATH_MAX];
    if (!tokenizer) {
        snprintf(tpath, sizeof tpath, "%s/tokenizer.json", dir);
        tokenizer = tpath;
    }
    if (dsv4_model_open(dir, &oo, &m)) return cli_fail_lib(cmd, "opening the model");
    if (dsv4_tokenizer_load(tokenizer, &tok)) {
        cli_fail_lib(cmd, "loading the tokenizer");
        goto out;
    }
    if (dsv4_tokenizer_vocab_size(tok) > dsv4_model_vocab(m)) {
        cli_fail(cmd, "%s has %d tokens, more than the model's vocabulary of %d", tokenizer,
                 dsv4_tokenizer_vocab_size(tok), dsv4_model_vocab(m));
        goto out;
    }
    const char *needed[] = {DSV4_TOK_BOS,   DSV4_TOK_EOS,       DSV4_TOK_USER, DSV4_TOK_ASSISTANT,
                            DSV4_TOK_THINK, DSV4_TOK_THINK_END, DSV4_TOK_DSML};
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++)
        if (dsv4_token_id(tok, needed[i]) < 0) {
            cli_fail(cmd, "%s lacks the token %s that the chat format needs", tokenizer, needed[i]);
            goto out;
        }
    int max_pos = dsv4_model_config(m)->max_position_embeddings;
    if (!ctx) ctx = max_pos < 65536 ? max_pos : 65536;
    if (ctx > max_pos) {
        cli_fail(cmd, "--ctx %lld exceeds the model's max_position_embeddings %d", ctx, max_pos);
        goto out;
    }
    srv.m = m;
    srv.tok = tok;
    srv.ctx = (int)ctx;
    srv.tok_assistant = dsv4_token_id(tok, DSV4_TOK_ASSISTANT);
    srv.tok_think = dsv4_token_id(tok, DSV4_TOK_THINK);
    srv.tok_eos = dsv4_token_id(tok, DSV4_TOK_EOS);
    {
        char real[PATH_MAX];
        if (!realpath(dir, real)) snprintf(real, sizeof real, "%s", dir);
        snprintf(srv.model_name, sizeof srv.model_name, "%s", basename(real));
    }
    if (so.script && dsv4_script_load(so.script, &srv.script)) {
        cli_fail_lib(cmd, "loading --test-script");
        goto out;
    }
    if (cache_mb > 0 || disk) {
        dsv4_prefix_cache_opts co = {.ram_bytes = (size_t)cache_mb << 20,
                                     .disk_dir = disk,
                                     .disk_bytes = (size_t)disk_mb << 20,
                                     .min_tokens = 16};
        if (dsv4_prefix_cache_open(m, &co, &srv.cache)) {
            cli_fail_lib(cmd, "opening the prefix cache");
            goto out;
        }
    }
    dsv4_sched_opts sched = {.parallel = (int)parallel,
                             .ctx = (int)ctx,
                             .queue = (int)queue,
                             .step_tokens = (int)step,
                             .snapshot_every = (int)every,
                             .cache = srv.cache};
    if (dsv4_sched_new(m, tok, &sched, &srv.sched)) {
        cli_fail_lib(cmd, "starting the engine");
        goto out;
    }
    if (dsv4_server_start(&srv)) {
        cli_fail_lib(cmd, "starting the HTTP server");
        goto out;
    }
    fprintf(stderr, "dsv4 serve: listening on http://%s:%d (model %s, %lld parallel, context %lld tokens%s%s%s)\n",
            so.host, dsv4_server_port(&srv), srv.model_name, parallel, ctx, srv.cache ? ", context caching" : "",
            disk ? " on disk in " : "", disk ? disk : "");
    if (srv.script) fprintf(stderr, "dsv4 serve: TEST MODE: replies scripted by %s\n", so.script);
    int sig = 0;
    sigwait(&stop_signals, &sig);
    fprintf(stderr, "dsv4 serve: stopping (signal %d)\n", sig);
    rc = 0;
out:
    dsv4_server_stop(&srv);
    dsv4_sched_free(srv.sched);
    dsv4_prefix_cache_close(srv.cache);
    dsv4_script_free(srv.script);
    dsv4_tokenizer_free(tok);
    dsv4_model_close(m);
    return rc;
}
