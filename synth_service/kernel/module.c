/* synth_service._kernel: the Python face of the compose kernel (wrapped by kernel.py). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "bindings.h"
#include "kernel.h"

#include <stdlib.h>
#include <string.h>

/* Contiguous buffers; all released together. */
typedef struct {
    Py_buffer views[16];
    int count;
} Buffers;

static void release(Buffers *b)
{
    for (int i = 0; i < b->count; i++)
        PyBuffer_Release(&b->views[i]);
    b->count = 0;
}

static const void *take(Buffers *b, PyObject *obj, Py_ssize_t min_bytes, int writable,
                        const char *what)
{
    if (b->count == (int)(sizeof b->views / sizeof b->views[0])) {
        PyErr_SetString(PyExc_RuntimeError, "too many buffers for one call");
        return NULL;
    }
    Py_buffer *view = &b->views[b->count];
    if (PyObject_GetBuffer(obj, view, (writable ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS))
        return NULL;
    b->count++;
    if (view->len < min_bytes) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, need at least %zd", what, view->len,
                     min_bytes);
        return NULL;
    }
    return view->buf;
}

typedef struct {
    PyObject *fn;
} Clone;

static int call_clone(void *ctx, int top, int left, const float *patch, int h, int w,
                      int channels, float *out)
{
    Py_ssize_t bytes = (Py_ssize_t)h * w * channels * (Py_ssize_t)sizeof(float);
    PyObject *view = PyMemoryView_FromMemory((char *)patch, bytes, PyBUF_READ);
    if (!view)
        return -1;
    PyObject *result = PyObject_CallFunction(((Clone *)ctx)->fn, "iiOiii", top, left, view, h,
                                             w, channels);
    Py_DECREF(view);
    if (!result)
        return -1;
    int done = 0;
    if (result != Py_None) {
        Py_buffer got;
        if (PyObject_GetBuffer(result, &got, PyBUF_C_CONTIGUOUS)) {
            Py_DECREF(result);
            return -1;
        }
        if (got.len != bytes) {
            PyErr_Format(PyExc_ValueError, "clone returned %zd bytes, not %zd", got.len, bytes);
            done = -1;
        } else {
            memcpy(out, got.buf, bytes);
            done = 1;
        }
        PyBuffer_Release(&got);
    }
    Py_DECREF(result);
    return done;
}

static float normals[NORMALS]; /* filled once, at import */

