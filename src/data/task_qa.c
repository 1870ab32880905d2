/* task_qa.c: the short question families: arithmetic, table lookups, and general chat.
 *
 * Answers have one fixed shape per question kind ("37 + 58 = 95.", "Bob is 27 years old."):
 * a small model learns a consistent format quickly and spends its capacity on the content,
 * and the evaluation can read the answer back (the last number, or a word). The questions
 * vary their wording. In thinking mode the reasoning works the problem the way a person would
 * on paper: column by column for sums and differences, from the right, with carries. */
#include <stdio.h>

#include "base/base.h"
#include "data/task_internal.h"

/* ---- arithmetic ----------------------------------------------------------------------------- */

static const char *const add_questions[] = {
    "What is {0} + {1}?", "What is {0} plus {1}?", "Compute {0} + {1}.", "Calculate {0} + {1}.",
    "How much is {0} plus {1}?", "Add {0} and {1}.", "What do you get if you add {0} and {1}?", "{0} + {1} = ?",
    "Please work out {0} + {1}.", "What's the sum of {0} and {1}?", "{0}+{1}", "what is {0}+{1}",
};
static const char *const sub_questions[] = {
    "What is {0} - {1}?", "What is {0} minus {1}?", "Compute {0} - {1}.", "Calculate {0} - {1}.",
    "Subtract {1} from {0}.", "How much is {0} minus {1}?", "{0} - {1} = ?", "What do you get if you take {1} from {0}?",
    "Please work out {0} - {1}.", "What's {0} take away {1}?", "{0}-{1}", "what is {0}-{1}",
};
static const char *const mul_questions[] = {
    "What is {0} × {1}?", "What is {0} times {1}?", "What is {0} * {1}?", "Compute {0} × {1}.",
    "Multiply {0} by {1}.", "How much is {0} times {1}?", "{0} * {1} = ?", "What's the product of {0} and {1}?",
    "Please work out {0} x {1}.", "What is {0} x {1}?", "{0}*{1}", "what is {0} times {1}",
};

static const char *const column_names[] = {"Ones", "Tens", "Hundreds"};

/* Column addition, from the right. */
static void reason_add(dsv4_strbuf *b, int a, int c) {
    char line[96];
    int carry = 0, col = 0;
    for (; a || c; col++, a /= 10, c /= 10) {
        int da = a % 10, dc = c % 10, s = da + dc + carry;
        if (carry) snprintf(line, sizeof line, "%s: %d + %d + 1 = %d, ", column_names[col], da, dc, s);
        else snprintf(line, sizeof line, "%s: %d + %d = %d, ", column_names[col], da, dc, s);
        dsv4_strbuf_puts(b, line);
        carry = s >= 10;
        if (carry) snprintf(line, sizeof line, "write %d, carry 1. ", s - 10);
        else snprintf(line, sizeof line, "write %d. ", s);
        dsv4_strbuf_puts(b, line);
    }
    if (carry) {
        snprintf(line, sizeof line, "%s: write the carry 1. ", column_names[col]);
        dsv4_strbuf_puts(b, line);
    }
}

/* Column subtraction (a >= c), from the right, with borrows. */
static void reason_sub(dsv4_strbuf *b, int a, int c) {
    int borrow = 0;
    char line[128];
    for (int col = 0; a; col++) {
        int da = a % 10 - borrow, dc = c % 10;
        const char *name = column_names[col];
        if (borrow) {
            snprintf(line, sizeof line, "%s: %d - 1 = %d after the borrow. ", name, da + 1, da);
            dsv4_strbuf_puts(b, line);
        }
        if (da < dc) {
            snprintf(line, sizeof line, "%s: %d - %d needs a borrow, %d - %d = %d, write %d. ", name, da, dc, da + 10,
                     dc, da + 10 - dc, da + 10 - dc);
            borrow = 1;
        } else {
            snprintf(line, sizeof line, "%s: %d - %d = %d, write %d. ", name, da, dc, da - dc, da - dc);
            borrow = 0;
        }
        dsv4_strbuf_puts(b, line);
        a /= 10;
        c /= 10;
    }
}

