/* Whole-canvas steps: a background from a tile, and the finished canvas to 8 or 16 bits. */
#include "kernel.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* out[i] = src[-i] for i < count: a run of the piece read backwards. */
static void copy_reversed(float *out, const float *src, int count)
{
    int i = 0;
#if defined(__SSE2__)
    for (; i + 4 <= count; i += 4) {
        __m128 v = _mm_loadu_ps(src - i - 3);
        _mm_storeu_ps(out + i, _mm_shuffle_ps(v, v, _MM_SHUFFLE(0, 1, 2, 3)));
    }
#endif
    for (; i < count; i++)
        out[i] = src[-i];
}

/* canvas (height, width, channels) = piece (ch, cw, channels), flipped (rows, columns) and
 * mirrored out from (top, left) to fill the canvas (OpenCV's BORDER_REFLECT: fedcba|abcdef|
 * fedcba). Unfolded, canvas column x is piece position k = x - left: segment s = floor(k / cw)
 * runs up the piece when s is even and down it when odd, so a row is a few block copies. */
void fill_background(const float *piece, int ch, int cw, int channels, int flip_rows,
                     int flip_cols, int top, int left, float *canvas, int height, int width)
{
    const size_t pixel = (size_t)channels;
    for (int y = 0; y < height; y++) {
        int k = y - top;
        int s = k >= 0 ? k / ch : -((-k + ch - 1) / ch);
        int py = (s & 1) ? ch - 1 - (k - s * ch) : k - s * ch;
        py = flip_rows ? ch - 1 - py : py;
        const float *src = piece + (size_t)py * cw * pixel;
        float *out = canvas + (size_t)y * width * pixel;
        for (int x = 0; x < width;) {
            k = x - left;
            s = k >= 0 ? k / cw : -((-k + cw - 1) / cw);
            int o = k - s * cw, run = cw - o < width - x ? cw - o : width - x;
            int up = !(s & 1), px = up ? o : cw - 1 - o;
            if (flip_cols) {
                px = cw - 1 - px;
                up = !up;
            }
            if (up) {
                memcpy(out + (size_t)x * pixel, src + (size_t)px * pixel,
                       (size_t)run * pixel * sizeof(float));
            } else if (pixel == 1) {
                copy_reversed(out + x, src + px, run);
            } else {
                for (int i = 0; i < run; i++)
                    for (size_t c = 0; c < pixel; c++)
                        out[(size_t)(x + i) * pixel + c] = src[(size_t)(px - i) * pixel + c];
            }
            x += run;
        }
    }
}

/* [0, 1] -> [0, full], rounded half up and clipped: one pass over the canvas. */
void quantize_u8(const float *canvas, size_t count, uint8_t *out)
{
    size_t i = 0;
#if defined(__SSE2__)
    /* Sixteen at a time: the same arithmetic, with SSE2's saturating packs. */
    const __m128 scale = _mm_set1_ps(255.0f), half = _mm_set1_ps(0.5f);
    const __m128 lo = _mm_setzero_ps(), hi = _mm_set1_ps(255.0f);
    for (; i + 16 <= count; i += 16) {
        __m128i q[4];
        for (int k = 0; k < 4; k++) {
            __m128 v = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(canvas + i + 4 * k), scale), half);
            q[k] = _mm_cvttps_epi32(_mm_min_ps(_mm_max_ps(v, lo), hi));
        }
        __m128i words = _mm_packs_epi32(q[0], q[1]), more = _mm_packs_epi32(q[2], q[3]);
        _mm_storeu_si128((__m128i *)(out + i), _mm_packus_epi16(words, more));
    }
#endif
    for (; i < count; i++) {
        float v = canvas[i] * 255.0f + 0.5f;
        v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
        out[i] = (uint8_t)(int)v;
    }
}

SIMD_CLONES void quantize_u16(const float *canvas, size_t count, uint16_t *out)
{
    for (size_t i = 0; i < count; i++) {
        float v = canvas[i] * 65535.0f + 0.5f;
        v = v < 0.0f ? 0.0f : (v > 65535.0f ? 65535.0f : v);
        out[i] = (uint16_t)(int)v;
    }
}