static PyObject *compose_objects(PyObject *self, PyObject *args)
{
    PyObject *pack, *params_o, *classes_o, *tries_o, *looks_o, *canvas_o, *instance_o;
    PyObject *clone_fn;
    int height, width, channels;
    unsigned long long noise_key;
    if (!PyArg_ParseTuple(args, "O!OOOOOiiiOKO", &PyTuple_Type, &pack, &params_o, &classes_o,
                          &tries_o, &looks_o, &canvas_o, &height, &width, &channels,
                          &instance_o, &noise_key, &clone_fn))
        return NULL;
    if (PyTuple_GET_SIZE(pack) != 9) {
        PyErr_SetString(PyExc_ValueError, "library pack: 9 arrays expected");
        return NULL;
    }
    Buffers b = {.count = 0};
    Library lib = {.channels = channels, .normals = normals};
    const int64_t *object_ids;
    const void **slots[9] = {
        (const void **)&lib.layers,  (const void **)&lib.geometry,
        (const void **)&lib.levels,  (const void **)&lib.members,
        (const void **)&lib.member_start, (const void **)&lib.anchor,
        (const void **)&lib.gaps,    (const void **)&lib.gap_start,
        (const void **)&object_ids};
    for (int i = 0; i < 9; i++)
        if (!(*slots[i] = take(&b, PyTuple_GET_ITEM(pack, i), 0, 0, "library pack")))
            goto fail_early;
    const double *params = take(&b, params_o, P_BLEND * sizeof(double), 0, "params");
    Py_buffer *classes_view = &b.views[b.count];
    const int64_t *classes = params ? take(&b, classes_o, 0, 0, "classes") : NULL;
    if (!classes)
        goto fail_early;
    int count = (int)(classes_view->len / sizeof(int64_t));
    /* Checked here so that no index read below can leave its buffer. */
    const int64_t n_classes = b.views[5].len / (Py_ssize_t)sizeof(int64_t); /* anchor */
    const Py_ssize_t blend_count = (Py_ssize_t)params[P_BLEND_COUNT];
    if (blend_count < 1 || b.views[9].len < (P_BLEND + 2 * blend_count) * 8) {
        PyErr_SetString(PyExc_ValueError, "params: blend modes missing or cut short");
        goto fail_early;
    }
    for (int i = 0; i < count; i++)
        if (classes[i] < 0 || classes[i] >= n_classes) {
            PyErr_Format(PyExc_ValueError, "classes: %lld is not a library class",
                         (long long)classes[i]);
            goto fail_early;
        }
    const double *tries = take(&b, tries_o, (Py_ssize_t)count * TRIES * PLACE_DRAWS * 8, 0,
                               "tries");
    const double *looks = tries ? take(&b, looks_o, (Py_ssize_t)count * LOOK_DRAWS * 8, 0,
                                       "looks") : NULL;
    Py_ssize_t canvas_bytes = (Py_ssize_t)height * width * channels * (Py_ssize_t)sizeof(float);
    float *canvas = looks ? (float *)take(&b, canvas_o, canvas_bytes, 1, "canvas") : NULL;
    if (!canvas)
        goto fail_early;
    uint16_t *instance = NULL;
    if (instance_o != Py_None &&
        !(instance = (uint16_t *)take(&b, instance_o, (Py_ssize_t)height * width * 2, 1,
                                      "instance")))
        goto fail_early;

    Placed *placed = malloc(((size_t)count + 1) * sizeof(Placed));
    int *blend_used = malloc(((size_t)count + 1) * sizeof(int));
    Arena arena = {0};
    PyObject *result = NULL;
    if (!placed || !blend_used) {
        PyErr_NoMemory();
        goto done;
    }
    int survivors;
    Py_BEGIN_ALLOW_THREADS
    survivors = place_all(&lib, params, classes, count, tries, height, width, &arena, placed);
    if (survivors > 0)
        survivors = settle(placed, survivors, params[P_MIN_VISIBLE], &arena);
    Py_END_ALLOW_THREADS
    if (survivors < 0) {
        PyErr_NoMemory();
        goto done;
    }
    Canvas cv = {.canvas = canvas, .height = height, .width = width, .channels = channels,
                 .instance = instance, .looks = looks, .noise_key = noise_key};
    Clone ctx = {.fn = clone_fn};
    int status;
    if (clone_fn == Py_None) {
        Py_BEGIN_ALLOW_THREADS
        status = paint_all(&lib, params, placed, survivors, &arena, &cv, NULL, NULL,
                           blend_used);
        Py_END_ALLOW_THREADS
    } else {
        status = paint_all(&lib, params, placed, survivors, &arena, &cv, call_clone, &ctx,
                           blend_used);
    }
    if (status < 0) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }
    result = PyList_New(survivors);
    for (int k = 0; result && k < survivors; k++) {
        const Placed *p = &placed[k];
        /* kernel.PastedObject's fields, in order */
        PyObject *item = Py_BuildValue("((iiii)iiLddOOid)", p->box[0], p->box[1], p->box[2],
                                       p->box[3], p->cls, p->area, (long long)object_ids[p->object],
                                       p->scale, p->angle, p->flip_h ? Py_True : Py_False,
                                       p->flip_v ? Py_True : Py_False, blend_used[k],
                                       p->visible);
        if (!item) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, k, item);
    }
done:
    free(placed);
    free(blend_used);
    free(arena.data);
    release(&b);
    return result;
fail_early:
    release(&b);
    return NULL;
}

/* noise(key, start, count) -> bytes: float32 noise values start.. of a key, for tests. */
static PyObject *noise(PyObject *self, PyObject *args)
{
    unsigned long long key;
    unsigned int start;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "KIn", &key, &start, &count))
        return NULL;
    if (count < 0) {
        PyErr_SetString(PyExc_ValueError, "noise: negative count");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, count * 4);
    if (out) {
        float *o = (float *)PyBytes_AS_STRING(out);
        for (Py_ssize_t i = 0; i < count; i++)
            o[i] = normals[noise_hash(key, start + (uint32_t)i)];
    }
    return out;
}

static PyMethodDef methods[] = {
    {"compose_objects", compose_objects, METH_VARARGS,
     "Place, settle, render and paste a sample's objects onto its canvas."},
    {"background", py_background, METH_VARARGS, "A canvas mirrored out from a tile piece."},
    {"quantize", py_quantize, METH_VARARGS, "A float32 canvas to 8 or 16 bits."},
    {"stream_key", py_stream_key, METH_VARARGS, "The draws key of (seed, index)."},
    {"uniforms", py_uniforms, METH_VARARGS, "float64 uniforms of a draws key."},
    {"raw", py_raw, METH_VARARGS, "uint64 values of a draws key."},
    {"noise", noise, METH_VARARGS, "Standard normal noise values of a key (tests)."},
    {"warp", py_warp, METH_VARARGS, "Bilinear affine warp of a float32 image (tests)."},
    {"blur", py_blur, METH_VARARGS, "Gaussian blur of a float32 image (tests)."},
    {"power", py_power, METH_VARARGS, "s ** gamma above zero, s below (tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel",
                                    "The compose kernel (see kernel.py).", -1, methods};

PyMODINIT_FUNC PyInit__kernel(void)
{
    normal_quantiles(normals);
    return PyModule_Create(&module);
}
