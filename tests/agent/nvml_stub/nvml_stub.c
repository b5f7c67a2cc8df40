/*
 * A stand-in libnvidia-ml.so.1 for tests: just enough of the NVML C API for the agent's nvml
 * source, so that the real pynvml ctypes bindings run against a real shared library without a GPU.
 *
 * Defaults are the facts of a real H100 capture (../shared/fixtures/real/nvidia-smi/
 * nvidia_gpu_exporter__linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt): driver 590.48.01,
 * CUDA 13.1, "NVIDIA H100 80GB HBM3", 81559 MiB total, 479 MiB used, compute capability 9.0.
 * Environment variables shape other machines:
 *   STUB_NVML_INIT_ERROR=<code>      nvmlInit fails with that nvmlReturn_t
 *   STUB_NVML_COUNT=<n>              number of devices (default 1)
 *   STUB_NVML_NAMES=a,b              device i is named names[i % len]
 *   STUB_NVML_UNSUPPORTED=f1,f2      these functions return NVML_ERROR_NOT_SUPPORTED
 *   STUB_NVML_UTILIZATION=<percent>  GPU utilization (default 0)
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
    NVML_ERROR_NOT_SUPPORTED = 3, NVML_ERROR_INSUFFICIENT_SIZE = 7, NVML_ERROR_DRIVER_NOT_LOADED = 9,
};

#define MIB (1024ULL * 1024ULL)
#define MAX_DEVICES 64

static int refcount = 0;

static const char *env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return (v && *v) ? v : fallback;
}

static unsigned int device_count(void) {
    unsigned int n = (unsigned int)atoi(env_or("STUB_NVML_COUNT", "1"));
    return n > MAX_DEVICES ? MAX_DEVICES : n;
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

static int device_index(nvmlDevice_t d) {
    uintptr_t i = (uintptr_t)d;
    return (i >= 1 && i <= device_count()) ? (int)(i - 1) : -1;
}

static nvmlReturn_t put(char *out, unsigned int size, const char *value) {
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(value) + 1 > size) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(out, value);
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    int err = atoi(env_or("STUB_NVML_INIT_ERROR", "0"));
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
    return put(out, size, "590.48.01");
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v) {
    GUARD("nvmlSystemGetCudaDriverVersion");
    if (!v) return NVML_ERROR_INVALID_ARGUMENT;
    *v = 13010;
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
    int i = device_index(d);
    if (i < 0) return NVML_ERROR_INVALID_ARGUMENT;
    const char *names = env_or("STUB_NVML_NAMES", "NVIDIA H100 80GB HBM3");
    int count = 1;
    for (const char *p = names; *p; p++) count += (*p == ',');
    int k = i % count;
    const char *start = names;
    while (k-- > 0) start = strchr(start, ',') + 1;
    const char *end = strchr(start, ',');
    size_t n = end ? (size_t)(end - start) : strlen(start);
    char name[96];
    if (n >= sizeof name) n = sizeof name - 1;
    memcpy(name, start, n);
    name[n] = '\0';
    return put(out, size, name);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *out, unsigned int size) {
    GUARD("nvmlDeviceGetUUID");
    int i = device_index(d);
    if (i < 0) return NVML_ERROR_INVALID_ARGUMENT;
    char uuid[64];
    /* The capture's UUID is masked to zeros; the last digits tell stub devices apart. */
    snprintf(uuid, sizeof uuid, "GPU-00000000-0000-0000-0000-%012d", i);
    return put(out, size, uuid);
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
    GUARD("nvmlDeviceGetMemoryInfo");
    if (device_index(d) < 0 || !m) return NVML_ERROR_INVALID_ARGUMENT;
    m->total = 81559 * MIB;
    m->used = 479 * MIB;
    m->free = m->total - m->used;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t d, int *major, int *minor) {
    GUARD("nvmlDeviceGetCudaComputeCapability");
    if (device_index(d) < 0 || !major || !minor) return NVML_ERROR_INVALID_ARGUMENT;
    *major = 9;
    *minor = 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    GUARD("nvmlDeviceGetUtilizationRates");
    if (device_index(d) < 0 || !u) return NVML_ERROR_INVALID_ARGUMENT;
    u->gpu = (unsigned int)atoi(env_or("STUB_NVML_UTILIZATION", "0"));
    u->memory = 0;
    return NVML_SUCCESS;
}
