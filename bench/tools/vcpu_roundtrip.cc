// Round trip of one cache line between two threads pinned to CPUs 0 and 1, once a second: tells whether a
// VM's two vCPUs currently share a core complex (~55 ns on the Zen 5 VM of bench/RESULTS.md) or not
// (~320 ns). Two-thread timings taken in the second state can be far off; see "Session 11" there.
//
//   g++ -O2 -pthread bench/tools/vcpu_roundtrip.cc -o /tmp/vcpu_roundtrip && /tmp/vcpu_roundtrip 30
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

static std::atomic<int> line{0};   // odd: the first thread's turn to answer

static void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

int main(int argc, char** argv) {
  const int seconds = argc > 1 ? std::atoi(argv[1]) : 10;
  std::atomic<bool> stop{false};
  std::thread answerer([&] {
    pin_to(1);
    while (!stop.load(std::memory_order_relaxed)) {
      const int v = line.load(std::memory_order_acquire);
      if (v & 1) line.store(v + 1, std::memory_order_release);
    }
  });
  pin_to(0);
  for (int s = 0; s < seconds; s++) {
    const int trips = 200000;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < trips; i++) {
      const int v = line.load(std::memory_order_relaxed) + 1;   // even → odd: a question
      line.store(v, std::memory_order_release);
      while (line.load(std::memory_order_acquire) == v) {}
    }
    const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / trips;
    std::printf("%.0f ns\n", ns);
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
  }
  stop = true;
  answerer.join();
}
