/* Painting the surviving objects, in order: warp, photometric jitter matched to the canvas
 * painted so far, blur, noise, then a hard or feathered paste (or a Poisson clone, done by
 * the caller's OpenCV through a callback).
 *
 * An object's planes in the arena (place.c): alpha, feathered alpha, each (h, w), then its
 * warped pixels (h, w, channels). */
#include "kernel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double lerp(const double *params, int at, double u)
{
    return params[at] + (params[at + 1] - params[at]) * u;
}

/* Mean canvas value in the object's window around the object (not under it). */
static double local_level(const Placed *p, const float *alpha, const Canvas *cv,
                          double fallback)
{
    const int *win = p->window;
    const int channels = cv->channels, width = win[3] - win[1];
    double total = 0.0;
    long around = 0;
    for (int y = win[0]; y < win[2]; y++) {
        const float *row = cv->canvas + ((size_t)y * cv->width + win[1]) * channels;
        const float *m = alpha + (size_t)(y - p->top) * p->w + (win[1] - p->left);
        float sum = 0.0f; /* a row is at most a few hundred values: float is exact enough */
        int count = 0;
        if (channels == 1) {
            /* Four running sums, added in a fixed order: SIMD, and the same bytes anywhere. */
            v4f sums = {0.0f, 0.0f, 0.0f, 0.0f};
            v4i counts = {0, 0, 0, 0};
            const v4f half = {0.5f, 0.5f, 0.5f, 0.5f};
            int x = 0;
            for (; x + 4 <= width; x += 4) {
                v4i outside = load4(m + x) <= half; /* -1 where outside the hard mask */
                v4f value = load4(row + x);
                v4i bits;
                memcpy(&bits, &value, sizeof bits);
                bits &= outside;
                memcpy(&value, &bits, sizeof value);
                sums += value;
                counts -= outside;
            }
            sum = (sums[0] + sums[1]) + (sums[2] + sums[3]);
            count = counts[0] + counts[1] + counts[2] + counts[3];
            for (; x < width; x++) {
                int outside = !(m[x] > 0.5f);
                count += outside;
                sum += outside ? row[x] : 0.0f;
            }
        } else {
            for (int x = 0; x < width; x++) {
                int outside = !(m[x] > 0.5f);
                count += outside;
                for (int c = 0; c < channels; c++)
                    sum += outside ? row[x * channels + c] : 0.0f;
            }
        }
        total += sum;
        around += count;
    }
    return around ? total / (double)around / channels : fallback;
}

/* Per patch row, the columns [lo, hi) where the feathered alpha is above 0: all that a paste
 * reads (the library's feathered alphas are 0 below 1/1024). A blurred or cloned patch is
 * needed whole. */
static void find_spans(const Placed *p, const float *soft, int whole, int *lo, int *hi)
{
    for (int y = 0; y < p->h; y++) {
        const float *s = soft + (size_t)y * p->w;
        int a = 0, b = p->w;
        if (!whole) {
            while (a < b && !(s[a] > 0.0f))
                a++;
            while (b > a && !(s[b - 1] > 0.0f))
                b--;
        }
        lo[y] = a;
        hi[y] = b;
    }
}

/* Signal above the object's own background, gamma-bent where positive, scaled, moved to the
 * local level: one pass over a run of values. */
SIMD_CLONES static void jitter(float *out, const float *warped, size_t n, float below,
                               float gamma, float contrast, float offset)
{
    if (gamma != 1.0f)
        for (size_t i = 0; i < n; i++)
            out[i] = power_above_zero(warped[i] - below, gamma) * contrast + offset;
    else
        for (size_t i = 0; i < n; i++)
            out[i] = (warped[i] - below) * contrast + offset;
}

/* Noise values index.. of the sample's key onto a run: sigma N, or sigma sqrt(v) N (Poisson). */
SIMD_CLONES static void add_noise(float *out, size_t n, const float *normals, uint64_t key,
                                  uint32_t index, float sigma, int poisson, uint32_t *slots)
{
    for (size_t i = 0; i < n; i++)
        slots[i] = noise_hash(key, index + (uint32_t)i);
    if (poisson)
        for (size_t i = 0; i < n; i++)
            out[i] += normals[slots[i]] * (sqrtf(out[i] > 0.0f ? out[i] : 0.0f) * sigma);
    else
        for (size_t i = 0; i < n; i++)
            out[i] += normals[slots[i]] * sigma;
}

/* The object's patch, rendered up to the paste, into `patch` (within the row spans). Noise
 * values are numbered by patch position from `noise_at` on, so skipping a pixel never moves
 * the noise of another. */
