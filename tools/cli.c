/* cli.c: argument parsing, error printing and small file helpers for the CLI. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

bool cli_is(const char *arg, const char *short_name, const char *long_name) {
    return (short_name && !strcmp(arg, short_name)) || (long_name && !strcmp(arg, long_name));
}

const char *cli_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) return NULL;
    return argv[++*i];
}

bool cli_int(const char *s, long long lo, long long hi, long long *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_range(const char *s, int lo, int hi, int *min, int *max) {
    int a, b, end = 0;
    if (!s || sscanf(s, "%d-%d%n", &a, &b, &end) != 2 || s[end] || a < lo || b < a || b > hi) return false;
    *min = a;
    *max = b;
    return true;
}

const char *cli_table_layout_name(bool key_right) { return key_right ? "key-right" : "plain"; }

bool cli_table_layout(const char *s, bool *key_right) {
    for (int k = 0; k < 2 && s; k++)
        if (!strcmp(s, cli_table_layout_name(k))) {
            *key_right = k;
            return true;
        }
    return false;
}

bool cli_float(const char *s, double *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end) return false;
    *out = v;
    return true;
}

int cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "dsv4 %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int cli_fail_lib(const char *cmd, const char *what) {
    if (what) return cli_fail(cmd, "%s: %s", what, dsv4_errmsg());
    return cli_fail(cmd, "%s", dsv4_errmsg());
}

static bool is_dir_with_config(const char *dir) {
    char p[PATH_MAX + 16];
    if ((size_t)snprintf(p, sizeof p, "%s/config.json", dir) >= sizeof p) return false;
    return access(p, R_OK) == 0;
}

const char *cli_default_model(void) {
    static char path[PATH_MAX];
    const char *env = getenv("DSV4_MODEL");
    if (env && *env) return env;
    /* next to the executable: <prefix>/bin/dsv4 -> <prefix>/share/dsv4/models/tiny, or the
     * build tree: <repo>/build/dsv4 -> <repo>/models/tiny */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            const char *rel[] = {"/../models/tiny", "/../share/dsv4/models/tiny", "/models/tiny"};
            for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
                snprintf(path, sizeof path, "%s%s", exe, rel[i]);
                if (is_dir_with_config(path)) return path;
            }
        }
    }
#ifdef DSV4_SOURCE_DIR
    snprintf(path, sizeof path, "%s/models/tiny", DSV4_SOURCE_DIR);
    if (is_dir_with_config(path)) return path;
#endif
    return "models/tiny";
}

char *cli_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        cap *= 2;
        char *nb = realloc(buf, cap + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
        } else buf = nb;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

bool cli_parse_ids(const char *cmd, const char *spec, int **ids, int *n) {
    *ids = NULL;
    *n = 0;
    if (spec[0] == '@') {
        char *text = cli_read_file(spec + 1, NULL);
        if (!text) {
            cli_fail(cmd, "cannot read %s: %s", spec + 1, strerror(errno));
            return false;
        }
        json_error_t err;
        json_t *arr = json_loads(text, 0, &err);
        free(text);
        if (!json_is_array(arr)) {
            cli_fail(cmd, "%s: expected a JSON list of token ids (%s)", spec + 1, arr ? "not a list" : err.text);
            json_decref(arr);
            return false;
        }
        size_t cnt = json_array_size(arr);
        *ids = malloc((cnt ? cnt : 1) * sizeof(int));
        for (size_t k = 0; k < cnt; k++) {
            json_t *v = json_array_get(arr, k);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT_MAX) {
                cli_fail(cmd, "%s: element %zu is not a token id", spec + 1, k);
                free(*ids);
                *ids = NULL;
                json_decref(arr);
                return false;
            }
            (*ids)[k] = (int)json_integer_value(v);
        }
        *n = (int)cnt;
        json_decref(arr);
        return true;
    }
    size_t cap = 16;
    *ids = malloc(cap * sizeof(int));
    const char *p = spec;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT_MAX || (*end && *end != ',')) {
            cli_fail(cmd, "bad token id list at \"%s\" (expected 0,17,42 or @FILE.json)", p);
            free(*ids);
            *ids = NULL;
            return false;
        }
        if ((size_t)*n == cap) {
            cap *= 2;
            *ids = realloc(*ids, cap * sizeof(int));
        }
        (*ids)[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return true;
}

int cli_model_flag(const char *cmd, int argc, char **argv, int *i, dsv4_open_opts *opts) {
    const char *a = argv[*i];
    if (cli_is(a, "-t", "--threads")) {
        long long v;
        const char *s = cli_value(argc, argv, i);
        if (!cli_int(s, 1, 4096, &v)) {
            cli_fail(cmd, "--threads needs a positive integer");
            return -1;
        }
        opts->n_threads = (int)v;
        return 1;
    }
    if (cli_is(a, NULL, "--intended-index-keys")) {
        opts->index_keys_intended = 1;
        return 1;
    }
    if (cli_is(a, NULL, "--kv-bf16-rope")) { /* the production KV layout (docs/numerics.md) */
        opts->kv_bf16_rope = 1;
        return 1;
    }
    if (cli_is(a, NULL, "--engram-ram")) {
        opts->engram_ram = 1;
        return 1;
    }
    if (cli_is(a, NULL, "--engram-sync")) {
        opts->engram_sync = 1;
        return 1;
    }
    if (cli_is(a, NULL, "--numerics")) {
        const char *s = cli_value(argc, argv, i);
        if (s && !strcmp(s, "exact")) opts->numerics = DSV4_NUMERICS_EXACT;
        else if (s && !strcmp(s, "default")) opts->numerics = DSV4_NUMERICS_DEFAULT;
        else {
            cli_fail(cmd, "--numerics needs exact or default");
            return -1;
        }
        return 1;
    }
    return 0;
}

void cli_progress(void *user, const char *what, double fraction) {
    (void)user;
    if (!isatty(2)) return;
    int width = 30, filled = (int)(fraction * width + 0.5);
    if (filled > width) filled = width;
    fprintf(stderr, "\r%-24.24s [", what);
    for (int k = 0; k < width; k++) fputc(k < filled ? '#' : '.', stderr);
    fprintf(stderr, "] %3d%%", (int)(fraction * 100 + 0.5));
    if (fraction >= 1.0) fputs("\r\033[K", stderr);
    fflush(stderr);
}

int cli_int_flag(const char *cmd, const cli_int_opt *table, size_t n, int argc, char **argv, int *i, void *opts) {
    const char *a = argv[*i];
    for (size_t k = 0; k < n; k++) {
        if (strcmp(a, table[k].flag)) continue;
        long long v;
        if (!cli_int(cli_value(argc, argv, i), table[k].lo, table[k].hi, &v))
            return cli_fail(cmd, "%s needs an integer in %lld..%lld", a, table[k].lo, table[k].hi), -1;
        *(int *)((char *)opts + table[k].off) = (int)v;
        return 1;
    }
    return 0;
}
