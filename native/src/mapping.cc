// Memory-mapped weight files. Not a kernel: the loader's way to keep 16-bit weights in the page cache
// instead of copying them into the heap.
//
//   mapFile(path) → ArrayBuffer over a private (copy-on-write) mapping of the whole file; unmapped when
//                   the buffer is garbage-collected. Tensors become views on it: loading costs page faults,
//                   not reads, and weights nobody touches cost no memory.
//   releasePages(buffer, byteOffset, byteLength) → drops the whole pages inside that range from this
//                   process (madvise DONTNEED). The bytes stay readable: the next access maps the page
//                   again from the page cache (or the disk, if the kernel has evicted it). Only buffers
//                   made by mapFile are accepted: on heap memory the same call would zero the values.
//
// Caveat of any mapping: the file must not be truncated while mapped (access past its end is SIGBUS).
// Writing to a view is allowed (copy-on-write), but a release then drops the written pages back to the
// file's bytes; VSS never writes to loaded inference weights.
#include <node_api.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define VSS_HAS_MMAP 1
#else
#define VSS_HAS_MMAP 0
#endif

namespace vss {

#if VSS_HAS_MMAP
namespace {

// Live mappings (start → length): releasePages only ever touches memory inside one of them.
std::mutex g_maps_mu;
std::map<uintptr_t, size_t> g_maps;

void unmap(napi_env, void* data, void* hint) {
  const size_t len = reinterpret_cast<size_t>(hint);
  {
    std::lock_guard<std::mutex> lock(g_maps_mu);
    g_maps.erase(reinterpret_cast<uintptr_t>(data));
  }
  munmap(data, len);
}

bool inside_mapping(uintptr_t begin, uintptr_t end) {
  std::lock_guard<std::mutex> lock(g_maps_mu);
  auto it = g_maps.upper_bound(begin);
  if (it == g_maps.begin()) return false;
  --it;
  return begin >= it->first && end <= it->first + it->second;
}

napi_value throw_error(napi_env env, const std::string& msg) {
  napi_throw_error(env, nullptr, msg.c_str());
  return nullptr;
}

}  // namespace

napi_value MapFile(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 1) return throw_error(env, "mapFile(path): missing path");
  size_t n = 0;
  if (napi_get_value_string_utf8(env, argv[0], nullptr, 0, &n) != napi_ok) return throw_error(env, "mapFile(path): path must be a string");
  std::string file(n, '\0');
  napi_get_value_string_utf8(env, argv[0], &file[0], n + 1, &n);

  const int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return throw_error(env, file + ": " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) { const int e = errno; close(fd); return throw_error(env, file + ": " + std::strerror(e)); }
  const size_t len = (size_t)st.st_size;
  if (len == 0) { close(fd); return throw_error(env, file + ": empty file"); }
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  close(fd);  // the mapping keeps the file open
  if (p == MAP_FAILED) return throw_error(env, file + ": mmap failed: " + std::strerror(map_errno));
  {
    std::lock_guard<std::mutex> lock(g_maps_mu);
    g_maps[reinterpret_cast<uintptr_t>(p)] = len;
  }
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, len, unmap, reinterpret_cast<void*>(len), &ab) != napi_ok) {
    unmap(env, p, reinterpret_cast<void*>(len));
    return throw_error(env, file + ": this Node cannot wrap mapped memory in an ArrayBuffer");
  }
  return ab;
}

napi_value ReleasePages(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 3) return throw_error(env, "releasePages(buffer, byteOffset, byteLength)");
  void* data = nullptr;
  size_t len = 0;
  double off = 0, count = 0;
  if (napi_get_arraybuffer_info(env, argv[0], &data, &len) != napi_ok) return throw_error(env, "releasePages: expected an ArrayBuffer");
  napi_get_value_double(env, argv[1], &off);
  napi_get_value_double(env, argv[2], &count);
  if (!(off >= 0 && count >= 0 && off + count <= (double)len)) return throw_error(env, "releasePages: range outside the buffer");
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data) + (uintptr_t)off, end = begin + (uintptr_t)count;
  if (!inside_mapping(begin, end)) return throw_error(env, "releasePages: the buffer is not a mapped file");
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  const uintptr_t lo = (begin + page - 1) / page * page, hi = end / page * page;  // whole pages only
  double released = 0;
  if (hi > lo && madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED) == 0) released = (double)(hi - lo);
  napi_value out;
  napi_create_double(env, released, &out);
  return out;
}

#else  // no mmap: the loader reads files instead

napi_value MapFile(napi_env env, napi_callback_info) {
  napi_value u;
  napi_get_null(env, &u);
  return u;
}
napi_value ReleasePages(napi_env env, napi_callback_info) {
  napi_value z;
  napi_create_double(env, 0, &z);
  return z;
}

#endif

}  // namespace vss
