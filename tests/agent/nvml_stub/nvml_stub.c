/*
 * A stand-in libnvidia-ml.so.1 for tests: the NVML C API calls the agent's nvml source makes, so
 * that the real pynvml ctypes bindings run against a real shared library without a GPU.
 *
 * Every value comes from a data file (STUB_NVML_DATA=<path>) of `key=value` lines that the test
 * writes from a real nvidia-smi capture (tests/agent/nvml_stub/capture.py). A key the file lacks
 * makes its call return NVML_ERROR_NOT_SUPPORTED, as a GPU that cannot answer it does (the
 * capture's "N/A"). Keys: driver, cuda, count; per device d<i>.{name,uuid,mem_total,mem_used,cc,
 * arch,util,mig_current,mig_pending,ecc_current,ecc_pending,power_mw,power_default_mw,persistence,
 * compute_mode,pcie_gen_max,pcie_gen_cur,pcie_width_max,pcie_width_cur,nvlinks,mig_count}; per
 * MIG device d<i>.m<j>.{name,uuid,mem_total,mem_used,gi,ci}.
 *   STUB_NVML_INIT_ERROR=<code>      nvmlInit fails with that nvmlReturn_t
 *   STUB_NVML_UNSUPPORTED=f1,f2      these functions return NVML_ERROR_NOT_SUPPORTED
 * Calls outside nvmlInit..nvmlShutdown return NVML_ERROR_UNINITIALIZED, as the real library does,
 * so a test can tell that the source shut NVML down.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

typedef int nvmlReturn_t;
typedef struct stub_device *nvmlDevice_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;

enum {
    NVML_SUCCESS = 0, NVML_ERROR_UNINITIALIZED = 1, NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3, NVML_ERROR_NOT_FOUND = 6, NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
};

#define MAX_LINES 1024
#define MAX_LINE 256

static int refcount = 0;
static int loaded = 0;
static int nlines = 0;
static char keys[MAX_LINES][64];
static char values[MAX_LINES][MAX_LINE];

static void load(void) {
    if (loaded) return;
    loaded = 1;
    const char *path = getenv("STUB_NVML_DATA");
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) return;
    char line[MAX_LINE + 64];
    while (nlines < MAX_LINES && fgets(line, sizeof line, f)) {
        char *eq = strchr(line, '=');
        if (!eq) continue;
        *eq = '\0';
        char *v = eq + 1;
        v[strcspn(v, "\n")] = '\0';
        if (strlen(line) >= sizeof keys[0] || strlen(v) >= sizeof values[0]) continue;
        memcpy(keys[nlines], line, strlen(line) + 1);
        memcpy(values[nlines], v, strlen(v) + 1);
        nlines++;
    }
    fclose(f);
}

static const char *get(const char *key) {
    load();
    for (int i = 0; i < nlines; i++)
        if (strcmp(keys[i], key) == 0) return values[i];
    return NULL;
}

/* Is `fn` listed in STUB_NVML_UNSUPPORTED? */
static int unsupported(const char *fn) {
    const char *list = getenv("STUB_NVML_UNSUPPORTED");
    size_t len = strlen(fn);
    while (list && *list) {
        const char *end = strchr(list, ',');
        size_t n = end ? (size_t)(end - list) : strlen(list);
        if (n == len && strncmp(list, fn, n) == 0) return 1;
        list = end ? end + 1 : NULL;
    }
    return 0;
}

#define GUARD(fn) do { \
        if (refcount <= 0) return NVML_ERROR_UNINITIALIZED; \
        if (unsupported(fn)) return NVML_ERROR_NOT_SUPPORTED; \
    } while (0)

static unsigned int device_count(void) {
    const char *v = get("count");
    return v ? (unsigned int)atoi(v) : 0;
}

