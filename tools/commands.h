/* commands.h: the subcommands of the dsv4 CLI, one file each (tools/cmd_NAME.c). */
#ifndef DSV4_COMMANDS_H
#define DSV4_COMMANDS_H
int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_render(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_engram(int argc, char **argv);
int cmd_greedy(int argc, char **argv);
/* synth_v41_cli.c: `dsv4 synth --like v41-flash` */
int synth_v41_main(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
#endif