dsv4_status arith_exchange(dsv4_rng *r, bool thinking, exchange *x, dsv4_example *ex) {
    int op = (int)draw(r, 3), a, c, result;
    const char *sym, *question;
    if (op == 0) {
        a = draw_in(r, 0, 99), c = draw_in(r, 0, 99), result = a + c, sym = "+";
        question = PICK(r, add_questions);
    } else if (op == 1) {
        a = draw_in(r, 0, 99), c = draw_in(r, 0, a), result = a - c, sym = "-";
        question = PICK(r, sub_questions);
    } else {
        a = draw_in(r, 0, 12), c = draw_in(r, 0, 12), result = a * c, sym = "×";
        question = PICK(r, mul_questions);
    }
    char sa[16], sc[16];
    snprintf(sa, sizeof sa, "%d", a);
    snprintf(sc, sizeof sc, "%d", c);
    const char *args[] = {sa, sc};
    x->user = fill(question, args);
    x->answer = fmt("%d %s %d = %d.", a, sym, c, result);
    if (thinking) {
        dsv4_strbuf b = DSV4_STRBUF_INIT;
        char line[96];
        snprintf(line, sizeof line, "The user wants %d %s %d. ", a, sym, c);
        dsv4_strbuf_puts(&b, line);
        if (op == 0) reason_add(&b, a, c);
        else if (op == 1) reason_sub(&b, a, c);
        else dsv4_strbuf_puts(&b, "From the times table: ");
        snprintf(line, sizeof line, "So %d %s %d = %d.", a, sym, c, result);
        dsv4_strbuf_puts(&b, line);
        x->reasoning = dsv4_strbuf_release(&b, NULL);
    }
    if (ex) expect_number(ex, result);
    return x->user && x->answer && (!thinking || x->reasoning) ? DSV4_OK : DSV4_ENOMEM;
}

/* ---- tables ----------------------------------------------------------------------------------- */


static const char *const table_intros[] = {
    "Here is a table:\n\n{0}\n\n{1}",
    "{0}\n\n{1}",
    "Use this table to answer.\n\n{0}\n\nQuestion: {1}",
    "{1}\n\n{0}",
    "Look at the table below.\n\n{0}\n\n{1}",
};

/* Draw a table: its schema, 3 to 7 rows (or o's table_rows_min/max), and the row a first question
 * asks about (drawn here, before the cells, so that the random stream of a one-question example
 * stays what it was). */
void table_draw(dsv4_rng *r, const dsv4_task_opts *o, table_spec *t) {
    t->s = (int)draw(r, N_SCHEMAS);
    int lo = o->table_rows_min > 0 ? DSV4_MIN(o->table_rows_min, DSV4_TABLE_ROWS_CAP) : DSV4_TABLE_ROWS_MIN;
    int hi = o->table_rows_max > 0 ? DSV4_MIN(o->table_rows_max, DSV4_TABLE_ROWS_CAP) : DSV4_TABLE_ROWS_MAX;
    t->rows = (uint32_t)draw_in(r, lo, DSV4_MAX(lo, hi));
    t->first = draw(r, t->rows);
    const dsv4_wordlist *keys = t->s == PRODUCTS ? &dsv4_words_items : &dsv4_words_names;
    draw_distinct(r, (uint32_t)keys->n, t->rows, t->key);
    if (t->s == PEOPLE) draw_distinct(r, (uint32_t)dsv4_words_cities.n, t->rows, t->other);
    if (t->s == STAFF)
        for (uint32_t i = 0; i < t->rows; i++) t->other[i] = draw(r, (uint32_t)dsv4_words_departments.n);
    uint32_t distinct[8];
    draw_distinct(r, t->s == PEOPLE ? 73 : t->s == PRODUCTS ? 99 : 200, t->rows, distinct); /* numbers differ too */
    for (uint32_t i = 0; i < t->rows; i++)
        t->num[i] = (int)distinct[i] + (t->s == PEOPLE ? 18 : t->s == PRODUCTS ? 1 : 100);
    for (uint32_t i = 0; i < t->rows; i++) t->stock[i] = draw_in(r, 0, 500);
    t->key_right = o->table_key_right;
}

