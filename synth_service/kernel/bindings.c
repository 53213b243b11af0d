/* synth_service._kernel's smaller functions: backgrounds, output, the draws stream, and the
 * primitives the tests compare with OpenCV and numpy (the method table is in module.c). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "bindings.h"
#include "kernel.h"

#include <string.h>

/* background(piece, ch, cw, channels, flip_rows, flip_cols, top, left, canvas, height,
 * width): fill the float32 canvas from the piece (fill_background). */
PyObject *py_background(PyObject *self, PyObject *args)
{
    Py_buffer piece, canvas;
    int ch, cw, channels, flip_rows, flip_cols, top, left, height, width;
    if (!PyArg_ParseTuple(args, "y*iiippiiw*ii", &piece, &ch, &cw, &channels, &flip_rows,
                          &flip_cols, &top, &left, &canvas, &height, &width))
        return NULL;
    int ok = ch > 0 && cw > 0 && channels > 0 && height > 0 && width > 0 &&
             piece.len >= (Py_ssize_t)ch * cw * channels * 4 &&
             canvas.len >= (Py_ssize_t)height * width * channels * 4;
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        fill_background(piece.buf, ch, cw, channels, flip_rows, flip_cols, top, left,
                        canvas.buf, height, width);
        Py_END_ALLOW_THREADS
    } else {
        PyErr_SetString(PyExc_ValueError, "background: buffers smaller than their shapes");
    }
    PyBuffer_Release(&piece);
    PyBuffer_Release(&canvas);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

/* quantize(canvas, out, bits): float32 [0, 1] into uint8 (bits 8) or uint16 (bits 16). */
PyObject *py_quantize(PyObject *self, PyObject *args)
{
    Py_buffer canvas, out;
    int bits;
    if (!PyArg_ParseTuple(args, "y*w*i", &canvas, &out, &bits))
        return NULL;
    size_t count = (size_t)canvas.len / 4;
    int ok = (bits == 8 || bits == 16) && (size_t)out.len >= count * (size_t)(bits / 8);
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        if (bits == 8)
            quantize_u8(canvas.buf, count, out.buf);
        else
            quantize_u16(canvas.buf, count, out.buf);
        Py_END_ALLOW_THREADS
    } else {
        PyErr_SetString(PyExc_ValueError, "quantize: bits must be 8 or 16, out large enough");
    }
    PyBuffer_Release(&canvas);
    PyBuffer_Release(&out);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

/* splitmix64 (S. Vigna): a 64-bit counter through a strong finalizer. Stream values are
 * mix64(key + (i + 1) * golden), so any value is had without the ones before it. */
#define GOLDEN 0x9e3779b97f4a7c15ull

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* stream_key(seed, index) -> int: the key of sample index of a stream seed. */
PyObject *py_stream_key(PyObject *self, PyObject *args)
{
    unsigned long long seed, index;
    if (!PyArg_ParseTuple(args, "KK", &seed, &index))
        return NULL;
    return PyLong_FromUnsignedLongLong(mix64(mix64(seed * GOLDEN + 0x632be59bd9b4e019ull) ^
                                             mix64(index + GOLDEN)));
}

/* uniforms(key, start, count) -> bytes: float64 values start.. of the stream, in [0, 1)
 * with 53 random bits; raw(key, start, count) -> bytes: the uint64 values themselves. */
static PyObject *stream_values(PyObject *args, int as_float)
{
    unsigned long long key, start;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "KKn", &key, &start, &count))
        return NULL;
    if (count < 0) {
        PyErr_SetString(PyExc_ValueError, "stream: negative count");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, count * 8);
    if (!out)
        return NULL;
    char *at = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < count; i++) {
        uint64_t v = mix64(key + (start + (uint64_t)i + 1) * GOLDEN);
        if (as_float) {
            double u = (double)(v >> 11) * 0x1.0p-53;
            memcpy(at + 8 * i, &u, 8);
        } else {
            memcpy(at + 8 * i, &v, 8);
        }
    }
    return out;
}

PyObject *py_uniforms(PyObject *self, PyObject *args)
{
    return stream_values(args, 1);
}

PyObject *py_raw(PyObject *self, PyObject *args)
{
    return stream_values(args, 0);
}

/* warp(src, h, w, channels, matrix, out_h, out_w, reflect) -> bytes: for tests. */
PyObject *py_warp(PyObject *self, PyObject *args)
{
    Py_buffer src;
    int h, w, channels, out_h, out_w, reflect_border;
    double m[6], inv[6];
    if (!PyArg_ParseTuple(args, "y*iii(dddddd)iip", &src, &h, &w, &channels, &m[0], &m[1],
                          &m[2], &m[3], &m[4], &m[5], &out_h, &out_w, &reflect_border))
        return NULL;
    PyObject *out = NULL;
    if (src.len < (Py_ssize_t)h * w * channels * 4 || out_h < 0 || out_w < 0) {
        PyErr_SetString(PyExc_ValueError, "warp: source smaller than its shape");
    } else if ((out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)out_h * out_w * channels *
                                                          4))) {
        invert_affine(m, inv);
        if (warp_linear(src.buf, h, w, channels, channels, inv, (float *)PyBytes_AS_STRING(out), out_h,
                        out_w, reflect_border, NULL)) {
            Py_CLEAR(out);
            PyErr_NoMemory();
        }
    }
    PyBuffer_Release(&src);
    return out;
}

/* blur(src, h, w, channels, sigma) -> bytes: for tests. */
PyObject *py_blur(PyObject *self, PyObject *args)
{
    Py_buffer src;
    int h, w, channels;
    double sigma;
    if (!PyArg_ParseTuple(args, "y*iiid", &src, &h, &w, &channels, &sigma))
        return NULL;
    PyObject *out = NULL;
    Py_ssize_t bytes = (Py_ssize_t)h * w * channels * 4;
    if (src.len < bytes || !(sigma > 0.0) || sigma > 15.0) {
        PyErr_SetString(PyExc_ValueError, "blur: bad shape or sigma (0, 15]");
    } else if ((out = PyBytes_FromStringAndSize(NULL, bytes))) {
        if (gaussian_blur(src.buf, (float *)PyBytes_AS_STRING(out), h, w, channels, sigma)) {
            Py_CLEAR(out);
            PyErr_NoMemory();
        }
    }
    PyBuffer_Release(&src);
    return out;
}

/* power(values, gamma) -> bytes: power_above_zero on float32 values, for tests. */
PyObject *py_power(PyObject *self, PyObject *args)
{
    Py_buffer src;
    float gamma;
    if (!PyArg_ParseTuple(args, "y*f", &src, &gamma))
        return NULL;
    Py_ssize_t n = src.len / 4;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * 4);
    if (out) {
        const float *in = src.buf;
        float *o = (float *)PyBytes_AS_STRING(out);
        for (Py_ssize_t i = 0; i < n; i++)
            o[i] = power_above_zero(in[i], gamma);
    }
    PyBuffer_Release(&src);
    return out;
}

