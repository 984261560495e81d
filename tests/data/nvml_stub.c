/* A stand-in for libnvidia-ml.so.1 on machines without an NVIDIA driver, with the C API of nvml.h (the functions
 * envcheck's probe calls through ctypes, and those the nvidia-ml-py bindings call for the same facts). It reports
 * one H100 on driver 550.54.15 (CUDA 12.4); ENVCHECK_STUB_NVML_INIT=<code> makes initialisation fail with that
 * nvmlReturn_t, as a host whose kernel module is not loaded does (9, NVML_ERROR_DRIVER_NOT_LOADED).
 * Built by tests/test_probe_local.py; never used outside the tests. */
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;

static int device = 0;

static nvmlReturn_t init(void) {
    const char *code = getenv("ENVCHECK_STUB_NVML_INIT");
    return code ? atoi(code) : 0;
}
nvmlReturn_t nvmlInit_v2(void) { return init(); }
nvmlReturn_t nvmlInit(void) { return init(); }
nvmlReturn_t nvmlInitWithFlags(unsigned int flags) { (void)flags; return init(); }
nvmlReturn_t nvmlShutdown(void) { return 0; }

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case 0: return "Success";
    case 9: return "Driver Not Loaded";
    case 18: return "RM has detected an NVML/RM version mismatch.";
    default: return "Unknown Error";
    }
}

static nvmlReturn_t copy(char *out, unsigned int length, const char *text) {
    if (strlen(text) + 1 > length) return 7; /* NVML_ERROR_INSUFFICIENT_SIZE */
    strcpy(out, text);
    return 0;
}
nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    return copy(version, length, "550.54.15");
}
nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *version) { *version = 12040; return 0; }
nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *version) { *version = 12040; return 0; }
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) { *count = 1; return 0; }
nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) { *count = 1; return 0; }
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *handle) {
    if (index != 0) return 2; /* NVML_ERROR_INVALID_ARGUMENT */
    *handle = (nvmlDevice_t)&device;
    return 0;
}
nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *handle) {
    return nvmlDeviceGetHandleByIndex_v2(index, handle);
}
nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t handle, char *name, unsigned int length) {
    (void)handle;
    return copy(name, length, "NVIDIA H100 80GB HBM3");
}
nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t handle, int *major, int *minor) {
    (void)handle;
    *major = 9;
    *minor = 0;
    return 0;
}
nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t handle, nvmlMemory_t *memory) {
    (void)handle;
    memory->total = 85520809984ULL; /* 81559 MiB, as an H100 80GB HBM3 reports */
    memory->used = 1048576ULL * 512;
    memory->free = memory->total - memory->used;
    return 0;
}
