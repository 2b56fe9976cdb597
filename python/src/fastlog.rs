//! `Run.log` as a plain vectorcall C function, bound to its run.
//!
//! `log` is the one call a training loop makes every step. Through `#[pymethods]`, pyo3's
//! trampoline and its keyword matching (each keyword's text compared with each parameter's) cost
//! about 600 instructions a call, a sixth of the whole `log`. This entry takes CPython's fast-call
//! arguments itself: the keyword names a call site passes are interned strings, so `step=` is
//! found by its address, with a comparison of the text only when that misses. The arguments and
//! their errors are those pyo3 would give for `log(data, step=None, commit=None)`.

use std::panic::AssertUnwindSafe;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;

use crate::PyRun;

/// The method's definition: CPython keeps a pointer to it in every function object made from it.
struct MethodDef(ffi::PyMethodDef);

// SAFETY: the definition is never written after it is made; CPython only reads it.
unsafe impl Sync for MethodDef {}

static LOG_DEF: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"log".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: log_fastcall },
    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ml_doc: c"log(data, step=None, commit=None)\n--\n\nLogs a dict of values as one history row. `step` and `commit` follow W&B.".as_ptr(),
});

/// `log` bound to `run`: a builtin function whose `self` is the run.
pub(crate) fn bound_log<'py>(run: &Bound<'py, PyRun>) -> PyResult<Bound<'py, PyAny>> {
    let py = run.py();
    // SAFETY: LOG_DEF is 'static and CPython does not write through the pointer.
    let function = unsafe { ffi::PyCFunction_NewEx(std::ptr::addr_of!(LOG_DEF.0).cast_mut(), run.as_ptr(), std::ptr::null_mut()) };
    // SAFETY: a new reference, or null with an error set.
    unsafe { Bound::from_owned_ptr_or_err(py, function) }
}

fn interned<'py>(py: Python<'py>, cell: &'static PyOnceLock<Py<PyString>>, text: &'static str) -> &'py Bound<'py, PyString> {
    cell.get_or_init(py, || PyString::intern(py, text).unbind()).bind(py)
}

static STEP: PyOnceLock<Py<PyString>> = PyOnceLock::new();
static COMMIT: PyOnceLock<Py<PyString>> = PyOnceLock::new();

/// Which parameter a keyword names: 1 for `step`, 2 for `commit`.
fn keyword_place(py: Python<'_>, name: *mut ffi::PyObject) -> PyResult<usize> {
    let (step, commit) = (interned(py, &STEP, "step"), interned(py, &COMMIT, "commit"));
    if name == step.as_ptr() {
        return Ok(1);
    }
    if name == commit.as_ptr() {
        return Ok(2);
    }
    // SAFETY: CPython passes the names as a tuple of str.
    let name = unsafe { Bound::from_borrowed_ptr(py, name) };
    let text: String = name.extract()?;
    match text.as_str() {
        "step" => Ok(1),
        "commit" => Ok(2),
        "data" => Ok(0),
        other => Err(PyTypeError::new_err(format!("log() got an unexpected keyword argument '{other}'"))),
    }
}

const NAMES: [&str; 3] = ["data", "step", "commit"];

/// # Safety
/// CPython's METH_FASTCALL | METH_KEYWORDS convention: `slf` is the run this function was bound
/// to, `args` holds `nargs` positional arguments followed by one value per name in `kwnames`.
unsafe extern "C" fn log_fastcall(slf: *mut ffi::PyObject, args: *const *mut ffi::PyObject, nargs: ffi::Py_ssize_t, kwnames: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this with the GIL held (the caller is Python code).
    let py = unsafe { Python::assume_attached() };
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| unsafe { log_args(py, slf, args, nargs, kwnames) }));
    let error = match result {
        Ok(Ok(())) => {
            // SAFETY: the GIL is held; the caller gets a new reference to None.
            return unsafe {
                ffi::Py_IncRef(ffi::Py_None());
                ffi::Py_None()
            };
        }
        Ok(Err(e)) => e,
        Err(panic) => {
            let message = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_default();
            pyo3::panic::PanicException::new_err(format!("cairn: log() failed inside the extension: {message}"))
        }
    };
    error.restore(py);
    std::ptr::null_mut()
}

/// # Safety
/// As for [`log_fastcall`].
unsafe fn log_args(py: Python<'_>, slf: *mut ffi::PyObject, args: *const *mut ffi::PyObject, nargs: ffi::Py_ssize_t, kwnames: *mut ffi::PyObject) -> PyResult<()> {
    let nargs = nargs as usize;
    if nargs > 3 {
        return Err(PyTypeError::new_err(format!("log() takes from 1 to 3 positional arguments but {nargs} were given")));
    }
    let mut given: [*mut ffi::PyObject; 3] = [std::ptr::null_mut(); 3];
    for (place, slot) in given.iter_mut().enumerate().take(nargs) {
        // SAFETY: `args` has `nargs` entries.
        *slot = unsafe { *args.add(place) };
    }
    if !kwnames.is_null() {
        // SAFETY: `kwnames` is a tuple of str; its values follow the positional arguments.
        let count = unsafe { ffi::PyTuple_Size(kwnames) } as usize;
        for k in 0..count {
            let name = unsafe { ffi::PyTuple_GetItem(kwnames, k as ffi::Py_ssize_t) };
            let place = keyword_place(py, name)?;
            if !given[place].is_null() {
                return Err(PyTypeError::new_err(format!("log() got multiple values for argument '{}'", NAMES[place])));
            }
            given[place] = unsafe { *args.add(nargs + k) };
        }
    }
    if given[0].is_null() {
        return Err(PyTypeError::new_err("log() missing 1 required positional argument: 'data'"));
    }
    // SAFETY: the arguments are borrowed for the call; `slf` is the `PyRun` this was bound to.
    let data = unsafe { Bound::from_borrowed_ptr(py, given[0]) };
    let step = optional(py, given[1], "step", |v| v.extract::<i64>())?;
    let commit = optional(py, given[2], "commit", |v| v.extract::<bool>())?;
    let run = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<PyRun>() };
    run.get().log_impl(py, &data, step, commit)
}

/// An optional argument: absent or None is `None`; a wrong type is the error pyo3's extraction
/// gives, naming the argument.
fn optional<T>(py: Python<'_>, value: *mut ffi::PyObject, name: &str, extract: impl FnOnce(&Bound<'_, PyAny>) -> PyResult<T>) -> PyResult<Option<T>> {
    // SAFETY: a borrowed argument of the call, or null.
    if value.is_null() || value == unsafe { ffi::Py_None() } {
        return Ok(None);
    }
    let value = unsafe { Bound::from_borrowed_ptr(py, value) };
    extract(&value).map(Some).map_err(|e| PyTypeError::new_err(format!("argument '{name}': {}", e.value(py))))
}
