/* Functions of synth_service._kernel defined in bindings.c. */
#ifndef SYNTHLOC_BINDINGS_H
#define SYNTHLOC_BINDINGS_H

#include <Python.h>

PyObject *py_background(PyObject *self, PyObject *args);
PyObject *py_quantize(PyObject *self, PyObject *args);
PyObject *py_stream_key(PyObject *self, PyObject *args);
PyObject *py_uniforms(PyObject *self, PyObject *args);
PyObject *py_raw(PyObject *self, PyObject *args);
PyObject *py_warp(PyObject *self, PyObject *args);
PyObject *py_blur(PyObject *self, PyObject *args);
PyObject *py_power(PyObject *self, PyObject *args);

#endif
