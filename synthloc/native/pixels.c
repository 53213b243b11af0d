/* synthloc._native: percentiles and scaling of 8- and 16-bit images (synthloc/preprocess.py).
 *
 * A percentile of an integer image is read off its histogram. np.bincount widens every pixel
 * to 64 bits first (3 ns a pixel: 13 ms for a 2048 x 2048 16-bit DICOM) and then numpy
 * accumulates 65,536 counts; OpenCV's calcHist is slower still for 16-bit pixels. Here the
 * counting and the walk up the counts happen in one call, with the GIL released. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Interleaved histograms, so that runs of equal pixels never wait on one counter; summed
 * into `out`. Counts fit 32 bits: the caller refuses 2**32 pixels or more. */
static int count(const void *pixels, size_t n, int wide, uint64_t *out)
{
    if (!wide) {
        const uint8_t *p = pixels;
        uint32_t local[4][256];
        memset(local, 0, sizeof local);
        size_t i = 0;
        for (; i + 4 <= n; i += 4) {
            local[0][p[i]]++;
            local[1][p[i + 1]]++;
            local[2][p[i + 2]]++;
            local[3][p[i + 3]]++;
        }
        for (; i < n; i++)
            local[0][p[i]]++;
        for (int v = 0; v < 256; v++)
            out[v] = (uint64_t)local[0][v] + local[1][v] + local[2][v] + local[3][v];
        return 0;
    }
    const uint16_t *p = pixels;
    uint32_t *local = calloc(2 * 65536, sizeof(uint32_t));
    if (local == NULL)
        return -1;
    uint32_t *a = local, *b = local + 65536;
    size_t i = 0;
    for (; i + 2 <= n; i += 2) {
        a[p[i]]++;
        b[p[i + 1]]++;
    }
    if (i < n)
        a[p[i]]++;
    for (int v = 0; v < 65536; v++)
        out[v] = (uint64_t)a[v] + b[v];
    free(local);
    return 0;
}

/* values[k] = the value of 0-based order statistic ranks[k]; ranks ascending, < n. */
static void walk(const uint64_t *counts, int bins, const uint64_t *ranks, int k,
                 long *values)
{
    uint64_t below = 0;  /* pixels with a value under v */
    int j = 0;
    for (int v = 0; v < bins && j < k; v++) {
        below += counts[v];
        while (j < k && ranks[j] < below)
            values[j++] = v;
    }
}

/* The pixel width of a buffer, 1 (uint8) or 2 (uint16) bytes, in native byte order ('@' or
 * '=' may lead; numpy marks swapped arrays '>' or '<'); 0 for anything else. */
static int pixel_bytes(const Py_buffer *view)
{
    const char *format = view->format ? view->format : "B";
    if (format[0] == '@' || format[0] == '=')
        format++;
    if (view->itemsize == 1 && strcmp(format, "B") == 0)
        return 1;
    if (view->itemsize == 2 && strcmp(format, "H") == 0)
        return 2;
    return 0;
}

static int is_float32(const Py_buffer *view)
{
    const char *format = view->format ? view->format : "B";
    if (format[0] == '@' || format[0] == '=')
        format++;
    return view->itemsize == 4 && strcmp(format, "f") == 0;
}

static PyObject *order_statistics(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *pixels, *rank_list;
    if (!PyArg_ParseTuple(args, "OO!", &pixels, &PyList_Type, &rank_list))
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(pixels, &view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    PyObject *result = NULL;
    uint64_t *counts = NULL, *ranks = NULL;
    long *values = NULL;
    int bytes = pixel_bytes(&view), wide = bytes == 2;
    if (bytes == 0) {
        PyErr_Format(PyExc_TypeError, "order_statistics takes native uint8 or uint16 pixels, "
                     "not format '%s'", view.format ? view.format : "B");
        goto done;
    }
    size_t n = (size_t)(view.len / view.itemsize);
    if (n == 0 || (uint64_t)n >= ((uint64_t)1 << 32)) {
        PyErr_Format(PyExc_ValueError, "order_statistics takes 1 to 2**32 - 1 pixels, not %zu",
                     n);
        goto done;
    }
    Py_ssize_t k = PyList_GET_SIZE(rank_list);
    int bins = wide ? 65536 : 256;
    counts = malloc(bins * sizeof *counts);
    ranks = malloc((k ? k : 1) * sizeof *ranks);
    values = malloc((k ? k : 1) * sizeof *values);
    if (counts == NULL || ranks == NULL || values == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        unsigned long long r = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(rank_list, j));
        if (r == (unsigned long long)-1 && PyErr_Occurred())
            goto done;
        if (r >= n || (j > 0 && r < ranks[j - 1])) {
            PyErr_SetString(PyExc_ValueError, "ranks must ascend and be below the pixel count");
            goto done;
        }
        ranks[j] = r;
    }
    int failed;
    Py_BEGIN_ALLOW_THREADS
    failed = count(view.buf, n, wide, counts);
    if (!failed)
        walk(counts, bins, ranks, (int)k, values);
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyList_New(k);
    for (Py_ssize_t j = 0; result != NULL && j < k; j++)
        PyList_SET_ITEM(result, j, PyLong_FromLong(values[j]));
done:
    free(counts);
    free(ranks);
    free(values);
    PyBuffer_Release(&view);
    return result;
}