static int render(const Library *lib, const double *params, const Placed *p, const Canvas *cv,
                  const double *looks, uint32_t noise_at, const float *planes, float *patch,
                  uint32_t *slots, int *lo, int *hi)
{
    const int channels = cv->channels;
    const size_t plane = (size_t)p->h * p->w, row = (size_t)p->w * channels;
    const float *alpha = planes, *warped = planes + 2 * plane;
    int blurred = looks[3] < params[P_BLUR_P];
    int whole = blurred || p->blend == BLEND_POISSON;
    find_spans(p, planes + plane, whole, lo, hi);
    if (whole) {
        /* These read the pixels around the object too: the ones the warp of the placement
         * left at 0 (beyond the layers' padding) are made again, mirrored. */
        const int64_t *geo = lib->geometry + 4 * (size_t)p->object;
        double inv[6];
        invert_affine(p->m, inv);
        inv[2] += 1.0;
        inv[5] += 1.0;
        if (warp_linear(lib->layers + geo[2], (int)geo[0] + 2, (int)geo[1] + 2, channels,
                        LAYER_STRIDE(channels), inv, patch, p->h, p->w, 1, warped))
            return -1;
        warped = patch;
    }
    double level = lib->levels[p->object];
    const int model = (int)params[P_NOISE_MODEL];
    const float gamma = (float)lerp(params, P_GAMMA0, looks[0]);
    const float contrast = (float)lerp(params, P_CONTRAST0, looks[1]);
    const float offset =
        (float)(local_level(p, alpha, cv, level) + lerp(params, P_BRIGHT0, looks[2]));
    for (int y = 0; y < p->h; y++) {
        size_t at = y * row + (size_t)lo[y] * channels;
        jitter(patch + at, warped + at, (size_t)(hi[y] - lo[y]) * channels, (float)level, gamma,
               contrast, offset);
    }
    if (blurred &&
        gaussian_blur(patch, patch, p->h, p->w, channels, lerp(params, P_BLUR0, looks[4])))
        return -1;
    if (model == NOISE_NONE)
        return 0;
    const float sigma = model == NOISE_MATCHED ? (float)params[P_MATCHED_SIGMA]
                                               : (float)lerp(params, P_SIGMA0, looks[5]);
    for (int y = 0; y < p->h; y++) {
        size_t at = y * row + (size_t)lo[y] * channels;
        add_noise(patch + at, (size_t)(hi[y] - lo[y]) * channels, lib->normals, cv->noise_key,
                  noise_at + (uint32_t)at, sigma, model == NOISE_POISSON, slots);
    }
    return 0;
}

/* The patch onto the canvas window, within the row spans: where the alpha is above 1/2
 * (hard), or mixed by the feathered alpha, region + soft (patch - region). */
static void paste(const Placed *p, const float *alpha, const float *soft, const float *patch,
                  const Canvas *cv, int hard, const int *lo, const int *hi)
{
    const int channels = cv->channels;
    for (int y = p->window[0]; y < p->window[2]; y++) {
        int py = y - p->top;
        int x0 = p->left + lo[py] > p->window[1] ? p->left + lo[py] : p->window[1];
        int x1 = p->left + hi[py] < p->window[3] ? p->left + hi[py] : p->window[3];
        if (x1 <= x0)
            continue;
        const int width = x1 - x0;
        float *r = cv->canvas + ((size_t)y * cv->width + x0) * channels;
        size_t at = (size_t)py * p->w + (x0 - p->left);
        const float *m = alpha + at, *s = soft + at, *v = patch + at * channels;
        if (hard && channels == 1) {
            for (int i = 0; i < width; i++)
                r[i] = m[i] > 0.5f ? v[i] : r[i];
        } else if (hard) {
            for (int i = 0; i < width; i++)
                if (m[i] > 0.5f)
                    memcpy(r + i * channels, v + i * channels, channels * sizeof(float));
        } else if (channels == 1) {
            for (int i = 0; i < width; i++)
                r[i] += (v[i] - r[i]) * s[i];
        } else {
            for (int i = 0; i < width; i++)
                for (int c = 0; c < channels; c++)
                    r[i * channels + c] += (v[i * channels + c] - r[i * channels + c]) *
                                           s[i];
        }
    }
}

static void mark(const Placed *p, const float *alpha, const Canvas *cv, uint16_t value)
{
    for (int y = p->window[0]; y < p->window[2]; y++) {
        const float *m = alpha + (size_t)(y - p->top) * p->w + (p->window[1] - p->left);
        uint16_t *row = cv->instance + (size_t)y * cv->width + p->window[1];
        for (int x = 0; x < p->window[3] - p->window[1]; x++)
            if (m[x] > 0.5f)
                row[x] = value;
    }
}

int paint_all(const Library *lib, const double *params, const Placed *placed, int count,
              const Arena *arena, const Canvas *cv, CloneFn clone, void *clone_ctx,
              int *blend_used)
{
    size_t largest = 0, rows = 0;
    uint32_t noise_at = 0;
    for (int k = 0; k < count; k++) {
        size_t values = (size_t)placed[k].h * placed[k].w * cv->channels;
        largest = values > largest ? values : largest;
        rows = (size_t)placed[k].h > rows ? (size_t)placed[k].h : rows;
    }
    /* the patch and a clone; the noise's hash slots; the row spans */
    float *patch = malloc(2 * largest * sizeof(float) + 1), *cloned = patch + largest;
    uint32_t *slots = malloc(largest * sizeof(uint32_t) + 1);
    int *lo = malloc(2 * rows * sizeof(int) + 1), *hi = lo + rows;
    int status = patch && slots && lo ? 0 : -1;
    for (int k = 0; k < count && status == 0; k++) {
        const Placed *p = &placed[k];
        const float *alpha = arena->data + p->alpha_at, *soft = alpha + (size_t)p->h * p->w;
        status = render(lib, params, p, cv, cv->looks + (size_t)k * LOOK_DRAWS, noise_at, alpha,
                        patch, slots, lo, hi);
        noise_at += (uint32_t)((size_t)p->h * p->w * cv->channels);
        blend_used[k] = p->blend;
        const float *source = patch;
        if (status == 0 && p->blend == BLEND_POISSON) {
            int done = clone(clone_ctx, p->top, p->left, patch, p->h, p->w, cv->channels,
                             cloned);
            status = done < 0 ? -1 : 0;
            source = done > 0 ? cloned : patch;
            /* The clone is feathered in; at the border, where it cannot clone, plain feather. */
            blend_used[k] = done > 0 ? BLEND_POISSON : BLEND_FEATHER;
        }
        if (status == 0)
            paste(p, alpha, soft, source, cv, p->blend == BLEND_HARD, lo, hi);
        if (status == 0 && cv->instance)
            mark(p, alpha, cv, (uint16_t)(k + 1));
    }
    free(patch);
    free(slots);
    free(lo);
    return status;
}