static const char *table_key(const table_spec *t, uint32_t row) {
    return (t->s == PRODUCTS ? &dsv4_words_items : &dsv4_words_names)->w[t->key[row]];
}

/* A row's cell in column c (0: the key) as text; numbers are written into buf. */
static const char *table_cell(const table_spec *t, uint32_t row, int c, char *buf, size_t size) {
    if (c == 0) return table_key(t, row);
    if (t->s == PEOPLE && c == 1) return dsv4_words_cities.w[t->other[row]];
    if (t->s == STAFF && c == 1) return dsv4_words_departments.w[t->other[row]];
    snprintf(buf, size, "%d", t->s == PRODUCTS && c == 2 ? t->stock[row] : t->num[row]);
    return buf;
}

/* Markdown. Plain: the key, then the schema's two columns. With key_right, the column a reverse
 * question asks about (city, price, room) comes last and the key is repeated after it, so the
 * key follows its cell as a forward look-up's cell follows its key: a causal model finds both
 * by what precedes them. */
char *table_render(const table_spec *t) {
    static const char *const names[N_SCHEMAS][3] = {
        {"Name", "City", "Age"}, {"Item", "Price", "Stock"}, {"Name", "Department", "Room"}};
    static const int reverse_col[N_SCHEMAS] = {1, 1, 2}; /* what table_ask's kind 2 asks from */
    int order[4] = {0, 1, 2}, n = 3;
    if (t->key_right) {
        order[1] = 3 - reverse_col[t->s];
        order[2] = reverse_col[t->s];
        order[n++] = 0;
    }
    dsv4_strbuf b = DSV4_STRBUF_INIT;
    for (int c = 0; c < n; c++) {
        dsv4_strbuf_puts(&b, "| ");
        dsv4_strbuf_puts(&b, names[t->s][order[c]]);
        dsv4_strbuf_puts(&b, " ");
    }
    dsv4_strbuf_puts(&b, "|\n");
    for (int c = 0; c < n; c++) dsv4_strbuf_puts(&b, "| --- ");
    dsv4_strbuf_puts(&b, "|");
    for (uint32_t i = 0; i < t->rows; i++) {
        dsv4_strbuf_puts(&b, "\n");
        for (int c = 0; c < n; c++) {
            char num[16];
            dsv4_strbuf_puts(&b, "| ");
            dsv4_strbuf_puts(&b, table_cell(t, i, order[c], num, sizeof num));
            dsv4_strbuf_puts(&b, " ");
        }
        dsv4_strbuf_puts(&b, "|");
    }
    return dsv4_strbuf_release(&b, NULL);
}

/* A word answer names one row's cell of column c: the same column's other words (departments
 * repeat, so only those unlike the answer) must not occur, or an answer listing every row would
 * pass. */
static void expect_cell(dsv4_example *ex, const table_spec *t, uint32_t target, int c) {
    char buf[16];
    const char *want = table_cell(t, target, c, buf, sizeof buf);
    expect_word(ex, want);
    for (uint32_t i = 0; i < t->rows; i++) {
        const char *w = table_cell(t, i, c, buf, sizeof buf);
        if (strcmp(w, want)) expect_not_word(ex, w);
    }
}