/* out[i][j] = ((float)pixels[i][j] - lo) * factor, in float32 arithmetic as numpy's
 * subtract-then-scale; any byte strides for the pixels, rows of contiguous floats out. */
#define SCALE_ROWS(T)                                                                      \
    for (Py_ssize_t i = 0; i < rows; i++) {                                                \
        const char *src = (const char *)in.buf + i * in.strides[0];                        \
        float *dst = (float *)((char *)out.buf + i * out.strides[0]);                      \
        if (in.strides[1] == (Py_ssize_t)sizeof(T)) {                                      \
            const T *p = (const T *)src;                                                   \
            for (Py_ssize_t j = 0; j < cols; j++)                                          \
                dst[j] = ((float)p[j] - lo) * factor;                                      \
        } else {                                                                           \
            for (Py_ssize_t j = 0; j < cols; j++)                                          \
                dst[j] = ((float)*(const T *)(src + j * in.strides[1]) - lo) * factor;     \
        }                                                                                  \
    }

static PyObject *scale_into(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *pixels, *target;
    double lo_arg, factor_arg;
    if (!PyArg_ParseTuple(args, "OOdd", &pixels, &target, &lo_arg, &factor_arg))
        return NULL;
    Py_buffer in, out;
    if (PyObject_GetBuffer(pixels, &in, PyBUF_RECORDS_RO) < 0)
        return NULL;
    if (PyObject_GetBuffer(target, &out, PyBUF_RECORDS) < 0) {
        PyBuffer_Release(&in);
        return NULL;
    }
    PyObject *result = NULL;
    int bytes = pixel_bytes(&in), wide = bytes == 2;
    if (bytes == 0)
        PyErr_Format(PyExc_TypeError, "scale_into takes native uint8 or uint16 pixels, not "
                     "format '%s'", in.format ? in.format : "B");
    else if (!is_float32(&out))
        PyErr_SetString(PyExc_TypeError, "scale_into writes native float32");
    else if (in.ndim != 2 || out.ndim != 2 || in.shape[0] != out.shape[0] ||
             in.shape[1] != out.shape[1])
        PyErr_SetString(PyExc_ValueError, "scale_into takes 2-D pixels and a target of their "
                        "shape");
    else if (out.strides[1] != 4)
        PyErr_SetString(PyExc_ValueError, "scale_into writes rows of contiguous floats");
    else {
        const float lo = (float)lo_arg, factor = (float)factor_arg;
        const Py_ssize_t rows = in.shape[0], cols = in.shape[1];
        Py_BEGIN_ALLOW_THREADS
        if (wide) {
            SCALE_ROWS(uint16_t)
        } else {
            SCALE_ROWS(uint8_t)
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&in);
    return result;
}

static PyMethodDef methods[] = {
    {"scale_into", scale_into, METH_VARARGS,
     "scale_into(pixels, target, lo, factor): target = (pixels - lo) * factor in float32,\n"
     "for 2-D native uint8/uint16 pixels and a float32 target of their shape whose rows are\n"
     "contiguous."},
    {"order_statistics", order_statistics, METH_VARARGS,
     "order_statistics(pixels, ranks) -> list[int]: the values of the given 0-based order\n"
     "statistics (ascending list) of a C-contiguous buffer of native uint8 or uint16 pixels."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "synthloc._native", "Compiled helpers of synthloc.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void)
{
    return PyModule_Create(&module);
}
