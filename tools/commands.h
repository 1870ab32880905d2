/* commands.h: the subcommands of the dsv4 CLI, one file each (tools/cmd_NAME.c). */
#ifndef DSV4_COMMANDS_H
#define DSV4_COMMANDS_H
int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_bench(int argc, char **argv);
#endif