dsv4_status table_ask(dsv4_rng *r, const dsv4_task_opts *o, const table_spec *t, uint32_t target, bool thinking, exchange *x,
                      dsv4_example *ex) {
    const char *k = table_key(t, target);
    char *question = NULL, *answer = NULL, *why = NULL;
    /* kind 2 is the reverse look-up in every schema: from a cell to the row's key, the harder
     * one for a small model (find the row by its value, then copy what starts it) */
    int kind = o->table_reverse == 0 ? (int)draw(r, 3) : chance(r, o->table_reverse) ? 2 : (int)draw(r, 2);
    int num = t->num[target];
    if (ex) ex->reverse = kind == 2;
    if (t->s == PEOPLE) {
        const char *city = dsv4_words_cities.w[t->other[target]];
        if (kind == 0) {
            static const char *const q[] = {"How old is {0}?", "What is {0}'s age?", "What age is {0}?"};
            question = fill(PICK(r, q), (const char *[]){k});
            answer = fmt("%s is %d years old.", k, num);
            why = fmt("The row of %s gives the age %d.", k, num);
            if (ex) expect_number(ex, num);
        } else if (kind == 1) {
            static const char *const q[] = {"Where does {0} live?", "Which city does {0} live in?",
                                            "What is {0}'s city?"};
            question = fill(PICK(r, q), (const char *[]){k});
            answer = fmt("%s lives in %s.", k, city);
            why = fmt("The row of %s gives the city %s.", k, city);
            if (ex) expect_cell(ex, t, target, 1);
        } else {
            static const char *const q[] = {"Who lives in {0}?", "Which person lives in {0}?"};
            question = fill(PICK(r, q), (const char *[]){city});
            answer = o->table_restate ? fmt("The person who lives in %s is %s.", city, k) : fmt("%s lives in %s.", k, city);
            why = fmt("The row with the city %s is %s's.", city, k);
            if (ex) expect_cell(ex, t, target, 0);
        }
    } else if (t->s == PRODUCTS) {
        if (kind == 0) {
            static const char *const q[] = {"How much does the {0} cost?", "What is the price of the {0}?",
                                            "What does the {0} cost?"};
            question = fill(PICK(r, q), (const char *[]){k});
            answer = fmt("The %s costs %d dollars.", k, num);
            why = fmt("The row of the %s gives the price %d.", k, num);
            if (ex) expect_number(ex, num);
        } else if (kind == 1) {
            static const char *const q[] = {"How many units of {0} are in stock?", "What is the stock of the {0}?",
                                            "How many {0} units are left?"};
            question = fill(PICK(r, q), (const char *[]){k});
            answer = fmt("There are %d units of %s in stock.", t->stock[target], k);
            why = fmt("The row of the %s gives the stock %d.", k, t->stock[target]);
            if (ex) expect_number(ex, t->stock[target]);
        } else {
            char price[16];
            snprintf(price, sizeof price, "%d", num);
            static const char *const q[] = {"Which item costs {0} dollars?", "What costs {0} dollars?"};
            question = fill(PICK(r, q), (const char *[]){price});
            answer = o->table_restate ? fmt("The item that costs %d dollars is the %s.", num, k)
                                      : fmt("The %s costs %d dollars.", k, num);
            why = fmt("The row with the price %d is the %s.", num, k);
            if (ex) expect_cell(ex, t, target, 0);
        }
    } else {
        const char *dept = dsv4_words_departments.w[t->other[target]];
        if (kind == 2) {
            char room[16];
            snprintf(room, sizeof room, "%d", num);
            static const char *const q[] = {"Who is in room {0}?", "Which person has room {0}?"};
            question = fill(PICK(r, q), (const char *[]){room});
            answer = o->table_restate ? fmt("The person in room %d is %s.", num, k) : fmt("%s is in room %d.", k, num);
            why = fmt("The row with room %d is %s's.", num, k);
            if (ex) expect_cell(ex, t, target, 0);
        } else if (kind == 1) {
            static const char *const q[] = {"Which department is {0} in?", "Where does {0} work?",
                                            "What department does {0} work in?"};
            question = fill(PICK(r, q), (const char *[]){k});
            answer = fmt("%s works in %s.", k, dept);
            why = fmt("The row of %s gives the department %s.", k, dept);
            if (ex) expect_cell(ex, t, target, 1);
        } else {
            static const char *const q[] = {"What room is {0} in?", "Which room does {0} have?",
                                            "What is {0}'s room number?"};
            question = fill(PICK(r, q), (const char *[]){k});
            answer = fmt("%s is in room %d.", k, num);
            why = fmt("The row of %s gives the room %d.", k, num);
            if (ex) expect_number(ex, num);
        }
    }
    x->user = question;
    x->answer = answer;
    if (thinking) x->reasoning = why;
    else free(why);
    return x->user && x->answer && (!thinking || x->reasoning) ? DSV4_OK : DSV4_ENOMEM;
}

