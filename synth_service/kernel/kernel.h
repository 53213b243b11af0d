/* The compose kernel: placement, occlusion, rendering and pasting of a sample's objects.
 *
 * Everything here is plain float arithmetic on caller-owned buffers, so a sample is the same
 * bytes on every machine with the same build. pyproject.toml builds it without -ffast-math and
 * with -ffp-contract=off: no reassociation, no fused multiply-adds the source does not spell.
 */
#ifndef SYNTHLOC_KERNEL_H
#define SYNTHLOC_KERNEL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Recipe parameters: a float64 vector in this order (kernel.py builds it). */
enum {
    P_SCALE0, P_SCALE1, P_ROT0, P_ROT1, P_FLIPS,
    P_BRIGHT0, P_BRIGHT1, P_CONTRAST0, P_CONTRAST1, P_GAMMA0, P_GAMMA1,
    P_NOISE_MODEL, P_SIGMA0, P_SIGMA1, P_BLUR_P, P_BLUR0, P_BLUR1,
    P_MAX_IOU, P_MIN_VISIBLE, P_TRUNCATION, P_CONTEXT, P_MATCHED_SIGMA,
    P_BLEND_COUNT, P_BLEND /* then (mode, weight) pairs */
};

enum { BLEND_HARD = 1, BLEND_FEATHER = 2, BLEND_POISSON = 3 };
enum { NOISE_NONE = 1, NOISE_GAUSSIAN = 2, NOISE_POISSON = 3, NOISE_MATCHED = 4 };
#define PI 3.14159265358979323846 /* math.pi */

enum { TRIES = 12, PLACE_DRAWS = 9, LOOK_DRAWS = 6 };

/* The object library, flattened once per process (kernel.py, library_pack). An object's
 * layers are its pixels (channels values), alpha and feathered alpha per pixel (LAYER_STRIDE
 * values), padded by one pixel on every side (pixels mirrored, alphas 0): (h + 2, w + 2,
 * LAYER_STRIDE(channels)). Reads are four floats wide, so one may take a value of the next
 * pixel (never used); LAYER_SLACK floats after the last object keep them in bounds. */
#define MAX_CHANNELS 4
#define LAYER_STRIDE(channels) ((channels) + 2)
#define LAYER_SLACK 4 /* floats after the last layer: a 4-wide read of any pixel stays inside */
typedef struct {
    int channels;
    const float *layers;     /* every object's layers, back to back */
    const int64_t *geometry; /* per object: h, w (unpadded), offset of its layers */
    const double *levels;    /* per object: its background level */
    const int64_t *members;  /* object indices by class, back to back */
    const int64_t *member_start; /* per class + 1 */
    const int64_t *anchor;   /* per class: the anchor class, or -1 */
    const double *gaps;      /* context gaps by class, back to back */
    const int64_t *gap_start;    /* per class + 1 */
    const float *normals;    /* NORMALS standard normal quantiles, (k + 1/2) / NORMALS */
} Library;

#define NORMAL_BITS 16
#define NORMALS (1 << NORMAL_BITS)

/* A growable float scratch buffer; things in it are addressed by offset (it may move). */
typedef struct {
    float *data;
    size_t used, cap;
} Arena;

/* One placed object; the settle step fills the last four fields. */
typedef struct {
    int object, cls, blend, flip_h, flip_v;
    double scale, angle;
    double m[6];    /* library patch -> placed patch */
    int h, w, top, left;
    size_t alpha_at; /* in the arena: (h, w) alpha, (h, w) feathered alpha, (h, w, C) pixels */
    int full_area;
    int bounds[4];  /* x0, y0, x1, y1 (exclusive) of the hard mask on the canvas */
    int window[4];  /* y0, x0, y1, x1 of the patch clipped to the canvas */
    int area, box[4];
    double visible;
} Placed;

/* What paint needs beyond the placements. */
typedef struct {
    float *canvas;  /* (height, width, channels) */
    int height, width, channels;
    uint16_t *instance; /* (height, width) or NULL */
    const double *looks; /* LOOK_DRAWS uniforms per object */
    uint64_t noise_key;  /* the sample's noise (noise_hash) */
} Canvas;

/* Callback for Poisson cloning: fill `out` (h, w, channels) and return 1, or return 0 when
 * the object is too close to the border to clone; -1 on error (a Python exception is set). */
typedef int (*CloneFn)(void *ctx, int top, int left, const float *patch, int h, int w,
                       int channels, float *out);

size_t arena_take(Arena *arena, size_t count); /* offset, or SIZE_MAX when out of memory */

/* Affine maps and filters (filters.c). A warp reads `channels` values per pixel from a
 * source with `stride` values per pixel; with `known` (dst's shape, or NULL), pixels whose
 * taps all lie inside the source are copied from it instead of computed again. */
