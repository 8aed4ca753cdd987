// Persistent thread pool and per-thread scratch memory (compiled without ISA flags).
//
// One job at a time: the caller publishes (fn, ctx, ntasks), bumps a generation counter, and takes
// tasks from a shared atomic counter alongside the workers. Workers spin briefly after a job (kernels
// come in bursts, and a condition-variable wake-up costs tens of microseconds) and then sleep.
#include "common.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VSS_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define VSS_PAUSE() __asm__ __volatile__("yield")
#else
#define VSS_PAUSE() ((void)0)
#endif

namespace vss {
namespace {

struct alignas(64) Job {
  TaskFn fn = nullptr;
  void* ctx = nullptr;
  int64_t ntasks = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

thread_local int tls_in_task = 0;   // >0 while running pool tasks: nested parallel_for runs inline

class Pool {
 public:
  ~Pool() { resize(1); }

  int size() const { return nthreads_; }

  void resize(int n) {
    if (n < 1) n = 1;
    std::lock_guard<std::mutex> job_lock(run_mu_);
    stop_workers();
    nthreads_ = n;
    stop_ = false;
    for (int i = 1; i < n; i++) workers_.emplace_back([this, i] { worker_loop(i); });
  }

  // Returns false when the pool is busy (another JS thread): the caller then runs the job itself.
  bool run(int64_t ntasks, TaskFn fn, void* ctx) {
    std::unique_lock<std::mutex> job_lock(run_mu_, std::try_to_lock);
    if (!job_lock.owns_lock()) return false;
    job_.fn = fn; job_.ctx = ctx; job_.ntasks = ntasks;
    job_.next.store(0, std::memory_order_relaxed);
    job_.done.store(0, std::memory_order_relaxed);
    failed_ = false;
    open_.store(true);   // publishes the fields above
    generation_.fetch_add(1);
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lk(sleep_mu_);
      sleep_cv_.notify_all();
    }
    work(0);
    while (job_.done.load(std::memory_order_acquire) < ntasks) VSS_PAUSE();
    // Close the job, then wait until no worker is between "saw a new generation" and "checked open":
    // only then may the fields be rewritten by the next job (seq_cst pairs with the worker's side).
    open_.store(false);
    while (active_.load() > 0) VSS_PAUSE();
    if (failed_) throw std::bad_alloc();
    return true;
  }

 private:
  void work(int tid) {
    tls_in_task++;
    for (;;) {
      int64_t t = job_.next.fetch_add(1, std::memory_order_relaxed);
      if (t >= job_.ntasks) break;
      try {
        job_.fn(job_.ctx, t, tid);
      } catch (...) {
        failed_ = true;  // only allocation can throw; reported by the caller once the job is over
      }
      job_.done.fetch_add(1, std::memory_order_release);
    }
    tls_in_task--;
  }

  void worker_loop(int tid) {
    uint64_t seen = generation_.load();
    for (;;) {
      // Spin for a while, then sleep until the generation changes.
      int spins = 0;
      auto spin_start = std::chrono::steady_clock::now();
      uint64_t g;
      for (;;) {
        g = generation_.load();
        if (g != seen || stop_.load()) break;
        if ((++spins & 255) != 0 ||
            std::chrono::steady_clock::now() - spin_start < std::chrono::microseconds(kSpinMicros)) {
          VSS_PAUSE();
          continue;
        }
        std::unique_lock<std::mutex> lk(sleep_mu_);
        sleepers_.fetch_add(1);
        sleep_cv_.wait(lk, [&] {
          return generation_.load() != seen || stop_.load();
        });
        sleepers_.fetch_sub(1);
        spins = 0;
        spin_start = std::chrono::steady_clock::now();
      }
      if (stop_.load()) return;
      seen = g;
      active_.fetch_add(1);
      if (open_.load()) work(tid);
      active_.fetch_sub(1);
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(sleep_mu_);
      stop_ = true;
      sleep_cv_.notify_all();
    }
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  static constexpr int kSpinMicros = 200;
  int nthreads_ = 1;
  std::vector<std::thread> workers_;
  Job job_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> active_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> open_{false};
  std::atomic<bool> failed_{false};
  std::mutex run_mu_, sleep_mu_;
  std::condition_variable sleep_cv_;
};

int default_threads() {
  if (const char* e = std::getenv("VSS_NUM_THREADS")) {
    int n = std::atoi(e);
    if (n > 0) return n;
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? (int)hc : 1;
}

Pool& pool() {
  // Leaked on purpose: joining threads from a static destructor at process exit can deadlock.
  static Pool* p = [] { Pool* q = new Pool(); q->resize(default_threads()); return q; }();
  return *p;
}

struct ScratchBuf { void* p = nullptr; size_t cap = 0; };
struct ThreadScratch {
  ScratchBuf b[SLOT_COUNT];
  ~ThreadScratch() { for (auto& s : b) std::free(s.p); }
};
thread_local ThreadScratch tls_scratch;

}  // namespace

void parallel_for(int64_t ntasks, TaskFn fn, void* ctx) {
  if (ntasks <= 0) return;
  if (ntasks == 1 || tls_in_task || pool().size() == 1 || !pool().run(ntasks, fn, ctx)) {
    tls_in_task++;
    for (int64_t t = 0; t < ntasks; t++) fn(ctx, t, 0);
    tls_in_task--;
  }
}

int num_threads() { return tls_in_task ? 1 : pool().size(); }
int pool_size() { return pool().size(); }
void set_num_threads(int n) { if (n != pool().size()) pool().resize(n); }

void* scratch(int slot, size_t bytes) {
  ScratchBuf& s = tls_scratch.b[slot];
  if (bytes > s.cap) {
    std::free(s.p);
    size_t cap = bytes + bytes / 4 + 4096;     // some headroom against regrowing by small steps
    cap = (cap + 63) & ~(size_t)63;
    s.p = std::aligned_alloc(64, cap);
    if (!s.p) { s.cap = 0; throw std::bad_alloc(); }
    s.cap = cap;
  }
  return s.p;
}

}  // namespace vss

namespace vss {
static std::atomic<bool> g_conv_winograd{true};
bool conv_winograd_enabled() { return g_conv_winograd.load(std::memory_order_relaxed); }
void set_conv_winograd(bool on) { g_conv_winograd.store(on, std::memory_order_relaxed); }
}  // namespace vss
