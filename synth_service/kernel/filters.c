/* Affine warps, Gaussian blur and the gamma curve, on small float32 patches. */
#include "kernel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t arena_take(Arena *arena, size_t count)
{
    if (arena->used + count > arena->cap) {
        size_t cap = arena->cap ? arena->cap : 1 << 18; /* a crowded 512 x 512 sample */
        while (cap < arena->used + count)
            cap *= 2;
        float *data = realloc(arena->data, cap * sizeof(float));
        if (!data)
            return SIZE_MAX;
        arena->data = data;
        arena->cap = cap;
    }
    size_t at = arena->used;
    arena->used += count;
    return at;
}

void invert_affine(const double m[6], double inv[6])
{
    double det = m[0] * m[4] - m[1] * m[3];
    double d = det != 0.0 ? 1.0 / det : 0.0;
    inv[0] = m[4] * d;
    inv[1] = -m[1] * d;
    inv[3] = -m[3] * d;
    inv[4] = m[0] * d;
    inv[2] = -inv[0] * m[2] - inv[1] * m[5];
    inv[5] = -inv[3] * m[2] - inv[4] * m[5];
}

/* OpenCV's BORDER_REFLECT (fedcba|abcdef|fedcba) and BORDER_REFLECT_101 (fedcb|abcdef|edcba). */
static inline int reflect(int i, int n)
{
    if ((unsigned)i < (unsigned)n)
        return i;
    if (n == 1)
        return 0;
    if (i >= -n && i < 2 * n) /* the usual case: one reflection */
        return i < 0 ? -i - 1 : 2 * n - i - 1;
    i %= 2 * n; /* period 2n */
    if (i < 0)
        i += 2 * n;
    return i < n ? i : 2 * n - 1 - i;
}

static inline int reflect101(int i, int n)
{
    if (n == 1)
        return 0;
    i %= 2 * n - 2; /* period 2n - 2 */
    if (i < 0)
        i += 2 * n - 2;
    return i < n ? i : 2 * n - 2 - i;
}

/* One output pixel from the four taps around it, reflected or zero outside. */
static void border_pixel(const float *src, int sh, int sw, int channels, int stride, int x0,
                         int y0, const float w[4], int reflect_border, float *out)
{
    int xs[2] = {x0, x0 + 1}, ys[2] = {y0, y0 + 1};
    float wx[2] = {1.0f, 1.0f}, wy[2] = {1.0f, 1.0f}; /* 0 for a tap outside (zero border) */
    for (int k = 0; k < 2; k++) {
        if (reflect_border) {
            xs[k] = reflect(xs[k], sw);
            ys[k] = reflect(ys[k], sh);
        } else {
            wx[k] = xs[k] >= 0 && xs[k] < sw ? 1.0f : 0.0f;
            wy[k] = ys[k] >= 0 && ys[k] < sh ? 1.0f : 0.0f;
            xs[k] = xs[k] < 0 ? 0 : (xs[k] >= sw ? sw - 1 : xs[k]);
            ys[k] = ys[k] < 0 ? 0 : (ys[k] >= sh ? sh - 1 : ys[k]);
        }
    }
    const float *row0 = src + (size_t)ys[0] * sw * stride;
    const float *row1 = src + (size_t)ys[1] * sw * stride;
    const float *t00 = row0 + (size_t)xs[0] * stride, *t01 = row0 + (size_t)xs[1] * stride;
    const float *t10 = row1 + (size_t)xs[0] * stride, *t11 = row1 + (size_t)xs[1] * stride;
    const float w00 = w[0] * wx[0] * wy[0], w01 = w[1] * wx[1] * wy[0];
    const float w10 = w[2] * wx[0] * wy[1], w11 = w[3] * wx[1] * wy[1];
    for (int c = 0; c < channels; c++)
        out[c] = w00 * t00[c] + w01 * t01[c] + w10 * t10[c] + w11 * t11[c];
}

