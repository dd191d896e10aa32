/* timing_cuda.c - CUDA event and graph timers (see timing.h). */
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "kn_common.h"
#include "timing.h"

void timing_cuda_events(timing_launch_fn fn, void *ctx, void *stream, int warmup, uint64_t reps,
                        double *times)
{
    cudaStream_t st = stream;
    cudaEvent_t a, b;
    CUDACALL(cudaEventCreate(&a));
    CUDACALL(cudaEventCreate(&b));
    for (int w = 0; w < warmup; w++) fn(ctx, w, stream);
    for (uint64_t r = 0; r < reps; r++) {
        CUDACALL(cudaEventRecord(a, st));
        fn(ctx, warmup + (int)r, stream);
        CUDACALL(cudaEventRecord(b, st));
        CUDACALL(cudaEventSynchronize(b));
        float ms = 0;
        CUDACALL(cudaEventElapsedTime(&ms, a, b));
        times[r] = 1e-3 * ms;
    }
    CUDACALL(cudaEventDestroy(a));
    CUDACALL(cudaEventDestroy(b));
}

double timing_cuda_graph(timing_launch_fn fn, void *ctx, int calls, uint64_t reps, double *times)
{
    cudaStream_t st;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    cudaEvent_t a, b;
    CUDACALL(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    for (int i = 0; i < 2; i++) fn(ctx, i, st); /* warm-up outside the graph */
    CUDACALL(cudaStreamSynchronize(st));
    CUDACALL(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < calls; i++) fn(ctx, i, st);
    CUDACALL(cudaStreamEndCapture(st, &graph));
    CUDACALL(cudaGraphInstantiate(&exec, graph, 0));
    CUDACALL(cudaGraphLaunch(exec, st));
    CUDACALL(cudaEventCreate(&a));
    CUDACALL(cudaEventCreate(&b));
    for (uint64_t r = 0; r < reps; r++) {
        CUDACALL(cudaEventRecord(a, st));
        CUDACALL(cudaGraphLaunch(exec, st));
        CUDACALL(cudaEventRecord(b, st));
        CUDACALL(cudaEventSynchronize(b));
        float ms = 0;
        CUDACALL(cudaEventElapsedTime(&ms, a, b));
        times[r] = 1e-3 * ms / calls;
    }
    CUDACALL(cudaEventDestroy(a));
    CUDACALL(cudaEventDestroy(b));
    CUDACALL(cudaGraphExecDestroy(exec));
    CUDACALL(cudaGraphDestroy(graph));
    CUDACALL(cudaStreamDestroy(st));
    double *s = kn_xmalloc(reps * sizeof(double), "timings");
    memcpy(s, times, reps * sizeof(double));
    double m = timing_median(s, reps);
    free(s);
    return m;
}
