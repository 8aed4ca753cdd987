{
  # vss_native: our C++ kernels. The SIMD kernels are compiled per instruction set in their own
  # static libraries (gyp has no per-file flags) and chosen at load time with __builtin_cpu_supports;
  # the addon itself and the portable kernels use no ISA flags, so the binary runs on any x86-64.
  # No -march=native anywhere. On non-x86 targets only the portable kernels are built.
  "target_defaults": {
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
    "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-fno-math-errno", "-fPIC"],
    "include_dirs": ["native/src"],
    "xcode_settings": {
      "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
      "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
      "OTHER_CPLUSPLUSFLAGS": ["-O3", "-fno-math-errno"]
    }
  },
  "targets": [
    {
      "target_name": "vss_native",
      "sources": [
        "native/src/addon.cc",
        "native/src/pool.cc",
        "native/src/mapping.cc",
        "native/src/isa_portable.cc"
      ],
      "defines": ["NAPI_VERSION=8"],
      "conditions": [
        ["target_arch=='x64'", {
          "dependencies": ["vss_isa_avx2", "vss_isa_avx512"]
        }],
        ["OS=='linux'", {
          "libraries": ["-lpthread"]
        }]
      ]
    }
  ],
  "conditions": [
    ["target_arch=='x64'", {
      "targets": [
        {
          "target_name": "vss_isa_avx2",
          "type": "static_library",
          "sources": ["native/src/isa_avx2.cc"],
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-O3", "-fno-math-errno", "-mavx2", "-mfma", "-mf16c"] }
        },
        {
          "target_name": "vss_isa_avx512",
          "type": "static_library",
          "sources": ["native/src/isa_avx512.cc"],
          # -Wno-(maybe-)uninitialized: GCC 12 warns inside its own AVX-512 intrinsic headers.
          # -mavx512bf16 only enables the opt-in bf16 GEMM (VDPBF16PS): the compiler does not emit bf16
          # instructions for float code, and the addon runs that GEMM only after checking the CPU has them.
          "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma", "-mf16c",
                        "-Wno-uninitialized", "-Wno-maybe-uninitialized"],
          "xcode_settings": {
            "OTHER_CPLUSPLUSFLAGS": ["-O3", "-fno-math-errno", "-mavx512f", "-mavx512bw", "-mavx512vl",
                                     "-mavx512dq", "-mavx512bf16", "-mfma", "-mf16c"]
          }
        }
      ]
    }]
  ]
}