/* Where the pixels of dst row y fall in the source: the top-left tap (x0, y0) and the four
 * bilinear weights. Float coordinates are exact to ~1e-4 px here; shifting by 1024 before
 * truncating floors any coordinate that can reach a tap. Coordinates are linear along the
 * row, so when both ends lie within 1000 px of the source all do, and the loop needs no
 * clamp (no condition: it vectorizes); otherwise they are clamped to stay plainly outside. */
SIMD_CLONES static void warp_row(const double inv[6], int y, int dw, float *restrict w00,
                     float *restrict w01, float *restrict w10, float *restrict w11,
                     int *restrict x0, int *restrict y0)
{
    const double row_x = inv[1] * y + inv[2], row_y = inv[4] * y + inv[5];
    const double end_x = inv[0] * (dw - 1) + row_x, end_y = inv[3] * (dw - 1) + row_y;
    const float ax = (float)inv[0], ay = (float)inv[3];
    const float bx = (float)row_x + 1024.0f, by = (float)row_y + 1024.0f;
    if (fabs(row_x) < 1000 && fabs(row_y) < 1000 && fabs(end_x) < 1000 && fabs(end_y) < 1000) {
        for (int x = 0; x < dw; x++) {
            float sx = ax * (float)x + bx, sy = ay * (float)x + by;
            int ix = (int)sx, iy = (int)sy;
            float fx = sx - (float)ix, fy = sy - (float)iy;
            w00[x] = (1.0f - fx) * (1.0f - fy);
            w01[x] = fx * (1.0f - fy);
            w10[x] = (1.0f - fx) * fy;
            w11[x] = fx * fy;
            x0[x] = ix - 1024;
            y0[x] = iy - 1024;
        }
        return;
    }
    for (int x = 0; x < dw; x++) {
        double sx = inv[0] * x + row_x, sy = inv[3] * x + row_y;
        x0[x] = sx < -1000 ? -1000 : (sx > 1000 ? 1000 : (int)floor(sx));
        y0[x] = sy < -1000 ? -1000 : (sy > 1000 ? 1000 : (int)floor(sy));
        w00[x] = w01[x] = w10[x] = w11[x] = 0.0f; /* far outside: no tap is read */
        if (x0[x] > -1000 && x0[x] < 1000 && y0[x] > -1000 && y0[x] < 1000) {
            float fx = (float)(sx - x0[x]), fy = (float)(sy - y0[x]);
            w00[x] = (1.0f - fx) * (1.0f - fy);
            w01[x] = fx * (1.0f - fy);
            w10[x] = (1.0f - fx) * fy;
            w11[x] = fx * fy;
        }
    }
}

/* Row scratch for warp_row: four weights and two taps per dst pixel. */
typedef struct {
    float *w00, *w01, *w10, *w11;
    int *x0, *y0;
} Row;

static float *row_scratch(Row *r, int dw)
{
    float *scratch = malloc((size_t)dw * 6 * sizeof(float));
    if (scratch) {
        r->w00 = scratch;
        r->w01 = r->w00 + dw;
        r->w10 = r->w01 + dw;
        r->w11 = r->w10 + dw;
        r->x0 = (int *)(r->w11 + dw);
        r->y0 = r->x0 + dw;
    }
    return scratch;
}

/* Bilinear dst(x, y) = src(inv * (x, y, 1)); outside the source: mirrored (reflect) or 0.
 * Row by row: where every pixel of the row falls (warp_row), then the reads. */
