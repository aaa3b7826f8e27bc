/* fuzz_metrics_csv: the reader of metrics.csv behind `nnd plot` and its drawing
 * (plot_metrics_svg, cli/plot.c) on arbitrary text, read through fmemopen: it must
 * give an SVG document or an error, and end (issue 10 item 13 was a loop forever). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fuzz_file.h"
#include "plot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0; /* fmemopen refuses an empty buffer */
    FILE *f = fmemopen((void *)data, size, "r");
    FUZZ_CHECK(f != NULL);
    StrBuf svg = {0};
    char err[1024];
    if (plot_metrics_svg("metrics.csv", f, &svg, err, sizeof err) == 0)
        FUZZ_CHECK(svg.len > 0 && strstr(svg.s, "</svg>") != NULL);
    else
        FUZZ_CHECK(svg.len == 0 && err[0]);
    sb_free(&svg);
    fclose(f);
    return 0;
}
