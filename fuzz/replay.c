/* replay.c: a main() that feeds files to a libFuzzer target, for builds without libFuzzer.
 *
 * Usage: replay FILE_OR_DIR...  Every regular file named, or found directly inside a named
 * directory, is read and passed to LLVMFuzzerTestOneInput once. A target signals a bug by
 * crashing or aborting, so reaching the end means every input passed. CTest runs this over
 * the seed corpus (fuzz/corpus/NAME) so CI catches regressions without running a fuzzer. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return 1;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            unsigned char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "replay: out of memory reading %s\n", path);
        return 1;
    }
    /* an exact-size copy, so ASan sees reads one past the input */
    unsigned char *exact = malloc(n ? n : 1);
    if (exact) memcpy(exact, buf, n);
    free(buf);
    if (!exact) return 1;
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

int main(int argc, char **argv) {
    int files = 0, failed = 0;
    for (int a = 1; a < argc; a++) {
        struct stat sb;
        if (stat(argv[a], &sb) != 0) {
            fprintf(stderr, "replay: %s does not exist\n", argv[a]);
            return 1;
        }
        if (!S_ISDIR(sb.st_mode)) {
            failed += replay_file(argv[a]);
            files++;
            continue;
        }
        DIR *d = opendir(argv[a]);
        if (!d) {
            fprintf(stderr, "replay: cannot read directory %s\n", argv[a]);
            return 1;
        }
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            size_t len = strlen(argv[a]) + strlen(e->d_name) + 2;
            char *path = malloc(len);
            if (!path) return 1;
            snprintf(path, len, "%s/%s", argv[a], e->d_name);
            if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
                failed += replay_file(path);
                files++;
            }
            free(path);
        }
        closedir(d);
    }
    printf("replay: %d inputs, %d unreadable\n", files, failed);
    return files == 0 || failed ? 1 : 0;
}
