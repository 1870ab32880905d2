/* cmd_quantize.c: `dsv4 quantize IN_DIR OUT_DIR`, a trained checkpoint (F32 or BF16) to the
 * storage formats of the DeepSeek-V4 release: FP8 e4m3 linears with 128 x 128 power-of-two
 * block scales, FP4 e2m1 routed experts with per-32 scales, BF16 / F32 elsewhere as the
 * release (src/io/quantize.h has the rules). The result loads with `dsv4 run -m OUT_DIR`;
 * its default numerics apply the official quantisation points to activations too. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "commands.h"
#include "io/quantize.h"

static const char *usage = "usage: dsv4 quantize IN_DIR OUT_DIR\n"
                           "  IN_DIR   config.json + F32/BF16 safetensors (a dsv4 train checkpoint)\n"
                           "  OUT_DIR  created if needed: config.json (with quantization_config), model.safetensors,\n"
                           "           tokenizer.json copied\n";

int cmd_quantize(int argc, char **argv) {
    const char *cmd = "quantize", *in = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h", "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (argv[i][0] == '-') {
            fputs(usage, stderr);
            return cli_fail(cmd, "unknown option %s", argv[i]), 2;
        } else if (!in) {
            in = argv[i];
        } else if (!out) {
            out = argv[i];
        } else {
            fputs(usage, stderr);
            return cli_fail(cmd, "one input and one output directory"), 2;
        }
    }
    if (!in || !out) {
        fputs(usage, stderr);
        return 2;
    }
    if (!strcmp(in, out)) return cli_fail(cmd, "the output must be another directory than the input"), 2;
    if (mkdir(out, 0777) && errno != EEXIST) return cli_fail(cmd, "%s: cannot create: %s", out, strerror(errno));
    dsv4_quantize_report r;
    if (dsv4_quantize_checkpoint(in, out, &r)) return cli_fail_lib(cmd, NULL);
    printf("%s -> %s: %d tensors (%d FP8, %d FP4, %d BF16, %d F32, %d I64), %.2f MB of weights\n", in, out, r.tensors,
           r.fp8, r.fp4, r.bf16, r.f32, r.index, r.bytes_out / 1e6);
    return 0;
}