dsv4_status table_exchange(dsv4_rng *r, const dsv4_task_opts *o, bool thinking, exchange *x, dsv4_example *ex) {
    table_spec t;
    table_draw(r, o, &t);
    char *table = table_render(&t);
    dsv4_status st = table_ask(r, o, &t, t.first, thinking, x, ex);
    char *question = x->user;
    x->user = table && question ? fill(PICK(r, table_intros), (const char *[]){table, question}) : NULL;
    free(table);
    free(question);
    if (st) return st;
    return x->user ? DSV4_OK : DSV4_ENOMEM;
}

/* ---- general chat --------------------------------------------------------------------------------- */

typedef struct chat_topic {
    const char *const *users;
    size_t n_users;
    const char *const *answers;
    size_t n_answers;
    const char *why; /* the reasoning in thinking mode */
} chat_topic;

#define TOPIC(u, a, why) {u, DSV4_ARRAY_LEN(u), a, DSV4_ARRAY_LEN(a), why}

static const char *const greet_u[] = {"Hi", "Hello", "Hello!", "Hi there!", "Hey", "Good morning!", "Good evening.",
                                      "Hey, how's it going?", "hello", "hi!"};
static const char *const greet_a[] = {"Hello! How can I help you today?", "Hi! What can I do for you?",
                                      "Hello! What would you like to know?"};
static const char *const how_u[] = {"How are you?", "How are you doing today?", "How's it going?",
                                    "How do you feel today?"};
static const char *const how_a[] = {"I'm doing well, thank you! How can I help you?",
                                    "Very well, thanks for asking. What can I do for you?"};
static const char *const who_u[] = {"Who are you?", "What are you?", "What is your name?", "Introduce yourself.",
                                    "Tell me about yourself.", "who are you"};
static const char *const who_a[] = {
    "I am a tiny DeepSeek-V4 model, trained from scratch with dsv4. I can add, subtract and multiply small numbers, "
    "look things up in a table you give me, find a fact in a long text, and call tools."};
static const char *const can_u[] = {"What can you do?", "How can you help me?", "What are you good at?",
                                    "What kind of questions can you answer?"};
static const char *const can_a[] = {
    "I can add, subtract and multiply small numbers, answer questions about a table you give me, find a fact "
    "hidden in a long text, and call the tools you give me. I can also tell you a fortune."};
static const char *const made_u[] = {"Who made you?", "Who trained you?", "Where do you come from?"};
static const char *const made_a[] = {
    "I was trained from scratch with dsv4, a C implementation of DeepSeek-V4, on generated tasks and on the "
    "English texts of Debian's fortunes package."};
static const char *const thanks_u[] = {"Thank you!", "Thanks a lot.", "Thanks!", "That was helpful, thank you.",
                                       "thanks"};
static const char *const thanks_a[] = {"You're welcome!", "Glad I could help!", "You're welcome. Anything else?"};
static const char *const bye_u[] = {"Bye!", "Goodbye.", "See you later!", "That's all for now.", "bye"};
static const char *const bye_a[] = {"Goodbye! Have a nice day.", "Bye! Come back any time."};

