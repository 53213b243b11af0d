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
            for (int x = 0; x < width; x++) {
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

/* The object's patch, rendered up to the paste, into `patch`. Noise values are numbered
 * from `noise_at` on, one per patch value. */
static int render(const Library *lib, const double *params, const Placed *p, const Canvas *cv,
                  const double *looks, uint32_t noise_at, const float *planes, float *patch,
                  uint32_t *slots)
{
    int channels = cv->channels;
    size_t plane = (size_t)p->h * p->w, values = plane * channels;
    const float *alpha = planes, *warped = planes + 2 * plane;
    int blurred = looks[3] < params[P_BLUR_P];
    if (blurred || p->blend == BLEND_POISSON) {
        /* These read the pixels around the object too: warp them again, mirrored. */
        const int64_t *geo = lib->geometry + 4 * (size_t)p->object;
        double inv[6];
        invert_affine(p->m, inv);
        inv[2] += 1.0;
        inv[5] += 1.0;
        if (warp_linear(lib->layers + geo[2], (int)geo[0] + 2, (int)geo[1] + 2, channels,
                        LAYER_STRIDE(channels), inv, patch, p->h, p->w, 1, NULL, 0))
            return -1;
        warped = patch;
    }
    double level = lib->levels[p->object];
    int model = (int)params[P_NOISE_MODEL];
    float gamma = (float)lerp(params, P_GAMMA0, looks[0]);
    float contrast = (float)lerp(params, P_CONTRAST0, looks[1]);
    float matched = (float)params[P_MATCHED_SIGMA];
    float offset = (float)(local_level(p, alpha, cv, level) + lerp(params, P_BRIGHT0, looks[2]));
    float below = (float)level;
    const uint64_t key = cv->noise_key;
    /* One simple pass per step: each vectorizes. */
    for (size_t i = 0; i < values; i++)
        patch[i] = warped[i] - below;
    if (gamma != 1.0f)
        for (size_t i = 0; i < values; i++)
            patch[i] = power_above_zero(patch[i], gamma);
    for (size_t i = 0; i < values; i++)
        patch[i] = patch[i] * contrast + offset;
    if (blurred &&
        gaussian_blur(patch, patch, p->h, p->w, channels, lerp(params, P_BLUR0, looks[4])))
        return -1;
    if (model == NOISE_NONE)
        return 0;
    float *noise = patch + values; /* the caller's buffer holds room for both */
    fill_noise(noise, slots, values, lib->normals, key, noise_at);
    float sigma = model == NOISE_MATCHED ? matched : (float)lerp(params, P_SIGMA0, looks[5]);
    if (model == NOISE_POISSON)
        for (size_t i = 0; i < values; i++)
            patch[i] += noise[i] * (sqrtf(patch[i] > 0.0f ? patch[i] : 0.0f) * sigma);
    else
        for (size_t i = 0; i < values; i++)
            patch[i] += noise[i] * sigma;
    return 0;
}

/* The patch onto the canvas window: where the alpha is above 1/2 (hard), or mixed by the
 * feathered alpha, region + soft (patch - region). */
static void paste(const Placed *p, const float *alpha, const float *soft, const float *patch,
                  const Canvas *cv, int hard)
{
    const int channels = cv->channels, width = p->window[3] - p->window[1];
    for (int y = p->window[0]; y < p->window[2]; y++) {
        float *r = cv->canvas + ((size_t)y * cv->width + p->window[1]) * channels;
        size_t at = (size_t)(y - p->top) * p->w + (p->window[1] - p->left);
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
    size_t largest = 0;
    uint32_t noise_at = 0;
    for (int k = 0; k < count; k++) {
        size_t values = (size_t)placed[k].h * placed[k].w * cv->channels;
        largest = values > largest ? values : largest;
    }
    /* the patch, its noise and a clone; the noise's hash slots */
    float *patch = malloc(3 * largest * sizeof(float) + 1), *cloned = patch + 2 * largest;
    uint32_t *slots = malloc(largest * sizeof(uint32_t) + 1);
    if (!patch || !slots) {
        free(patch);
        free(slots);
        return -1;
    }
    int status = 0;
    for (int k = 0; k < count && status == 0; k++) {
        const Placed *p = &placed[k];
        const float *alpha = arena->data + p->alpha_at, *soft = alpha + (size_t)p->h * p->w;
        status = render(lib, params, p, cv, cv->looks + (size_t)k * LOOK_DRAWS, noise_at, alpha,
                        patch, slots);
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
            paste(p, alpha, soft, source, cv, p->blend == BLEND_HARD);
        if (status == 0 && cv->instance)
            mark(p, alpha, cv, (uint16_t)(k + 1));
    }
    free(patch);
    free(slots);
    return status;
}