int warp_linear(const float *src, int sh, int sw, int channels, int stride,
                const double inv[6], float *dst, int dh, int dw, int reflect_border,
                const float *known)
{
    const size_t line = (size_t)sw * stride;
    Row r;
    float *scratch = row_scratch(&r, dw);
    if (!scratch)
        return -1;
    const unsigned last_x = (unsigned)(sw - 1), last_y = (unsigned)(sh - 1);
    for (int y = 0; y < dh; y++) {
        warp_row(inv, y, dw, r.w00, r.w01, r.w10, r.w11, r.x0, r.y0);
        float *out = dst + (size_t)y * dw * channels;
        const float *copy = known ? known + (size_t)y * dw * channels : NULL;
        for (int x = 0; x < dw; x++, out += channels) {
            int x0 = r.x0[x], y0 = r.y0[x];
            if (copy && (unsigned)x0 < last_x && (unsigned)y0 < last_y) {
                for (int c = 0; c < channels; c++)
                    out[c] = copy[(size_t)x * channels + c];
            } else if ((unsigned)x0 < last_x && (unsigned)y0 < last_y) {
                const float *a = src + (size_t)y0 * line + (size_t)x0 * stride;
                const float *b = a + line;
                if (channels == 1) {
                    out[0] = r.w00[x] * a[0] + r.w01[x] * a[stride] + r.w10[x] * b[0] +
                             r.w11[x] * b[stride];
                    continue;
                }
                for (int c = 0; c < channels; c++)
                    out[c] = r.w00[x] * a[c] + r.w01[x] * a[c + stride] + r.w10[x] * b[c] +
                             r.w11[x] * b[c + stride];
            } else if (!reflect_border && (x0 < -1 || y0 < -1 || x0 >= sw || y0 >= sh)) {
                for (int c = 0; c < channels; c++)
                    out[c] = 0.0f;
            } else {
                const float w[4] = {r.w00[x], r.w01[x], r.w10[x], r.w11[x]};
                border_pixel(src, sh, sw, channels, stride, x0, y0, w, reflect_border, out);
            }
        }
    }
    free(scratch);
    return 0;
}

/* An object's alpha, feathered alpha and pixels warped at once from its padded layers (ph x
 * pw, LAYER_STRIDE(channels) values a pixel), into three planes. Where a pixel's taps leave
 * the padded layers its alphas are exactly 0 (the padding is 0) and its pixel values are
 * left 0: only a blurred or cloned patch reads them, and those warp the pixels again with
 * a mirror. */
SIMD_CLONES int warp_layers(const float *layers, int ph, int pw, int channels,
                            const double inv[6], float *alpha, float *soft, float *pixels,
                            int dh, int dw)
{
    const int stride = LAYER_STRIDE(channels);
    const size_t line = (size_t)pw * stride;
    Row r;
    float *scratch = row_scratch(&r, dw);
    if (!scratch)
        return -1;
    const unsigned last_x = (unsigned)(pw - 1), last_y = (unsigned)(ph - 1);
    float values[LAYER_STRIDE(MAX_CHANNELS) + 4];
    for (int y = 0; y < dh; y++) {
        warp_row(inv, y, dw, r.w00, r.w01, r.w10, r.w11, r.x0, r.y0);
        /* Taps move monotonically along a row, so the pixels with all four inside the layers
         * are one run [first, end): outside it alphas are 0 and pixel values left 0. */
        int first = 0, end = dw;
#define INSIDE(x) ((unsigned)r.x0[x] < last_x && (unsigned)r.y0[x] < last_y)
        while (first < end && !INSIDE(first))
            first++;
        while (end > first && !INSIDE(end - 1))
            end--;
#undef INSIDE
        const size_t at = (size_t)y * dw;
        memset(alpha + at, 0, (size_t)first * sizeof(float));
        memset(soft + at, 0, (size_t)first * sizeof(float));
        memset(pixels + at * channels, 0, (size_t)first * channels * sizeof(float));
        memset(alpha + at + end, 0, (size_t)(dw - end) * sizeof(float));
        memset(soft + at + end, 0, (size_t)(dw - end) * sizeof(float));
        memset(pixels + (at + end) * channels, 0, (size_t)(dw - end) * channels * sizeof(float));
        for (int x = first; x < end; x++) {
            const float *a = layers + (size_t)r.y0[x] * line + (size_t)r.x0[x] * stride;
            const float *b = a + line;
            const float w00 = r.w00[x], w01 = r.w01[x], w10 = r.w10[x], w11 = r.w11[x];
            if (stride == 3) { /* one channel: pixel, alpha, feathered alpha (and a spare lane) */
                v4f v = load4(a) * w00 + load4(a + 3) * w01 + load4(b) * w10 + load4(b + 3) * w11;
                pixels[at + x] = v[0];
                alpha[at + x] = v[1];
                soft[at + x] = v[2];
                continue;
            }
            for (int g = 0; g < stride; g += 4) {
                v4f v = load4(a + g) * w00 + load4(a + g + stride) * w01 + load4(b + g) * w10 +
                        load4(b + g + stride) * w11;
                memcpy(values + g, &v, sizeof v);
            }
            for (int c = 0; c < channels; c++)
                pixels[(at + x) * channels + c] = values[c];
            alpha[at + x] = values[channels];
            soft[at + x] = values[channels + 1];
        }
    }
    free(scratch);
    return 0;
}

