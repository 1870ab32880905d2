/* cmd_info.c: `dsv4 info`, what a model is and what it costs. */
#include "cli.h"
#include "commands.h"

int cmd_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_fail("info", "not yet");
}
