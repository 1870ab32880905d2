/* plot.c: line charts as SVG (see plot.h). */
#include "plot.h"

#include <math.h>
#include <stdio.h>

enum { WIDTH = 900, HEIGHT = 520, LEFT = 70, RIGHT = 190, TOP = 40, BOTTOM = 55 };

/* A "nice" tick step (1, 2 or 5 times a power of ten) giving about `n` ticks over span. */
static double tick_step(double span, int n) {
    double raw = span / n, p = pow(10.0, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void escape(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
    }
}

bool plot_svg(const char *path, const char *title, const char *xlabel, const char *ylabel, const plot_series *s,
              int n_series) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int k = 0; k < n_series; k++)
        for (size_t i = 0; i < s[k].n; i++)
            if (isfinite(s[k].x[i]) && isfinite(s[k].y[i])) {
                x0 = fmin(x0, s[k].x[i]), x1 = fmax(x1, s[k].x[i]);
                y0 = fmin(y0, s[k].y[i]), y1 = fmax(y1, s[k].y[i]);
            }
    if (!(x1 >= x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (x1 == x0) x1 = x0 + 1;
    y0 = fmin(0.0, y0); /* losses: from zero */
    if (y1 <= y0) y1 = y0 + 1;
    double xs = tick_step(x1 - x0, 8), ys = tick_step(y1 - y0, 6);
    x1 = ceil(x1 / xs) * xs;
    y1 = ceil(y1 / ys) * ys;
    double pw = WIDTH - LEFT - RIGHT, ph = HEIGHT - TOP - BOTTOM;
#define PX(v) (LEFT + ((v) - x0) / (x1 - x0) * pw)
#define PY(v) (TOP + ph - ((v) - y0) / (y1 - y0) * ph)

    FILE *f = fopen(path, "w");
    if (!f) return false;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            WIDTH, HEIGHT, WIDTH, HEIGHT);
    fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"15\" font-weight=\"bold\">", LEFT);
    escape(f, title);
    fputs("</text>\n", f);
    for (double v = ceil(x0 / xs) * xs; v <= x1 + xs * 1e-9; v += xs) {
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>", PX(v), TOP, PX(v), TOP + ph);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", PX(v), TOP + ph + 16, v);
    }
    for (double v = ceil(y0 / ys) * ys; v <= y1 + ys * 1e-9; v += ys) {
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>", LEFT, PY(v), LEFT + pw, PY(v));
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", LEFT - 6, PY(v) + 4, v);
    }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#444\"/>\n", LEFT, TOP, pw, ph);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", LEFT + pw / 2, HEIGHT - 12);
    escape(f, xlabel);
    fprintf(f, "</text>\n<text transform=\"translate(18 %.1f) rotate(-90)\" text-anchor=\"middle\">", TOP + ph / 2);
    escape(f, ylabel);
    fputs("</text>\n", f);
    for (int k = 0; k < n_series; k++) {
        bool open = false;
        for (size_t i = 0; i < s[k].n; i++) {
            bool ok = isfinite(s[k].x[i]) && isfinite(s[k].y[i]);
            if (ok && !open) {
                fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\"%s points=\"", s[k].color,
                        s[k].thin ? "0.7" : "1.8", s[k].dashed ? " stroke-dasharray=\"5 3\"" : "");
                open = true;
            }
            if (ok) fprintf(f, "%.1f,%.1f ", PX(s[k].x[i]), PY(s[k].y[i]));
            if (open && (!ok || i + 1 == s[k].n)) {
                fputs("\"/>\n", f);
                open = false;
            }
        }
        double ly = TOP + 14 + 18 * k;
        fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>",
                LEFT + pw + 12, ly, LEFT + pw + 36, ly, s[k].color, s[k].dashed ? " stroke-dasharray=\"5 3\"" : "");
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\">", LEFT + pw + 42, ly + 4);
        escape(f, s[k].name);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
#undef PX
#undef PY
    return fclose(f) == 0;
}
