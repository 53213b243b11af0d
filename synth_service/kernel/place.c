/* Where objects go: a sample's placement attempts, box IoU, and occlusion on hard masks.
 *
 * The arithmetic follows what placement.py did in Python, in the same order, so that a
 * given block of uniforms places the same objects.
 */
#include "kernel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double lerp(const double *params, int at, double u)
{
    return params[at] + (params[at + 1] - params[at]) * u;
}

static int pick_blend(const double *params, double u)
{
    int count = (int)params[P_BLEND_COUNT];
    double total = 0.0;
    for (int i = 0; i < count; i++)
        total += params[P_BLEND + 2 * i + 1];
    double pick = u * total;
    for (int i = 0; i < count; i++) {
        double weight = params[P_BLEND + 2 * i + 1];
        if (pick < weight)
            return (int)params[P_BLEND + 2 * i];
        pick -= weight;
    }
    return (int)params[P_BLEND + 2 * (count - 1)];
}

static int pick(double u, int64_t count)
{
    int64_t i = (int64_t)(u * (double)count);
    return (int)(i < count - 1 ? i : count - 1);
}

/* Top-left of a w x h box `gap` px outside the anchor box, its centre moved from the anchor's
 * centre in direction `angle`; the axis the box crosses first decides (context.py). */
static void beside(const int anchor[4], int w, int h, double gap, double angle, double *x,
                   double *y)
{
    double dx = cos(angle), dy = sin(angle);
    double half_x = ((anchor[2] - anchor[0]) + w) / 2.0;
    double half_y = ((anchor[3] - anchor[1]) + h) / 2.0;
    int have = 0;
    double best_touch = 0.0, reach = 0.0;
    double halves[2] = {half_x, half_y}, ds[2] = {dx, dy};
    for (int i = 0; i < 2; i++) {
        if (fabs(ds[i]) <= 1e-9)
            continue;
        double touch = halves[i] / fabs(ds[i]), far = (halves[i] + gap) / fabs(ds[i]);
        if (!have || touch < best_touch || (touch == best_touch && far < reach)) {
            best_touch = touch;
            reach = far;
            have = 1;
        }
    }
    double cx = (anchor[0] + anchor[2]) / 2.0 + dx * reach;
    double cy = (anchor[1] + anchor[3]) / 2.0 + dy * reach;
    *x = cx - w / 2.0;
    *y = cy - h / 2.0;
}

static void sorted_pair(double v, double *lo, double *hi)
{
    *lo = v < 0.0 ? v : 0.0;
    *hi = v < 0.0 ? 0.0 : v;
}

/* Pixels of an (h, w) alpha above 1/2 (the hard mask), and their inclusive box. A row is
 * counted in one branch-free pass (it vectorizes); only rows with some are searched. */
static int hard_box(const float *alpha, int h, int w, int *x0, int *y0, int *x1, int *y1)
{
    int area = 0;
    *x0 = w;
    *y0 = h;
    *x1 = *y1 = -1;
    for (int y = 0; y < h; y++) {
        const float *row = alpha + (size_t)y * w;
        int count = 0;
        for (int x = 0; x < w; x++)
            count += row[x] > 0.5f;
        if (!count)
            continue;
        area += count;
        int first = 0, last = w - 1;
        while (!(row[first] > 0.5f))
            first++;
        while (!(row[last] > 0.5f))
            last--;
        *x0 = first < *x0 ? first : *x0;
        *x1 = last > *x1 ? last : *x1;
        *y0 = y < *y0 ? y : *y0;
        *y1 = y;
    }
    return area;
}

