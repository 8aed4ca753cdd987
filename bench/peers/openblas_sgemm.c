/*
 * Peer for the VSS engine benchmark: times OpenBLAS cblas_sgemm (row-major) on the shapes given as
 * arguments and prints one JSON object on stdout.
 *
 *   openblas_sgemm [--reps R] [--min-time S] [--warmup W] CASE...
 *   CASE = TA,TB,M,N,K   with TA/TB = N (as stored) or T (transposed), e.g. N,T,4096,320,1280
 *
 * Storage follows the VSS gemm contract: op(A) is M×K (A stored M×K, or K×M when TA=T), op(B) is K×N
 * (B stored K×N, or N×K when TB=T), C is M×N, all dense row-major. Each case: W warm-up calls, then at
 * least R timed calls and at least S seconds of timed calls; reports the median, min, max and 10th/90th
 * percentile seconds (min/max for 10 samples or fewer).
 * Thread count comes from the environment (OPENBLAS_NUM_THREADS); set OPENBLAS_CORETYPE=SkylakeX on
 * AMD Zen 4/5, which Debian's OpenBLAS otherwise treats as Haswell (AVX2).
 *
 * Build: gcc -O2 -I/usr/include/x86_64-linux-gnu/openblas-pthread openblas_sgemm.c -o openblas_sgemm -lopenblas
 */
#define _POSIX_C_SOURCE 200112L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static float *alloc_filled(size_t n, unsigned seed) {
  float *p = NULL;
  if (posix_memalign((void **)&p, 64, n * sizeof(float) + 64) != 0) return NULL;
  unsigned s = seed * 2654435761u + 1u;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    p[i] = (float)((int)(s >> 9) % 2001 - 1000) * 1e-3f; /* [-1, 1] */
  }
  return p;
}

#define MAX_SAMPLES 100000

int main(int argc, char **argv) {
  int reps = 10, warmup = 2;
  double min_time = 0.5;
  static double samples[MAX_SAMPLES];
  int first_case = 1;
  for (; first_case < argc; first_case++) {
    if (strcmp(argv[first_case], "--reps") == 0 && first_case + 1 < argc) reps = atoi(argv[++first_case]);
    else if (strcmp(argv[first_case], "--warmup") == 0 && first_case + 1 < argc) warmup = atoi(argv[++first_case]);
    else if (strcmp(argv[first_case], "--min-time") == 0 && first_case + 1 < argc) min_time = atof(argv[++first_case]);
    else break;
  }
  if (reps < 1) reps = 1;
  if (first_case >= argc) {
    fprintf(stderr, "usage: %s [--reps R] [--min-time S] [--warmup W] TA,TB,M,N,K ...\n", argv[0]);
    return 2;
  }
  char *core = openblas_get_corename();
  printf("{\"peer\":\"OpenBLAS\",\"config\":\"%s\",\"core\":\"%s\",\"threads\":%d,\"results\":[",
         openblas_get_config(), core ? core : "?", openblas_get_num_threads());
  for (int c = first_case; c < argc; c++) {
    char ta = 'N', tb = 'N';
    int M = 0, N = 0, K = 0;
    if (sscanf(argv[c], "%c,%c,%d,%d,%d", &ta, &tb, &M, &N, &K) != 5 || M <= 0 || N <= 0 || K <= 0 ||
        (ta != 'N' && ta != 'T') || (tb != 'N' && tb != 'T')) {
      fprintf(stderr, "bad case '%s' (want TA,TB,M,N,K)\n", argv[c]);
      return 2;
    }
    float *A = alloc_filled((size_t)M * K, 1), *B = alloc_filled((size_t)K * N, 2);
    float *C = alloc_filled((size_t)M * N, 3);
    if (!A || !B || !C) { fprintf(stderr, "out of memory\n"); return 1; }
    const int lda = ta == 'T' ? M : K, ldb = tb == 'T' ? K : N, ldc = N;
    const enum CBLAS_TRANSPOSE TA = ta == 'T' ? CblasTrans : CblasNoTrans;
    const enum CBLAS_TRANSPOSE TB = tb == 'T' ? CblasTrans : CblasNoTrans;
    for (int w = 0; w < warmup; w++)
      cblas_sgemm(CblasRowMajor, TA, TB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
    int n = 0;
    double total = 0;
    while ((n < reps || total < min_time) && n < MAX_SAMPLES) {
      double t0 = now_s();
      cblas_sgemm(CblasRowMajor, TA, TB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
      double dt = now_s() - t0;
      samples[n++] = dt;
      total += dt;
    }
    qsort(samples, (size_t)n, sizeof(double), cmp_double);
    const double med = n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
    const int cut = n > 10 ? (n - 1) / 10 : 0; /* 10th / 90th percentiles, rounded outwards */
    double check = 0;
    for (size_t i = 0; i < (size_t)M * N; i += 997) check += C[i];
    printf("%s{\"ta\":\"%c\",\"tb\":\"%c\",\"M\":%d,\"N\":%d,\"K\":%d,\"reps\":%d,"
           "\"median_s\":%.9g,\"min_s\":%.9g,\"max_s\":%.9g,\"p10_s\":%.9g,\"p90_s\":%.9g,\"checksum\":%.6g}",
           c == first_case ? "" : ",", ta, tb, M, N, K, n, med, samples[0], samples[n - 1], samples[cut],
           samples[n - 1 - cut], check);
    fflush(stdout);
    free(A); free(B); free(C);
  }
  printf("]}\n");
  return 0;
}
