#ifndef SCALE_SHIFT_H
#define SCALE_SHIFT_H
#include "fkb/fkb.h"
/** Registers the layer type `scale_shift` (call before loading models that use it). */
fkb_status register_scale_shift(void);
#endif