/* Handles: the low byte is GPU index + 1, the next byte MIG index + 1 (0: the whole GPU). */
static int prefix(nvmlDevice_t d, char *out, size_t size) {
    uintptr_t h = (uintptr_t)d;
    unsigned int gpu = (unsigned int)(h & 0xff), mig = (unsigned int)((h >> 8) & 0xff);
    if (gpu < 1 || gpu > device_count()) return -1;
    if (mig) snprintf(out, size, "d%u.m%u.", gpu - 1, mig - 1);
    else snprintf(out, size, "d%u.", gpu - 1);
    return 0;
}

static const char *dev_get(nvmlDevice_t d, const char *field) {
    char key[96];
    if (prefix(d, key, sizeof key) < 0) return NULL;
    strncat(key, field, sizeof key - strlen(key) - 1);
    return get(key);
}

#define DEV_VALUE(d, field, var) \
    const char *var = dev_get(d, field); \
    if (!var) return NVML_ERROR_NOT_SUPPORTED;

static nvmlReturn_t put(char *out, unsigned int size, const char *value) {
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(value) + 1 > size) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(out, value);
    return NVML_SUCCESS;
}

static nvmlReturn_t put_uint(nvmlDevice_t d, const char *field, unsigned int *out) {
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    DEV_VALUE(d, field, v);
    *out = (unsigned int)strtoul(v, NULL, 10);
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    const char *e = getenv("STUB_NVML_INIT_ERROR");
    int err = e ? atoi(e) : 0;
    if (err) return err;
    refcount++;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void) {
    if (refcount <= 0) return NVML_ERROR_UNINITIALIZED;
    refcount--;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *out, unsigned int size) {
    GUARD("nvmlSystemGetDriverVersion");
    const char *v = get("driver");
    return v ? put(out, size, v) : NVML_ERROR_NOT_SUPPORTED;
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *out) {
    GUARD("nvmlSystemGetCudaDriverVersion");
    const char *v = get("cuda");
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    if (!v) return NVML_ERROR_NOT_SUPPORTED;
    *out = atoi(v);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *n) {
    GUARD("nvmlDeviceGetCount_v2");
    if (!n) return NVML_ERROR_INVALID_ARGUMENT;
    *n = device_count();
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d) {
    GUARD("nvmlDeviceGetHandleByIndex_v2");
    if (!d || i >= device_count()) return NVML_ERROR_INVALID_ARGUMENT;
    *d = (nvmlDevice_t)(uintptr_t)(i + 1);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *out, unsigned int size) {
    GUARD("nvmlDeviceGetName");
    DEV_VALUE(d, "name", v);
    return put(out, size, v);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *out, unsigned int size) {
    GUARD("nvmlDeviceGetUUID");
    DEV_VALUE(d, "uuid", v);
    return put(out, size, v);
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
    GUARD("nvmlDeviceGetMemoryInfo");
    if (!m) return NVML_ERROR_INVALID_ARGUMENT;
    DEV_VALUE(d, "mem_total", total);
    DEV_VALUE(d, "mem_used", used);
    m->total = strtoull(total, NULL, 10);
    m->used = strtoull(used, NULL, 10);
    m->free = m->total - m->used;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t d, int *major, int *minor) {
    GUARD("nvmlDeviceGetCudaComputeCapability");
    if (!major || !minor) return NVML_ERROR_INVALID_ARGUMENT;
    DEV_VALUE(d, "cc", v);
    if (sscanf(v, "%d.%d", major, minor) != 2) return NVML_ERROR_NOT_SUPPORTED;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    GUARD("nvmlDeviceGetUtilizationRates");
    if (!u) return NVML_ERROR_INVALID_ARGUMENT;
    DEV_VALUE(d, "util", v);
    u->gpu = (unsigned int)atoi(v);
    u->memory = 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t d, unsigned int *arch) {
    GUARD("nvmlDeviceGetArchitecture");
    return put_uint(d, "arch", arch);
}

