/* words.h: the word lists the task generators fill their templates from.
 *
 * Each list is a fixed array, so a seed always draws the same words. Names, cities, items
 * and departments are single words or short phrases without digits, and each list has no
 * repeats, so a table or a question can require its keys to be distinct. */
#ifndef DSV4_DATA_WORDS_H
#define DSV4_DATA_WORDS_H

#include <stddef.h>

typedef struct dsv4_wordlist {
    const char *const *w;
    size_t n;
} dsv4_wordlist;

extern const dsv4_wordlist dsv4_words_names;       /* first names: "Alice" */
extern const dsv4_wordlist dsv4_words_cities;      /* "Paris" */
extern const dsv4_wordlist dsv4_words_items;       /* things sold: "lamp" */
extern const dsv4_wordlist dsv4_words_departments; /* "Sales" */
extern const dsv4_wordlist dsv4_words_colors;      /* "blue" */
extern const dsv4_wordlist dsv4_words_objects;     /* "door" */
extern const dsv4_wordlist dsv4_words_secrets;     /* "pass code" */
extern const dsv4_wordlist dsv4_words_weather;     /* "cloudy" */

#endif
