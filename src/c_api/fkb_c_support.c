/* The parts of the C API that are plain C: the one list of status names, the thread's
 * last-error text, and the version query. No numerics here. */
#include <string.h>

#include "fkb/fkb.h"

#define FKB_ERROR_CAPACITY 4096

static _Thread_local char last_error[FKB_ERROR_CAPACITY];

const char *fkb_version(void) { return FKB_VERSION_STRING; }

const char *fkb_status_string(fkb_status status)
{
    switch (status) {
    case FKB_OK: return "success";
    case FKB_ERR_ARGUMENT: return "invalid argument";
    case FKB_ERR_IO: return "input/output error";
    case FKB_ERR_FORMAT: return "malformed model file";
    case FKB_ERR_VERSION: return "unsupported format version";
    case FKB_ERR_UNSUPPORTED: return "unsupported model feature";
    case FKB_ERR_SHAPE: return "shape mismatch";
    case FKB_ERR_MEMORY: return "out of memory or absurd size";
    case FKB_ERR_INTERNAL: return "internal error";
    case FKB_ERR_LAYER: return "custom layer failed";
    }
    return "unknown status";
}

const char *fkb_last_error(void) { return last_error; }

/* Called by the Fortran shims: records msg (len bytes, not NUL-terminated). */
void fkb_c_set_last_error(const char *msg, size_t len)
{
    if (len >= FKB_ERROR_CAPACITY) len = FKB_ERROR_CAPACITY - 1;
    memcpy(last_error, msg, len);
    last_error[len] = '\0';
}