void invert_affine(const double m[6], double inv[6]);
int warp_linear(const float *src, int sh, int sw, int channels, int stride,
                const double inv[6], float *dst, int dh, int dw, int reflect,
                const float *known); /* 0, or -1: out of memory */
int warp_layers(const float *layers, int ph, int pw, int channels, const double inv[6],
                float *alpha, float *soft, float *pixels, int dh, int dw);
int gaussian_blur(const float *src, float *dst, int h, int w, int channels, double sigma);
void normal_quantiles(float *table); /* NORMALS values (noise.c) */

/* Four floats (or ints), loaded unaligned: GCC and Clang vector extensions, plain SSE2 on
 * x86-64. A bilinear tap of up to four layers at once, or four running sums. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f load4(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Hot loops are built twice where the toolchain can (GCC, x86-64 Linux): for AVX2 and for
 * the baseline, picked at load. Both give the same bytes: element-wise float arithmetic is
 * exact in either, no loop here sums floats across a vector, and FMA is neither enabled nor
 * allowed (-ffp-contract=off). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(SYNTHLOC_NO_CLONES)
#define SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SIMD_CLONES
#endif

/* Standard normal noise values index, index + 1, ... of a 64-bit key: quantiles picked by
 * an integer hash of (key, index) ("lowbias32", C. Wellons). Counter-based, so any value is
 * had without the ones before it, and the same on every machine. */
static inline uint32_t noise_hash(uint64_t key, uint32_t index)
{
    uint32_t x = index * 0x9e3779b9u + (uint32_t)key;
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return (x ^ (uint32_t)(key >> 32)) >> (32 - NORMAL_BITS);
}

/* Whole-canvas steps (canvas.c). */
void fill_background(const float *piece, int ch, int cw, int channels, int flip_rows,
                     int flip_cols, int top, int left, float *canvas, int height, int width);
void quantize_u8(const float *canvas, size_t count, uint8_t *out);
void quantize_u16(const float *canvas, size_t count, uint16_t *out);

/* Placement (place.c) and occlusion (occlusion.c): the number placed or left, -1 when out
 * of memory. */
int place_all(const Library *lib, const double *params, const int64_t *classes, int count,
              const double *tries, int height, int width, Arena *arena, Placed *out);
int settle(Placed *placed, int count, double min_visible, const Arena *arena);

/* Rendering and pasting (paint.c): 0, or -1 (out of memory or a failed clone). */
int paint_all(const Library *lib, const double *params, const Placed *placed, int count,
              const Arena *arena, const Canvas *canvas, CloneFn clone, void *clone_ctx,
              int *blend_used);

/* s ** gamma for s > 1e-30, s itself otherwise, as 2 ** (gamma log2 s) with least-squares
 * polynomials on Chebyshev nodes (log2 on [sqrt(1/2), sqrt(2)): 3e-7; 2 ** f on [-1/2, 1/2]:
 * 8e-8); with float rounding the relative error stays below 3e-6, a thousandth of an 8-bit
 * step. Plain float arithmetic and bit operations: the
 * same on every machine; no branches or divisions: loops over it vectorize (powf: ~10x). */
static inline float power_above_zero(float s, float gamma)
{
    float x = s > 1e-30f ? s : 1.0f;
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    int e = (int)(bits >> 23) - 127; /* x = m 2^e, m in [1, 2) */
    bits = (bits & 0x007fffffu) | (127u << 23);
    float m;
    memcpy(&m, &bits, sizeof m);
    int high = m > 1.41421356f;
    m = high ? m * 0.5f : m;
    e += high;
    float d = m - 1.0f;
    float log2m = 9.279560862e-08f + d * (1.442700942e+00f + d * (-7.213762736e-01f +
                  d * (4.804116471e-01f + d * (-3.590345459e-01f + d * (2.979934879e-01f +
                  d * (-2.719831995e-01f + d * 1.672021387e-01f))))));
    float t = gamma * ((float)e + log2m);
    t = t < -126.0f ? -126.0f : (t > 127.0f ? 127.0f : t);
    int whole = (int)(t + 256.5f) - 256; /* round to nearest: t + 256.5 > 0 */
    float f = t - (float)whole;           /* [-1/2, 1/2] */
    float p = 1.000000075e+00f + f * (6.931472067e-01f + f * (2.402210736e-01f +
              f * (5.550327214e-02f + f * (9.676037098e-03f + f * 1.340043217e-03f))));
    uint32_t scale_bits = (uint32_t)(whole + 127) << 23;
    float scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    return s > 1e-30f ? p * scale : s;
}

#endif