static nvmlReturn_t pair(nvmlDevice_t d, const char *a, const char *b, unsigned int *x, unsigned int *y) {
    if (!x || !y) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = put_uint(d, a, x);
    return r != NVML_SUCCESS ? r : put_uint(d, b, y);
}

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int *current, unsigned int *pending) {
    GUARD("nvmlDeviceGetMigMode");
    return pair(d, "mig_current", "mig_pending", current, pending);
}

nvmlReturn_t nvmlDeviceGetEccMode(nvmlDevice_t d, unsigned int *current, unsigned int *pending) {
    GUARD("nvmlDeviceGetEccMode");
    return pair(d, "ecc_current", "ecc_pending", current, pending);
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t d, unsigned int *count) {
    GUARD("nvmlDeviceGetMaxMigDeviceCount");
    return put_uint(d, "mig_count", count);
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t d, unsigned int index, nvmlDevice_t *mig) {
    GUARD("nvmlDeviceGetMigDeviceHandleByIndex");
    unsigned int count = 0;
    if (!mig || ((uintptr_t)d >> 8) != 0) return NVML_ERROR_INVALID_ARGUMENT;
    if (put_uint(d, "mig_count", &count) != NVML_SUCCESS || index >= count) return NVML_ERROR_NOT_FOUND;
    *mig = (nvmlDevice_t)((uintptr_t)d | ((uintptr_t)(index + 1) << 8));
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t d, unsigned int *id) {
    GUARD("nvmlDeviceGetGpuInstanceId");
    return put_uint(d, "gi", id);
}

nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t d, unsigned int *id) {
    GUARD("nvmlDeviceGetComputeInstanceId");
    return put_uint(d, "ci", id);
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned int *mw) {
    GUARD("nvmlDeviceGetEnforcedPowerLimit");
    return put_uint(d, "power_mw", mw);
}

nvmlReturn_t nvmlDeviceGetPowerManagementDefaultLimit(nvmlDevice_t d, unsigned int *mw) {
    GUARD("nvmlDeviceGetPowerManagementDefaultLimit");
    return put_uint(d, "power_default_mw", mw);
}

nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t d, unsigned int *mode) {
    GUARD("nvmlDeviceGetPersistenceMode");
    return put_uint(d, "persistence", mode);
}

nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t d, unsigned int *mode) {
    GUARD("nvmlDeviceGetComputeMode");
    return put_uint(d, "compute_mode", mode);
}

nvmlReturn_t nvmlDeviceGetMaxPcieLinkGeneration(nvmlDevice_t d, unsigned int *v) {
    GUARD("nvmlDeviceGetMaxPcieLinkGeneration");
    return put_uint(d, "pcie_gen_max", v);
}

nvmlReturn_t nvmlDeviceGetCurrPcieLinkGeneration(nvmlDevice_t d, unsigned int *v) {
    GUARD("nvmlDeviceGetCurrPcieLinkGeneration");
    return put_uint(d, "pcie_gen_cur", v);
}

nvmlReturn_t nvmlDeviceGetMaxPcieLinkWidth(nvmlDevice_t d, unsigned int *v) {
    GUARD("nvmlDeviceGetMaxPcieLinkWidth");
    return put_uint(d, "pcie_width_max", v);
}

nvmlReturn_t nvmlDeviceGetCurrPcieLinkWidth(nvmlDevice_t d, unsigned int *v) {
    GUARD("nvmlDeviceGetCurrPcieLinkWidth");
    return put_uint(d, "pcie_width_cur", v);
}

/* Links 0..nvlinks-1 exist and are active; the next one is an invalid argument, as past the
 * last link of a real GPU. No `nvlinks` key: the GPU has no NVLink (not supported). */
nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t d, unsigned int link, unsigned int *active) {
    GUARD("nvmlDeviceGetNvLinkState");
    unsigned int links = 0;
    if (!active) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = put_uint(d, "nvlinks", &links);
    if (r != NVML_SUCCESS) return r;
    if (link >= links) return NVML_ERROR_INVALID_ARGUMENT;
    *active = 1;
    return NVML_SUCCESS;
}
