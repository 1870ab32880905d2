/* corpus.h: the English text of the training data: Debian's `fortunes` package.
 *
 * The package (BSD-licensed, Debian main, /usr/share/games/fortunes) holds about 2.5 MB of
 * short modern English texts in ~40 files: quotations, jokes, definitions, poems, anecdotes.
 * Each file lists its texts separated by lines holding only "%". A fortune becomes one
 * passage of clean text:
 *   - lines lose trailing blanks, tabs become spaces, runs of spaces shrink to one;
 *   - hard-wrapped prose is unwrapped: a line is joined to the previous one with a space
 *     when the previous line is long (it was wrapped, >= 40 characters) and this one is not
 *     indented; short lines (verse, dialogue, lists) and indented lines keep their breaks;
 *   - an attribution line ("-- Mark Twain") keeps its own line;
 *   - texts that are mostly not letters (ASCII art, tables of symbols) and texts that are
 *     not valid UTF-8 are dropped.
 * Passages keep the order of the files (sorted by name) and of the texts in them, so the
 * same package gives the same corpus.
 *
 * The held-out split is chosen by content, not by position: a passage whose text hashes to
 * 0 mod 20 belongs to the validation and evaluation side, the rest to training. */
#ifndef DSV4_DATA_CORPUS_H
#define DSV4_DATA_CORPUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsv4.h"

/* Where Debian installs the package. */
#define DSV4_FORTUNES_DIR "/usr/share/games/fortunes"

typedef struct dsv4_corpus {
    char **passages; /* NUL-terminated UTF-8, no leading or trailing blank lines */
    size_t n, cap;
    size_t bytes;
    int n_files;
    char **files; /* names of the files read, in order */
} dsv4_corpus;

/* Read every fortune file in dir (plain files without a '.', as fortune-mod's strfile
 * leaves them: "art", "computers", ...), in name order, except ASCII-art collections. */
dsv4_status dsv4_corpus_load_fortunes(dsv4_corpus *c, const char *dir);

/* Add the fortunes of one file's text (`name` is for error messages). */
dsv4_status dsv4_corpus_add_fortunes(dsv4_corpus *c, const char *text, size_t len, const char *name);

/* The cleaned form of one raw fortune (malloc'd), or NULL with *dropped set when the text is
 * to be dropped (NULL with *dropped false: out of memory). */
char *dsv4_corpus_clean(const char *raw, size_t len, bool *dropped);

/* Whether passage i is held out (validation and evaluation only). */
bool dsv4_corpus_held_out(const dsv4_corpus *c, size_t i);

void dsv4_corpus_free(dsv4_corpus *c);

/* A 64-bit FNV-1a hash of bytes: stable across machines, used wherever the data must not
 * depend on anything but its inputs. */
uint64_t dsv4_fnv1a(const void *bytes, size_t len);

#endif
