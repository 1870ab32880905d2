/* cmd_synth.c: `dsv4 synth`, a random checkpoint with a release's shapes and formats.
 *
 * On this branch only DeepSeek-V4.1-Flash (--like v41-flash, tools/synth_v41_cli.c); the V4
 * shapes (--like flash|pro) are another branch's, and merge as the other arm of this switch. */
#include <string.h>

#include "cli.h"
#include "commands.h"

int cmd_synth(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--like") && !strcmp(argv[i + 1], "v41-flash")) return synth_v41_main(argc, argv);
    for (int i = 1; i < argc; i++)
        if (cli_is(argv[i], "-h", "--help")) return synth_v41_main(argc, argv);
    return cli_fail("synth", "--like v41-flash is the model this build synthesises"), 2;
}