/* One attempt: 1 placed into *p, 0 not placeable, -1 out of memory. */
static int draw(const Library *lib, const double *params, int cls, int height, int width,
                const double *u, const Placed *placed, int n_placed, Arena *arena, Placed *p)
{
    int64_t start = lib->member_start[cls], members = lib->member_start[cls + 1] - start;
    if (members <= 0)
        return 0;
    int object = (int)lib->members[start + pick(u[0], members)];
    const int64_t *geo = lib->geometry + 4 * (size_t)object;
    int h = (int)geo[0], w = (int)geo[1];
    double scale = lerp(params, P_SCALE0, u[1]), angle = lerp(params, P_ROT0, u[2]);
    int flips = params[P_FLIPS] != 0.0;
    int flip_h = flips && u[3] < 0.5, flip_v = flips && u[4] < 0.5;
    double cx = (w - 1) / 2.0, cy = (h - 1) / 2.0;
    double radians = angle * (PI / 180.0);
    double a = scale * cos(radians), b = scale * sin(radians);
    double fx = flip_h ? -1.0 : 1.0, tx = flip_h ? w - 1.0 : 0.0;
    double fy = flip_v ? -1.0 : 1.0, ty = flip_v ? h - 1.0 : 0.0;
    double m02 = (1 - a) * cx - b * cy + a * tx + b * ty;
    double m12 = b * cx + (1 - a) * cy - b * tx + a * ty;
    double m00 = a * fx, m01 = b * fy, m10 = -b * fx, m11 = a * fy;
    double lo_a, hi_a, lo_b, hi_b;
    sorted_pair(m00 * (w - 1), &lo_a, &hi_a);
    sorted_pair(m01 * (h - 1), &lo_b, &hi_b);
    int low_x = (int)floor(lo_a + lo_b + m02), out_w = (int)ceil(hi_a + hi_b + m02);
    sorted_pair(m10 * (w - 1), &lo_a, &hi_a);
    sorted_pair(m11 * (h - 1), &lo_b, &hi_b);
    int low_y = (int)floor(lo_a + lo_b + m12), out_h = (int)ceil(hi_a + hi_b + m12);
    out_w = out_w - low_x + 1;
    out_h = out_h - low_y + 1;
    double m[6] = {m00, m01, m02 - low_x, m10, m11, m12 - low_y}, inv[6];
    size_t plane = (size_t)out_h * out_w;
    size_t at = arena_take(arena, plane * (2 + lib->channels));
    if (at == SIZE_MAX)
        return -1;
    float *alpha = arena->data + at;
    invert_affine(m, inv);
    inv[2] += 1.0; /* the layers are padded by one pixel */
    inv[5] += 1.0;
    if (warp_layers(lib->layers + geo[2], h + 2, w + 2, lib->channels, inv, alpha,
                    alpha + plane, alpha + 2 * plane, out_h, out_w))
        return -1;
    int bx0, by0, bx1, by1, area = hard_box(alpha, out_h, out_w, &bx0, &by0, &bx1, &by1);
    if (area == 0)
        return 0;
    int bw = bx1 - bx0 + 1, bh = by1 - by0 + 1, top, left;
    int anchor = (int)lib->anchor[cls];
    double p_context = anchor >= 0 ? params[P_CONTEXT] : 0.0, u6 = u[6];
    int near = 0, chosen = -1;
    if (p_context > 0.0)
        for (int i = 0; i < n_placed; i++)
            near += placed[i].cls == anchor;
    int64_t gap_start = anchor >= 0 ? lib->gap_start[cls] : 0;
    int64_t gaps = anchor >= 0 ? lib->gap_start[cls + 1] - gap_start : 0;
    if (near && gaps > 0 && u6 < p_context) {
        int which = pick(u6 / p_context, near);
        for (int i = 0; i < n_placed && chosen < 0; i++)
            if (placed[i].cls == anchor && which-- == 0)
                chosen = i;
        double gap = lib->gaps[gap_start + pick(u[7], gaps)], x, y;
        beside(placed[chosen].bounds, bw, bh, gap, 2 * PI * u[8], &x, &y);
        top = (int)nearbyint(y) - by0;
        left = (int)nearbyint(x) - bx0;
    } else {
        if (p_context > 0.0)
            u6 = u6 >= p_context ? (u6 - p_context) / (1 - p_context) : u6 / p_context;
        if (u6 < params[P_TRUNCATION]) {
            top = -(out_h / 2) + (int)(u[7] * height);
            left = -(out_w / 2) + (int)(u[8] * width);
        } else if (out_h <= height && out_w <= width) {
            top = (int)(u[7] * (height - out_h + 1));
            left = (int)(u[8] * (width - out_w + 1));
        } else {
            return 0;
        }
    }
    int y0 = top > 0 ? top : 0, x0 = left > 0 ? left : 0;
    int y1 = top + out_h < height ? top + out_h : height;
    int x1 = left + out_w < width ? left + out_w : width;
    if (y1 <= y0 || x1 <= x0)
        return 0;
    *p = (Placed){.object = object, .cls = cls, .blend = pick_blend(params, u[5]),
                  .flip_h = flip_h, .flip_v = flip_v, .scale = scale, .angle = angle,
                  .h = out_h, .w = out_w, .top = top, .left = left, .alpha_at = at,
                  .full_area = area,
                  .bounds = {left + bx0, top + by0, left + bx1 + 1, top + by1 + 1},
                  .window = {y0, x0, y1, x1}};
    memcpy(p->m, m, sizeof m);
    return 1;
}

