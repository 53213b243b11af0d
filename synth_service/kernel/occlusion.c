/* Occlusion between placed objects: what of each stays visible under the later ones, on hard
 * masks, and which are dropped as too hidden. */
#include "kernel.h"

#include <stdlib.h>
#include <string.h>

static int overlap(const int *a, const int *b)
{
    return a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
}

/* Visible pixels of placed[k] under the later ones, with their tight box; -1 out of memory. */
static int visible(const Placed *placed, int count, int k, const Arena *arena)
{
    Placed *p = (Placed *)&placed[k];
    const int *win = p->window;
    int whole = win[0] == p->top && win[1] == p->left && win[2] == p->top + p->h &&
                win[3] == p->left + p->w;
    int covered = 0;
    for (int j = k + 1; j < count && !covered; j++)
        covered = overlap(p->bounds, placed[j].bounds);
    if (whole && !covered) {
        p->area = p->full_area;
        p->box[0] = p->bounds[0];
        p->box[1] = p->bounds[1];
        p->box[2] = p->bounds[2] - p->bounds[0];
        p->box[3] = p->bounds[3] - p->bounds[1];
        return 0;
    }
    int wh = win[2] - win[0], ww = win[3] - win[1];
    unsigned char *mine = malloc((size_t)wh * ww);
    if (!mine)
        return -1;
    const float *alpha = arena->data + p->alpha_at;
    for (int y = 0; y < wh; y++)
        for (int x = 0; x < ww; x++)
            mine[y * ww + x] =
                alpha[(size_t)(y + win[0] - p->top) * p->w + (x + win[1] - p->left)] > 0.5f;
    for (int j = k + 1; j < count; j++) {
        const Placed *q = &placed[j];
        if (!overlap(p->bounds, q->bounds))
            continue;
        const float *qa = arena->data + q->alpha_at;
        int iy0 = win[0] > q->window[0] ? win[0] : q->window[0];
        int ix0 = win[1] > q->window[1] ? win[1] : q->window[1];
        int iy1 = win[2] < q->window[2] ? win[2] : q->window[2];
        int ix1 = win[3] < q->window[3] ? win[3] : q->window[3];
        for (int y = iy0; y < iy1; y++)
            for (int x = ix0; x < ix1; x++)
                if (qa[(size_t)(y - q->top) * q->w + (x - q->left)] > 0.5f)
                    mine[(y - win[0]) * ww + (x - win[1])] = 0;
    }
    int area = 0, bx0 = ww, by0 = wh, bx1 = -1, by1 = -1;
    for (int y = 0; y < wh; y++)
        for (int x = 0; x < ww; x++)
            if (mine[y * ww + x]) {
                area++;
                bx0 = x < bx0 ? x : bx0;
                bx1 = x > bx1 ? x : bx1;
                by0 = y < by0 ? y : by0;
                by1 = y;
            }
    free(mine);
    p->area = area;
    if (area == 0) {
        memset(p->box, 0, sizeof p->box);
        return 0;
    }
    p->box[0] = win[1] + bx0;
    p->box[1] = win[0] + by0;
    p->box[2] = bx1 - bx0 + 1;
    p->box[3] = by1 - by0 + 1;
    return 0;
}

/* Drop objects less visible than min_visible (later objects cover earlier ones) until none
 * is dropped; dropping can only uncover others, so this ends. Returns the survivors, kept in
 * painting order at the front of `placed`, or -1 when out of memory. */
int settle(Placed *placed, int count, double min_visible, const Arena *arena)
{
    for (;;) {
        int kept = 0;
        for (int k = 0; k < count; k++) {
            if (visible(placed, count, k, arena) < 0)
                return -1;
            placed[k].visible = (double)placed[k].area / placed[k].full_area;
        }
        for (int k = 0; k < count; k++)
            if (placed[k].area > 0 && placed[k].visible >= min_visible)
                placed[kept++] = placed[k];
        if (kept == count)
            return count;
        count = kept;
    }
}