/* OpenCV's kernel for a float image: size round(8 sigma + 1) | 1, exp(-x^2 / 2 sigma^2). */
static int gaussian_kernel(double sigma, float *kernel, int max_size)
{
    int n = (int)lrint(sigma * 8.0 + 1.0) | 1;
    if (n > max_size)
        n = max_size | 1;
    double sum = 0.0, values[129];
    for (int i = 0; i < n; i++) {
        double x = i - (n - 1) / 2.0;
        values[i] = exp(-x * x / (2.0 * sigma * sigma));
        sum += values[i];
    }
    for (int i = 0; i < n; i++)
        kernel[i] = (float)(values[i] / sum);
    return n;
}

/* Separable Gaussian blur with OpenCV's default border (reflect 101); src may be dst. */
SIMD_CLONES int gaussian_blur(const float *src, float *dst, int h, int w, int channels,
                              double sigma)
{
    float kernel[129];
    int n = gaussian_kernel(sigma, kernel, 127), r = n / 2;
    size_t row = (size_t)w * channels;
    float *tmp = malloc(((size_t)h * row + (size_t)(w + 2 * r) * channels) * sizeof(float));
    if (!tmp)
        return -1;
    float *line = tmp + (size_t)h * row;
    for (int y = 0; y < h; y++) {
        const float *in = src + y * row;
        if (channels == 1) {
            for (int x = -r; x < 0; x++)
                line[x + r] = in[reflect101(x, w)];
            memcpy(line + r, in, (size_t)w * sizeof(float));
            for (int x = w; x < w + r; x++)
                line[x + r] = in[reflect101(x, w)];
        } else {
            for (int x = -r; x < w + r; x++)
                memcpy(line + (size_t)(x + r) * channels,
                       in + (size_t)reflect101(x, w) * channels, channels * sizeof(float));
        }
        float *out = tmp + y * row;
        for (size_t i = 0; i < row; i++)
            out[i] = kernel[0] * line[i];
        for (int k = 1; k < n; k++) { /* tap by tap over the row: SIMD, same order per value */
            const float weight = kernel[k], *shifted = line + (size_t)k * channels;
            for (size_t i = 0; i < row; i++)
                out[i] += weight * shifted[i];
        }
    }
    for (int y = 0; y < h; y++) {
        float *out = dst + y * row;
        const float *first = tmp + (size_t)reflect101(y - r, h) * row;
        for (size_t i = 0; i < row; i++)
            out[i] = kernel[0] * first[i];
        for (int k = 1; k < n; k++) {
            const float *in = tmp + (size_t)reflect101(y + k - r, h) * row;
            const float weight = kernel[k];
            for (size_t i = 0; i < row; i++)
                out[i] += weight * in[i];
        }
    }
    free(tmp);
    return 0;
}