static double max_iou(const int *c, const Placed *placed, int n_placed)
{
    double area = (double)(c[2] - c[0]) * (c[3] - c[1]), worst = 0.0;
    for (int i = 0; i < n_placed; i++) {
        const int *b = placed[i].bounds;
        int iw = (c[2] < b[2] ? c[2] : b[2]) - (c[0] > b[0] ? c[0] : b[0]);
        if (iw <= 0)
            continue;
        int ih = (c[3] < b[3] ? c[3] : b[3]) - (c[1] > b[1] ? c[1] : b[1]);
        if (ih <= 0)
            continue;
        double inter = (double)iw * ih;
        double iou = inter / (area + (double)(b[2] - b[0]) * (b[3] - b[1]) - inter);
        worst = iou > worst ? iou : worst;
    }
    return worst;
}

/* Ask for the layers of the object each class slot tries first, all at once: they are spread
 * over tens of megabytes, and waiting for them one warp at a time cost a third of the warp. */
static void prefetch_first_tries(const Library *lib, const int64_t *classes, int count,
                                 const double *tries)
{
    for (int i = 0; i < count; i++) {
        int64_t start = lib->member_start[classes[i]];
        int64_t members = lib->member_start[classes[i] + 1] - start;
        if (members <= 0)
            continue;
        const double *u = tries + (size_t)i * TRIES * PLACE_DRAWS;
        const int64_t *geo = lib->geometry + 4 * (size_t)lib->members[start + pick(u[0], members)];
        const char *at = (const char *)(lib->layers + geo[2]);
        size_t bytes = (size_t)(geo[0] + 2) * (geo[1] + 2) * LAYER_STRIDE(lib->channels) * 4;
        for (size_t b = 0; b < bytes; b += 64)
            __builtin_prefetch(at + b);
    }
}

int place_all(const Library *lib, const double *params, const int64_t *classes, int count,
              const double *tries, int height, int width, Arena *arena, Placed *out)
{
    int n = 0;
    prefetch_first_tries(lib, classes, count, tries);
    for (int i = 0; i < count; i++) {
        for (int t = 0; t < TRIES; t++) {
            size_t mark = arena->used;
            const double *u = tries + ((size_t)i * TRIES + t) * PLACE_DRAWS;
            int got = draw(lib, params, (int)classes[i], height, width, u, out, n, arena,
                           &out[n]);
            if (got < 0)
                return -1;
            if (got && max_iou(out[n].bounds, out, n) <= params[P_MAX_IOU]) {
                n++;
                break;
            }
            arena->used = mark;
        }
    }
    return n;
}
