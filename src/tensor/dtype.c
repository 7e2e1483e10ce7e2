/* tensor/dtype — see dtype.h. Geometry of each type as the GGUF format defines it. */
#include "tensor/dtype.h"

#include <stddef.h>
#include <strings.h>

typedef struct {
    const char *name;
    uint16_t block_elems;
    uint16_t block_bytes;
} dtype_info;

static const dtype_info dtypes[DT_COUNT] = {
    [DT_F32] = {"F32", 1, 4},           [DT_F16] = {"F16", 1, 2},
    [DT_Q4_0] = {"Q4_0", 32, 18},       [DT_Q4_1] = {"Q4_1", 32, 20},
    [DT_Q5_0] = {"Q5_0", 32, 22},       [DT_Q5_1] = {"Q5_1", 32, 24},
    [DT_Q8_0] = {"Q8_0", 32, 34},       [DT_Q8_1] = {"Q8_1", 32, 36},
    [DT_Q2_K] = {"Q2_K", 256, 84},      [DT_Q3_K] = {"Q3_K", 256, 110},
    [DT_Q4_K] = {"Q4_K", 256, 144},     [DT_Q5_K] = {"Q5_K", 256, 176},
    [DT_Q6_K] = {"Q6_K", 256, 210},     [DT_Q8_K] = {"Q8_K", 256, 292},
    [DT_IQ2_XXS] = {"IQ2_XXS", 256, 66}, [DT_IQ2_XS] = {"IQ2_XS", 256, 74},
    [DT_IQ3_XXS] = {"IQ3_XXS", 256, 98}, [DT_IQ1_S] = {"IQ1_S", 256, 50},
    [DT_IQ4_NL] = {"IQ4_NL", 32, 18},   [DT_IQ3_S] = {"IQ3_S", 256, 110},
    [DT_IQ2_S] = {"IQ2_S", 256, 82},    [DT_IQ4_XS] = {"IQ4_XS", 256, 136},
    [DT_I8] = {"I8", 1, 1},             [DT_I16] = {"I16", 1, 2},
    [DT_I32] = {"I32", 1, 4},           [DT_I64] = {"I64", 1, 8},
    [DT_F64] = {"F64", 1, 8},           [DT_IQ1_M] = {"IQ1_M", 256, 56},
    [DT_BF16] = {"BF16", 1, 2},         [DT_TQ1_0] = {"TQ1_0", 256, 54},
    [DT_TQ2_0] = {"TQ2_0", 256, 66},    [DT_MXFP4] = {"MXFP4", 32, 17},
};

bool dtype_known(uint32_t id) { return id < DT_COUNT && dtypes[id].name != NULL; }

const char *dtype_name(uint32_t id) { return dtype_known(id) ? dtypes[id].name : "unknown"; }

uint32_t dtype_block_elems(uint32_t id) { return dtype_known(id) ? dtypes[id].block_elems : 0; }

uint32_t dtype_block_bytes(uint32_t id) { return dtype_known(id) ? dtypes[id].block_bytes : 0; }

bool dtype_row_bytes(uint32_t id, uint64_t n, uint64_t *out) {
    if (!dtype_known(id)) return false;
    uint64_t be = dtypes[id].block_elems, bb = dtypes[id].block_bytes;
    if (n % be != 0) return false;
    uint64_t blocks = n / be;
    if (blocks > UINT64_MAX / bb) return false;
    *out = blocks * bb;
    return true;
}

int dtype_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < DT_COUNT; i++)
        if (dtypes[i].name && strcasecmp(dtypes[i].name, name) == 0) return i;
    return -1;
}
