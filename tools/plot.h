/* plot.h: a line chart as a standalone SVG file (the training loss curve).
 *
 * No library: the chart is a handful of SVG elements (axes with round-number ticks, one
 * polyline per series, a legend), written with fprintf. Series are (x, y) points; NaN values
 * are gaps. */
#ifndef DSV4_PLOT_H
#define DSV4_PLOT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct plot_series {
    const char *name;
    const char *color;   /* SVG color, "#1f77b4" */
    const double *x, *y;
    size_t n;
    bool dashed, thin;
} plot_series;

/* Write the chart; returns false (errno set) when the file cannot be written. */
bool plot_svg(const char *path, const char *title, const char *xlabel, const char *ylabel, const plot_series *s,
              int n_series);

#endif