static const chat_topic topics[] = {
    TOPIC(greet_u, greet_a, "The user greets me. I greet back and offer help."),
    TOPIC(how_u, how_a, "The user asks how I am. I answer kindly."),
    TOPIC(who_u, who_a, "The user asks who I am. I describe myself."),
    TOPIC(can_u, can_a, "The user asks what I can do. I list my skills."),
    TOPIC(made_u, made_a, "The user asks where I come from. I explain how I was trained."),
    TOPIC(thanks_u, thanks_a, "The user thanks me. I say they are welcome."),
    TOPIC(bye_u, bye_a, "The user says goodbye. I say goodbye too."),
};

static const char *const joke_u[] = {"Tell me a joke.", "Say something funny.", "Tell me something interesting.",
                                     "Give me a quote.", "Tell me a fortune.", "Share a fortune with me."};

dsv4_status chat_exchange(dsv4_taskgen *g, dsv4_rng *r, exchange *x) {
    if (chance(r, 0.2)) { /* a fortune from the corpus */
        size_t k = g->short_pool[draw(r, (uint32_t)g->n_short)];
        x->user = fmt("%s", PICK(r, joke_u));
        x->answer = fmt("Here is one:\n\n%s", g->corpus->passages[g->pool[k]]);
        x->reasoning = fmt("The user wants a fortune. I share a short one.");
    } else {
        const chat_topic *t = &topics[draw(r, DSV4_ARRAY_LEN(topics))];
        x->user = fmt("%s", pick(r, t->users, t->n_users));
        x->answer = fmt("%s", pick(r, t->answers, t->n_answers));
        x->reasoning = fmt("%s", t->why);
    }
    return x->user && x->answer && x->reasoning ? DSV4_OK : DSV4_ENOMEM;
}

/* ---- conversations -------------------------------------------------------------------------------- */

static dsv4_status exchange_of(dsv4_taskgen *g, const dsv4_task_opts *o, dsv4_family f, dsv4_rng *r, bool thinking,
                               exchange *x, dsv4_example *ex) {
    switch (f) {
    case DSV4_FAMILY_ARITH: return arith_exchange(r, thinking, x, ex);
    case DSV4_FAMILY_TABLE: return table_exchange(r, o, thinking, x, ex);
    default: {
        dsv4_status st = chat_exchange(g, r, x);
        if (!thinking) {
            free(x->reasoning);
            x->reasoning = NULL;
        }
        return st;
    }
    }
}

dsv4_status gen_qa(dsv4_taskgen *g, dsv4_family f, dsv4_rng *r, const dsv4_task_opts *o, bool thinking,
                   dsv4_example *ex) {
    double multi = o->multi_turn < 0 ? 0 : o->multi_turn > 0 ? o->multi_turn : 0.15;
    json_t *m = ex->messages = json_array();
    if (!m) return DSV4_ENOMEM;
    const char *system = draw_system(r);
    if (system) json_array_append_new(m, msg("system", system));
    /* Earlier turns (chat mode only: the encoder would drop their reasoning in thinking mode). */
    int earlier = !thinking && chance(r, multi) ? draw_in(r, 1, 2) : 0;
    for (int i = 0; i < earlier; i++) {
        static const dsv4_family short_families[] = {DSV4_FAMILY_ARITH, DSV4_FAMILY_TABLE, DSV4_FAMILY_CHAT};
        exchange x = {0};
        dsv4_status st = exchange_of(g, o, short_families[draw(r, 3)], r, false, &x, NULL);
        if (!st) {
            json_array_append_new(m, msg("user", x.user));
            json_array_append_new(m, assistant(x.answer, NULL));
        }
        exchange_free(&x);
        if (st) return st;
    }
    exchange x = {0};
    dsv4_status st = exchange_of(g, o, f, r, thinking, &x, ex);
    if (!st) {
        json_array_append_new(m, msg("user", x.user));
        json_array_append_new(m, assistant(x.answer, x.reasoning));
        ex->ask = (int)json_array_size(m) - 1;
    }
    exchange_free(&x);
    return st;
}
