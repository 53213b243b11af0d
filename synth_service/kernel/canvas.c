/* Whole-canvas steps: a background from a tile, and the finished canvas to 8 or 16 bits. */
#include "kernel.h"

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
                for (int i = 0; i < run; i++)
                    out[x + i] = src[px - i];
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
    for (size_t i = 0; i < count; i++) {
        float v = canvas[i] * 255.0f + 0.5f;
        v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
        out[i] = (uint8_t)(int)v;
    }
}

void quantize_u16(const float *canvas, size_t count, uint16_t *out)
{
    for (size_t i = 0; i < count; i++) {
        float v = canvas[i] * 65535.0f + 0.5f;
        v = v < 0.0f ? 0.0f : (v > 65535.0f ? 65535.0f : v);
        out[i] = (uint16_t)(int)v;
    }
}
